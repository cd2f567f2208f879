"""The write side of the service: one ledger of events per database, scored with one policy.

Batches are checked (`_intake`), made durable in an inbox and projected into the ledger
(`_inbox`); the projection re-scores the citizens it touches through the score cache
(`_score_cache`) and keeps the statistics (`_counts`) up to date; a simulation run is loaded by
`_loading`. Writes to the ledger are serialised by one lock per process and, on PostgreSQL, an
advisory lock, so that two re-scorings never interleave; every write bumps `ledger_gen`.

A partitioned ledger (PostgreSQL, `Database.open(partitions=N)`) is projected by N service
processes, each the owner of one partition of the citizens: each keeps the scoring state of its own
citizens, projects their events from the shared inbox, and has its own advisory lock, generation
(`ledger_gen.<p>`), last batch projected (`projected_seq.<p>`) and day (`day.<p>`). The service day
(`day`) is moved by any process; each owner then brings its partition's scores to it (`catch_up`).
Every process answers look-ups of every citizen: they read the shared tables. Writes that are not
projections (appeals, the day, loading a run) take every partition's lock.
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

    def __init__(self, db: Database, compiled: CompiledPolicy, *, partition: int | None = None):
        if partition is not None and not 0 <= partition < db.partitions:
            raise Conflict(f"{db.url} holds a ledger in {db.partitions} partition(s): there is no partition "
                           f"{partition}", field="partition")
        self.db = db
        self.compiled = compiled
        # The partition this process owns (None: the whole ledger; an unsplit one is its only partition).
        self.partition = partition if db.partitions > 1 else None
        self.write_lock = threading.RLock()
        self.inbox_lock = threading.Lock()
        self._projected = threading.Condition()
        self._projected_seq = int(db.get_meta(self._own("projected_seq"), "0"))
        self._day = int(db.get_meta(self._own("day"), "0"))
        start = db.get_meta("start_date")
        self.calendar = Calendar() if start is None else Calendar(dt.date.fromisoformat(start))
        self.start_class = int(compiled.classify(np.array([compiled.policy.start]))[0])
        self.class_names = compiled.policy.class_names
        # The engine's incremental state of the whole ledger (see `_sync`); None: rebuild when needed.
        self._state: ScoreState | None = None
        self._state_gen: tuple[int, ...] = ()
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
        self._counted_here: Tally | None = None  # counts taken in the current write (see _count_with_build)

    @property
    def day(self) -> int:
        """The service day: events after it are refused, scores are as of it."""
        return self._day

    @property
    def partitioned(self) -> bool:
        """Whether the database's ledger is split into partitions."""
        return self.db.partitions > 1

    def _own(self, key: str) -> str:
        """A meta key of this process's partition (the key itself for the whole ledger)."""
        return key if self.partition is None else f"{key}.{self.partition}"

    def _gen_keys(self, every: bool = False) -> list[str]:
        """The generations this process's state (or, `every`, the whole ledger) depends on."""
        if not self.partitioned:
            return ["ledger_gen"]
        if self.partition is not None and not every:
            return [self._own("ledger_gen")]
        return [f"ledger_gen.{p}" for p in range(self.db.partitions)]

    def _gens(self, cur, every: bool = False) -> tuple[int, ...]:
        keys = self._gen_keys(every)
        held = dict(self.db.execute(f"SELECT key, value FROM meta WHERE key IN ({', '.join('?' * len(keys))})",
                                    keys, cur))
        return tuple(int(held.get(k, 0)) for k in keys)

    def write(self, *, whole: bool = False):
        """A serialised write transaction (see the module docstring): of this process's partition, or
        (`whole`) of every partition."""
        return _Write(self, whole)

    def _bump(self, cur) -> None:
        """Record a write to the ledger; the state stays valid if it was brought up to date."""
        self._mutated = True
        gen = self._gens(cur)
        bumped = tuple(g + 1 for g in gen)
        for key, value in zip(self._gen_keys(), bumped, strict=True):
            self.db.set_meta(cur, key, str(value))
        if self._state is not None and self._state_gen == gen:
            self._state_gen = bumped
        else:
            self._state = None
        delta = self._delta
        if delta is not None and delta.valid and delta.counts.gen == gen:
            delta.gen = bumped  # applied to the counts once this write commits (see _Write)
        else:
            self._delta = None

    def set_day(self, day: int) -> None:
        """Move the service day forward and re-score the citizens whose points expired by then (of
        this partition; the owners of the others follow, see `catch_up`)."""
        with self.write(whole=True) as cur:
            current = int(self.db.get_meta("day", "0", cur))
            if day < current:
                raise Conflict(f"the service day is {current}; it cannot go back to {day}", field="day")
            if self.partitioned and self.partition is None:
                self.db.set_meta(cur, "day", str(day))
                self._day = day  # no state of its own: the owners bring their partitions to it
                return
            state = self._sync(cur)  # as of the day before (an unsplit ledger's day is this one)
            self.db.set_meta(cur, "day", str(day))
            self._advance_day(cur, day, state)

    def catch_up(self) -> None:
        """Bring this partition's scores to the service day another process moved it to."""
        if self.partition is None or int(self.db.get_meta("day", "0")) <= self._day:
            return
        with self.write() as cur:
            day = int(self.db.get_meta("day", "0", cur))
            if day > int(self.db.get_meta(self._own("day"), "0", cur)):
                self._advance_day(cur, day, self._sync(cur))

    def _advance_day(self, cur, day: int, state: ScoreState) -> None:
        if self.partition is not None:
            self.db.set_meta(cur, self._own("day"), str(day))
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
        owner = None if self.partition is None else self.db.partition_of(citizen_id, cur)
        if owner is None or owner == self.partition:
            self._dirty.add(citizen_id)  # the state still counts the event: re-score them from the ledger
            self._bump(cur)
        else:  # another process's citizen: its owner rebuilds its state from the ledger
            gen = int(self.db.get_meta(f"ledger_gen.{owner}", "0", cur))
            self.db.set_meta(cur, f"ledger_gen.{owner}", str(gen + 1))

    def warm(self) -> None:
        """Build the incremental state from the ledger now rather than at the first write."""
        with self.write() as cur:
            self._sync(cur)

    def set_calendar(self, calendar: Calendar, origin: str) -> None:
        """Count days from `calendar`'s start date: a database that holds no event yet takes it;
        one that counts from another date refuses (its day numbers would mean other dates)."""
        if calendar == self.calendar and self.db.get_meta("start_date") is not None:
            return
        with self.write(whole=True) as cur:
            if calendar != self.calendar and self.db.execute("SELECT 1 FROM events LIMIT 1", (), cur):
                raise Conflict(f"{self.db.url} counts days from {self.calendar.start.isoformat()}, {origin} from "
                               f"{calendar.start.isoformat()}: use a database of its own", field="start_date")
            self.db.set_meta(cur, "start_date", calendar.start.isoformat())
        self.calendar = calendar


class _Write:
    """Context manager: the process write lock, a transaction, and on PostgreSQL an advisory lock."""

    def __init__(self, ledger: Ledger, whole: bool):
        self.ledger = ledger
        self.whole = whole

    def __enter__(self):
        self.ledger.write_lock.acquire()
        try:
            self.ledger._mutated = False
            self.ledger._begin_counts()
            self._tx = self.ledger.db.transaction()
            cur = self._tx.__enter__()
            ledger = self.ledger
            if ledger.partitioned:  # in partition order: two writes of every partition never deadlock
                for p in range(ledger.db.partitions) if self.whole or ledger.partition is None else [ledger.partition]:
                    cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_ADVISORY_LOCK, p))
            elif ledger.db.dialect == "postgresql":
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
