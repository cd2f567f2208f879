"""The live service: look-ups under the policy's grants, consequences at the gate, appeals, stats."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from socialcredit.engine import (
    BENEFITS,
    BETWEEN,
    CompiledConsequence,
    CompiledConsequences,
    CompiledPolicy,
    explain,
)
from socialcredit.events import EVENT_SCHEMA
from socialcredit.policy import Grant, Policy, load_policy
from socialcredit.service._access import Access, log_row, shown
from socialcredit.service._db import DEFAULT_URL, Database
from socialcredit.service._errors import Conflict, Forbidden, Invalid, NotFound
from socialcredit.service._keys import ApiKey, now
from socialcredit.service._ledger import Ledger
from socialcredit.service._lookup_log import LookupLog

log = logging.getLogger("socialcredit.service")

APPEAL_STATUSES = ("open", "upheld", "rejected")
# Camera events have source "camera". Their source_ref names the place type: the simulator writes
# the bare place type ("street", "mall", "subway"); a live feed may name its camera
# "cam-<region>-<placetype>-<n>" (e.g. cam-rc-subway-17). Anything else is place type "unknown".
CAMERA_SOURCE = "camera"
PLACE_TYPES = ("street", "mall", "subway")  # the simulator's place types (simulation/_kinds.py PLACES)
# Loans (ASSUMPTION, the report gives no rates): 4% for the top class, +0.5 points per class below,
# moved by a `loan_price` benefit's or sanction's rate_change; a `loan_refusal` sanction refuses it.
LOAN_BASE_RATE = 0.04
LOAN_CLASS_SPREAD = 0.005
NOT_SCORED = -1  # the class index of a citizen the policy does not score (under its min_age)
# The projector waits at most this long for batches being received before it projects.
PROJECT_DEFER_S = 2.0
# ... and while batches keep coming: a batch acknowledged less than this long ago counts as arriving.
INGEST_QUIET_S = 0.05
# The projector thread runs at a lower CPU priority (Linux nice, per thread): when the cores are
# busy, acknowledging batches and answering look-ups go first and the scores catch up after.
PROJECTOR_NICE = 10


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
             settings: Settings | None = None) -> Service:
        """Open (and create) the database at `url` with a policy: a preset name, a TOML file, a
        Policy, or None for the one it holds.

        The database keeps the whole policy it scores under, so it opens again without naming it:
        no file needs to stay where it was.
        """
        db = Database.open(url)
        if policy is None:
            kept = db.get_meta("policy_json")
            policy = (Policy.model_validate_json(kept) if kept
                      else load_policy(db.get_meta("policy") or "taz-2018"))
        elif not isinstance(policy, Policy):
            policy = load_policy(policy)
        service = cls(db, policy, settings=settings)
        kept = policy.model_dump_json(by_alias=True)
        if db.get_meta("policy_json") != kept:
            with db.transaction() as cur:
                db.set_meta(cur, "policy_json", kept)
        return service

    @property
    def day(self) -> int:
        """The service day."""
        return self.ledger.day

    @property
    def loaded_run(self) -> Path | None:
        """The simulation run folder last loaded into the database (`db load`), while it is there."""
        folder = self.db.get_meta("run_dir")
        return Path(folder) if folder and (Path(folder) / "manifest.json").is_file() else None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the projector and the look-up log writer, after projecting what a crash left."""
        self.ledger.warm()
        while self.ledger.project():
            pass
        self._log = LookupLog(self.db)
        self._threads = [threading.Thread(target=self._project_loop, name="projector", daemon=True),
                         self._log.start()]
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
        return {"batch": batch, "events": n, "projected": projected, "day": self.day}

    # -- access -----------------------------------------------------------------------------------

    def _record(self, key: ApiKey, citizen_id: str, purpose: str | None, fields: list[str],
                endpoint: str) -> None:
        self._log.write([log_row(key, citizen_id, purpose, fields, endpoint, self.day)])

    # -- look-ups ---------------------------------------------------------------------------------

    def _status(self, citizen_id: str) -> tuple[int | None, str | None, int]:
        """Score, class and class index; (None, None, NOT_SCORED) for a citizen under the policy's
        min_age."""
        rows = self.db.execute("SELECT score, class, class_idx FROM scores WHERE citizen_id = ?",
                               (citizen_id,))
        if rows:
            return int(rows[0][0]), rows[0][1], int(rows[0][2])
        if self.db.execute("SELECT 1 FROM citizens WHERE citizen_id = ?", (citizen_id,)):
            first = self.ledger.scored_from(citizen_id)
            if first is not None and first > self.day:
                return None, None, NOT_SCORED
            start = self.ledger.start_class
            return self.policy.start, self.policy.class_names[start], start
        raise NotFound(f"no citizen '{citizen_id}'")

    def consequences(self, citizen_id: str, class_idx: int, *, benefits: bool = True,
                     sanctions: bool = True) -> tuple[list[dict], list[dict]]:
        """Benefits and sanctions in force (engine.CompiledConsequences): the class brings them and
        the citizen has held its band long enough (either list is left empty when not asked for)."""
        out: tuple[list[dict], list[dict]] = ([], [])
        if class_idx == NOT_SCORED:  # no class, so no consequence of one
            return out
        rules = self.consequence_rules
        band = rules.band(class_idx)
        if band == BETWEEN or not (benefits if band == BENEFITS else sanctions):
            return out  # nothing this class can bring (or nothing asked for): no history is read
        history = self.db.execute("SELECT day, class_idx FROM class_history WHERE citizen_id = ? "
                                  "ORDER BY day, id", (citizen_id,))
        since = _since(history, class_idx, self.ledger.start_class, lambda i: rules.band(i) == band)
        for c in rules.in_force(class_idx, since, self.day):
            out[0 if c.benefit else 1].append(_consequence(c, since))
        return out

    def lookup(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> dict:
        """Score, class, benefits, sanctions, reasons and blacklist, as the grant allows; logged."""
        self.access.grant(key, citizen_id, purpose, "a look-up")
        score, klass, idx = self._status(citizen_id)
        fields = self.access.lookup_fields[key.role]
        if not fields:
            raise Forbidden(f"policy '{self.policy.name}' lets role '{key.role}' see no score fields")
        out: dict = {"citizen_id": citizen_id, "day": self.day}
        full = {"score": score, "class": klass}
        if not _PLAIN_FIELDS.issuperset(fields):
            # Only what the grant shows: a bank that sees sanctions needs no benefits worked out.
            benefits, sanctions = self.consequences(
                citizen_id, idx, benefits="benefits" in fields,
                sanctions="sanctions" in fields or "blacklist" in fields)
            full |= {"benefits": benefits, "sanctions": sanctions, "blacklist": _blacklist(sanctions)}
        if "reasons" in fields:
            full["reasons"] = self._explanation(citizen_id)[0]
        out |= {f: full[f] for f in fields}
        self._record(key, citizen_id, purpose, fields, "lookup")
        return out

    def lookup_json(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> bytes:
        """`lookup` as the JSON bytes of the response (the hot path of the API); logged."""
        return _json(self.lookup(key, citizen_id, purpose))

    def _ledger_of(self, citizen_id: str, *, voided: bool = False) -> pl.DataFrame:
        cols = ", ".join(EVENT_SCHEMA)
        return self.db.frame(f"SELECT {cols} FROM events WHERE citizen_id = ? AND voided = ?",
                             (citizen_id, int(voided)), {**EVENT_SCHEMA, "day": pl.Int32})

    def _explanation(self, citizen_id: str) -> tuple[list[dict], list[dict]]:
        ledger = self._ledger_of(citizen_id)
        if ledger.height == 0:
            return [], []
        e = explain(self.compiled, ledger, citizen_id, as_of=self.day,
                    births=self.ledger.births_of(citizen_id))
        events = e.events.with_columns(pl.col("status").cast(pl.String), voided=False)
        return e.factors.to_dicts(), events.to_dicts()

    def history(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> dict:
        """Reason codes and every event with its points and provenance, as the grant allows; logged."""
        grant = self.access.grant(key, citizen_id, purpose, "a history")
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
        self._record(key, citizen_id, purpose, fields, "history")
        return out

    def lookups(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> dict:
        """Who looked this citizen up (GDPR Art. 15); the citizen themself and analysts only.

        An analyst reading the log is itself an access: it goes through the analyst's grant (a
        purpose where the grant requires one) and is logged.
        """
        if key.role not in ("citizen", "analyst"):
            raise Forbidden("only the citizen and analysts may see who looked a citizen up")
        if key.role == "citizen" and key.citizen_id != citizen_id:
            raise Forbidden("a citizen key may read only its own citizen")
        if key.role != "citizen":
            self.access.grant(key, citizen_id, purpose, "the look-up log")
        self._log.flush()  # the look-ups answered so far, including those still in the queue
        rows = self.db.log.frame(
            "SELECT at, day, key_name, role, purpose, fields, endpoint FROM lookups "
            "WHERE citizen_id = ? ORDER BY id DESC LIMIT 1000", (citizen_id,),
            {"at": pl.String, "day": pl.Int32, "who": pl.String, "role": pl.String,
             "purpose": pl.String, "fields": pl.String, "endpoint": pl.String})
        rows = rows.with_columns(pl.col("fields").str.split(","))
        if key.role != "citizen":
            self._record(key, citizen_id, purpose, ["lookups"], "lookups")
        return {"citizen_id": citizen_id, "lookups": rows.to_dicts()}

    def profile(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> dict:
        """The camera profile from the data centre, for roles whose grant has 'profile'; logged.

        A citizen loaded from a simulation run starts from the run's camera profile (the age
        estimate, its uncertainty, sightings by place type: see `Ledger.load_run`); the camera
        events sent since (not loaded with the run) add to the sightings, and a voided run event
        takes its sighting out again. Without a loaded profile, the camera events are the sightings
        and there is no age estimate.
        """
        grant = self.access.grant(key, citizen_id, purpose, "a profile")
        self.access.require(grant, "profile", "camera profile")
        _, _, idx = self._status(citizen_id)
        cams = self.db.frame("SELECT day, source_ref, confidence, batch, voided FROM events "
                             "WHERE citizen_id = ? AND source = ? ORDER BY day, event_id",
                             (citizen_id, CAMERA_SOURCE),
                             {"day": pl.Int32, "camera": pl.String, "confidence": pl.Float64,
                              "batch": pl.Int64, "voided": pl.Int32})
        cams = cams.with_columns(place_type=place_type(pl.col("camera")))
        stored = self.db.execute("SELECT age_estimate, age_uncertainty, sightings, by_place FROM camera_profiles "
                                 "WHERE citizen_id = ?", (citizen_id,))
        by_place: dict[str, int] = {}
        if stored:
            estimate, uncertainty, sightings, places = stored[0]
            by_place = {p: int(n) for p, n in json.loads(places).items()}
            # The run's camera events are in its profile already: only those sent since count on
            # top; a voided run event is a sighting taken out.
            added = cams.filter((pl.col("batch") > 0) & (pl.col("voided") == 0))
            removed = cams.filter((pl.col("batch") == 0) & (pl.col("voided") != 0))
            sightings = max(0, int(sightings) + added.height - removed.height)
        else:
            estimate = uncertainty = None
            added = cams.filter(pl.col("voided") == 0)
            removed = cams.clear()
            sightings = added.height
        for frame, sign in ((added, 1), (removed, -1)):
            for place, n in frame.group_by("place_type").len().iter_rows():
                by_place[place] = max(0, by_place.get(place, 0) + sign * n)
        counted = cams.filter(pl.col("voided") == 0)
        _, sanctions = self.consequences(citizen_id, idx)
        flag_list = [f"sanction:{s['name']}" for s in sanctions]
        if any(s["effect"] == "gate_stop" for s in sanctions):
            flag_list.append("stop-at-subway-gate")
        last = counted.select("day", "camera", "confidence").row(-1, named=True) if counted.height else None
        self._record(key, citizen_id, purpose, ["profile"], "profile")
        return {
            "citizen_id": citizen_id, "day": self.day,
            "age_estimate": estimate,
            "age_uncertainty": uncertainty,
            "sightings": sightings,
            "sightings_by_place_type": {p: n for p, n in sorted(by_place.items()) if n},
            "last_seen": last,
            "flags": flag_list,
        }

    # -- consequences in action -------------------------------------------------------------------

    def _consequence_check(self, key: ApiKey, role: str, citizen_id: str, purpose: str | None,
                           endpoint: str) -> tuple[Grant, int, list[dict], list[dict]]:
        if key.role != role:
            raise Forbidden(f"only {role} keys may call {endpoint}")
        grant = self.access.grant(key, citizen_id, purpose, endpoint)
        _, _, idx = self._status(citizen_id)
        benefits, sanctions = self.consequences(citizen_id, idx)
        return grant, idx, benefits, sanctions

    # The decision itself is what the role is there for; the sanctions and benefits behind it are
    # shown only where the grant lets the role see them.

    def subway_gate(self, key: ApiKey, citizen_id: str, gate: str | None, purpose: str | None) -> dict:
        """A subway gate's decision: stop a citizen under a gate sanction, else pass; logged."""
        grant, _, _, sanctions = self._consequence_check(key, "security", citizen_id, purpose,
                                                         "the subway gate")
        stops = [s["name"] for s in sanctions if s["effect"] == "gate_stop"]
        out = {"citizen_id": citizen_id, "gate": gate, "decision": "stop" if stops else "pass"}
        if "sanctions" in grant.fields:
            out["because"] = stops
        self._record(key, citizen_id, purpose, ["decision", *shown(grant, "sanctions")], "gate")
        return out

    def flight_check(self, key: ApiKey, citizen_id: str, flight: str | None, purpose: str | None) -> dict:
        """An airline's check: banned under a flight-ban sanction, else may board; logged."""
        grant, _, benefits, sanctions = self._consequence_check(key, "airline", citizen_id, purpose,
                                                                "the flight check")
        bans = [s["name"] for s in sanctions if s["effect"] == "flight_ban"]
        out = {"citizen_id": citizen_id, "flight": flight, "may_board": not bans,
               "decision": "banned" if bans else "board"}
        if "sanctions" in grant.fields:
            out["because"] = bans
        if "benefits" in grant.fields:
            out["discount"] = sum(b["parameters"]["discount"] for b in benefits if b["effect"] == "flight_price")
        self._record(key, citizen_id, purpose,
                     ["decision", *shown(grant, "sanctions", "benefits")], "flight")
        return out

    def loan_quote(self, key: ApiKey, citizen_id: str, amount: float | None, purpose: str | None) -> dict:
        """A bank's quote: the rate by class, benefits and sanctions; logged."""
        grant, idx, benefits, sanctions = self._consequence_check(key, "bank", citizen_id, purpose,
                                                                  "the loan quote")
        refused = [s["name"] for s in sanctions if s["effect"] == "loan_refusal"]
        priced = [c for c in (*benefits, *sanctions) if c["effect"] == "loan_price"]
        # A citizen the policy does not score is quoted as one without a record.
        rate = LOAN_BASE_RATE + LOAN_CLASS_SPREAD * (self.ledger.start_class if idx == NOT_SCORED else idx)
        rate += sum(c["parameters"]["rate_change"] for c in priced)
        out = {"citizen_id": citizen_id, "amount": amount, "approved": not refused,
               "rate": None if refused else round(rate, 6)}
        if "sanctions" in grant.fields:
            # Every sanction the citizen is under, as the grant lets the bank see them; `refused_by`
            # names those that stop the loan.
            out["sanctions"] = [s["name"] for s in sanctions]
            out["refused_by"] = refused
        if "benefits" in grant.fields:
            out["benefits"] = [b["name"] for b in benefits if b["effect"] == "loan_price"]
        self._record(key, citizen_id, purpose,
                     ["decision", *shown(grant, "sanctions", "benefits")], "loan")
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
        """Class counts and events per day (aggregates only; analysts and agencies).

        Kept up to date by the writes (see `Ledger.counts`): no scan of the ledger per call.
        """
        if key.role not in ("analyst", "agency"):
            raise Forbidden("only analyst and agency keys may read statistics")
        per_day, classes = self.ledger.counts()
        appeals = dict(self.db.execute("SELECT status, COUNT(*) FROM appeals GROUP BY status"))
        return {"day": self.day, "policy": self.policy.name,
                "classes": dict(zip(self.policy.class_names, classes, strict=True)),
                "events_per_day": [{"day": d, "events": per_day[d]} for d in sorted(per_day)],
                "events": sum(per_day.values()), "pending_batches": self.ledger.pending(),
                "appeals": {status: int(appeals.get(status, 0)) for status in APPEAL_STATUSES}}

    def arrivals(self, after_batch: int) -> list[tuple[int, str, str | None, int]]:
        """Events of the ingestion batches after `after_batch`: (batch, kind, source, count), for
        the dashboard's rates (a loaded run is batch 0)."""
        return self.db.execute("SELECT batch, kind, source, COUNT(*) FROM events WHERE batch > ? "
                               "GROUP BY batch, kind, source", (after_batch,))

    def list_appeals(self, key: ApiKey, *, status: str | None = None, citizen_id: str | None = None,
                     limit: int = 100, newest_first: bool = False) -> list[dict]:
        """Appeals with the contested event, oldest (or newest) first: an agency sees every
        citizen's, a citizen only their own (`citizen_id` must then be theirs or left out);
        `status` filters."""
        if key.role == "citizen":
            if citizen_id is not None and citizen_id != key.citizen_id:
                raise Forbidden("a citizen key may read only its own citizen's appeals")
            citizen_id = key.citizen_id
        elif key.role != "agency":
            raise Forbidden("only agency keys and the citizen concerned may read appeals")
        if status is not None and status not in APPEAL_STATUSES:
            raise Invalid(f"unknown appeal status {status!r} (one of {', '.join(APPEAL_STATUSES)})",
                          field="status")
        where, params = [], []
        if status is not None:
            where.append("a.status = ?")
            params.append(status)
        if citizen_id is not None:
            where.append("a.citizen_id = ?")
            params.append(citizen_id)
        rows = self.db.execute(
            "SELECT a.id, a.event_id, a.citizen_id, a.reason, a.status, a.filed_at, a.decided_at, a.note, "
            "e.kind, e.day, e.source, e.source_ref, e.confidence FROM appeals a "
            "LEFT JOIN events e ON e.event_id = a.event_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + (" ORDER BY a.id DESC LIMIT ?" if newest_first else " ORDER BY a.id LIMIT ?"),
            (*params, max(0, int(limit))))
        cols = ("id", "event_id", "citizen_id", "reason", "status", "filed_at", "decided_at", "note",
                "kind", "day", "source", "source_ref", "confidence")
        return [dict(zip(cols, row, strict=True)) for row in rows]

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


_PLAIN_FIELDS = frozenset(("score", "class", "reasons"))
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _json(body: dict) -> bytes:
    """JSON bytes as Starlette's JSONResponse writes them."""
    return _encode(body).encode()


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


def _consequence(c: CompiledConsequence, since: int) -> dict:
    item = c.consequence
    return {"name": c.name, "class": item.class_, "effect": c.effect, "context": item.context,
            "since_day": since, "held_days": c.held_days, "description": item.description,
            "parameters": c.params.model_dump()}


def _blacklist(sanctions: list[dict]) -> dict:
    bans = [s["name"] for s in sanctions if s["effect"] in ("flight_ban", "train_ban")]
    return {"listed": bool(bans), "bans": bans}


def place_type(ref: pl.Expr) -> pl.Expr:
    """The place type of camera references (see CAMERA_SOURCE): a bare place type as the simulator
    writes it, or the last but one part of cam-<region>-<placetype>-<n> (a region may hold dashes)."""
    parts = ref.fill_null("").str.split("-")
    return (pl.when(ref.is_in(PLACE_TYPES)).then(ref)
            .when((parts.list.len() >= 4) & (parts.list.first() == "cam")).then(parts.list.get(-2, null_on_oob=True))
            .otherwise(pl.lit("unknown")))
