"""The inbox and its projector: a batch is acknowledged once it is committed to the `inbox` table
(fsynced); inbox numbers are handed out in commit order (one writer at a time). The projector
moves inbox batches into the `events` ledger (event_id is the primary key, so a re-sent event is
stored once) and re-scores the citizens each batch touches, in one transaction that also records
the last batch projected (`projected_seq`): after a crash, the batches after it are projected
again and nothing acknowledged is lost or counted twice. Projected batches are then deleted from
the inbox. Events are stored in event_id order (the inserts walk the primary key front to back).

On a partitioned ledger (see _ledger) each partition's owner projects the events of its own citizens
from every batch and records its own last batch; a batch leaves the inbox once every partition has
projected it.

A batch that cannot be stored for what it holds (a storage error of its data, alone, several times)
is quarantined: moved with its error to the `quarantine` table beside the inbox, so that the batches
after it are still projected."""

from __future__ import annotations

import io
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from socialcredit.events import EVENT_SCHEMA, EventError
from socialcredit.service._db import EVENT_COLUMNS
from socialcredit.service._errors import Conflict
from socialcredit.service._intake import check_batch, parse_events
from socialcredit.service._keys import ApiKey, now

log = logging.getLogger("socialcredit.service")

# Stored in the inbox as dictionaries: few distinct values, and the Arrow file is written uncompressed
# (compressing cost more CPU on the acknowledgement path than the smaller commit saved).
_DICTIONARY_COLUMNS = ("kind", "source", "source_ref")
_INBOX_LOCK = 7_210_306  # any constant shared by every service process on one database
# A batch whose projection fails alone this many times in a row, with an error of its data, is quarantined.
POISON_ATTEMPTS = 3
# How often a process waiting for another partition's projection looks at the meta table.
_POLL_S = 0.02
# What an event may not change when it is sent again (event_id names it; its batch is where it came in).
_CONTENT = [c for c in EVENT_COLUMNS if c != "event_id"]


class _ProjectionFailed(Exception):
    """Projecting the inbox batches `seqs` failed (the cause says why); nothing of it was committed."""

    def __init__(self, seqs: list[int]):
        self.seqs = seqs
        super().__init__(f"projecting batches {seqs} failed")


def _is_data_error(exc: BaseException) -> bool:
    """Whether `exc` is a refusal of what a batch holds (a constraint, a value the database cannot
    store, a body that cannot be read), not of the database's state (a lost connection, a lock, a
    full disk): only the former can make a batch poisoned."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, UnicodeError, EventError,
                        pl.exceptions.PolarsError)):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, (psycopg.DataError, psycopg.IntegrityError))


class Inbox:
    """The Ledger's inbox and projector (a mixin over its database, write lock and score cache)."""

    def ingest(self, key: ApiKey, body: bytes) -> tuple[int, int]:
        """Check a batch and commit it to the inbox; return (batch number, events)."""
        events = check_batch(parse_events(body), key, compiled=self.compiled, day=self.day,
                             calendar=self.calendar)
        self._refuse_changed_events(events)
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

    def _refuse_changed_events(self, events: pl.DataFrame) -> None:
        """Refuse (409) an event sent again with other content than the ledger holds for its id; one
        indexed query per batch. Sent again unchanged, it is taken and stored once.

        Batches still in the inbox are not looked at (their events are Arrow files, not rows): of two
        differing versions in flight at once, the projector keeps the first.
        """
        ids, db = events["event_id"], self.db
        if self._none_stored(ids):
            return
        rows = db.rows_matching(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE {{match}}", "event_id", ids)
        if not rows:
            return
        stored = pl.DataFrame(rows, schema=EVENT_SCHEMA, orient="row")
        both = events.with_row_index("row", offset=1).join(stored, on="event_id", suffix="_stored").with_columns(
            pl.col("confidence", "confidence_stored").fill_null(1.0))  # a missing confidence means 1.0
        changed = both.filter(pl.any_horizontal(~pl.col(c).eq_missing(pl.col(f"{c}_stored")) for c in _CONTENT))
        if changed.height:
            first = changed.sort("row").row(0, named=True)
            column = next(c for c in _CONTENT if first[c] != first[f"{c}_stored"])
            # The stored value is not quoted: the sender may not be the one who sent the event, and
            # the ledger is not theirs to read.
            raise Conflict(f"batch: row {first['row']}, field event_id: event {first['event_id']!r} was received "
                           f"before with another {column}; an event is never changed by sending it again",
                           row=first["row"], field="event_id")

    def _none_stored(self, ids: pl.Series, cur=None) -> bool:
        """Whether the ledger surely holds none of these event ids. Ids sent in order (counters,
        time-ordered ids) mostly lie beyond the ledger's: one probe of its key finds no stored id
        between the least and the greatest. (SQLite compares texts byte by byte, as polars does;
        PostgreSQL's collation may not, so there the answer is always no, and the ids are looked up.)"""
        return self.db.dialect == "sqlite" and not self.db.execute(
            "SELECT 1 FROM events WHERE event_id BETWEEN ? AND ? LIMIT 1", (ids.min(), ids.max()), cur)

    def project(self, *, max_batches: int = 16) -> int:
        """Move up to `max_batches` inbox batches into the ledger and re-score; return how many left
        the inbox (a quarantined batch counts)."""
        try:
            return self._project(max_batches)
        except _ProjectionFailed as failed:
            error = failed.__cause__
            if len(failed.seqs) > 1:
                # One bad batch fails all projected with it: project them one at a time to find it.
                return sum(self.project(max_batches=1) for _ in failed.seqs)
            seq = failed.seqs[0]
            if not _is_data_error(error):
                raise error from None
            self._failures[seq] = self._failures.get(seq, 0) + 1
            if self._failures[seq] < POISON_ATTEMPTS:
                raise error from None
            self._quarantine(seq, error)
            return 1

    def _project(self, max_batches: int) -> int:
        inbox = self.db.inbox
        if self.partitioned and self.partition is None:
            raise Conflict(f"{self.db.url} holds a ledger in {self.db.partitions} partitions: each is projected "
                           "by the service process that owns it (serve --partition P/N)", field="partition")
        with self.write() as cur:
            done = int(self.db.get_meta(self._own("projected_seq"), "0", cur))
            rows = inbox.execute("SELECT seq, body, key_name FROM inbox WHERE seq > ? ORDER BY seq LIMIT ?",
                                 (done, max_batches))
            if rows:
                try:
                    self._project_batches(cur, rows)
                except Exception as exc:
                    raise _ProjectionFailed([int(r[0]) for r in rows]) from exc
                done = int(rows[-1][0])
                self.db.set_meta(cur, self._own("projected_seq"), str(done))
                self._bump(cur)
        if not rows:
            return 0
        for seq, *_ in rows:
            self._failures.pop(int(seq), None)
        everywhere = done if not self.partitioned else self._projected_everywhere()
        with self.inbox_lock, inbox.transaction() as cur:
            inbox.execute("DELETE FROM inbox WHERE seq <= ?", (everywhere,), cur)
        self._advance(done)
        return len(rows)

    def _projected_everywhere(self, cur=None) -> int:
        """The last batch every partition has projected (the last projected, on an unsplit ledger)."""
        if not self.partitioned:
            return int(self.db.get_meta("projected_seq", "0", cur))
        keys = [f"projected_seq.{p}" for p in range(self.db.partitions)]
        held = dict(self.db.execute(f"SELECT key, value FROM meta WHERE key IN ({', '.join('?' * len(keys))})",
                                    keys, cur))
        return min(int(held.get(k, 0)) for k in keys)

    def _project_batches(self, cur, rows: list[tuple]) -> None:
        state = self._sync(cur)
        # A loop over batches, not events: each one is a whole Arrow table.
        frames = [pl.read_ipc(io.BytesIO(bytes(body))).with_columns(
            pl.col(_DICTIONARY_COLUMNS).cast(pl.String), batch=pl.lit(seq, pl.Int64))
                  for seq, body, _ in rows]
        # Who sent each batch: an appeal against an event is not decided by its reporter (_appeals).
        senders = pl.DataFrame({"seq": [int(r[0]) for r in rows], "key_name": [r[2] for r in rows]},
                               schema={"seq": pl.Int64, "key_name": pl.String})
        self.db.insert_frame(cur, "batches", senders, conflict="ON CONFLICT (seq) DO NOTHING")
        events = pl.concat(frames).unique("event_id", keep="first", maintain_order=True)
        if self.partition is not None:
            own = self.db.in_partition(events["citizen_id"].unique(), self.partition, cur)
            events = events.filter(pl.col("citizen_id").is_in(own.implode()))
        if events.height == 0:
            return
        # In key order: the inserts then walk the ledger's primary key front to back.
        events = events if events["event_id"].is_sorted() else events.sort("event_id")
        with ThreadPoolExecutor(1) as worker:
            # Where every event is surely new, a worker thread applies them to the state while they
            # are stored (SQLite's inserts and the state's numpy, polars and numba mostly run without
            # the GIL); where some may be re-sent, they are applied once it is known which were new.
            applied = (worker.submit(self._apply_new, state, events.select(EVENT_COLUMNS))
                       if self._none_stored(events["event_id"], cur) else None)
            stored = self.db.insert_frame(cur, "events", events.select(*EVENT_COLUMNS, "batch"),
                                          conflict=self.db.event_conflict)
        if stored != events.height:
            # Some were in the ledger already (re-sent): those carry an earlier batch number.
            first = int(rows[0][0])
            old = self.db.rows_matching("SELECT event_id FROM events WHERE batch < ? AND {match}", "event_id",
                                        events["event_id"], (first,), cur)
            events = events.filter(~pl.col("event_id").is_in(pl.Series([r[0] for r in old], dtype=pl.String)
                                                              .implode()))
            if events.height == 0:
                return
        touched, before = applied.result() if applied else self._apply_new(state, events.select(EVENT_COLUMNS))
        self._count_days(events["day"], 1)
        # Each partition's owner writes the arrivals of its own events: their sum is the batch's.
        self.db.insert_frame(cur, "arrivals", events.group_by("batch", "kind", "source").len("events"))
        self._write_scores(cur, state, touched, before)

    def _quarantine(self, seq: int, error: BaseException) -> None:
        """Move batch `seq` from the inbox to the quarantine, with its error."""
        message = f"{type(error).__name__}: {error}"[:2000]
        inbox = self.db.inbox
        with self.inbox_lock, inbox.transaction() as cur:
            inbox.execute("INSERT INTO quarantine (seq, key_name, n_events, body, received, error, quarantined) "
                          "SELECT seq, key_name, n_events, body, received, ?, ? FROM inbox WHERE seq = ?",
                          (message, now(), seq), cur)
            inbox.execute("DELETE FROM inbox WHERE seq = ?", (seq,), cur)
        log.error("batch %d could not be stored %d times and is quarantined: %s", seq, POISON_ATTEMPTS, message)
        self._failures.pop(seq, None)
        self._quarantined_seqs.add(seq)
        self._advance(seq)

    def _advance(self, seq: int) -> None:
        """Batches up to `seq` have left the inbox: wake who waits for them."""
        with self._projected:
            self._projected_seq = max(self._projected_seq, seq)
            self._projected.notify_all()

    def quarantined_count(self) -> int:
        """How many batches are in the quarantine."""
        return int(self.db.inbox.execute("SELECT COUNT(*) FROM quarantine")[0][0])

    def quarantined_batches(self, key_name: str | None = None) -> list[dict]:
        """Quarantined batches (of `key_name`'s, or all), oldest first, with their errors."""
        where, params = (" WHERE key_name = ?", (key_name,)) if key_name is not None else ("", ())
        rows = self.db.inbox.execute("SELECT seq, key_name, n_events, received, quarantined, error FROM quarantine"
                                     f"{where} ORDER BY seq", params)
        return [{"batch": int(seq), "key": name, "events": int(n), "received": received,
                 "quarantined": quarantined, "error": error}
                for seq, name, n, received, quarantined, error in rows]

    def pending(self) -> int:
        """Batches acknowledged but not yet projected (into every partition)."""
        done = self._projected_everywhere()
        return int(self.db.inbox.execute("SELECT COUNT(*) FROM inbox WHERE seq > ?", (done,))[0][0])

    def wait_projected(self, seq: int, timeout: float) -> bool:
        """Wait until batch `seq` is in the ledger (every partition of it); False on timeout, or if
        it was quarantined."""
        if self.partitioned:  # the partitions' owners are other processes (and this one): ask the database
            deadline = time.monotonic() + timeout
            while not (arrived := self._projected_everywhere() >= seq) and time.monotonic() < deadline:
                time.sleep(_POLL_S)
        else:
            with self._projected:
                arrived = self._projected.wait_for(lambda: self._projected_seq >= seq, timeout)
        return arrived and seq not in self._quarantined_seqs
