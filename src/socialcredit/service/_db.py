"""The service database: SQLite (the default, in WAL mode) or PostgreSQL, with one versioned schema."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from socialcredit.events import EVENT_SCHEMA, event_sql_columns

EVENT_COLUMNS = list(EVENT_SCHEMA)  # the event record's columns of the events table
SCHEMA_VERSION = 1
DEFAULT_URL = "sqlite:///socialcredit.db"

# The tables a partitioned database splits by citizen (see `_main_schema`): name, columns, key.
_LEDGER_TABLES = [
    ("events", event_sql_columns("{real}") + ", batch BIGINT NOT NULL, voided INTEGER NOT NULL DEFAULT 0",
     "event_id"),
    ("scores", "citizen_id TEXT NOT NULL, score BIGINT NOT NULL, class TEXT NOT NULL, class_idx INTEGER NOT NULL, "
               "as_of INTEGER NOT NULL", "citizen_id"),
]


def _ledger_tables(partitions: int) -> list[str]:
    """The DDL of the ledger tables: plain, or (PostgreSQL) declared partitioned by a hash of the
    citizen into `partitions`, one table each, whose keys then hold the citizen too."""
    if partitions == 1:
        return [f"CREATE TABLE IF NOT EXISTS {name} ({columns}, PRIMARY KEY ({key}))"
                for name, columns, key in _LEDGER_TABLES]
    ddl = []
    for name, columns, key in _LEDGER_TABLES:
        key = key if key == "citizen_id" else f"{key}, citizen_id"
        ddl.append(f"CREATE TABLE IF NOT EXISTS {name} ({columns}, PRIMARY KEY ({key})) PARTITION BY HASH (citizen_id)")
        ddl += [f"CREATE TABLE IF NOT EXISTS {name}_p{p} PARTITION OF {name} "
                f"FOR VALUES WITH (MODULUS {partitions}, REMAINDER {p})" for p in range(partitions)]
    return ddl


def _main_schema(partitions: int) -> list[str]:
    """The main database's DDL; {serial}, {blob} and {real} differ between SQLite and PostgreSQL."""
    return [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS api_keys (
            name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL, citizen_id TEXT,
            sources TEXT NOT NULL, created TEXT NOT NULL, revoked TEXT)""",
        *_ledger_tables(partitions),
        "CREATE INDEX IF NOT EXISTS events_citizen ON events (citizen_id)",
        # The dashboard's live rates read the batches that arrived since its last look from `arrivals`
        # (events per batch, kind and source, written by the projection), not from an index of the
        # ledger by batch: each projected event paid for that index (measured: 0.2-0.3 s per 500,000).
        "DROP INDEX IF EXISTS events_batch",
        """CREATE TABLE IF NOT EXISTS arrivals (
            batch BIGINT NOT NULL, kind TEXT NOT NULL, source TEXT, events BIGINT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS arrivals_batch ON arrivals (batch)",
        "DROP INDEX IF EXISTS scores_stale",
        """CREATE TABLE IF NOT EXISTS class_history (
            id {serial}, citizen_id TEXT NOT NULL, day INTEGER NOT NULL, class_idx INTEGER NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS class_history_citizen ON class_history (citizen_id, day)",
        "CREATE TABLE IF NOT EXISTS citizens (citizen_id TEXT PRIMARY KEY, attributes TEXT NOT NULL)",
        # The register of births a policy's min_age reads (birth_day: a day index, day 0 the first).
        "CREATE TABLE IF NOT EXISTS births (citizen_id TEXT PRIMARY KEY, birth_day BIGINT NOT NULL)",
        # The camera profile a simulation run's data centre holds (see Ledger.load_run): its age
        # estimate, the estimate's standard error, sightings, and sightings by place type (JSON).
        # (Databases made before it may hold an unused `profiles` table, which nothing wrote but
        # hand-made citizen tables.)
        """CREATE TABLE IF NOT EXISTS camera_profiles (
            citizen_id TEXT PRIMARY KEY, age_estimate {real}, age_uncertainty {real},
            sightings INTEGER NOT NULL, by_place TEXT NOT NULL)""",
        # Who sent each projected batch (events.batch; a loaded run's events are batch 0, no sender).
        "CREATE TABLE IF NOT EXISTS batches (seq BIGINT PRIMARY KEY, key_name TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS appeals (
            id {serial}, event_id TEXT NOT NULL, citizen_id TEXT NOT NULL, reason TEXT NOT NULL,
            status TEXT NOT NULL, filed_at TEXT NOT NULL, decided_at TEXT, decided_by TEXT,
            note TEXT)""",
        # Page sessions (see _sessions.py): the hash of the session id, the key it stands for, UTC times.
        """CREATE TABLE IF NOT EXISTS sessions (
            hash TEXT PRIMARY KEY, key_name TEXT NOT NULL, created TEXT NOT NULL, expires TEXT NOT NULL)""",
    ]


_SCHEMA = _main_schema(1)
# Acknowledged batches not yet projected into `events` and `scores` (see _inbox.py). On SQLite
# the inbox is a file of its own beside the database, so that acknowledging a batch never waits
# for the single writer of the main file, which the projector holds while it re-scores.
_INBOX_SCHEMA = [
    _SCHEMA[0],
    """CREATE TABLE IF NOT EXISTS inbox (
        seq {serial}, key_name TEXT NOT NULL, n_events INTEGER NOT NULL, body {blob} NOT NULL,
        received TEXT NOT NULL)""",
    # Acknowledged batches that could not be stored (see Inbox.project), moved out of the inbox with
    # the error, so that the batches after them are projected; kept for their senders and analysts.
    """CREATE TABLE IF NOT EXISTS quarantine (
        seq BIGINT PRIMARY KEY, key_name TEXT NOT NULL, n_events INTEGER NOT NULL, body {blob} NOT NULL,
        received TEXT NOT NULL, error TEXT NOT NULL, quarantined TEXT NOT NULL)""",
]
# The look-up log. On SQLite it is a file of its own beside the database (like the inbox): its group
# commits never wait for the projector, which holds the main file's single writer while it re-scores.
_LOOKUPS = [
    """CREATE TABLE IF NOT EXISTS lookups (
        id {serial}, citizen_id TEXT NOT NULL, key_name TEXT NOT NULL, role TEXT NOT NULL,
        purpose TEXT, fields TEXT NOT NULL, endpoint TEXT NOT NULL, at TEXT NOT NULL,
        day INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS lookups_citizen ON lookups (citizen_id)",
    # Look-ups refused (no grant, no purpose, another citizen): the citizen sees who tried.
    """CREATE TABLE IF NOT EXISTS refusals (
        id {serial}, citizen_id TEXT NOT NULL, key_name TEXT NOT NULL, role TEXT NOT NULL,
        purpose TEXT, endpoint TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL, day INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS refusals_citizen ON refusals (citizen_id)",
]
_LOOKUP_COLUMNS = "id, citizen_id, key_name, role, purpose, fields, endpoint, at, day"
# The main SQLite file's page size, set when the file is made (a file keeps the size it was made with).
# The projection inserts each event into the ledger and its indexes at places spread over them (one
# citizen's events, one citizen's score): with larger pages the trees are shallower and a batch dirties
# fewer pages. Measured on 1M events in batches of 100,000 over 1M citizens, the ledger's inserts with
# its indexes ran 1.2x as fast with 64 KiB pages as with SQLite's default 4 KiB, and with the scores
# upserts 1.15x (benchmarks/bench_service.py measures the whole projection).
MAIN_PAGE_SIZE = 65_536
# From this many values, `rows_matching` on PostgreSQL copies them into a temporary table.
_COPY_MATCH_FROM = 1_000
# SQLite: rows made into Python tuples per slice: a column's conversion holds the GIL, ~0.3 ms a slice.
_GIL_SLICE_ROWS = 8_192
_TYPES = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "real": "REAL"},
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA", "real": "DOUBLE PRECISION"},
}


class Database:
    """A connection factory for one database URL; one connection per thread.

    SQL is written with `?` placeholders and ON CONFLICT clauses, which both databases accept
    (placeholders are rewritten for psycopg).
    """

    def __init__(self, url: str, *, schema: list[str] | None = None):
        self.url = url
        self._schema = schema or _SCHEMA
        self._page_size = MAIN_PAGE_SIZE if schema is None else None  # the inbox and the log keep the default
        self.inbox = self
        self.log = self
        if url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self.path = None
        else:
            self.dialect = "sqlite"
            self.path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        self._local = threading.local()
        self._all: list = []
        self._guard = threading.Lock()
        self.key_cache = None  # see _keys.KeyCache
        self.partitions = 1  # ledger tables split by citizen (PostgreSQL; see `open`)

    @classmethod
    def open(cls, url: str = DEFAULT_URL, *, partitions: int | None = None) -> Database:
        """Open `url`, creating or upgrading the schema.

        `partitions` (PostgreSQL): a database made now splits its ledger (`events`, `scores`) into that
        many partitions by a hash of the citizen, each projected by a service process of its own; a
        database keeps the number it was made with (None: whatever it has).
        """
        if partitions is not None and partitions < 1:
            raise RuntimeError(f"partitions must be at least 1, not {partitions}")
        db = cls(url)
        if db.dialect == "sqlite":
            if (partitions or 1) > 1:
                raise RuntimeError(f"{url}: a ledger split into partitions needs PostgreSQL")
            db.inbox = cls(f"{url}-inbox", schema=_INBOX_SCHEMA)
            db.inbox.create_schema()
            db.log = cls(f"{url}-log", schema=[_SCHEMA[0], *_LOOKUPS])
            db.log.create_schema()
            db.create_schema()
            db._move_lookups()
            return db
        made = int(db.get_meta("partitions", "1")) if db.exists() else None
        if made is not None and partitions is not None and partitions != made:
            raise RuntimeError(f"{url} holds a ledger in {made} partition(s), not {partitions}; the number is "
                               "chosen when the database is made")
        db.partitions = made or partitions or 1
        db._schema = _main_schema(db.partitions) + _LOOKUPS + _INBOX_SCHEMA[1:]
        db.create_schema()
        if made is None and db.partitions > 1:
            with db.transaction() as cur:
                db.set_meta(cur, "partitions", str(db.partitions))
        return db

    @property
    def event_conflict(self) -> str:
        """The clause that skips an event the ledger holds already (its id; on a partitioned ledger,
        whose keys hold the citizen, its id and citizen: an event sent again is the same one)."""
        return "ON CONFLICT (event_id) DO NOTHING" if self.partitions == 1 else \
            "ON CONFLICT (event_id, citizen_id) DO NOTHING"

    def partition_table(self, table: str, partition: int | None) -> str:
        """The table of `partition` of a ledger table (the whole table for None)."""
        return table if partition is None else f"{table}_p{partition}"

    def in_partition(self, citizen_ids: pl.Series, partition: int, cur=None) -> pl.Series:
        """Those of `citizen_ids` whose rows go to `partition`, as PostgreSQL's hash partitioning
        places them (asked of it, so that the service and the tables never disagree)."""
        rows = self._with_copied(citizen_ids, cur, f"SELECT value FROM tmp_match WHERE satisfies_hash_partition("
                                 f"'events'::regclass, {self.partitions}, {int(partition)}, value)", ())
        return pl.Series("citizen_id", [r[0] for r in rows], dtype=pl.String)

    def partition_of(self, citizen_id: str, cur=None) -> int:
        """The partition that holds this citizen's rows."""
        return int(self.execute("SELECT p FROM generate_series(0, ?) p "
                                "WHERE satisfies_hash_partition('events'::regclass, ?, p, ?::text)",
                                (self.partitions - 1, self.partitions, citizen_id), cur)[0][0])

    def exists(self) -> bool:
        """Whether the database holds the service's schema already (without creating anything)."""
        if self.dialect == "sqlite" and not self.path.is_file():  # connecting would create the file
            return False
        meta = ("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'" if self.dialect == "sqlite"
                else "SELECT 1 WHERE to_regclass('meta') IS NOT NULL")  # in the URL's search_path
        return bool(self.execute(meta)) and self.get_meta("schema_version") is not None

    def _move_lookups(self) -> None:
        """Move a look-up log kept in the main file (databases made before the log file) to the log file.

        Idempotent (rows keep their ids), so a crash in between repeats it on the next open.
        """
        if not self.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lookups'"):
            return
        cur = self.connection().cursor()
        cur.execute(f"SELECT {_LOOKUP_COLUMNS} FROM lookups ORDER BY id")
        with self.log.transaction() as out:
            while rows := cur.fetchmany(100_000):
                out.executemany(f"INSERT OR IGNORE INTO lookups ({_LOOKUP_COLUMNS}) VALUES "
                                f"({', '.join('?' * 9)})", rows)
        with self.transaction() as tx:
            tx.execute("DROP TABLE lookups")

    def connection(self):
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._guard:
                self._all.append(conn)
        return conn

    def _connect(self):
        if self.dialect == "postgresql":
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        new = not self.path.exists()
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        if new:
            # Before the WAL files exist: SQLite makes them with the main file's mode. (No second
            # descriptor: closing one would drop this process's SQLite locks on the file.)
            os.chmod(self.path, 0o600)
            if self._page_size:
                conn.execute(f"PRAGMA page_size={self._page_size}")  # before the first table, and WAL
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (WAL fsynced) before the service acknowledges it. Kept for the
        # main file too (NORMAL would survive a process crash, not a power cut): a projection must be
        # as durable as the inbox delete that follows it. With large batches the fsync is a few ms.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=60000")
        # Re-scoring reads the ledgers of the touched citizens at random: keep the index in memory.
        conn.execute("PRAGMA cache_size=-131072")
        conn.execute("PRAGMA mmap_size=1073741824")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def close(self) -> None:
        """Close every connection opened by this object."""
        with self._guard:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
        for other in (self.inbox, self.log):
            if other is not self:
                other.close()

    def sql(self, text: str) -> str:
        """`text` with placeholders for this database."""
        return text.replace("?", "%s") if self.dialect == "postgresql" else text

    @contextmanager
    def transaction(self) -> Iterator:
        """A write transaction on this thread's connection; commits on success."""
        conn = self.connection()
        if self.dialect == "postgresql":
            with conn.transaction(), conn.cursor() as cur:
                yield cur
            return
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    def execute(self, text: str, params: Sequence = (), cur=None) -> list[tuple]:
        """Run one statement (in `cur`'s transaction if given); return its rows."""
        c = cur if cur is not None else self.connection().cursor()
        c.execute(self.sql(text), params)
        return c.fetchall() if c.description else []

    def executemany(self, cur, text: str, rows) -> None:
        """Run one statement for many parameter rows."""
        cur.executemany(self.sql(text), rows)

    def frame(self, text: str, params: Sequence, schema: dict, cur=None) -> pl.DataFrame:
        """Rows of a query as a DataFrame with `schema`."""
        rows = self.execute(text, params, cur)
        return pl.DataFrame(rows, schema=schema, orient="row")

    def any_of(self, column: str) -> str:
        """A condition `column` is one of a list given as a single parameter (see `list_param`)."""
        if self.dialect == "postgresql":
            return f"{column} = ANY(?)"
        return f"{column} IN (SELECT value FROM json_each(?))"

    def list_param(self, values: pl.Series | list):
        """A list of strings as the parameter of `any_of`."""
        values = values.to_list() if isinstance(values, pl.Series) else list(values)
        if self.dialect == "postgresql":
            return values
        # SQLite's json_each cuts a text at a NUL: such a text would match another (the text rule
        # keeps NUL out of every id; this refuses rather than mismatch should one get this far).
        if "\x00" in "".join(values):
            raise ValueError("a text holding NUL cannot be matched through json_each; use rows_matching")
        return json.dumps(values)

    def rows_matching(self, query: str, column: str, values: pl.Series | list, params: Sequence = (),
                      cur=None) -> list[tuple]:
        """Rows of `query` (its condition `{match}` stands for `column` being one of `values`), the
        values compared as they are: one `= ANY(?)` on PostgreSQL, `IN (?, ?, ...)` on SQLite (in
        as many statements as its limit on parameters requires). `params` go before the values."""
        if self.dialect == "postgresql" and len(values) >= _COPY_MATCH_FROM:
            return self._rows_matching_copied(query, column, values, params, cur)
        values = values.to_list() if isinstance(values, pl.Series) else list(values)
        if self.dialect == "postgresql":
            return self.execute(query.format(match=f"{column} = ANY(?)"), (*params, values), cur)
        size = self.connection().getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - len(params)
        rows: list[tuple] = []
        for at in range(0, len(values), size):
            chunk = values[at:at + size]
            rows += self.execute(query.format(match=f"{column} IN ({', '.join('?' * len(chunk))})"),
                                 (*params, *chunk), cur)
        return rows

    def _rows_matching_copied(self, query: str, column: str, values: pl.Series | list, params: Sequence,
                              cur) -> list[tuple]:
        """`rows_matching` on PostgreSQL for many values: they are copied into a temporary table of this
        connection and matched by a join (an array parameter is encoded value by value, in Python)."""
        return self._with_copied(values, cur, query.format(match=f"{column} IN (SELECT value FROM tmp_match)"),
                                 params)

    def _with_copied(self, values: pl.Series | list, cur, query: str, params: Sequence) -> list[tuple]:
        """Rows of `query` while `values` are in the temporary table tmp_match (value) of this connection."""
        c = cur if cur is not None else self.connection().cursor()
        c.execute("CREATE TEMP TABLE IF NOT EXISTS tmp_match (value TEXT NOT NULL)")
        buf = pl.DataFrame({"value": pl.Series(values, dtype=pl.String)}).write_csv(
            include_header=False, quote_style="non_numeric")
        with c.copy("COPY tmp_match (value) FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buf)
        try:
            return self.execute(query, params, c)
        finally:
            c.execute("DELETE FROM tmp_match")

    def insert_frame(self, cur, table: str, frame: pl.DataFrame, *, conflict: str = "") -> int:
        """Insert every row of `frame` into `table` (columns by name), with COPY on PostgreSQL.

        Returns how many rows were written (rows skipped by `conflict` do not count).
        """
        cols = ", ".join(frame.columns)
        if self.dialect == "sqlite":
            insert = f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * frame.width)}) {conflict}"
            written = 0
            # Column lists zipped into row tuples: far cheaper than DataFrame.iter_rows. A slice at a
            # time: to_list holds the GIL throughout, and a whole batch's would stall the look-ups.
            for part in frame.iter_slices(_GIL_SLICE_ROWS):
                cur.executemany(insert, zip(*(column.to_list() for column in part.get_columns()), strict=True))
                written += cur.rowcount
            return written
        # Texts quoted: COPY takes only an unquoted \N as NULL, so a text that is "\N" stays a text.
        rows = frame.write_csv(include_header=False, null_value="\\N", quote_style="non_numeric")

        def copy_into(target: str) -> None:
            with cur.copy(f"COPY {target} ({cols}) FROM STDIN WITH (FORMAT csv, NULL '\\N')") as copy:
                copy.write(rows)

        if not conflict:  # COPY writes every row or fails
            copy_into(table)
            return frame.height
        if conflict.endswith("DO NOTHING"):
            # Mostly every row is new (a re-sent event is rare): COPY them straight in, in a savepoint
            # that a row already there undoes, and only then take the conflict rule's way (measured:
            # 100,000 events 1.2-1.8x as fast as through the temporary table).
            import psycopg

            try:
                with cur.connection.transaction():
                    copy_into(table)
                return frame.height
            except psycopg.errors.UniqueViolation:
                pass
        # COPY into a temporary table, then one INSERT ... SELECT that applies the conflict rule.
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS tmp_{table} (LIKE {table} INCLUDING DEFAULTS) "
                    "ON COMMIT DELETE ROWS")
        copy_into(f"tmp_{table}")
        cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM tmp_{table} {conflict}")
        written = cur.rowcount
        cur.execute(f"DELETE FROM tmp_{table}")
        return written

    @contextmanager
    def indexes_deferred(self, cur, table: str) -> Iterator[None]:
        """Drop `table`'s secondary indexes for a bulk insert and build them again after it, in
        `cur`'s transaction: building an index over the filled table is far cheaper than keeping
        it up to date row by row."""
        indexes = [s for s in self._schema if s.startswith("CREATE INDEX") and f" ON {table} (" in s]
        for statement in indexes:
            cur.execute(f"DROP INDEX {statement.split()[5]}")  # CREATE INDEX IF NOT EXISTS <name>
        yield
        for statement in indexes:
            cur.execute(statement)

    def create_schema(self) -> None:
        """Create the tables, or check that an existing database has this schema version."""
        types = _TYPES[self.dialect]
        with self.transaction() as cur:
            for statement in self._schema:
                cur.execute(statement.format(**types))
            rows = self.execute("SELECT value FROM meta WHERE key = 'schema_version'", (), cur)
            if not rows:
                self.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),), cur)
            elif int(rows[0][0]) != SCHEMA_VERSION:
                raise RuntimeError(f"{self.url}: schema version {rows[0][0]}, this socialcredit "
                                   f"needs {SCHEMA_VERSION} and has no migration from it")

    def get_meta(self, key: str, default: str | None = None, cur=None) -> str | None:
        """A value from the meta table."""
        rows = self.execute("SELECT value FROM meta WHERE key = ?", (key,), cur)
        return rows[0][0] if rows else default

    def set_meta(self, cur, key: str, value: str) -> None:
        """Set a value in the meta table."""
        self.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value), cur)
