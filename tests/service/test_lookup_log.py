"""The look-up log in-process: journal first, group commits, replay after a crash exactly once.

The end-to-end SIGKILL tests are in test_hot_path.py (SQLite) and test_crash.py (PostgreSQL); here
each step of the journal's life is checked directly: what is in the journal and the log database
after a write, a commit, a clean stop, a crash at any point (including inside the journal's reset)
and a failed commit; on PostgreSQL, the journals of several servers on one database.
"""

import json
import logging
import os
import stat
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socialcredit.service import Database, _lookup_log
from socialcredit.service._lookup_log import LookupLog


def _row(n: int) -> tuple:
    return (f"c{n}", "bank-key", "bank", "mortgage", "score,class", "lookup", f"2026-01-01T00:00:{n:02d}", n)


def _logged(db) -> list[tuple]:
    return [tuple(r) for r in db.log.execute(
        "SELECT citizen_id, key_name, role, purpose, fields, endpoint, at, day FROM lookups ORDER BY id")]


def _journal(db) -> bytes:
    return LookupLog(db)._journal.read_bytes()


def _committed(db) -> int:
    return int(db.log.get_meta("journal_committed", "0"))


def _crash(log: LookupLog) -> None:
    """The process dies: the journal file stays as written, nothing queued is committed."""
    os.close(log._fd)


@pytest.fixture
def db(tmp_path):
    db = Database.open(f"sqlite:///{tmp_path}/log.db")
    yield db
    db.close()


def test_without_the_writer_rows_are_committed_at_once(db):
    log = LookupLog(db)
    log.write([])
    assert _logged(db) == []
    log.write([_row(1), _row(2)])
    assert _logged(db) == [_row(1), _row(2)]
    log.flush()  # not running: returns at once
    assert not LookupLog(db)._journal.exists()


def test_a_write_is_in_the_journal_before_it_is_committed_and_a_commit_records_how_far(db):
    log = LookupLog(db)
    log.start()  # the writer thread is not run: commits happen only when called
    log.write([_row(1), _row(2)])
    journal = _journal(db)
    assert [tuple(json.loads(line)) for line in journal.splitlines()] == [_row(1), _row(2)]
    assert _logged(db) == []
    log._commit_queued()
    assert _logged(db) == [_row(1), _row(2)] and _committed(db) == len(journal)
    log.write([_row(3)])
    assert _committed(db) == len(journal) < len(_journal(db))
    _crash(log)


def test_after_a_crash_the_uncommitted_rows_are_committed_once_and_the_journal_emptied(db):
    log = LookupLog(db)
    log.start()
    log.write([_row(1), _row(2), _row(3)])
    log._commit_queued()
    log.write([_row(4)])
    log.write([_row(5)])
    _crash(log)
    assert _logged(db) == [_row(n) for n in (1, 2, 3)]
    restarted = LookupLog(db)
    restarted.start()
    assert _logged(db) == [_row(n) for n in range(1, 6)]
    assert _journal(db) == b"" and _committed(db) == 0
    _crash(restarted)
    LookupLog(db).start()
    assert _logged(db) == [_row(n) for n in range(1, 6)]


def test_a_line_cut_short_by_the_crash_is_skipped_with_a_warning(db, caplog):
    log = LookupLog(db)
    log.start()
    log.write([_row(1), _row(2)])
    _crash(log)
    with open(log._journal, "ab") as f:
        f.write(json.dumps(_row(3)).encode()[:20])
    with caplog.at_level(logging.WARNING, logger="socialcredit.service"):
        LookupLog(db).start()
    assert _logged(db) == [_row(1), _row(2)]
    assert caplog.messages == ["look-up journal: skipped a damaged line"]


def test_a_crash_inside_the_reset_replays_nothing(db):
    """The reset truncates before it records offset 0: a committed offset past the end means all is in."""
    log = LookupLog(db)
    log.start()
    log.write([_row(1), _row(2)])
    log._commit_queued()
    _crash(log)
    with open(log._journal, "wb"):
        pass  # truncated; the crash came before `journal_committed` was set to 0
    log._journal.write_bytes(json.dumps(_row(9)).encode() + b"\n")  # a shorter journal than the offset
    assert _committed(db) > len(_journal(db))
    LookupLog(db).start()
    assert _logged(db) == [_row(1), _row(2)]


def test_a_journal_past_its_size_limit_is_emptied_once_all_of_it_is_committed(db, monkeypatch):
    monkeypatch.setattr(_lookup_log, "JOURNAL_RESET_BYTES", 3 * len(json.dumps(_row(1))))
    log = LookupLog(db)
    log.start()
    log.write([_row(1), _row(2)])
    log._commit_queued()
    assert len(_journal(db)) == _committed(db) > 0  # under the limit: kept
    log.write([_row(3), _row(4)])
    log._commit_queued()
    assert _journal(db) == b"" and _committed(db) == 0
    log.write([_row(5)])  # appended at the start of the emptied file
    _crash(log)
    LookupLog(db).start()
    assert _logged(db) == [_row(n) for n in range(1, 6)]


def test_a_failed_commit_keeps_the_rows_in_order_for_the_next_round(db, monkeypatch, caplog):
    log = LookupLog(db)
    log.start()
    log.write([_row(1), _row(2)])
    insert = log._insert
    calls = []

    def failing_once(rows, journal_at=None):
        calls.append(len(rows))
        if len(calls) == 1:
            raise OSError("disk full")
        insert(rows, journal_at)

    monkeypatch.setattr(log, "_insert", failing_once)
    with caplog.at_level(logging.ERROR, logger="socialcredit.service"):
        log._commit_queued()
    assert _logged(db) == [] and "retrying" in caplog.text
    log.write([_row(3)])
    log._commit_queued()
    assert _logged(db) == [_row(1), _row(2), _row(3)] and _committed(db) == len(_journal(db))
    _crash(log)


def test_flush_waits_for_the_writer_and_gives_up_when_it_does_not_write(db):
    log = LookupLog(db)
    log.start()
    log.write([_row(1)])
    with pytest.raises(RuntimeError, match="^the look-up log could not be written in time$"):
        log.flush(timeout=0.2)  # the writer thread was never run
    _crash(log)

    log = LookupLog(db)
    thread = log.start()
    thread.start()
    log.write([_row(2)])
    log.flush()
    assert _logged(db) == [_row(1), _row(2)]
    log.stop()
    thread.join(10)


def test_a_crash_after_the_replay_committed_replays_nothing_again(db, monkeypatch):
    log = LookupLog(db)
    log.start()
    log.write([_row(1), _row(2)])
    _crash(log)
    replaying = LookupLog(db)

    def crash(*_):
        raise SystemExit("killed")

    monkeypatch.setattr(replaying, "_reset_journal", crash)  # dies before the journal is emptied
    with pytest.raises(SystemExit):
        replaying.start()
    assert _logged(db) == [_row(1), _row(2)] and _journal(db) != b""
    LookupLog(db).start()
    assert _logged(db) == [_row(1), _row(2)]


def test_a_clean_stop_commits_everything_and_leaves_nothing_to_replay(db, caplog):
    log = LookupLog(db)
    with caplog.at_level(logging.WARNING, logger="socialcredit.service"):
        thread = log.start()
    assert caplog.messages == []  # a first start: no journal, nothing to say
    thread.start()
    log.write([_row(1), _row(2)])
    log.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert _logged(db) == [_row(1), _row(2)]
    assert _journal(db) == b"" and _committed(db) == 0 and log._fd is None
    log.write([_row(3)])  # stopped: written at once
    assert _logged(db)[-1] == _row(3)
    LookupLog(db).start()
    assert len(_logged(db)) == 3


@pytest.fixture
def pg(pg_url, tmp_path, monkeypatch):
    """A PostgreSQL database whose servers keep their journals under tmp_path/state."""
    monkeypatch.setenv(_lookup_log.STATE_DIR_ENV, str(tmp_path / "state"))
    db = Database.open(pg_url)
    yield db
    db.close()


def _journals(tmp_path) -> list:
    return sorted((tmp_path / "state" / "lookup-journals").glob("*/*.journal"))


def _offsets(db) -> dict[str, int]:
    return {key: int(value) for key, value in db.execute("SELECT key, value FROM meta WHERE key LIKE ?", ("journal%",))}


def test_on_postgresql_each_server_journals_to_a_file_of_its_own_and_a_clean_stop_deletes_it(pg, tmp_path):
    log = LookupLog(pg)
    thread = log.start()
    folder = log._journal.parent
    assert folder.parent == tmp_path / "state" / "lookup-journals"
    assert folder.name == pg.get_meta("lookup_journals")  # the database's id, not its URL
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(log._journal).st_mode) == 0o600  # look-ups are personal data
    other = LookupLog(pg)
    other.start()
    assert _journals(tmp_path) == sorted([log._journal, other._journal])
    log.write([_row(1), _row(2)])
    assert [tuple(json.loads(line)) for line in log._journal.read_bytes().splitlines()] == [_row(1), _row(2)]
    log._commit_queued()
    assert _logged(pg) == [_row(1), _row(2)]
    assert _offsets(pg) == {f"journal_committed:{log._journal.stem}": len(log._journal.read_bytes())}
    thread.start()
    log.write([_row(3)])
    log.stop()
    thread.join(10)
    assert _logged(pg) == [_row(n) for n in (1, 2, 3)]
    assert _journals(tmp_path) == [other._journal] and _offsets(pg) == {}
    _crash(other)
    last = LookupLog(pg)
    last.start()  # replays the crashed one (nothing in it) and deletes it
    assert _journals(tmp_path) == [last._journal]
    _crash(last)


def test_on_postgresql_a_start_replays_the_journals_of_crashed_servers_once_and_no_running_ones(pg, tmp_path):
    crashed, running = LookupLog(pg), LookupLog(pg)
    crashed.start()
    running.start()
    crashed.write([_row(1), _row(2)])
    crashed._commit_queued()
    crashed.write([_row(3)])
    running.write([_row(4)])
    _crash(crashed)
    assert _logged(pg) == [_row(1), _row(2)]
    restarted = LookupLog(pg)
    restarted.start()
    assert _logged(pg) == [_row(n) for n in (1, 2, 3)]  # not row 4: its server still runs
    assert crashed._journal not in _journals(tmp_path) and running._journal in _journals(tmp_path)
    assert f"journal_committed:{crashed._journal.stem}" not in _offsets(pg)
    _crash(running)
    _crash(restarted)
    LookupLog(pg).start()
    assert _logged(pg) == [_row(n) for n in (1, 2, 3, 4)]


def _start_with(log: LookupLog, together: threading.Barrier) -> None:
    together.wait()
    log.start()


def test_on_postgresql_servers_starting_together_replay_each_crashed_journal_once(pg):
    rows = iter(range(1000))
    expected = []
    for _ in range(3):
        for _ in range(4):
            crashed = LookupLog(pg)
            crashed.start()
            written = [_row(next(rows)) for _ in range(5)]
            crashed.write(written)
            expected += written
            _crash(crashed)
        starting = [LookupLog(Database(pg.url)) for _ in range(3)]
        together = threading.Barrier(len(starting))
        threads = [threading.Thread(target=_start_with, args=(log, together)) for log in starting]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for log in starting:
            _crash(log)
            log._db.close()
        assert sorted(_logged(pg)) == sorted(expected)


def test_on_postgresql_a_replay_cut_short_before_its_journal_is_deleted_replays_nothing_again(pg, monkeypatch):
    crashed = LookupLog(pg)
    crashed.start()
    crashed.write([_row(1), _row(2)])
    _crash(crashed)
    replaying = LookupLog(pg)

    def crash(*_):
        raise SystemExit("killed")

    monkeypatch.setattr(replaying, "_forget", crash)
    with pytest.raises(SystemExit):
        replaying.start()
    assert _logged(pg) == [_row(1), _row(2)] and crashed._journal.exists()
    LookupLog(pg).start()
    assert _logged(pg) == [_row(1), _row(2)] and not crashed._journal.exists()


def test_a_running_writer_commits_every_interval_without_being_stopped(db):
    """The writer thread commits what was written within a few intervals, on its own; a clean stop
    then commits nothing twice and leaves an empty journal; the thread never holds the process up."""
    import time

    log = LookupLog(db)
    thread = log.start()
    assert (thread.name, thread.daemon) == ("lookup-log", True)
    assert stat.S_IMODE(os.stat(log._journal).st_mode) == 0o600  # look-ups are personal data
    thread.start()
    log.write([_row(1), _row(2)])
    deadline = time.monotonic() + 5
    while _logged(db) != [_row(1), _row(2)] and time.monotonic() < deadline:
        time.sleep(_lookup_log.LOG_INTERVAL_S)
    assert _logged(db) == [_row(1), _row(2)], "not committed while running"
    assert _committed(db) == len(_journal(db)) > 0  # committed from the journal, which stays until stop
    assert thread.is_alive()
    log.write([_row(3)])
    log.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert _logged(db) == [_row(1), _row(2), _row(3)]
    assert _journal(db) == b""


_AWKWARD = ["quote \" and backslash \\ and \\u0000 typed", "new\nline\ttab", "zh 信用 and astral 𝄞", "", "x" * 300,
            "nul \x00 inside"]


def _awkward_rows(purposes) -> list[tuple]:
    return [(f"c{n}", "bank-key", "bank", p, "score,class", "lookup", "2026-01-01T00:00:00.000+00:00", 10**6 + n)
            for n, p in enumerate(purposes)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(purposes=st.lists(st.one_of(st.none(), st.text()), min_size=1, max_size=5))
def test_any_text_is_journalled_as_json_and_committed_exactly_as_written(db, purposes):
    """The journal's lines are json.dumps's, and the database takes the rows from those lines:
    whatever the texts hold (quotes, escapes, newlines, any script, NUL), the log holds them exactly."""
    rows = _awkward_rows(purposes)
    assert _lookup_log._journal_lines(rows) == "".join(json.dumps(row) + "\n" for row in rows).encode()
    db.log.execute("DELETE FROM lookups")
    LookupLog(db).write(rows)  # not running: at once, from the same lines
    assert _logged(db) == rows


@pytest.mark.parametrize("through", ["commit", "replay"])
def test_awkward_texts_reach_the_log_whole_through_a_commit_and_a_replay(db, pg, through):
    for database in (db, pg):
        nul = [_AWKWARD[-1]] if database is db else []  # PostgreSQL text holds no NUL
        rows = _awkward_rows(_AWKWARD[:-1] + [None] + nul)
        log = LookupLog(database)
        log.start()
        log.write(rows)
        if through == "commit":
            log._commit_queued()
        else:
            _crash(log)
            LookupLog(database).start()
        assert _logged(database) == rows, database.dialect
