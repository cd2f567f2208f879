"""The look-up log: every answered look-up is durable without the look-up waiting for a commit."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from socialcredit.service._db import Database

log = logging.getLogger("socialcredit.service")

_LOG_INSERT = ("INSERT INTO lookups (citizen_id, key_name, role, purpose, fields, endpoint, at, day) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
# The look-up log's group commit: rows queued by look-ups are written together this often.
LOG_INTERVAL_S = 0.05
JOURNAL_MODE = 0o600  # who looked whom up is personal data: the owner only


# The journal is emptied once it holds this much and every row in it is in the log database.
JOURNAL_RESET_BYTES = 1 << 20


class LookupLog:
    """The look-up log, written in group commits by one thread; a look-up never waits for a commit.

    A look-up appends its row to a journal file (one write call, no fsync: it survives the
    server's crash, as the SIGKILL test checks) and queues it, and is answered; the writer commits
    everything queued every LOG_INTERVAL_S into the log database (a file of its own on SQLite, so
    the projector's long transactions on the main file never hold it up) together with how far
    the journal is in it. On start, the rows of the journal past that point (answered, not yet
    committed when the server stopped) are committed first. `flush` waits until all rows queued so
    far are committed (the log's readers call it first); `stop` writes what is left. On PostgreSQL
    there is no local journal: a crash can lose the rows of the last LOG_INTERVAL_S plus one commit.
    Without the writer thread (a Service not started), rows are written at once.
    """

    def __init__(self, db: Database):
        self._db = db
        self._lock = threading.Lock()  # guards _rows, _queued, _running and the journal
        self._rows: list[tuple] = []
        self._queued = 0  # rows queued since start
        self._written = 0  # rows durable since start
        self._done = threading.Condition()
        self._wake = threading.Event()
        self._stopping = False
        self._running = False
        self._journal = Path(f"{db.path}-log.journal") if db.dialect == "sqlite" else None
        self._fd: int | None = None
        self._end = 0  # the journal's size: the offset just past the last row queued

    def write(self, rows: list[tuple]) -> None:
        if not rows:
            return
        with self._lock:
            if self._running:
                if self._fd is not None:
                    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
                    os.write(self._fd, data)
                    self._end += len(data)
                self._rows.extend(rows)
                self._queued += len(rows)
                return
        self._insert(rows)

    def _replay(self) -> None:
        """Commit the journal's rows that a stop left out of the log database, then empty it."""
        assert self._journal is not None
        data = self._journal.read_bytes() if self._journal.exists() else b""
        done = int(self._db.log.get_meta("journal_committed", "0"))
        rows = []
        for line in data[done:].splitlines():  # none when a reset was cut short (done past the end)
            try:
                rows.append(tuple(json.loads(line)))
            except ValueError:  # a line cut short by the crash: its look-up was never answered
                log.warning("look-up journal: skipped a damaged line")
        self._insert(rows, journal_at=len(data))
        self._reset_journal()

    def flush(self, timeout: float = 30.0) -> None:
        with self._lock:
            if not self._running:
                return
            target = self._queued
        self._wake.set()
        with self._done:
            if not self._done.wait_for(lambda: self._written >= target or not self._running, timeout):
                raise RuntimeError("the look-up log could not be written in time")

    def _insert(self, rows: list[tuple], journal_at: int | None = None) -> None:
        log_db = self._db.log
        with log_db.transaction() as cur:
            if rows:
                log_db.executemany(cur, _LOG_INSERT, rows)
            if journal_at is not None:  # in the same transaction: replay never writes a row twice
                log_db.set_meta(cur, "journal_committed", str(journal_at))

    def _reset_journal(self) -> None:
        """Empty the journal (every row in it is committed); truncate first, so that a crash in
        between leaves a committed offset past the end, which means: nothing to replay."""
        assert self._journal is not None
        os.close(os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, JOURNAL_MODE))
        self._insert([], journal_at=0)
        self._end = 0

    def _commit_queued(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            target = self._queued
            end = self._end
        if rows:
            try:
                self._insert(rows, journal_at=end if self._fd is not None else None)
            except Exception:  # kept for the next round, in order
                log.exception("writing the look-up log failed; retrying")
                with self._lock:
                    self._rows[:0] = rows
                return
        with self._lock:
            if self._fd is not None and self._end == end and end >= JOURNAL_RESET_BYTES:
                os.ftruncate(self._fd, 0)
                self._insert([], journal_at=0)
                self._end = 0
        with self._done:
            self._written = target
            self._done.notify_all()

    def start(self) -> threading.Thread:
        if self._journal is not None:
            self._replay()
            self._fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, JOURNAL_MODE)
            os.fchmod(self._fd, JOURNAL_MODE)  # a journal made before (or by a wider umask) too
        with self._lock:
            self._running = True
            self._stopping = False
        return threading.Thread(target=self.run, name="lookup-log", daemon=True)

    def run(self) -> None:
        while not self._stopping:
            self._wake.wait(LOG_INTERVAL_S)
            self._wake.clear()
            self._commit_queued()
        for _ in range(3):  # the rows left at a clean stop
            with self._lock:
                if not self._rows:
                    break
            self._commit_queued()
        with self._lock:
            self._running = False
            rows, self._rows = self._rows, []
            end = self._end
        try:
            if rows:  # last try; an error here is reported by the caller of stop
                self._insert(rows, journal_at=end if self._fd is not None else None)
            if self._fd is not None:  # all committed: the next start has nothing to replay
                os.close(self._fd)
                self._fd = None
                self._reset_journal()
        finally:
            with self._done:
                self._done.notify_all()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
