"""The inbox and its projector: a batch is acknowledged once it is committed to the `inbox` table
(fsynced); inbox numbers are handed out in commit order (one writer at a time). The projector
moves inbox batches into the `events` ledger (event_id is the primary key, so a re-sent event is
stored once) and re-scores the citizens each batch touches, in one transaction that also records
the last batch projected (`projected_seq`): after a crash, the batches after it are projected
again and nothing acknowledged is lost or counted twice. Projected batches are then deleted from
the inbox."""

from __future__ import annotations

import io

import polars as pl

from socialcredit.service._db import EVENT_COLUMNS
from socialcredit.service._intake import check_batch, parse_events
from socialcredit.service._keys import ApiKey, now

# Stored in the inbox as dictionaries: few distinct values, and the Arrow file is written uncompressed
# (compressing cost more CPU on the acknowledgement path than the smaller commit saved).
_DICTIONARY_COLUMNS = ("kind", "source", "source_ref")
_INBOX_LOCK = 7_210_306  # any constant shared by every service process on one database


class Inbox:
    """The Ledger's inbox and projector (a mixin over its database, write lock and score cache)."""

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
