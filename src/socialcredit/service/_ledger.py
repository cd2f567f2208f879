"""The write side: batches are checked, made durable in an inbox, then projected into the ledger.

A batch is acknowledged once it is committed to the `inbox` table (fsynced); inbox numbers are
handed out in commit order (one writer at a time). A projector moves inbox batches into the
`events` ledger (event_id is the primary key, so a re-sent event is stored once) and re-scores the
citizens each batch touches with the engine, in one transaction that also records the last batch
projected (`projected_seq`): after a crash, the batches after it are projected again and nothing
acknowledged is lost or counted twice. Projected batches are then deleted from the inbox. Writes
to the ledger are serialised by one lock per process and, on PostgreSQL, an advisory lock, so
that two re-scorings never interleave.

Scoring is incremental: each process keeps the engine's ScoreState of the whole ledger in memory
(built from the ledger at start), applies each projected batch to it (cost grows with the batch,
not the ledger) and writes only the touched citizens' scores. The state stays exact: every write
to the ledger bumps `ledger_gen` in the same transaction, a state that is behind it (another
process wrote) or that saw a rolled-back write is rebuilt, and a citizen with a voided event
(an upheld appeal) is re-scored from their ledger, since the state cannot take an event out.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from socialcredit.engine import BIRTHS_SCHEMA, CompiledPolicy, ScoreState, class_history, score_ledger
from socialcredit.events import EVENT_SCHEMA, INPUT_SCHEMA, Calendar, EventError, validate_events
from socialcredit.service._db import Database
from socialcredit.service._errors import Conflict, Forbidden, Invalid, TooLarge
from socialcredit.service._keys import SENDING_ROLES, ApiKey, now

if TYPE_CHECKING:
    from socialcredit.simulation import Manifest

EVENT_COLUMNS = list(EVENT_SCHEMA)
# `day` is read as a float so that 1.5 is reported as "not a whole number" rather than truncated.
_PARSE_SCHEMA = {**INPUT_SCHEMA, "day": pl.Float64()}
_FAST_SCHEMA = {**INPUT_SCHEMA, "day": pl.Int64()}
_TEXT_COLUMNS = [c for c, t in INPUT_SCHEMA.items() if t == pl.String()]
# Stored in the inbox as dictionaries: few distinct values, and the Arrow file is written uncompressed
# (compressing cost more CPU on the acknowledgement path than the smaller commit saved).
_DICTIONARY_COLUMNS = ("kind", "source", "source_ref")
_JSON_TYPES = {"event_id": (str, int), "citizen_id": (str, int), "kind": (str,), "day": (int,),
               "date": (str,), "source": (str,), "source_ref": (str,), "confidence": (int, float)}
_JSON_NAMES = {"event_id": "text", "citizen_id": "text", "kind": "text", "day": "a whole number",
               "date": "an ISO date as text", "source": "text", "source_ref": "text", "confidence": "a number"}
_ADVISORY_LOCK = 7_210_305  # any constants shared by every service process on one database
_INBOX_LOCK = 7_210_306
MAX_BATCH_EVENTS = 1_000_000
_BUILD_CHUNK = 500_000  # ledger rows read at a time when the scoring state is rebuilt


def parse_events(body: bytes) -> pl.DataFrame:
    """Read a JSON array or NDJSON body into an event table (not yet validated).

    NDJSON, the bulk format, is read with days as integers: polars' NDJSON reader refuses a
    fraction or a JSON boolean there, and such a body is read again the slow way, which accepts a
    day written 5.0 and names the row and field of anything else. The JSON array reader takes 1.5
    as 1 and true as 1 in number columns: arrays are read with days as numbers (checked later) and
    looked at row by row when they hold a boolean.
    """
    stripped = body.lstrip()
    if not stripped:
        raise Invalid("empty body: send a JSON array or NDJSON lines of events")
    if stripped.startswith(b"["):
        if b"true" in body or b"false" in body:
            _diagnose(body, True)
        return _read(pl.read_json, body, True)
    try:
        frame = pl.read_ndjson(io.BytesIO(body), schema=_FAST_SCHEMA)
    except (pl.exceptions.PolarsError, ValueError, OverflowError):
        frame = _read(pl.read_ndjson, body, False)
    # The NDJSON reader takes a JSON true or false in a text column as the text "true" or "false":
    # only a batch with such a text is looked at row by row (a vectorised check, not a byte scan).
    if frame.height and frame.select(pl.any_horizontal(
            pl.col(_TEXT_COLUMNS).is_in(["true", "false"]).any())).item():
        _diagnose(body, False)
    return frame


def _read(read, body: bytes, is_array: bool) -> pl.DataFrame:
    try:
        return read(io.BytesIO(body), schema=_PARSE_SCHEMA)
    except (pl.exceptions.PolarsError, ValueError, OverflowError) as exc:
        _diagnose(body, is_array)
        raise Invalid(f"body cannot be read as events: {str(exc).splitlines()[0]}") from None


def _diagnose(body: bytes, is_array: bool) -> None:
    """Find the row and field polars refused; only runs on the error path."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"body is not UTF-8 (byte {exc.start})") from None
    if is_array:
        try:
            rows = json.loads(text)  # a list: the body starts with "["
        except json.JSONDecodeError as exc:
            raise Invalid(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    else:
        rows = []
        for lineno, line in enumerate((ln for ln in text.splitlines() if ln.strip()), start=1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise Invalid(f"row {lineno}: malformed JSON at column {exc.colno}: {exc.msg}",
                              row=lineno) from None
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise Invalid(f"row {i}: expected a JSON object, got {_json_type(row)}", row=i)
        for field, types in _JSON_TYPES.items():
            value = row.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
                raise Invalid(f"row {i}, field {field}: expected {_JSON_NAMES[field]}, got {value!r}",
                              row=i, field=field)


def _json_type(value) -> str:
    """What a decoded JSON value is, in JSON's words."""
    if value is None:
        return "null"
    return {bool: "true or false", int: "a number", float: "a number", str: "text", list: "an array"}[type(value)]


def check_batch(frame: pl.DataFrame, key: ApiKey, *, compiled: CompiledPolicy, day: int,
                calendar: Calendar) -> pl.DataFrame:
    """Validate a batch for `key` as of the service day (dates are day numbers of `calendar`); the
    first problem is raised with its row."""
    if key.role not in SENDING_ROLES:
        raise Forbidden(f"role '{key.role}' may not send events (senders: {', '.join(SENDING_ROLES)})")
    if frame.height > MAX_BATCH_EVENTS:
        raise TooLarge(f"batch of {frame.height:,} events; at most {MAX_BATCH_EVENTS:,} per batch")
    try:
        events = validate_events(frame, origin="batch", calendar=calendar)
    except EventError as exc:
        raise Invalid(str(exc), row=exc.row, field=exc.column) from None
    kinds = [r.kind for r in compiled.policy.rules]
    _refuse(events, ~events["kind"].is_in(kinds), "kind", Invalid,
            lambda v: f"unknown event kind {v!r}: policy '{compiled.policy.name}' has no rule for it")
    _refuse(events, events["day"] > day, "day",
            Invalid, lambda v: f"day {v} ({calendar.iso(v)}) is in the future of the service day "
                               f"{day} ({calendar.iso(day)})")
    _refuse(events, events["source"].is_null(), "source", Invalid,
            lambda v: "is empty; every event sent to the service names its source")
    _refuse(events, ~events["source"].is_in(list(key.sources)), "source", Forbidden,
            lambda v: f"key '{key.name}' may send only sources {', '.join(key.sources)}, not {v!r}")
    return events


def _refuse(events: pl.DataFrame, mask: pl.Series, field: str, error: type, message) -> None:
    if mask.any():
        row = int(mask.arg_true()[0])
        raise error(f"batch: row {row + 1}, field {field}: {message(events[field][row])}",
                    row=row + 1, field=field)


class Ledger:
    """The durable event ledger of one database, scored with one policy."""

    def __init__(self, db: Database, compiled: CompiledPolicy):
        self.db = db
        self.compiled = compiled
        self.write_lock = threading.RLock()
        self.inbox_lock = threading.Lock()
        self._projected = threading.Condition()
        self._projected_seq = int(db.get_meta("projected_seq", "0"))
        self._day = int(db.get_meta("day", "0"))
        start = db.get_meta("start_date")
        self.calendar = Calendar() if start is None else Calendar(dt.date.fromisoformat(start))
        self.start_class = int(compiled.classify(np.array([compiled.policy.start]))[0])
        self.class_names = compiled.policy.class_names
        # The engine's incremental state of the whole ledger (see `_sync`); None: rebuild when needed.
        self._state: ScoreState | None = None
        self._state_gen = -1
        # Citizens with an event voided since the state was built: the state still counts that
        # event (it cannot take one out), so they are re-scored from their ledger instead.
        self._dirty: set[str] = set()
        self._mutated = False  # the state changed in the current write (see _Write)
        # Events per day and citizens per class for /api/stats, kept up to date by this process's
        # writes (see `counts`); None: count them from the tables at the next request.
        self._counts: _Counts | None = None
        self._counts_lock = threading.Lock()
        self._delta: _Delta | None = None  # what the current write changes in `_counts`

    @property
    def day(self) -> int:
        """The service day: events after it are refused, scores are as of it."""
        return self._day

    def write(self):
        """A serialised write transaction (see the module docstring)."""
        return _Write(self)

    # -- ingestion --------------------------------------------------------------------------------

    def ingest(self, key: ApiKey, body: bytes) -> tuple[int, int]:
        """Check a batch and commit it to the inbox; return (batch number, events)."""
        events = check_batch(parse_events(body), key, compiled=self.compiled, day=self.day,
                             calendar=self.calendar)
        buf = io.BytesIO()
        events.with_columns(pl.col(_DICTIONARY_COLUMNS).cast(pl.Categorical)).write_ipc(
            buf, compression="uncompressed")
        inbox = self.db.inbox
        with self.inbox_lock, inbox.transaction() as cur:
            if inbox.dialect == "postgresql":
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_INBOX_LOCK,))
            seq = inbox.execute("INSERT INTO inbox (key_name, n_events, body, received) "
                                "VALUES (?, ?, ?, ?) RETURNING seq",
                                (key.name, events.height, buf.getvalue(), now()), cur)[0][0]
        return int(seq), events.height

    def project(self, *, max_batches: int = 16) -> int:
        """Move up to `max_batches` inbox batches into the ledger and re-score; return how many."""
        inbox = self.db.inbox
        with self.write() as cur:
            done = int(self.db.get_meta("projected_seq", "0", cur))
            rows = inbox.execute("SELECT seq, body FROM inbox WHERE seq > ? ORDER BY seq LIMIT ?",
                                 (done, max_batches))
            if rows:
                state = self._sync(cur)
                # A loop over batches, not events: each one is a whole Arrow table.
                frames = [pl.read_ipc(io.BytesIO(bytes(body))).with_columns(
                    pl.col(_DICTIONARY_COLUMNS).cast(pl.String), batch=pl.lit(seq, pl.Int64))
                          for seq, body in rows]
                events = pl.concat(frames).unique("event_id", keep="first", maintain_order=True)
                stored = self.db.insert_frame(cur, "events", events.select(*EVENT_COLUMNS, "batch"),
                                              conflict="ON CONFLICT (event_id) DO NOTHING")
                if stored != events.height:
                    # Some were in the ledger already (re-sent): those carry an earlier batch number.
                    first = int(rows[0][0])
                    db = self.db
                    old = db.frame(f"SELECT event_id FROM events WHERE batch < ? AND {db.any_of('event_id')}",
                                   (first, db.list_param(events["event_id"])), {"event_id": pl.String}, cur)
                    events = events.filter(~pl.col("event_id").is_in(old["event_id"].implode()))
                self._count_days(events["day"], 1)
                self._score_new(cur, state, events.select(EVENT_COLUMNS))
                done = int(rows[-1][0])
                self.db.set_meta(cur, "projected_seq", str(done))
                self._bump(cur)
        if not rows:
            return 0
        with self.inbox_lock, inbox.transaction() as cur:
            inbox.execute("DELETE FROM inbox WHERE seq <= ?", (done,), cur)
        with self._projected:
            self._projected_seq = max(self._projected_seq, done)
            self._projected.notify_all()
        return len(rows)

    def pending(self) -> int:
        """Batches acknowledged but not yet projected."""
        done = int(self.db.get_meta("projected_seq", "0"))
        return int(self.db.inbox.execute("SELECT COUNT(*) FROM inbox WHERE seq > ?", (done,))[0][0])

    def wait_projected(self, seq: int, timeout: float) -> bool:
        """Wait until batch `seq` is in the ledger; False on timeout."""
        with self._projected:
            return self._projected.wait_for(lambda: self._projected_seq >= seq, timeout)

    # -- scoring ----------------------------------------------------------------------------------
    #
    # Every write to the ledger (projection, service day, appeal, load) bumps `ledger_gen` in the
    # meta table in its own transaction. The in-memory ScoreState is valid for the generation it was
    # brought to; a write first checks it (another process may have written: PostgreSQL, `db load`)
    # and rebuilds it from the ledger when it is behind. A failed write drops it (see _Write).

    def _sync(self, cur) -> ScoreState:
        """The incremental state, up to date with the ledger as of this transaction."""
        gen = int(self.db.get_meta("ledger_gen", "0", cur))
        day = int(self.db.get_meta("day", "0", cur))
        if self._state is None or self._state_gen != gen or self._state.as_of != day:
            self._state = None
            self._day = day
            self._state = self._build(cur, day)
            self._dirty = set()
            self._state_gen = gen
        return self._state

    def _bump(self, cur) -> None:
        """Record a write to the ledger; the state stays valid if it was brought up to date."""
        self._mutated = True
        gen = int(self.db.get_meta("ledger_gen", "0", cur)) + 1
        self.db.set_meta(cur, "ledger_gen", str(gen))
        if self._state is not None and self._state_gen == gen - 1:
            self._state_gen = gen
        else:
            self._state = None
        delta = self._delta
        if delta is not None and delta.valid and delta.counts.gen == gen - 1:
            delta.gen = gen  # applied to the counts once this write commits (see _Write)
        else:
            self._delta = None

    # -- statistics -------------------------------------------------------------------------------
    #
    # Counted once from the tables, then kept up to date by the writes of this process: each write
    # collects what it changes (events stored or voided per day; each re-scored citizen's old and
    # new class) and adds it when it commits. The counts hold for one ledger generation; a write by
    # another process (PostgreSQL, `db load`) leaves them behind it, and they are counted again.

    def counts(self) -> tuple[dict[int, int], list[int]]:
        """Events per day (voided ones left out) and scored citizens per class index."""
        db = self.db
        gen = int(db.get_meta("ledger_gen", "0"))
        with self._counts_lock:
            counts = self._counts
            if counts is not None and counts.gen == gen:
                return dict(counts.days), list(counts.classes)
        # Counted under the write lock: no write runs meanwhile, and every write after it keeps
        # the counts up to date (a count taken beside a running write would be behind it at once).
        with self.write() as cur:
            gen = int(db.get_meta("ledger_gen", "0", cur))
            days = {int(d): int(n) for d, n in db.execute(
                "SELECT day, COUNT(*) FROM events WHERE voided = 0 GROUP BY day", (), cur)}
            classes = [0] * len(self.class_names)
            for idx, n in db.execute("SELECT class_idx, COUNT(*) FROM scores GROUP BY class_idx", (), cur):
                classes[int(idx)] += int(n)
            with self._counts_lock:
                self._counts = _Counts(gen, dict(days), list(classes))
        return days, classes

    def _count_days(self, days: pl.Series, sign: int) -> None:
        if self._delta is not None and len(days):
            for day, n in pl.DataFrame({"day": days}).group_by("day").len().iter_rows():
                self._delta.days[int(day)] = self._delta.days.get(int(day), 0) + sign * int(n)

    def _count_classes(self, cur, new: pl.DataFrame, old: pl.DataFrame | None = None) -> None:
        """Count the class moves of the citizens in `new` (citizen_id, class_idx) about to be written;
        `old` (citizen_id, old): their rows in `scores` now, read here when not given."""
        delta = self._delta
        if delta is None or new.height == 0:
            return
        if old is None:
            db = self.db
            old = db.frame(f"SELECT citizen_id, class_idx FROM scores WHERE {db.any_of('citizen_id')}",
                           (db.list_param(new["citizen_id"]),), {"citizen_id": pl.String, "old": pl.Int32}, cur)
        n = len(delta.classes)
        delta.classes += np.bincount(new["class_idx"].to_numpy(), minlength=n)[:n]
        delta.classes -= np.bincount(old["old"].to_numpy(), minlength=n)[:n]

    def _begin_counts(self) -> None:
        counts = self._counts
        self._delta = None if counts is None else _Delta(counts, len(self.class_names))

    def _end_counts(self, committed: bool) -> None:
        delta, self._delta = self._delta, None
        if delta is None or not committed or delta.gen is None:
            return
        with self._counts_lock:
            counts = self._counts
            if counts is not delta.counts or counts.gen != delta.gen - 1:
                return
            for day, n in delta.days.items():
                counts.days[day] = counts.days.get(day, 0) + n
                if counts.days[day] == 0:
                    del counts.days[day]
            counts.classes = [int(a + b) for a, b in zip(counts.classes, delta.classes, strict=True)]
            counts.gen = delta.gen

    def _build(self, cur, day: int) -> ScoreState:
        """The state of the whole ledger (voided events left out), read in chunks."""
        state = ScoreState(self.compiled, as_of=day, births=self._births(cur))
        cur.execute(self.db.sql(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE voided = 0"))
        while True:
            chunk = cur.fetchmany(_BUILD_CHUNK)
            if not chunk:
                break
            state.apply(pl.DataFrame(chunk, schema=EVENT_SCHEMA, orient="row"))
        return state

    def _births(self, cur, citizen_ids: pl.Series | None = None) -> pl.DataFrame | None:
        """The register of births (of these citizens), None when the policy has no min_age."""
        if not self.compiled.policy.min_age:
            return None
        db = self.db
        if citizen_ids is None:
            return db.frame("SELECT citizen_id, birth_day FROM births", (), BIRTHS_SCHEMA, cur)
        return db.frame(f"SELECT citizen_id, birth_day FROM births WHERE {db.any_of('citizen_id')}",
                        (db.list_param(citizen_ids),), BIRTHS_SCHEMA, cur)

    def births_of(self, citizen_id: str) -> pl.DataFrame | None:
        """This citizen's row of the register of births, None when the policy has no min_age."""
        return self._births(None, pl.Series([citizen_id]))

    def scored_from(self, citizen_id: str) -> int | None:
        """The first day the policy scores this citizen, None when it scores them from the start."""
        first = self.compiled.scored_from(pl.Series([citizen_id]), self.births_of(citizen_id))
        return None if first is None or first[0] <= 0 else int(first[0])

    def _score_new(self, cur, state: ScoreState, events: pl.DataFrame) -> None:
        """Apply events just stored (each once) to the state; write the touched citizens' scores."""
        if events.height == 0:
            return
        ids = events["citizen_id"].unique()
        self._mutated = True
        _, before = state.score_of(ids)  # citizens first seen now start with no points
        state.apply(events)
        self._write_scores(cur, state, ids, before)

    def _write_scores(self, cur, state: ScoreState, ids: pl.Series, before: np.ndarray) -> None:
        score, after = state.score_of(ids)
        # In key order: the upsert then walks the scores index front to back. A citizen not of the
        # policy's age has no score (and, the day going only forward, had none before).
        new = (pl.DataFrame({"citizen_id": ids, "score": score, "class_idx": after, "old": before})
               .filter(pl.col("class_idx") >= 0).sort("citizen_id"))
        if self._dirty:
            dirty = new["citizen_id"].is_in(list(self._dirty))
            if dirty.any():
                self.rescore(cur, new["citizen_id"].filter(dirty))
                new = new.filter(~dirty)
        if new.height == 0:
            return
        self._count_classes(cur, new)
        names = pl.Series(self.class_names, dtype=pl.String)
        new = new.with_columns(**{"class": names.gather(new["class_idx"])},
                               as_of=pl.lit(self.day, pl.Int32))
        changed = new.filter(pl.col("class_idx") != pl.col("old"))
        if changed.height:
            self.db.insert_frame(cur, "class_history",
                                 changed.select("citizen_id", day="as_of", class_idx="class_idx"))
        self.db.insert_frame(cur, "scores", new.select("citizen_id", "score", "class", "class_idx", "as_of"),
                             conflict="ON CONFLICT (citizen_id) DO UPDATE SET score = excluded.score, "
                                      "class = excluded.class, class_idx = excluded.class_idx, "
                                      "as_of = excluded.as_of")

    def rescore(self, cur, citizen_ids: pl.Series, *, fresh: pl.DataFrame | None = None) -> None:
        """Re-score these citizens from their whole ledger, as of the service day, in `cur`.

        The slow path, for citizens the incremental state cannot score (an event voided).
        `fresh`: events just stored, all of them; citizens without a score yet have no other
        events (every write re-scores the citizens it touches), so their ledger is not read back.
        """
        if len(citizen_ids) == 0:
            return
        db = self.db
        ids = db.list_param(citizen_ids)
        old = db.frame(f"SELECT citizen_id, class_idx FROM scores WHERE {db.any_of('citizen_id')}",
                       (ids,), {"citizen_id": pl.String, "old": pl.Int32}, cur)
        read = citizen_ids if fresh is None else old["citizen_id"]
        ledger = db.frame(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events "
                          f"WHERE voided = 0 AND {db.any_of('citizen_id')}", (db.list_param(read),),
                          EVENT_SCHEMA, cur)
        if fresh is not None:
            first_seen = fresh.filter(~pl.col("citizen_id").is_in(old["citizen_id"].implode()))
            ledger = pl.concat([ledger, first_seen.select(EVENT_COLUMNS).cast(EVENT_SCHEMA)])
        new = self._scores(ledger, citizen_ids, cur)
        self._count_classes(cur, new, old)
        changed = (new.join(old, on="citizen_id", how="left")
                   .filter(pl.col("class_idx") != pl.col("old").fill_null(self.start_class)))
        if changed.height:
            db.insert_frame(cur, "class_history", changed.select("citizen_id", day="as_of", class_idx="class_idx"))
        db.insert_frame(cur, "scores", new, conflict=(
            "ON CONFLICT (citizen_id) DO UPDATE SET score = excluded.score, class = excluded.class, "
            "class_idx = excluded.class_idx, as_of = excluded.as_of"))

    def _scores(self, ledger: pl.DataFrame, citizen_ids: pl.Series, cur) -> pl.DataFrame:
        """Score and class per citizen (of age), as of the service day."""
        c = self.compiled
        births = self._births(cur, citizen_ids)
        result = score_ledger(c, ledger, as_of=self.day, births=births)
        scored = result.scores.with_columns(class_idx=pl.col("class").to_physical().cast(pl.Int32),
                                            **{"class": pl.col("class").cast(pl.String)})
        # Citizens whose every event was voided are back at the start (if of age).
        alone = pl.DataFrame({"citizen_id": citizen_ids.unique()}).join(scored, on="citizen_id", how="anti")
        first = c.scored_from(alone["citizen_id"], births)
        if first is not None:
            alone = alone.filter(pl.Series(first <= self.day))
        start = alone.with_columns(score=pl.lit(c.policy.start, pl.Int64),
                                   **{"class": pl.lit(self.class_names[self.start_class])},
                                   class_idx=pl.lit(self.start_class, pl.Int32))
        return (pl.concat([scored, start], how="diagonal_relaxed")
                .select("citizen_id", "score", "class", "class_idx", as_of=pl.lit(self.day, pl.Int32)))

    def set_day(self, day: int) -> None:
        """Move the service day forward and re-score the citizens whose points expired by then."""
        with self.write() as cur:
            current = int(self.db.get_meta("day", "0", cur))
            if day < current:
                raise Conflict(f"the service day is {current}; it cannot go back to {day}", field="day")
            state = self._sync(cur)
            self.db.set_meta(cur, "day", str(day))
            self._day = day
            # The citizens with points starting or expiring by then.
            due = state.due(day)
            _, before = state.score_of(due)
            self._mutated = True
            state.advance(day)
            if len(due):
                self._write_scores(cur, state, due, before)
            self._bump(cur)

    def void(self, cur, event_id: str, citizen_id: str) -> None:
        """Take an event out of the scoring (an upheld appeal) and re-score its citizen, in `cur`."""
        rows = self.db.execute("SELECT day FROM events WHERE event_id = ? AND voided = 0", (event_id,), cur)
        self._count_days(pl.Series([int(r[0]) for r in rows], dtype=pl.Int64), -1)
        self.db.execute("UPDATE events SET voided = 1 WHERE event_id = ?", (event_id,), cur)
        self.rescore(cur, pl.Series([citizen_id]))
        self._dirty.add(citizen_id)  # the state still counts the event: re-score them from the ledger
        self._bump(cur)

    def warm(self) -> None:
        """Build the incremental state from the ledger now rather than at the first write."""
        with self.write() as cur:
            self._sync(cur)

    # -- loading a simulation run -----------------------------------------------------------------

    def load_run(self, run_dir: Path) -> dict[str, int]:
        """Load a run folder's citizens.parquet and events.parquet; return what was loaded."""
        run_dir = Path(run_dir)
        citizens_file, events_file = run_dir / "citizens.parquet", run_dir / "events.parquet"
        if not citizens_file.is_file() and not events_file.is_file():
            raise Invalid(f"{run_dir}: neither citizens.parquet nor events.parquet found")
        manifest = _manifest(run_dir)
        if manifest is not None:
            self.set_calendar(manifest.calendar, f"the run {run_dir}")
        loaded = {"citizens": 0, "events": 0}
        events = None
        if events_file.is_file():
            raw = pl.read_parquet(events_file)
            try:
                events = validate_events(raw, origin=str(events_file))
            except EventError as exc:
                raise Invalid(str(exc), row=exc.row, field=exc.column) from None
            if events.height and int(events["day"].max()) > self.day:
                self.set_day(int(events["day"].max()))
        with self.write() as cur:
            if manifest is not None:  # the dashboard shows the run beside the ledger
                self.db.set_meta(cur, "run_dir", str(run_dir.resolve()))
            if citizens_file.is_file():
                age_noise = None if manifest is None else manifest.scenario.sensors.age_noise_years
                loaded["citizens"] = self._load_citizens(cur, pl.read_parquet(citizens_file), citizens_file,
                                                         age_noise)
            if events is not None:
                state = self._sync(cur)
                first_events = not self.db.execute("SELECT 1 FROM events LIMIT 1", (), cur)
                stored = self.db.insert_frame(cur, "events", events.with_columns(batch=pl.lit(0, pl.Int64)),
                                              conflict="ON CONFLICT (event_id) DO NOTHING")
                if stored == events.height:
                    self._count_days(events["day"], 1)
                    self._score_new(cur, state, events.select(EVENT_COLUMNS))
                else:  # loaded before, in part: score from the ledger, rebuild the state later
                    self.rescore(cur, events["citizen_id"].unique())
                    self._state = None
                    if self._delta is not None:
                        self._delta.valid = False  # which events were new is not known: count again
                self._replay_history(cur, events.select(EVENT_COLUMNS) if first_events else None,
                                     events["citizen_id"].unique())
                self._bump(cur)
                loaded["events"] = events.height
        return loaded

    def set_calendar(self, calendar: Calendar, origin: str) -> None:
        """Count days from `calendar`'s start date: a database that holds no event yet takes it;
        one that counts from another date refuses (its day numbers would mean other dates)."""
        if calendar == self.calendar and self.db.get_meta("start_date") is not None:
            return
        with self.write() as cur:
            if calendar != self.calendar and self.db.execute("SELECT 1 FROM events LIMIT 1", (), cur):
                raise Conflict(f"{self.db.url} counts days from {self.calendar.start.isoformat()}, {origin} from "
                               f"{calendar.start.isoformat()}: use a database of its own", field="start_date")
            self.db.set_meta(cur, "start_date", calendar.start.isoformat())
        self.calendar = calendar

    def _replay_history(self, cur, ledger: pl.DataFrame | None, citizen_ids: pl.Series) -> None:
        """The class histories of these citizens replayed from their ledger (`ledger`, or read back
        when None): class changes dated by their events' days, as a run dates them, so that held
        days and `since` are the simulation's (a live batch dates them by the service day)."""
        db = self.db
        ids = db.list_param(citizen_ids)
        if ledger is None:
            ledger = db.frame(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events "
                              f"WHERE voided = 0 AND {db.any_of('citizen_id')}", (ids,), EVENT_SCHEMA, cur)
        history = class_history(self.compiled, ledger, as_of=self.day, births=self._births(cur, citizen_ids))
        db.execute(f"DELETE FROM class_history WHERE {db.any_of('citizen_id')}", (ids,), cur)
        db.insert_frame(cur, "class_history", history.select("citizen_id", pl.col("day").cast(pl.Int32), "class_idx"))

    def _load_citizens(self, cur, citizens: pl.DataFrame, origin: Path, age_noise: float | None) -> int:
        if "citizen_id" not in citizens.columns:
            raise Invalid(f"{origin}: missing column citizen_id", field="citizen_id")
        citizens = citizens.with_columns(pl.col("citizen_id").cast(pl.String))
        attributes = [c for c in citizens.columns if c != "citizen_id"]
        encoded = (pl.struct(attributes).struct.json_encode() if attributes else pl.lit("{}"))
        self.db.insert_frame(cur, "citizens", citizens.select("citizen_id", attributes=encoded),
                             conflict="ON CONFLICT (citizen_id) DO UPDATE SET attributes = excluded.attributes")
        births = None
        if "birth_day" in citizens.columns:
            births = citizens.select(BIRTHS_SCHEMA.keys()).cast(BIRTHS_SCHEMA)
            self.db.insert_frame(cur, "births", births,
                                 conflict="ON CONFLICT (citizen_id) DO UPDATE SET birth_day = excluded.birth_day")
            if self._state is not None:
                self._mutated = True
                self._state.add_births(births)
        # Every loaded citizen of age has a score from the start (the start score until an event
        # moves it), so that class counts and look-ups cover the citizens with no event too.
        of_age = citizens
        first = self.compiled.scored_from(citizens["citizen_id"], births)
        if first is not None:
            of_age = citizens.with_columns(day=pl.Series(first)).filter(pl.col("day") <= self.day)
            # Those who came of age since the start entered the start class that day (unless
            # scored already: a run loaded again).
            came = of_age.filter(pl.col("day") > 0)
            if came.height:
                db = self.db
                known = db.frame(f"SELECT citizen_id FROM scores WHERE {db.any_of('citizen_id')}",
                                 (db.list_param(came["citizen_id"]),), {"citizen_id": pl.String}, cur)
                db.insert_frame(cur, "class_history", came.join(known, on="citizen_id", how="anti").select(
                    "citizen_id", pl.col("day").cast(pl.Int32), class_idx=pl.lit(self.start_class, pl.Int32)))
        start = of_age.select("citizen_id", score=pl.lit(self.compiled.policy.start, pl.Int64),
                                **{"class": pl.lit(self.class_names[self.start_class])},
                                class_idx=pl.lit(self.start_class, pl.Int32), as_of=pl.lit(self.day, pl.Int32))
        if self.db.insert_frame(cur, "scores", start, conflict="ON CONFLICT (citizen_id) DO NOTHING"):
            if self._delta is not None:
                self._delta.valid = False  # which citizens were new is not known: count again
            self._bump(cur)
        profiles = camera_profiles(citizens, age_noise)
        if profiles is not None:
            self.db.insert_frame(cur, "camera_profiles", profiles, conflict=(
                "ON CONFLICT (citizen_id) DO UPDATE SET age_estimate = excluded.age_estimate, "
                "age_uncertainty = excluded.age_uncertainty, sightings = excluded.sightings, "
                "by_place = excluded.by_place"))
        return citizens.height


def camera_profiles(citizens: pl.DataFrame, age_noise: float | None) -> pl.DataFrame | None:
    """The camera profiles of a run's citizens.parquet, None if it has none.

    The simulator's data centre keeps, per citizen, `profile_age` (its age estimate, null if never
    seen), `sightings` and `moves_<placetype>` (sightings by place type, each capped at 31). The
    estimate is the running mean of one observation per sighting, each off by a triangular error
    on [-age_noise_years, +age_noise_years] (variance noise^2 / 6), so its standard error after n
    sightings is noise / sqrt(6 n); without the run's manifest the uncertainty is unknown (null).
    The true age (`age`) and the estimate's error (`profile_age_error`) are the simulation's own
    knowledge, not the data centre's: they stay out of the profile.
    """
    if "profile_age" not in citizens.columns or "sightings" not in citizens.columns:
        return None
    places = [c.removeprefix("moves_") for c in citizens.columns if c.startswith("moves_")]
    uncertainty = (pl.lit(None, pl.Float64) if age_noise is None else
                   (age_noise / (6.0 * pl.col("sightings").cast(pl.Float64)).sqrt()).round(2))
    by_place = (pl.struct([pl.col(f"moves_{p}").cast(pl.Int64).alias(p) for p in places]).struct.json_encode()
                if places else pl.lit("{}"))
    return citizens.select(
        "citizen_id",
        age_estimate=pl.col("profile_age").cast(pl.Float64),  # null for a citizen never seen
        age_uncertainty=pl.when(pl.col("profile_age").is_not_null()).then(uncertainty),
        sightings=pl.col("sightings").cast(pl.Int64),
        by_place=by_place,
    )


def _manifest(run_dir: Path) -> Manifest | None:
    """The run folder's manifest (None: a folder of tables alone); one this version cannot read is
    refused, naming what is wrong."""
    from socialcredit.simulation import Run, SimulationError

    if not (run_dir / "manifest.json").is_file():
        return None
    try:
        return Run.open(run_dir).manifest
    except SimulationError as exc:
        raise Invalid(str(exc), field="manifest") from None


class _Write:
    """Context manager: the process write lock, a transaction, and on PostgreSQL an advisory lock."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def __enter__(self):
        self.ledger.write_lock.acquire()
        try:
            self.ledger._mutated = False
            self.ledger._begin_counts()
            self._tx = self.ledger.db.transaction()
            cur = self._tx.__enter__()
            if self.ledger.db.dialect == "postgresql":
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))
        except BaseException:
            self.ledger.write_lock.release()
            raise
        return cur

    def __exit__(self, *exc):
        committed = False
        try:
            result = self._tx.__exit__(*exc)
            committed = exc[0] is None
            return result
        finally:
            if not committed and self.ledger._mutated:
                self.ledger._state = None  # it holds what was rolled back: rebuild at the next write
            self.ledger._end_counts(committed)
            self.ledger.write_lock.release()


class _Counts:
    """Events per day and citizens per class index, as of ledger generation `gen`."""

    def __init__(self, gen: int, days: dict[int, int], classes: list[int]):
        self.gen = gen
        self.days = days
        self.classes = classes


class _Delta:
    """What one write changes in `counts`; `gen`: the generation it brings them to (set by _bump)."""

    def __init__(self, counts: _Counts, n_classes: int):
        self.counts = counts
        self.days: dict[int, int] = {}
        self.classes = np.zeros(n_classes, dtype=np.int64)
        self.gen: int | None = None
        self.valid = True
