"""The live service: look-ups under the policy's grants, consequences at the gate, appeals, stats."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from socialcredit.engine import CompiledPolicy, explain
from socialcredit.events import EVENT_SCHEMA
from socialcredit.policy import Consequence, Grant, Policy, load_policy
from socialcredit.service._db import DEFAULT_URL, Database
from socialcredit.service._errors import Conflict, Forbidden, Invalid, NotFound
from socialcredit.service._keys import ApiKey, now
from socialcredit.service._ledger import Ledger

log = logging.getLogger("socialcredit.service")

# Camera events: source "camera", source_ref "cam-<region>-<placetype>-<n>" (e.g. cam-rc-subway-17).
CAMERA_SOURCE = "camera"
# Loans (ASSUMPTION, the report gives no rates): 4% for the top class, +0.5 points per class below,
# minus a benefit's `loan_rate_discount`; a sanction with `loan_allowed = false` refuses the loan.
LOAN_BASE_RATE = 0.04
LOAN_CLASS_SPREAD = 0.005
# Camera age estimates (ASSUMPTION): +-6 years at the first sighting, shrinking with 1/sqrt(n + 1).
AGE_UNCERTAINTY_FIRST = 6.0
# The projector waits at most this long for batches being received before it projects.
PROJECT_DEFER_S = 1.0


@dataclass(frozen=True)
class Settings:
    """Limits of the HTTP service."""

    max_body_bytes: int = 64 * 1024 * 1024
    wait_seconds: float = 60.0


class Service:
    """One database and one policy: everything the API does, without HTTP."""

    def __init__(self, db: Database, policy: Policy, *, settings: Settings | None = None):
        self.db = db
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
        self.ledger = Ledger(db, self.compiled)
        # Looked up on every request (the policy is immutable): as dicts, not scans of its lists.
        self._grants = {g.role: g for g in reversed(policy.grants)}  # the first grant of a role wins
        self._class_index = {name: i for i, name in reversed(list(enumerate(policy.class_names)))}
        self._log = _LookupLog(self)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._receiving = 0  # batches being checked and committed to the inbox now
        self._counting = threading.Lock()

    @classmethod
    def open(cls, url: str = DEFAULT_URL, policy: str | Policy | None = None, *,
             settings: Settings | None = None) -> Service:
        """Open (and create) the database at `url` with a policy (default: the one it holds)."""
        db = Database.open(url)
        if not isinstance(policy, Policy):
            policy = load_policy(policy or db.get_meta("policy") or "taz-2018")
        return cls(db, policy, settings=settings)

    @property
    def day(self) -> int:
        """The service day."""
        return self.ledger.day

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the projector and the look-up log writer, after projecting what a crash left."""
        self.ledger.warm()
        while self.ledger.project():
            pass
        self._log = _LookupLog(self)
        self._threads = [threading.Thread(target=self._project_loop, name="projector", daemon=True),
                         threading.Thread(target=self._log.run, name="lookup-log", daemon=True)]
        for t in self._threads:
            t.start()

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
        while not self._stop.is_set():
            self._wake.clear()  # before projecting, so that a batch arriving meanwhile is not missed
            # Batches still being received: let them in first (for up to PROJECT_DEFER_S), then
            # project them together; the acknowledgements get the CPU, and a larger projection
            # writes each touched citizen's score once for more events.
            deadline = time.monotonic() + PROJECT_DEFER_S
            while self._receiving and time.monotonic() < deadline and not self._stop.is_set():
                self._stop.wait(0.02)
            try:
                moved = self.ledger.project()
            except Exception:  # the batches stay in the inbox; try again rather than die
                log.exception("projecting the inbox failed; retrying in 1 s")
                self._stop.wait(1.0)
                continue
            if not moved:
                self._wake.wait(0.5)

    # -- events -----------------------------------------------------------------------------------

    def ingest(self, key: ApiKey, body: bytes, *, wait: bool = True) -> dict:
        """Accept a batch durably; with `wait`, return once its scores are updated."""
        with self._counting:
            self._receiving += 1
        try:
            batch, n = self.ledger.ingest(key, body)
        finally:
            with self._counting:
                self._receiving -= 1
        self._wake.set()
        projected = False
        if wait:
            if self._threads:
                projected = self.ledger.wait_projected(batch, self.settings.wait_seconds)
            else:
                while self.ledger.project():
                    pass
                projected = True
        return {"batch": batch, "events": n, "projected": projected, "day": self.day}

    # -- access -----------------------------------------------------------------------------------

    def _grant(self, key: ApiKey, citizen_id: str, purpose: str | None, what: str) -> Grant:
        """The caller's grant for a look-up of `citizen_id`, or the reason it is refused."""
        grant = self._grants.get(key.role)
        if grant is None:
            raise Forbidden(f"policy '{self.policy.name}' grants role '{key.role}' no look-ups")
        if key.role == "citizen" and key.citizen_id != citizen_id:
            raise Forbidden("a citizen key may read only its own citizen")
        if key.role != "citizen" and grant.purpose_required and not (purpose or "").strip():
            raise Forbidden(f"role '{key.role}' must state a purpose (X-Purpose header) for {what}")
        return grant

    def _require(self, grant: Grant, field: str, what: str) -> None:
        if field not in grant.fields:
            raise Forbidden(f"policy '{self.policy.name}' does not let role '{grant.role}' see "
                            f"'{field}' ({what})")

    def _record(self, key: ApiKey, citizen_id: str, purpose: str | None, fields: list[str],
                endpoint: str, log: list | None) -> None:
        row = (citizen_id, key.name, key.role, purpose, ",".join(fields), endpoint, now(), self.day)
        if log is None:
            self._log.write([row])
        else:
            log.append(row)

    async def commit_log(self, rows: list[tuple]) -> None:
        """Write look-up log rows collected with `log=`; return once they are durable."""
        await self._log.write_async(rows)

    # -- look-ups ---------------------------------------------------------------------------------

    def _status(self, citizen_id: str) -> tuple[int, str, int]:
        rows = self.db.execute("SELECT score, class, class_idx FROM scores WHERE citizen_id = ?",
                               (citizen_id,))
        if rows:
            return int(rows[0][0]), rows[0][1], int(rows[0][2])
        if self.db.execute("SELECT 1 FROM citizens WHERE citizen_id = ?", (citizen_id,)):
            start = self.ledger.start_class
            return self.policy.start, self.policy.class_names[start], start
        raise NotFound(f"no citizen '{citizen_id}'")

    def consequences(self, citizen_id: str, class_idx: int) -> tuple[list[dict], list[dict]]:
        """Active benefits and sanctions: held long enough in a qualifying class."""
        history = self.db.execute("SELECT day, class_idx FROM class_history WHERE citizen_id = ? "
                                  "ORDER BY day, id", (citizen_id,))
        out: tuple[list[dict], list[dict]] = ([], [])
        for items, better in ((self.policy.benefits, True), (self.policy.sanctions, False)):
            for c in items:
                level = self._class_index[c.class_]
                since = _since(history, class_idx, self.ledger.start_class,
                               (lambda i, lv=level: i <= lv) if better else (lambda i, lv=level: i >= lv))
                if since is not None and self.day - since >= c.held_days:
                    out[0 if better else 1].append(_consequence(c, since))
        return out

    def lookup(self, key: ApiKey, citizen_id: str, purpose: str | None = None, *,
               log: list | None = None) -> dict:
        """Score, class, benefits, sanctions, reasons and blacklist, as the grant allows; logged."""
        grant = self._grant(key, citizen_id, purpose, "a look-up")
        score, klass, idx = self._status(citizen_id)
        fields = [f for f in ("score", "class", "benefits", "sanctions", "reasons", "blacklist")
                  if f in grant.fields]
        if not fields:
            raise Forbidden(f"policy '{self.policy.name}' lets role '{key.role}' see no score fields")
        out: dict = {"citizen_id": citizen_id, "day": self.day}
        full = {"score": score, "class": klass}
        if {"benefits", "sanctions", "blacklist"} & set(fields):
            benefits, sanctions = self.consequences(citizen_id, idx)
            full |= {"benefits": benefits, "sanctions": sanctions, "blacklist": _blacklist(sanctions)}
        if "reasons" in fields:
            full["reasons"] = self._explanation(citizen_id)[0]
        out |= {f: full[f] for f in fields}
        self._record(key, citizen_id, purpose, fields, "lookup", log)
        return out

    def _ledger_of(self, citizen_id: str, *, voided: bool = False) -> pl.DataFrame:
        cols = ", ".join(EVENT_SCHEMA)
        return self.db.frame(f"SELECT {cols} FROM events WHERE citizen_id = ? AND voided = ?",
                             (citizen_id, int(voided)), {**EVENT_SCHEMA, "day": pl.Int32})

    def _explanation(self, citizen_id: str) -> tuple[list[dict], list[dict]]:
        ledger = self._ledger_of(citizen_id)
        if ledger.height == 0:
            return [], []
        e = explain(self.compiled, ledger, citizen_id, as_of=self.day)
        events = e.events.with_columns(pl.col("status").cast(pl.String), voided=False)
        return e.factors.to_dicts(), events.to_dicts()

    def history(self, key: ApiKey, citizen_id: str, purpose: str | None = None, *,
                log: list | None = None) -> dict:
        """Reason codes and every event with its points and provenance, as the grant allows; logged."""
        grant = self._grant(key, citizen_id, purpose, "a history")
        fields = [f for f in ("reasons", "history") if f in grant.fields]
        if not fields:
            raise Forbidden(f"policy '{self.policy.name}' does not let role '{key.role}' see "
                            f"'history' or 'reasons'")
        self._status(citizen_id)
        reasons, events = self._explanation(citizen_id)
        out: dict = {"citizen_id": citizen_id, "day": self.day}
        if "reasons" in fields:
            out["reasons"] = reasons
        if "history" in fields:
            voided = self._ledger_of(citizen_id, voided=True).with_columns(
                rule=None, points=0, status=pl.lit("voided"), reason=pl.lit("voided on appeal"), voided=True)
            out["events"] = events + voided.select(
                "event_id", "day", "kind", "rule", "points", "status", "reason", "source", "source_ref",
                "confidence", "voided").to_dicts()
        self._record(key, citizen_id, purpose, fields, "history", log)
        return out

    def lookups(self, key: ApiKey, citizen_id: str) -> dict:
        """Who looked this citizen up (GDPR Art. 15); the citizen themself and analysts only."""
        if key.role not in ("citizen", "analyst"):
            raise Forbidden("only the citizen and analysts may see who looked a citizen up")
        if key.role == "citizen" and key.citizen_id != citizen_id:
            raise Forbidden("a citizen key may read only its own citizen")
        rows = self.db.frame(
            "SELECT at, day, key_name, role, purpose, fields, endpoint FROM lookups "
            "WHERE citizen_id = ? ORDER BY id DESC LIMIT 1000", (citizen_id,),
            {"at": pl.String, "day": pl.Int32, "who": pl.String, "role": pl.String,
             "purpose": pl.String, "fields": pl.String, "endpoint": pl.String})
        rows = rows.with_columns(pl.col("fields").str.split(","))
        if key.role != "citizen":  # an analyst reading the log is itself an access to log
            self._record(key, citizen_id, None, ["lookups"], "lookups", None)
        return {"citizen_id": citizen_id, "lookups": rows.to_dicts()}

    def profile(self, key: ApiKey, citizen_id: str, purpose: str | None = None, *,
                log: list | None = None) -> dict:
        """The camera profile from the data centre (agency and security only); logged."""
        if key.role not in ("agency", "security"):
            raise Forbidden("only agency and security keys may read camera profiles")
        grant = self._grant(key, citizen_id, purpose, "a profile")
        self._require(grant, "profile", "camera profile")
        _, _, idx = self._status(citizen_id)
        cams = self.db.frame("SELECT day, source_ref, confidence FROM events WHERE citizen_id = ? "
                             "AND source = ? AND voided = 0 ORDER BY day, event_id",
                             (citizen_id, CAMERA_SOURCE),
                             {"day": pl.Int32, "camera": pl.String, "confidence": pl.Float64})
        parts = pl.col("camera").fill_null("").str.split("-")
        cams = cams.with_columns(place_type=pl.when(parts.list.len() >= 4).then(parts.list.get(2, null_on_oob=True))
                                 .otherwise(pl.lit("unknown")))
        by_place = cams.group_by("place_type").agg(sightings=pl.len()).sort("place_type")
        stored = self.db.execute("SELECT age, age_estimate, age_uncertainty, flags FROM profiles "
                                 "WHERE citizen_id = ?", (citizen_id,))
        age, estimate, uncertainty, flags = stored[0] if stored else (None, None, None, None)
        if estimate is None and age is not None:
            uncertainty = AGE_UNCERTAINTY_FIRST / math.sqrt(cams.height + 1)
            estimate = round(age + uncertainty * _wobble(citizen_id, cams.height), 1)
        _, sanctions = self.consequences(citizen_id, idx)
        flag_list = [f for f in (flags or "").split(",") if f]
        flag_list += [f"sanction:{s['name']}" for s in sanctions]
        if any(_stops_at_gate(s) for s in sanctions):
            flag_list.append("stop-at-subway-gate")
        last = cams.row(-1, named=True) if cams.height else None
        self._record(key, citizen_id, purpose, ["profile"], "profile", log)
        return {
            "citizen_id": citizen_id, "day": self.day,
            "age_estimate": estimate,
            "age_uncertainty": None if uncertainty is None else round(uncertainty, 2),
            "sightings": cams.height,
            "sightings_by_place_type": dict(by_place.iter_rows()),
            "last_seen": last,
            "flags": flag_list,
        }

    # -- consequences in action -------------------------------------------------------------------

    def _consequence_check(self, key: ApiKey, role: str, citizen_id: str, purpose: str | None,
                           endpoint: str) -> tuple[Grant, int, list[dict], list[dict]]:
        if key.role != role:
            raise Forbidden(f"only {role} keys may call {endpoint}")
        grant = self._grant(key, citizen_id, purpose, endpoint)
        _, _, idx = self._status(citizen_id)
        benefits, sanctions = self.consequences(citizen_id, idx)
        return grant, idx, benefits, sanctions

    # The decision itself is what the role is there for; the sanctions and benefits behind it are
    # shown only where the grant lets the role see them.

    def subway_gate(self, key: ApiKey, citizen_id: str, gate: str | None, purpose: str | None, *,
                    log: list | None = None) -> dict:
        """A subway gate's decision: stop a citizen under a gate sanction, else pass; logged."""
        grant, _, _, sanctions = self._consequence_check(key, "security", citizen_id, purpose,
                                                         "the subway gate")
        stops = [s["name"] for s in sanctions if _stops_at_gate(s)]
        out = {"citizen_id": citizen_id, "gate": gate, "decision": "stop" if stops else "pass"}
        if "sanctions" in grant.fields:
            out["because"] = stops
        self._record(key, citizen_id, purpose, ["decision", *_shown(grant, "sanctions")], "gate", log)
        return out

    def flight_check(self, key: ApiKey, citizen_id: str, flight: str | None, purpose: str | None, *,
                     log: list | None = None) -> dict:
        """An airline's check: banned under a flight-ban sanction, else may board; logged."""
        grant, _, benefits, sanctions = self._consequence_check(key, "airline", citizen_id, purpose,
                                                                "the flight check")
        bans = [s["name"] for s in sanctions if "flight" in s["name"]]
        out = {"citizen_id": citizen_id, "flight": flight, "may_board": not bans,
               "decision": "banned" if bans else "board"}
        if "sanctions" in grant.fields:
            out["because"] = bans
        if "benefits" in grant.fields:
            out["discount"] = sum(float(b["parameters"].get("flight_discount", 0)) for b in benefits)
        self._record(key, citizen_id, purpose,
                     ["decision", *_shown(grant, "sanctions", "benefits")], "flight", log)
        return out

    def loan_quote(self, key: ApiKey, citizen_id: str, amount: float | None, purpose: str | None, *,
                   log: list | None = None) -> dict:
        """A bank's quote: the rate by class, benefits and sanctions; logged."""
        grant, idx, benefits, sanctions = self._consequence_check(key, "bank", citizen_id, purpose,
                                                                  "the loan quote")
        refused = [s["name"] for s in sanctions if s["parameters"].get("loan_allowed") is False]
        discounts = [b for b in benefits if "loan_rate_discount" in b["parameters"]]
        rate = LOAN_BASE_RATE + LOAN_CLASS_SPREAD * idx
        rate -= sum(float(b["parameters"]["loan_rate_discount"]) for b in discounts)
        out = {"citizen_id": citizen_id, "amount": amount, "approved": not refused,
               "rate": None if refused else round(rate, 6)}
        if "sanctions" in grant.fields:
            # Every sanction the citizen is under, as the grant lets the bank see them; `refused_by`
            # names those that stop the loan.
            out["sanctions"] = [s["name"] for s in sanctions]
            out["refused_by"] = refused
        if "benefits" in grant.fields:
            out["benefits"] = [b["name"] for b in discounts]
        self._record(key, citizen_id, purpose,
                     ["decision", *_shown(grant, "sanctions", "benefits")], "loan", log)
        return out

    # -- appeals ----------------------------------------------------------------------------------

    def file_appeal(self, key: ApiKey, event_id: str, reason: str) -> dict:
        """A citizen contests one of their events."""
        if key.role != "citizen":
            raise Forbidden("only citizen keys may file appeals")
        if not self.policy.appeals:
            raise Forbidden(f"policy '{self.policy.name}' allows no appeals")
        if not reason.strip():
            raise Invalid("an appeal needs a reason", field="reason")
        with self.ledger.write() as cur:
            rows = self.db.execute("SELECT citizen_id FROM events WHERE event_id = ?", (event_id,), cur)
            if not rows or rows[0][0] != key.citizen_id:
                raise NotFound(f"no event '{event_id}' of citizen '{key.citizen_id}'", field="event_id")
            if self.db.execute("SELECT 1 FROM appeals WHERE event_id = ? AND status = 'open'",
                               (event_id,), cur):
                raise Conflict(f"event '{event_id}' has an open appeal already", field="event_id")
            appeal = self.db.execute(
                "INSERT INTO appeals (event_id, citizen_id, reason, status, filed_at) "
                "VALUES (?, ?, ?, 'open', ?) RETURNING id", (event_id, key.citizen_id, reason, now()), cur)
        return {"id": int(appeal[0][0]), "event_id": event_id, "status": "open"}

    def decide_appeal(self, key: ApiKey, appeal_id: int, upheld: bool, note: str | None) -> dict:
        """An agency decides an appeal; upheld voids the event and re-scores from the ledger."""
        if key.role != "agency":
            raise Forbidden("only agency keys may decide appeals")
        with self.ledger.write() as cur:
            rows = self.db.execute("SELECT event_id, citizen_id, status FROM appeals WHERE id = ?",
                                   (appeal_id,), cur)
            if not rows:
                raise NotFound(f"no appeal {appeal_id}")
            event_id, citizen_id, status = rows[0]
            if status != "open":
                raise Conflict(f"appeal {appeal_id} was decided already ({status})")
            status = "upheld" if upheld else "rejected"
            self.db.execute("UPDATE appeals SET status = ?, decided_at = ?, decided_by = ?, note = ? "
                            "WHERE id = ?", (status, now(), key.name, note, appeal_id), cur)
            if upheld:
                self.ledger.void(cur, event_id, citizen_id)
        score, klass, _ = self._status(citizen_id)
        return {"id": appeal_id, "event_id": event_id, "status": status, "citizen_id": citizen_id,
                "score": score, "class": klass}

    # -- statistics -------------------------------------------------------------------------------

    def stats(self, key: ApiKey) -> dict:
        """Class counts and events per day (aggregates only; analysts and agencies)."""
        if key.role not in ("analyst", "agency"):
            raise Forbidden("only analyst and agency keys may read statistics")
        classes = dict(self.db.execute("SELECT class, COUNT(*) FROM scores GROUP BY class"))
        per_day = self.db.execute("SELECT day, COUNT(*) FROM events WHERE voided = 0 "
                                  "GROUP BY day ORDER BY day")
        return {"day": self.day, "policy": self.policy.name,
                "classes": {c: int(classes.get(c, 0)) for c in self.policy.class_names},
                "events_per_day": [{"day": int(d), "events": int(n)} for d, n in per_day],
                "events": sum(int(n) for _, n in per_day), "pending_batches": self.ledger.pending()}

    def load_run(self, run_dir: Path) -> dict[str, int]:
        """Load a simulation run folder into the database."""
        return self.ledger.load_run(run_dir)


def _since(history: list[tuple], current: int, start: int, qualifies) -> int | None:
    """First day of the current unbroken stretch in qualifying classes, None if not in one now."""
    if not qualifies(current):
        return None
    since = 0 if qualifies(start) else None
    for day, idx in history:
        if not qualifies(idx):
            since = None
        elif since is None:
            since = int(day)
    return since


def _consequence(c: Consequence, since: int) -> dict:
    return {"name": c.name, "class": c.class_, "context": c.context, "since_day": since,
            "held_days": c.held_days, "description": c.description, "parameters": dict(c.parameters)}


def _shown(grant: Grant, *fields: str) -> list[str]:
    return [f for f in fields if f in grant.fields]


def _stops_at_gate(sanction: dict) -> bool:
    return "subway" in sanction["name"] or "stop_probability" in sanction["parameters"]


def _blacklist(sanctions: list[dict]) -> dict:
    bans = [s["name"] for s in sanctions if s["parameters"].get("blocked") is True]
    return {"listed": bool(bans), "bans": bans}


def _wobble(citizen_id: str, sightings: int) -> float:
    """A stable offset in [-1, 1] per citizen and number of sightings: the estimate wavers, then settles."""
    digest = hashlib.blake2b(f"{citizen_id}:{sightings}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**63 - 1.0


_LOG_INSERT = ("INSERT INTO lookups (citizen_id, key_name, role, purpose, fields, endpoint, at, day) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


class _LookupLog:
    """Group commit of look-up log rows: a look-up is answered once its log rows are durable."""

    def __init__(self, service: Service):
        self._service = service
        self._cond = threading.Condition()
        self._pending: list[tuple[list[tuple], Callable[[BaseException | None], None]]] = []
        self._running = False
        self._stopping = False
        self._gathering: dict[asyncio.AbstractEventLoop, list[tuple[list[tuple], asyncio.Future]]] = {}

    def write(self, rows: list[tuple]) -> None:
        done = threading.Event()
        failed: list[BaseException | None] = []

        def finish(exc: BaseException | None) -> None:
            failed.append(exc)
            done.set()

        if not self._submit(rows, finish):
            self._flush(rows)
            return
        done.wait()
        if failed[0] is not None:
            raise RuntimeError("the look-up log could not be written") from failed[0]

    async def write_async(self, rows: list[tuple]) -> None:
        # The look-ups of one turn of the event loop go to the log thread together, and come back
        # with one call: not one thread hop per look-up. The commit (an fsync) stays off the loop.
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        pending = self._gathering.setdefault(loop, [])
        pending.append((rows, future))
        if len(pending) == 1:
            loop.call_soon(self._hand_over, loop)
        await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._gathering.pop(loop, [])
        futures = [future for _, future in batch]
        rows = [row for rows, _ in batch for row in rows]
        if self._submit(rows, lambda exc: loop.call_soon_threadsafe(_settle_all, futures, exc)):
            return
        error = None
        try:  # no log thread (not started): write here
            self._flush(rows)
        except Exception as exc:
            log.exception("writing the look-up log failed")
            error = exc
        _settle_all(futures, error)

    def _submit(self, rows: list[tuple], callback) -> bool:
        with self._cond:
            if not self._running:
                return False
            self._pending.append((rows, callback))
            self._cond.notify()
            return True

    def _flush(self, rows: list[tuple]) -> None:
        service = self._service
        with service.ledger.write() as cur:
            service.db.executemany(cur, _LOG_INSERT, rows)

    def run(self) -> None:
        with self._cond:
            self._running = True
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopping)
                batch, self._pending = self._pending, []
                if not batch:
                    self._running = False
                    return
            error = None
            try:
                self._flush([row for rows, _ in batch for row in rows])
            except Exception as exc:  # the waiting look-ups fail with it instead of hanging
                log.exception("writing the look-up log failed")
                error = exc
            for _, callback in batch:
                callback(error)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()


def _settle_all(futures: list[asyncio.Future], error: BaseException | None) -> None:
    for future in futures:
        _settle(future, error)


def _settle(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(RuntimeError("the look-up log could not be written"))
