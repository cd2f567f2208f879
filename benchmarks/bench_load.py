"""`socialcredit db load` throughput beside the bare ceiling, measured in the same run.

Simulates the demo-sized run (100,000 citizens x 365 days, seed 2018, every event kind), loads it
into a fresh SQLite database (and, with --pg URL, into a fresh schema of that PostgreSQL database)
and reports events/s of the whole load: citizens, events, scores, class histories. The ceiling is
a bare SQLite executemany of the same event rows, in one transaction, into a table with the ledger's
columns and neither key nor index (one append per row), in WAL mode with synchronous=FULL (the
service's settings), and no other work.
Run with `python benchmarks/bench_load.py [--population N --days D --pg URL]`.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl

from socialcredit.events import event_sql_columns, validate_events
from socialcredit.service import Service
from socialcredit.simulation import Run


def simulate(out: Path, population: int, days: int) -> Path:
    """Write the run to `out` with the CLI; return its folder."""
    exe = Path(sys.executable).parent / "socialcredit"
    subprocess.run([str(exe), "simulate", "--population", str(population), "--days", str(days), "--seed", "2018",
                    "--events", "all", "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


def time_load(run_dir: Path, url: str) -> tuple[int, float]:
    """Events loaded and seconds taken by `load_run` into the (fresh) database at `url`."""
    service = Service.open(url, Run.open(run_dir).state_policy())
    try:
        started = time.perf_counter()
        loaded = service.load_run(run_dir)
        return loaded["events"], time.perf_counter() - started
    finally:
        service.close()


def time_ceiling(run_dir: Path, path: Path) -> tuple[int, float]:
    """Events and seconds of a bare executemany of the run's events into SQLite, committed."""
    return bare_insert(validate_events(pl.read_parquet(run_dir / "events.parquet")), path)


def bare_insert(events: pl.DataFrame, path: Path, *, batch: int | None = None) -> tuple[int, float]:
    """Events and seconds of a bare executemany of `events` (checked event rows) into a new SQLite
    file's table with the ledger's columns, no key and no index, WAL and synchronous=FULL, committed
    every `batch` rows (default: once)."""
    events = events.with_columns(batch=pl.lit(0, pl.Int64))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE events (" + event_sql_columns("REAL")
                 + ", batch BIGINT NOT NULL, voided INTEGER NOT NULL DEFAULT 0)")
    sql = f"INSERT INTO events ({', '.join(events.columns)}) VALUES ({', '.join('?' * events.width)})"
    started = time.perf_counter()
    for part in events.iter_slices(batch or max(events.height, 1)):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, zip(*(column.to_list() for column in part.get_columns()), strict=True))
        conn.commit()
    seconds = time.perf_counter() - started
    conn.close()
    return events.height, seconds


def fresh_pg_schema(base: str) -> tuple[str, str]:
    """A new schema in the PostgreSQL database at `base`: its name and a URL searching it."""
    import psycopg

    schema = f"bench_load_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema, f"{base}?options=-csearch_path%3D{schema}"


def drop_pg_schema(base: str, schema: str) -> None:
    """Drop the benchmark's schema."""
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--pg", help="also load into a fresh schema of this PostgreSQL database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_dir = simulate(tmp / "run", args.population, args.days)
        n, ceiling = time_ceiling(run_dir, tmp / "bare.db")
        print(f"bare SQLite executemany (ceiling): {n:,} events in {ceiling:.2f} s = {n / ceiling:,.0f} events/s")
        n, seconds = time_load(run_dir, f"sqlite:///{tmp / 'load.db'}")
        print(f"db load, SQLite:     {n:,} events in {seconds:.2f} s = {n / seconds:,.0f} events/s "
              f"({ceiling / seconds:.2f} of the ceiling)")
        if args.pg:
            schema, url = fresh_pg_schema(args.pg)
            try:
                n, seconds = time_load(run_dir, url)
            finally:
                drop_pg_schema(args.pg, schema)
            print(f"db load, PostgreSQL: {n:,} events in {seconds:.2f} s = {n / seconds:,.0f} events/s "
                  f"({ceiling / seconds:.2f} of the SQLite ceiling)")


if __name__ == "__main__":
    main()
