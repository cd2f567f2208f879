"""The live service's facade: one database and one policy; lifecycle, ingestion and statistics here,
look-ups (`_lookups`), tailored offers (`_offers`), decisions at the gate, the airline and the bank
(`_decisions`) and appeals (`_appeals`) in modules of their own, the ledger, access rules, keys and
look-up log in theirs."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from socialcredit.engine import (
    CompiledConsequences,
    CompiledPolicy,
)
from socialcredit.events import Calendar, EventError, check_text
from socialcredit.policy import Policy, load_policy
from socialcredit.service._access import DISCLOSURES, Access, log_row, refusal_row
from socialcredit.service._appeals import APPEAL_STATUSES, Appeals
from socialcredit.service._db import DEFAULT_URL, Database
from socialcredit.service._decisions import Decisions
from socialcredit.service._errors import Conflict, Forbidden, Invalid, Unauthorized
from socialcredit.service._keys import SENDING_ROLES, ApiKey, authenticate
from socialcredit.service._ledger import Ledger
from socialcredit.service._lookup_log import LookupLog
from socialcredit.service._lookups import Lookups
from socialcredit.service._offers import Offers
from socialcredit.service._roster import Roster
from socialcredit.service._sessions import Sessions

log = logging.getLogger("socialcredit.service")

# The projector waits at most this long for batches being received before it projects.
PROJECT_DEFER_S = 2.0
# ... and while batches keep coming: a batch acknowledged less than this long ago counts as arriving.
INGEST_QUIET_S = 0.05
# The projector thread runs at a lower CPU priority (Linux nice, per thread): when the cores are
# busy, acknowledging batches and answering look-ups go first and the scores catch up after.
PROJECTOR_NICE = 10
# Failed projections in a row at start before the service starts anyway (more than Inbox's
# POISON_ATTEMPTS, so that a poisoned batch is quarantined on the way).
START_ATTEMPTS = 5


@dataclass(frozen=True)
class Settings:
    """Limits of the HTTP service (enforced by `_limits.Limits`, except `wait_seconds`)."""

    max_body_bytes: int = 64 * 1024 * 1024  # a batch sent to POST /api/events
    wait_seconds: float = 60.0
    max_other_body_bytes: int = 1024 * 1024  # the body of any other request (forms, JSON)
    # Requests a second, sustained and at once: per key, and per client address for requests
    # without a key that has been accepted. One process answers some 6-8k look-ups a second on
    # 2 cores: the key rate keeps a key to a share of a larger machine, not below what one can do.
    rate_per_key: float = 10_000.0
    burst_per_key: float = 20_000.0
    rate_per_address: float = 50.0
    burst_per_address: float = 200.0
    # Requests in flight, beyond which the service answers 503 with Retry-After (no queue); batches
    # to POST /api/events on their own, as each holds up to max_body_bytes in memory.
    max_in_flight: int = 256
    max_batches_in_flight: int = 8


class Service(Lookups, Offers, Decisions, Appeals, Roster):
    """One database and one policy: everything the API does, without HTTP.

    Its clock: with `clock` (a function giving today's date, e.g. `datetime.date.today`) the service
    day follows it, today's day number of the database's calendar; without, the day is simulated:
    it moves only when told (`set_day`, a loaded run).
    """

    def __init__(self, db: Database, policy: Policy, *, settings: Settings | None = None,
                 clock: Callable[[], dt.date] | None = None, partition: int | None = None):
        self.db = db
        self.clock = clock
        self.policy = policy
        self.compiled = CompiledPolicy.of(policy)
        self.settings = settings or Settings()
        stored = db.get_meta("policy")
        if stored is None:
            with db.transaction() as cur:
                db.set_meta(cur, "policy", policy.name)
        elif stored != policy.name:
            raise Conflict(f"{db.url} holds scores under policy '{stored}', not '{policy.name}'; "
                           f"use --policy {stored} or another database")
        self.ledger = Ledger(db, self.compiled, partition=partition)
        self.access = Access(policy)
        self.consequence_rules = CompiledConsequences.of(policy)
        self._log = LookupLog(db)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._receiving = 0  # batches being received, checked and committed to the inbox now
        self._received_at = 0.0  # when the last of them was acknowledged (time.monotonic)
        self._counting = threading.Lock()

    @classmethod
    def open(cls, url: str = DEFAULT_URL, policy: str | Policy | None = None, *,
             settings: Settings | None = None, clock: Callable[[], dt.date] | None = None,
             partition: int | None = None, partitions: int | None = None) -> Service:
        """Open (and create) the database at `url` with a policy: a preset name, a TOML file, a
        Policy, or None for the one it holds.

        The database keeps the whole policy it scores under, so it opens again without naming it:
        no file needs to stay where it was. On PostgreSQL, `partitions` splits the ledger of a
        database made now (see Database.open), and `partition` is the one this process projects
        (see _ledger): one service process per partition, each answering look-ups of every citizen.
        """
        db = Database.open(url, partitions=partitions)
        if policy is None:
            kept = db.get_meta("policy_json")
            # A database made before the policy was kept whole names its file or preset.
            policy = (Policy.model_validate_json(kept) if kept
                      else load_policy(db.get_meta("policy_file") or db.get_meta("policy") or "taz-2018"))
        elif not isinstance(policy, Policy):
            policy = load_policy(policy)
        service = cls(db, policy, settings=settings, clock=clock, partition=partition)
        kept = policy.model_dump_json(by_alias=True)
        if db.get_meta("policy_json") != kept:
            with db.transaction() as cur:
                db.set_meta(cur, "policy_json", kept)
        return service

    @property
    def day(self) -> int:
        """The service day: events after it are refused, scores are as of it."""
        return self.ledger.day

    @property
    def calendar(self) -> Calendar:
        """The database's calendar: the date of day 0 (the loaded run's start date, or the default)."""
        return self.ledger.calendar

    @property
    def date(self) -> str:
        """The service day's date (ISO)."""
        return self.calendar.iso(self.day)

    def set_day(self, day: int) -> None:
        """Move a simulated clock forward to `day` (points that expire by then are taken off)."""
        if self.clock is not None:
            raise Conflict("the service day follows the wall clock; a day is set only on a simulated clock",
                           field="day")
        self.ledger.set_day(day)

    def set_start_date(self, start: dt.date) -> None:
        """Count days from `start` (a database that holds no event yet; one that counts from
        another date refuses)."""
        self.ledger.set_calendar(Calendar(start), "--start-date")

    def follow_clock(self) -> None:
        """On the wall clock: move the service day to today's (at midnight, points that expired
        are taken off). A database whose day is ahead of today keeps it: days never go back."""
        if self.clock is not None and (today := self.calendar.today(self.clock)) > self.ledger.day:
            self.ledger.set_day(today)

    @property
    def loaded_run(self) -> Path | None:
        """The simulation run folder last loaded into the database (`db load`), while it is there."""
        folder = self.db.get_meta("run_dir")
        return Path(folder) if folder and (Path(folder) / "manifest.json").is_file() else None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the projector and the look-up log writer, after projecting what a crash left."""
        if self.ledger.partitioned and self.ledger.partition is None:
            raise Conflict(f"{self.db.url} holds a ledger in {self.db.partitions} partitions: serve each with a "
                           f"process of its own (--partition P/{self.db.partitions})", field="partition")
        self.ledger.warm()
        self.ledger.catch_up()
        self.follow_clock()
        self._project_backlog()
        self._log = LookupLog(self.db)
        self._threads = [threading.Thread(target=self._project_loop, name="projector", daemon=True),
                         self._log.start()]
        for t in self._threads:
            t.start()

    def _project_backlog(self) -> None:
        """Project what the inbox holds; a batch that fails is tried again (and quarantined if it
        keeps failing, see Inbox.project) but never keeps the service from starting: after
        START_ATTEMPTS failures in a row the projector thread goes on with it."""
        failures = 0
        while failures < START_ATTEMPTS:
            try:
                if not self.ledger.project():
                    return
                failures = 0
            except Exception:
                failures += 1
                log.exception("projecting the inbox at start failed (%d of %d)", failures, START_ATTEMPTS)

    def stop(self) -> None:
        """Stop the background threads (what they hold is written first)."""
        self._stop.set()
        self._wake.set()
        self._log.stop()
        for t in self._threads:
            t.join()
        self._threads = []
        self._stop.clear()

    def close(self) -> None:
        """Stop the background threads and close the database."""
        self.stop()
        self.db.close()

    def _project_loop(self) -> None:
        _lower_priority(PROJECTOR_NICE)
        while not self._stop.is_set():
            self._wake.clear()  # before projecting, so that a batch arriving meanwhile is not missed
            # Batches still being received: let them in first (for up to PROJECT_DEFER_S), then
            # project them together; the acknowledgements get the CPU, and a larger projection
            # writes each touched citizen's score once for more events.
            deadline = time.monotonic() + PROJECT_DEFER_S
            while self._ingesting() and time.monotonic() < deadline and not self._stop.is_set():
                self._stop.wait(0.02)
            try:
                self.follow_clock()
                self.ledger.catch_up()
                moved = self.ledger.project()
            except Exception:  # the batches stay in the inbox; try again rather than die
                log.exception("projecting the inbox failed; retrying in 1 s")
                self._stop.wait(1.0)
                continue
            if not moved:
                self._wake.wait(0.5)

    # -- events -----------------------------------------------------------------------------------

    def _ingesting(self) -> bool:
        """A batch is being received now, or was acknowledged a moment ago (its sender's next
        batch is most likely on its way)."""
        return bool(self._receiving) or time.monotonic() - self._received_at < INGEST_QUIET_S

    @contextmanager
    def receiving(self):
        """Mark a batch as being received (the HTTP layer wraps the body's upload in it too)."""
        with self._counting:
            self._receiving += 1
        try:
            yield
        finally:
            with self._counting:
                self._receiving -= 1
                self._received_at = time.monotonic()

    def ingest(self, key: ApiKey, body: bytes, *, wait: bool = True) -> dict:
        """Accept a batch durably; with `wait`, return once its scores are updated."""
        self.follow_clock()  # an event of today is not in the future, even just after midnight
        with self.receiving():
            batch, n = self.ledger.ingest(key, body)
        self._wake.set()
        projected = False
        if wait:
            if self._threads:
                projected = self.ledger.wait_projected(batch, self.settings.wait_seconds)
            else:
                while self.ledger.project():
                    pass
                projected = True
        return {"batch": batch, "events": n, "projected": projected, "day": self.day, "date": self.date}

    # -- access -----------------------------------------------------------------------------------

    def is_live_key(self, secret: str) -> bool:
        """Whether `secret` is a key that is not revoked, or a page session that has not ended (the
        limits give only those a rate of their own)."""
        try:
            authenticate(self.db, secret)
            return True
        except Unauthorized:
            pass
        try:
            Sessions(self.db).key_for(secret)
            return True
        except Unauthorized:
            return False

    def _permit(self, key: ApiKey, citizen_id: str, purpose: str | None, disclosure: str) -> list[str]:
        """The fields of `disclosure` (access.DISCLOSURES) that the caller may see of `citizen_id`;
        a refusal is logged for the citizen, with its reason, and raised. An id that no citizen
        can have (a control character, a lone surrogate: the text rule of events) is refused first,
        before either database sees it."""
        try:
            check_text(citizen_id, "citizen_id")
        except EventError as exc:
            raise Invalid(str(exc), field="citizen_id") from None
        try:
            grant = self.access.permit(key, citizen_id, purpose, DISCLOSURES[disclosure])
        except Forbidden as exc:
            self._refused(key, citizen_id, purpose, disclosure, exc.message)
            raise
        return DISCLOSURES[disclosure].shown(grant)

    def _record(self, key: ApiKey, citizen_id: str, purpose: str | None, fields: list[str],
                endpoint: str) -> None:
        self._log.write([log_row(key, citizen_id, purpose, fields, endpoint, self.day)])

    def _refused(self, key: ApiKey, citizen_id: str, purpose: str | None, endpoint: str, reason: str) -> None:
        # Written at once, not through the look-up log's journal: nothing was answered, so there is
        # no answer to wait for, and the citizen sees the attempt as soon as it is refused.
        with self.db.log.transaction() as cur:
            self.db.log.execute("INSERT INTO refusals (citizen_id, key_name, role, purpose, endpoint, reason, at, day) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                refusal_row(key, citizen_id, purpose, endpoint, reason, self.day), cur)

    # -- statistics -------------------------------------------------------------------------------

    def stats(self, key: ApiKey) -> dict:
        """Class counts and events per day (aggregates only; analysts and agencies).

        Kept up to date by the writes (see `Ledger.counts`): no scan of the ledger per call.
        """
        if key.role not in ("analyst", "agency"):
            raise Forbidden("only analyst and agency keys may read statistics")
        per_day, classes = self.ledger.counts()
        appeals = dict(self.db.execute("SELECT status, COUNT(*) FROM appeals GROUP BY status"))
        return {"day": self.day, "date": self.date, "policy": self.policy.name,
                "classes": dict(zip(self.policy.class_names, classes, strict=True)),
                "events_per_day": [{"day": d, "date": self.calendar.iso(d), "events": per_day[d]}
                                   for d in sorted(per_day)],
                "events": sum(per_day.values()), "pending_batches": self.ledger.pending(),
                "quarantined": self.ledger.quarantined_count(),
                "appeals": {status: int(appeals.get(status, 0)) for status in APPEAL_STATUSES}}

    def quarantined(self, key: ApiKey) -> list[dict]:
        """Acknowledged batches that could not be stored, with their errors: a sender's own;
        analysts and agencies see all."""
        if key.role in ("analyst", "agency"):
            return self.ledger.quarantined_batches()
        if key.role in SENDING_ROLES:
            return self.ledger.quarantined_batches(key.name)
        raise Forbidden(f"role '{key.role}' sends no batches (senders: {', '.join(SENDING_ROLES)})")

    def arrivals(self, after_batch: int) -> list[tuple[int, str, str | None, int]]:
        """Events of the ingestion batches after `after_batch`: (batch, kind, source, count), for
        the dashboard's rates (as each was projected, an event sent again counted once; a loaded run
        did not arrive)."""
        return self.db.execute("SELECT batch, kind, source, CAST(SUM(events) AS BIGINT) FROM arrivals "
                               "WHERE batch > ? GROUP BY batch, kind, source", (after_batch,))

    def load_run(self, run_dir: Path) -> dict[str, int]:
        """Load a simulation run folder into the database."""
        return self.ledger.load_run(run_dir)


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority by `nice` where the platform allows it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(
            os.PRIO_PROCESS, threading.get_native_id()) + nice)
    except (AttributeError, OSError):  # not Linux, or not allowed: keep the priority
        pass
