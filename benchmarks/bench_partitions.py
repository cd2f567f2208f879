"""Issue #14, item 7 (the live service): one PostgreSQL database, its ledger projected by one
`socialcredit serve` process, then split into two partitions by citizen and projected by two
processes (`serve --partition 0/2` and `1/2`), on the same events.

For each: the bulk ingest's batches sent to the processes in turn (`wait=false`), the rate at which
they were acknowledged and the rate at which every partition's scores caught up (the inbox empty),
beside a bare PostgreSQL COPY of the same rows measured in the same run; then look-ups of random
citizens from 64 connections spread over the processes. Printed: events/s and look-ups/s with one
and two processes and the speed-up, the figures the README's national sizing starts from.
Run with `python benchmarks/bench_partitions.py [--db URL --events N --citizens M]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import psycopg
from bench_load import drop_pg_schema, fresh_pg_schema
from bench_service import PURPOSE, _client, bench_ingest, free_port, make_bodies, pg_copy_ceiling, wait_until_up

from socialcredit.events import validate_events
from socialcredit.policy import load_policy
from socialcredit.service import Database, create_key

DEFAULT_DB = os.environ.get("SOCIALCREDIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def start(url: str, partition: str | None, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "socialcredit"), "serve", "--db", url, "--port",
                             str(port), "--policy", "taz-2018", "--day", "365",
                             *([] if partition is None else ["--partition", partition])],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    return proc, wait_until_up(proc, port, f"serve {partition or ''}")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MiB (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def ingest(urls: list[str], key: str, bodies: list[bytes], db_url: str) -> dict:
    """Send the bodies, each process in turn; time the acknowledgements, then until the inbox is empty
    (every batch projected into every partition: read from the database, not through a process, whose
    statistics would count the tables again at every look while partitions move)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        def caught_up() -> int | None:
            if conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]:
                return None
            return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]

        return bench_ingest(urls, key, bodies, caught_up=caught_up)


def lookups(urls: list[str], key: str, ids: list[str], *, concurrency: int, seconds: float) -> dict:
    """Look-ups from `concurrency` connections, spread over the processes."""
    latencies: list[float] = []
    status: dict[int, int] = {}

    async def run() -> float:
        end = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(
            _client("127.0.0.1", int(urls[i % len(urls)].rsplit(":", 1)[1]), key,
                    [f"/api/citizens/{c}" for c in ids[i::concurrency]], end, latencies, status)
            for i in range(concurrency)))
        return time.perf_counter() - t0

    elapsed = asyncio.run(run())
    lat = np.array(latencies) * 1000
    return {"rps": len(lat) / elapsed, "p99_ms": float(np.percentile(lat, 99)), "status": status}


def measure(base: str, processes: int, bodies: list[bytes], args, folder: Path) -> dict:
    schema, url = fresh_pg_schema(base)
    procs = []
    try:
        db = Database.open(url, partitions=processes)
        sender = create_key(db, role="agency", name="bench-agency", sources=sorted(
            {(r.sources or ["camera"])[0] for r in load_policy("taz-2018").rules}))
        bank = create_key(db, role="bank", name="bench-bank")
        db.close()
        names = [None] if processes == 1 else [f"{p}/{processes}" for p in range(processes)]
        started = [start(url, name, folder / f"serve-{processes}-{i}.log") for i, name in enumerate(names)]
        procs = [p for p, _ in started]
        urls = [u for _, u in started]
        result = ingest(urls, sender, bodies, url)
        with psycopg.connect(url) as conn:
            result["citizens"] = conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        result["rss_mb"] = [rss_mb(p.pid) for p in procs]
        ids = [str(i) for i in np.random.default_rng(2).integers(0, args.citizens, 4000)]
        with httpx.Client(base_url=urls[0], headers={"Authorization": f"Bearer {bank}", "X-Purpose": PURPOSE}) as c:
            ids = [i for i in ids[:1000] if c.get(f"/api/citizens/{i}").status_code == 200]
        result["lookups"] = lookups(urls, bank, ids, concurrency=args.concurrency, seconds=args.seconds)
        return result
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        drop_pg_schema(base, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default=DEFAULT_DB, help="PostgreSQL URL (a fresh schema of it is used)")
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    bodies = make_bodies(args.events, args.batch, args.citizens)
    rows = validate_events(pl.concat([pl.read_ndjson(b) for b in bodies]))
    load = os.getloadavg()
    copy_rate = len(rows) / pg_copy_ceiling(rows, args.db, batch=args.batch)
    with tempfile.TemporaryDirectory(prefix="sc-bench-partitions-") as tmp:
        one = measure(args.db, 1, bodies, args, Path(tmp))
        two = measure(args.db, 2, bodies, args, Path(tmp))
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} at the start; database: PostgreSQL "
          f"({args.db.split('?')[0]}); {len(rows):,} events in batches of {args.batch:,}, {args.citizens:,} citizens")
    print(f"bare PostgreSQL COPY (ceiling, same rows, a commit per batch): {copy_rate:,.0f} events/s")
    rates = {}
    for name, r in (("1 process  (unsplit ledger)   ", one), ("2 processes (2 partitions)   ", two)):
        rates[name] = r["events"] / r["scored_s"]
        looks = r["lookups"]
        print(f"  {name}: acknowledged {r['events'] / r['ack_s']:>9,.0f} events/s; scored {rates[name]:>9,.0f} "
              f"events/s (ratio to COPY {rates[name] / copy_rate:.2f}); look-ups {looks['rps']:>7,.0f} req/s, "
              f"p99 {looks['p99_ms']:.1f} ms, status {looks['status']}; resident memory "
              f"{' + '.join(f'{m:,.0f}' for m in r['rss_mb'])} MiB for {r['citizens']:,} scored citizens")
    first, second = rates.values()
    print(f"  speed-up of the projection with 2 processes: {second / first:.2f}x; look-ups: "
          f"{two['lookups']['rps'] / one['lookups']['rps']:.2f}x ({os.cpu_count()} cores shared with PostgreSQL "
          "and the load generator)")


if __name__ == "__main__":
    main()
