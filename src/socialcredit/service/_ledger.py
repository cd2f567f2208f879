"""The write side of the service: one ledger of events per database, scored with one policy.

Batches are checked (`_intake`), made durable in an inbox and projected into the ledger
(`_inbox`); the projection re-scores the citizens it touches through the score cache
(`_score_cache`) and keeps the statistics (`_counts`) up to date; a simulation run is loaded by
`_loading`. Writes to the ledger are serialised by one lock per process and, on PostgreSQL, an
advisory lock, so that two re-scorings never interleave; every write bumps `ledger_gen`.
"""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import polars as pl

from socialcredit.engine import CompiledPolicy, ScoreState
from socialcredit.events import Calendar
from socialcredit.service._counts import Counts, Tally, TallyChange
from socialcredit.service._db import Database
from socialcredit.service._errors import Conflict
from socialcredit.service._inbox import Inbox
from socialcredit.service._loading import RunLoading
from socialcredit.service._score_cache import Before, ScoreCache

_ADVISORY_LOCK = 7_210_305  # any constant shared by every service process on one database


class Ledger(Inbox, ScoreCache, Counts, RunLoading):
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
        self._failures: dict[int, int] = {}  # failed projections of each batch alone, in a row (see _inbox)
        self._quarantined_seqs: set[int] = set()  # batches this process quarantined
        self._mutated = False  # the state changed in the current write (see _Write)
        # Events per day and citizens per class for /api/stats, kept up to date by this process's
        # writes (see `counts`); None: count them from the tables at the next request.
        self._counts: Tally | None = None
        self._counts_lock = threading.Lock()
        self._delta: TallyChange | None = None  # what the current write changes in `_counts`

    @property
    def day(self) -> int:
        """The service day: events after it are refused, scores are as of it."""
        return self._day

    def write(self):
        """A serialised write transaction (see the module docstring)."""
        return _Write(self)

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
            before = Before(*state.score_of(due), state.known(due))
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
