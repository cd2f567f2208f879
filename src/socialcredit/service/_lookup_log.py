"""The look-up log: every answered look-up is durable without the look-up waiting for a commit."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import uuid
from json.encoder import encode_basestring_ascii as _text
from pathlib import Path

from socialcredit.service._db import _LOOKUP_COLUMNS, Database

log = logging.getLogger("socialcredit.service")

_LOG_COLUMNS = _LOOKUP_COLUMNS.removeprefix("id, ")  # log_row's, in its order
_N_LOG_COLUMNS = _LOG_COLUMNS.count(",") + 1
_LOG_INSERT = f"INSERT INTO lookups ({_LOG_COLUMNS}) VALUES ({', '.join('?' * _N_LOG_COLUMNS)})"
# The same rows from their journal lines (JSON arrays) as one parameter: the database takes them
# apart in one statement, during which the writer holds no GIL (executemany binds row by row).
# The last column, the day, is the one number.
_LOG_INSERT_JSON = {
    "sqlite": f"INSERT INTO lookups ({_LOG_COLUMNS}) SELECT "
              + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(_N_LOG_COLUMNS)) + " FROM json_each(?)",
    "postgresql": f"INSERT INTO lookups ({_LOG_COLUMNS}) SELECT "
                  + ", ".join(f"r->>{i}" for i in range(_N_LOG_COLUMNS - 1))
                  + f", (r->>{_N_LOG_COLUMNS - 1})::integer FROM json_array_elements(?::json) AS r",
}
# The look-up log's group commit: rows queued by look-ups are written together this often.
LOG_INTERVAL_S = 0.05
JOURNAL_MODE = 0o600  # who looked whom up is personal data: the owner only
# Where a server on PostgreSQL keeps its look-up journals (default: the XDG state folder).
STATE_DIR_ENV = "SOCIALCREDIT_STATE_DIR"
# The meta key naming a PostgreSQL database's folder of journals: an id made once per database, so
# that every URL of it finds the same journals and a database made again never replays old ones.
_JOURNALS_ID = "lookup_journals"
_COMMITTED = "journal_committed"  # how far the journal is in the log (SQLite: its one journal)


# The journal is emptied once it holds this much and every row in it is in the log database.
JOURNAL_RESET_BYTES = 1 << 20


def state_dir() -> Path:
    """The folder of a server's local state: $SOCIALCREDIT_STATE_DIR, else the XDG state folder."""
    if folder := os.environ.get(STATE_DIR_ENV):
        return Path(folder)
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "socialcredit"


class LookupLog:
    """The look-up log, written in group commits by one thread; a look-up never waits for a commit.

    A look-up appends its row to a journal file (one write call, no fsync: it survives the
    server's crash, as the SIGKILL tests check) and queues it, and is answered; the writer commits
    everything queued every LOG_INTERVAL_S into the log database (a file of its own on SQLite, so
    the projector's long transactions on the main file never hold it up) together with how far
    the journal is in it. On start, the rows of the journal past that point (answered, not yet
    committed when the server stopped) are committed first. `flush` waits until all rows queued so
    far are committed (the log's readers call it first); `stop` writes what is left. Without the
    writer thread (a Service not started), rows are written at once.

    On SQLite the journal is `<db>-log.journal`, beside the database. On PostgreSQL, which several
    servers may share, each server keeps a journal of its own, `<uuid>.journal` in the database's
    folder under `state_dir()`, locked (flock) while it runs, with its own committed offset in the
    meta table. On start a server commits the rows of every journal no running server holds (a
    crashed server's), then deletes it; the lock makes two servers starting at once replay each
    journal once. A clean stop deletes the server's journal: nothing of it is left to replay.
    """

    def __init__(self, db: Database):
        self._db = db
        self._lock = threading.Lock()  # guards _lines, _queued, _running and the journal
        self._lines: list[bytes] = []  # the journal's text of the rows queued
        self._queued = 0  # rows queued since start
        self._written = 0  # rows durable since start
        self._done = threading.Condition()
        self._wake = threading.Event()
        self._stopping = False
        self._running = False
        # PostgreSQL: this server's journal, made by `start`.
        self._journal = Path(f"{db.path}-log.journal") if db.dialect == "sqlite" else None
        self._committed_key = _COMMITTED
        self._fd: int | None = None
        self._end = 0  # the journal's size: the offset just past the last row queued

    def write(self, rows: list[tuple]) -> None:
        if not rows:
            return
        data = _journal_lines(rows)
        with self._lock:
            if self._running:
                os.write(self._fd, data)
                self._end += len(data)
                self._lines.append(data)
                self._queued += len(rows)
                return
        self._insert(data)

    def _replay(self, journal: Path, key: str) -> None:
        """Commit the rows of `journal` past the offset under `key` (in the same transaction as
        the offset, so a replay cut short and done again writes no row twice)."""
        data = journal.read_bytes() if journal.exists() else b""
        done = int(self._db.log.get_meta(key, "0"))
        lines = []
        for line in data[done:].splitlines():  # none when a reset was cut short (done past the end)
            try:
                json.loads(line)
                lines.append(line + b"\n")
            except ValueError:  # a line cut short by the crash: its look-up was never answered
                log.warning("look-up journal: skipped a damaged line")
        self._insert(b"".join(lines), journal_at=len(data), key=key)

    def flush(self, timeout: float = 30.0) -> None:
        with self._lock:
            if not self._running:
                return
            target = self._queued
        self._wake.set()
        with self._done:
            if not self._done.wait_for(lambda: self._written >= target or not self._running, timeout):
                raise RuntimeError("the look-up log could not be written in time")

    def _insert(self, lines: bytes, journal_at: int | None = None, key: str | None = None) -> None:
        """Commit the rows of `lines` (journal lines) and, with them, how far the journal is in the log."""
        log_db = self._db.log
        with log_db.transaction() as cur:
            if b"\\u0000" in lines:  # a NUL, which SQLite's JSON functions cut short (PostgreSQL text holds none)
                log_db.executemany(cur, _LOG_INSERT, [json.loads(line) for line in lines.splitlines()])
            elif lines:
                array = b"[" + lines[:-1].replace(b"\n", b",") + b"]"
                log_db.execute(_LOG_INSERT_JSON[log_db.dialect], (array.decode(),), cur)
            if journal_at is not None:  # in the same transaction: replay never writes a row twice
                log_db.set_meta(cur, key or self._committed_key, str(journal_at))

    def _reset_journal(self) -> None:
        """Empty the journal (every row in it is committed); truncate first, so that a crash in
        between leaves a committed offset past the end, which means: nothing to replay."""
        assert self._journal is not None
        os.close(os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, JOURNAL_MODE))
        self._insert(b"", journal_at=0)
        self._end = 0

    def _forget(self, journal: Path, key: str) -> None:
        """Delete a journal whose rows are all committed, then its offset (a crash in between
        leaves an offset that names no journal, which nothing reads)."""
        journal.unlink()
        with self._db.log.transaction() as cur:
            self._db.log.execute("DELETE FROM meta WHERE key = ?", (key,), cur)

    def _commit_queued(self) -> None:
        with self._lock:
            lines, self._lines = b"".join(self._lines), []
            target = self._queued
            end = self._end
        if lines:
            try:
                self._insert(lines, journal_at=end)
            except Exception:  # kept for the next round, in order
                log.exception("writing the look-up log failed; retrying")
                with self._lock:
                    self._lines.insert(0, lines)
                return
        with self._lock:
            if self._end == end and end >= JOURNAL_RESET_BYTES:
                os.ftruncate(self._fd, 0)
                self._insert(b"", journal_at=0)
                self._end = 0
        with self._done:
            self._written = target
            self._done.notify_all()

    def _journal_folder(self) -> Path:
        """This PostgreSQL database's folder of journals."""
        log_db = self._db.log
        with log_db.transaction() as cur:  # the first server to start names it; the others read it
            log_db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                           (_JOURNALS_ID, uuid.uuid4().hex), cur)
        return state_dir() / "lookup-journals" / log_db.get_meta(_JOURNALS_ID)

    @staticmethod
    def _claim(journal: Path) -> int | None:
        """A descriptor holding `journal`'s lock, or None where a running server holds it or
        another server has just replayed and deleted it."""
        try:
            fd = os.open(journal, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(journal).st_ino == os.fstat(fd).st_ino:
                return fd
        except (BlockingIOError, FileNotFoundError):
            pass
        os.close(fd)
        return None

    def _replay_orphans(self, folder: Path) -> None:
        """Commit the rows of every journal in `folder` that no running server holds, then delete it."""
        for journal in sorted(folder.glob("*.journal")):  # none where the folder is not there
            fd = self._claim(journal)
            if fd is None:
                continue
            try:
                key = f"{_COMMITTED}:{journal.stem}"
                self._replay(journal, key)
                self._forget(journal, key)
            finally:
                os.close(fd)

    def _open_journal(self, folder: Path) -> None:
        """Make this server's journal, locked before other servers can see it."""
        name = uuid.uuid4().hex
        making = folder / f".{name}.new"
        while self._fd is None:
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(folder, 0o700)  # made before, or by a wider umask
                self._fd = os.open(making, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, JOURNAL_MODE)
            except FileNotFoundError:  # a server stopping just removed the folder it left empty
                pass
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._journal = folder / f"{name}.journal"
        os.rename(making, self._journal)
        self._committed_key = f"{_COMMITTED}:{name}"

    def start(self) -> threading.Thread:
        if self._db.dialect == "sqlite":
            self._replay(self._journal, _COMMITTED)
            self._reset_journal()
            self._fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, JOURNAL_MODE)
        else:
            folder = self._journal_folder()
            self._replay_orphans(folder)
            self._open_journal(folder)
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
                if not self._lines:
                    break
            self._commit_queued()
        with self._lock:
            self._running = False
            lines, self._lines = b"".join(self._lines), []
            end = self._end
        try:
            if lines:  # last try; an error here is reported by the caller of stop
                self._insert(lines, journal_at=end)
            self._close_journal()  # all committed: the next start has nothing to replay
        finally:
            with self._done:
                self._done.notify_all()

    def _close_journal(self) -> None:
        if self._db.dialect == "sqlite":
            os.close(self._fd)
            self._reset_journal()
        else:  # deleted while locked, so that no server starting meanwhile replays it
            self._forget(self._journal, self._committed_key)
            os.close(self._fd)
            try:
                self._journal.parent.rmdir()  # a clean stop leaves nothing behind
            except OSError:  # another server's journal is in it
                pass
        self._fd = None

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


def _journal_lines(rows: list[tuple]) -> bytes:
    """`rows` (log_row's) as the journal writes them: one JSON array a line, json.dumps's bytes
    (formatted here with its own string encoder: a third of the cost, on every look-up)."""
    return "".join(f"[{_text(c)}, {_text(k)}, {_text(r)}, {'null' if p is None else _text(p)}, {_text(f)}, "
                   f"{_text(e)}, {_text(at)}, {day:d}]\n" for c, k, r, p, f, e, at, day in rows).encode()
