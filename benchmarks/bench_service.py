"""Live-service throughput with a real server process (`socialcredit serve`) and a load generator,
each figure beside its ceiling or peer measured in the same run.

Bulk ingest: NDJSON batches sent by a few clients with `wait=false`; reports the acknowledged
(durable) rate beside one blob per batch committed (the least an acknowledgement can cost), and
the rate at which the scores caught up (projected and scored) beside a bare executemany of the same
rows into a table with the ledger's columns, no key and no index (WAL, synchronous=FULL, a commit
per batch). Look-ups: GET /api/citizens/{id} from 64 concurrent clients for a fixed time; requests/s,
p50 and p99 latency, beside a bare FastAPI app that answers the same path from the same scores
table; then again while senders keep up a steady ingest (100,000 events/s from 4 by default). The
look-up load comes from `wrk` (a C load generator, cheap next to the server on a small machine)
where it is installed, else from a Python asyncio client in this process; the output says which.
Run with `python benchmarks/bench_service.py [--events N --citizens M --db URL --generator G]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import polars as pl
from bench_load import bare_insert, drop_pg_schema, fresh_pg_schema

from socialcredit.events import event_sql_columns, validate_events
from socialcredit.policy import load_policy
from socialcredit.service import Database, create_key

# Third parties state a purpose where the policy's grant requires one (taz-2018: banks do).
PURPOSE = "benchmark"
WRK = "/usr/bin/wrk"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_url: str, *, policy: str = "taz-2018", day: int = 365, log: Path | None = None):
    """Start `socialcredit serve` and wait until it answers; return (process, base URL)."""
    port = free_port()
    exe = Path(sys.executable).parent / "socialcredit"
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([str(exe), "serve", "--db", db_url, "--port", str(port), "--policy", policy,
                             "--day", str(day)], stdout=out, stderr=subprocess.STDOUT)
    return proc, wait_until_up(proc, port, "socialcredit serve")


def wait_until_up(proc: subprocess.Popen, port: int, what: str) -> str:
    """The base URL of the server `proc` on `port` once it answers (killed if it does not in 60 s)."""
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited during start")
        try:
            httpx.get(url + "/openapi.json", timeout=1)
            return url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not start")


def make_bodies(n_events: int, batch: int, n_citizens: int, *, policy: str = "taz-2018", seed: int = 1,
                day: int = 365, first_id: int = 0) -> list[bytes]:
    """NDJSON bodies of synthetic events, every kind of the policy, camera events among them."""
    rules = load_policy(policy).rules
    rng = np.random.default_rng(seed)
    kinds = [r.kind for r in rules]
    sources = [(r.sources or ["camera"])[0] for r in rules]
    k = rng.integers(0, len(kinds), n_events)
    frame = pl.DataFrame({
        "event_id": pl.Series(np.arange(first_id, first_id + n_events)).cast(pl.String).str.zfill(10),
        "citizen_id": pl.Series(rng.integers(0, n_citizens, n_events)).cast(pl.String),
        "kind": pl.Series(k).replace_strict(dict(enumerate(kinds)), return_dtype=pl.String),
        "day": rng.integers(0, day + 1, n_events),
        "source": pl.Series(k).replace_strict(dict(enumerate(sources)), return_dtype=pl.String),
        "source_ref": pl.Series(rng.integers(0, 500, n_events)).cast(pl.String).map_elements(
            lambda n: f"cam-rc-{('subway', 'mall', 'street')[int(n) % 3]}-{n}", return_dtype=pl.String),
        "confidence": np.round(rng.uniform(0.6, 1.0, n_events), 3),
    })
    return [frame.slice(i, batch).write_ndjson().encode() for i in range(0, n_events, batch)]


def bench_ingest(url: str | list[str], key: str, bodies: list[bytes], *, clients: int = 2,
                 caught_up=None) -> dict:
    """Send every body (from `clients` threads, each to one of the servers at `url` in turn); time until
    all are acknowledged, then until the scores caught up: `caught_up()` returns the events stored once
    they have, None while not (default: as /api/stats says)."""
    urls = [url] if isinstance(url, str) else url
    queue = list(enumerate(bodies))
    lock = threading.Lock()
    errors: list[str] = []

    def worker(url: str):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as c:
            while True:
                with lock:
                    if not queue:
                        return
                    _, body = queue.pop(0)
                r = c.post("/api/events", content=body, params={"wait": "false"},
                           headers={"Content-Type": "application/x-ndjson"})
                if r.status_code not in (200, 202):
                    errors.append(r.text[:300])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(urls[i % len(urls)],)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_ack = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} batches refused: {errors[0]}")
    with httpx.Client(base_url=urls[0], headers={"Authorization": f"Bearer {key}"}, timeout=600) as c:
        def from_stats() -> int | None:
            # /api/stats is kept up to date by the writes (its first call counts the tables once).
            stats = c.get("/api/stats").json()
            return None if stats["pending_batches"] else stats["events"]

        while (events := (caught_up or from_stats)()) is None:
            time.sleep(0.2)
    return {"events": events, "ack_s": t_ack, "scored_s": time.perf_counter() - t0}


async def _client(host: str, port: int, key: str, paths: list[str], end: float,
                  latencies: list[float], status: dict[int, int]) -> None:
    """One keep-alive HTTP/1.1 connection sending GETs back to back (raw asyncio streams: httpx's
    async pool, not the server, is the bottleneck at 64 connections)."""
    reader, writer = await asyncio.open_connection(host, port)
    n = 0
    while time.perf_counter() < end:
        request = (f"GET {paths[n % len(paths)]} HTTP/1.1\r\nHost: {host}\r\n"
                   f"Authorization: Bearer {key}\r\nX-Purpose: {PURPOSE}\r\n\r\n").encode()
        t = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - t)
        code = int(head.split(b" ", 2)[1])
        status[code] = status.get(code, 0) + 1
        n += 1
    writer.close()


async def _lookups(url: str, key: str, ids: list[str], concurrency: int, seconds: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    status: dict[int, int] = {}
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    await asyncio.gather(*(
        _client(host, int(port), key, [f"/api/citizens/{c}" for c in ids[i::concurrency]], end, latencies, status)
        for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"requests": len(lat), "rps": len(lat) / elapsed, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "status": status}


# wrk: each thread walks the citizen ids from its own offset; `done` prints one JSON line with the
# totals, the latency percentiles (microseconds) and the status codes of every thread.
_WRK_SCRIPT = """
wrk.headers["Authorization"] = "Bearer " .. %(key)s
wrk.headers["X-Purpose"] = %(purpose)s
local ids = {%(ids)s}
local threads = {}
local n = 0
function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end
function init(args)
  n = offset
  statuses = {}
end
function request()
  n = n + 1
  return wrk.format("GET", "/api/citizens/" .. ids[(n %% #ids) + 1])
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local totals, codes = {}, {}
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses")) do
      totals[code] = (totals[code] or 0) + count
    end
  end
  for code, count in pairs(totals) do
    table.insert(codes, string.format('"%%d": %%d', code, count))
  end
  io.write(string.format('WRK {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"errors": %%d, "status": {%%s}}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, table.concat(codes, ", ")))
end
"""


def _lua(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII text is a valid Lua string literal


def wrk_lookups(url: str, key: str, ids: list[str], *, concurrency: int = 64, seconds: float = 10.0,
                threads: int = 2) -> dict:
    """GET /api/citizens/{id} from `concurrency` wrk connections for `seconds`."""
    with tempfile.TemporaryDirectory(prefix="sc-wrk-") as tmp:
        script = Path(tmp) / "lookups.lua"
        script.write_text(_WRK_SCRIPT % {"key": _lua(key), "purpose": _lua(PURPOSE),
                                          "ids": ", ".join(_lua(i) for i in ids)})
        # wrk takes whole seconds.
        cmd = [WRK, f"-t{min(threads, concurrency)}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
               "--latency", "-s", str(script), url]
        out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr or out.stdout}")
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("WRK "))
    result = json.loads(line[4:])
    return {"requests": result["requests"], "rps": result["requests"] / (result["duration_us"] / 1e6),
            "p50_ms": result["p50_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
            "status": {int(code): n for code, n in result["status"].items()}, "generator": "wrk",
            "socket_errors": result["errors"], "wrk_output": out.stdout}


def bench_lookups(url: str, key: str, ids: list[str], *, concurrency: int = 64, seconds: float = 10.0,
                  generator: str = "auto") -> dict:
    """GET /api/citizens/{id} from `concurrency` clients for `seconds`, with wrk where installed
    (generator "auto" or "wrk") or the Python client ("python")."""
    if generator == "wrk" or (generator == "auto" and os.access(WRK, os.X_OK)):
        return wrk_lookups(url, key, ids, concurrency=concurrency, seconds=seconds)
    # A thread of its own: the caller's thread may already run an event loop (pytest with playwright).
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(asyncio.run, _lookups(url, key, ids, concurrency, seconds)).result()
    return result | {"generator": "python (asyncio, in the benchmark process)"}


# The peer of the service's look-up: FastAPI answering the same path from the same scores table,
# with nothing else (no key, no grant, no log).
_BARE_APP = """
import os, sqlite3, threading
from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()
_local = threading.local()


def _conn():
    if not hasattr(_local, "conn"):
        _local.conn = sqlite3.connect(os.environ["BARE_DB"], check_same_thread=False)
    return _local.conn


@app.get("/api/citizens/{citizen_id}")
def citizen(citizen_id: str):
    row = _conn().execute("SELECT score, class FROM scores WHERE citizen_id = ?", (citizen_id,)).fetchone()
    if row is None:
        return JSONResponse({"error": "no such citizen"}, status_code=404)
    return JSONResponse({"citizen_id": citizen_id, "score": row[0], "class": row[1]})
"""


def start_bare_fastapi(db_path: str, folder: Path):
    """Start the bare FastAPI peer under uvicorn (one process, as `serve`); return (process, URL)."""
    (folder / "bare_app.py").write_text(_BARE_APP)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level",
                             "warning"], cwd=folder, env={**os.environ, "BARE_DB": db_path},
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return proc, wait_until_up(proc, port, "the bare FastAPI app")


def blob_ceiling(bodies: list[bytes], path: Path) -> float:
    """Seconds to commit each body as one blob (WAL, synchronous=FULL): the least an acknowledgement costs."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE inbox (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    started = time.perf_counter()
    for body in bodies:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO inbox (body) VALUES (?)", (body,))
        conn.commit()
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def pg_copy_ceiling(events: pl.DataFrame, url: str, *, batch: int) -> float:
    """Seconds to COPY `events` (checked event rows) into a PostgreSQL table with the ledger's columns
    and primary key (a fresh schema of the database at `url`), committed every `batch` rows, in CSV as
    the service sends its rows: the least a projection into PostgreSQL costs."""
    import psycopg

    schema, schema_url = fresh_pg_schema(url)
    events = events.with_columns(batch=pl.lit(0, pl.Int64))
    copy_sql = f"COPY events ({', '.join(events.columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
    try:
        with psycopg.connect(schema_url) as conn:
            conn.execute("CREATE TABLE events (" + event_sql_columns("DOUBLE PRECISION")
                         + ", batch BIGINT NOT NULL, voided INTEGER NOT NULL DEFAULT 0)")
            conn.commit()
            started = time.perf_counter()
            for part in events.iter_slices(batch):
                with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                    copy.write(part.write_csv(include_header=False, null_value="\\N", quote_style="non_numeric"))
                conn.commit()
            return time.perf_counter() - started
    finally:
        drop_pg_schema(url, schema)


def steady_sender(bodies: list[bytes], url: str, key: str, rate: float, batch: int, stop: threading.Event,
                  sent: list[int]) -> None:
    """Send `bodies` (of `batch` events each) at `rate` events a second until `stop` (sent again from the
    first when all were sent); count the events in `sent` (this sender's own)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as c:
        started, n = time.perf_counter(), 0
        while not stop.is_set():
            body = bodies[n % len(bodies)]
            r = c.post("/api/events", content=body, params={"wait": "false"},
                       headers={"Content-Type": "application/x-ndjson"})
            if r.status_code not in (200, 202):
                raise RuntimeError(r.text[:300])
            n += 1
            sent[0] += batch
            ahead = started + n * batch / rate - time.perf_counter()
            if ahead > 0:
                stop.wait(ahead)


def main() -> None:
    """Run both benchmarks against a fresh database and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=2, help="concurrent ingest clients")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent look-up clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="look-up run time")
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                        help=f"look-up load generator (auto: {WRK} where installed, else python)")
    parser.add_argument("--ingest-rate", type=float, default=100_000,
                        help="events/s sent while the look-ups are measured again")
    parser.add_argument("--ingest-clients", type=int, default=4, help="senders sharing that rate")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="sc-bench-")
    postgres = bool(args.db) and args.db.startswith(("postgresql://", "postgres://"))
    # PostgreSQL: the service's tables in a fresh schema of that database, dropped at the end.
    pg_schema, url = fresh_pg_schema(args.db) if postgres else (None, args.db or f"sqlite:///{tmp}/bench.db")
    db = Database.open(url)
    sender = create_key(db, role="agency", name="bench-agency", sources=sorted(
        {(r.sources or ["camera"])[0] for r in load_policy("taz-2018").rules}))
    bank = create_key(db, role="bank", name="bench-bank")
    db.close()
    bodies = make_bodies(args.events, args.batch, args.citizens)
    load = os.getloadavg()
    # The ceilings first, on the same rows and bodies, while the machine is otherwise as quiet.
    rows = validate_events(pl.concat([pl.read_ndjson(b) for b in bodies]))
    _, bare_s = bare_insert(rows, Path(tmp) / "bare.db", batch=args.batch)
    copy_s = pg_copy_ceiling(rows, args.db, batch=args.batch) if postgres else None
    blob_s = blob_ceiling(bodies, Path(tmp) / "blobs.db")
    proc, base = start_server(url, log=Path(tmp) / "server.log")
    bare = None
    try:
        ingest = bench_ingest(base, sender, bodies, clients=args.clients)
        ids = [str(i) for i in np.random.default_rng(2).integers(0, args.citizens, 10_000)]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {bank}", "X-Purpose": PURPOSE}) as c:
            ids = [i for i in ids[:2000] if c.get(f"/api/citizens/{i}").status_code == 200]
        looks = bench_lookups(base, bank, ids, concurrency=args.concurrency, seconds=args.seconds,
                              generator=args.generator)
        stop, senders = threading.Event(), args.ingest_clients
        steady = make_bodies(int(args.ingest_rate * (args.seconds + 5)), 10_000, args.citizens, seed=7,
                             first_id=args.events)  # new events: ids after the bulk's
        # Several senders, as several agencies: one waits for each answer, and its body streams in
        # between 64 connections' look-ups, so one alone falls short of the rate asked.
        counts = [[0] for _ in range(senders)]
        feeders = [threading.Thread(target=steady_sender, args=(steady[i::senders], base, sender,
                                                                args.ingest_rate / senders, 10_000, stop, counts[i]))
                   for i in range(senders)]
        for feeder in feeders:
            feeder.start()
        time.sleep(1.0)  # the senders at their pace
        counted, fed_from = sum(n for n, in counts), time.perf_counter()
        busy = bench_lookups(base, bank, ids, concurrency=args.concurrency, seconds=args.seconds,
                             generator=args.generator)
        fed = (sum(n for n, in counts) - counted) / (time.perf_counter() - fed_from)
        stop.set()
        for feeder in feeders:
            feeder.join()
        if not args.db:
            bare, bare_url = start_bare_fastapi(f"{tmp}/bench.db", Path(tmp))
            peer = bench_lookups(bare_url, bank, ids, concurrency=args.concurrency, seconds=args.seconds,
                                 generator=args.generator)
    finally:
        proc.terminate()
        proc.wait()
        if bare is not None:
            bare.terminate()
            bare.wait()
        if not args.db:
            shutil.rmtree(tmp, ignore_errors=True)
        if pg_schema is not None:
            drop_pg_schema(args.db, pg_schema)
    n = ingest["events"]
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} at the start; "
          f"database: {'SQLite (WAL, synchronous=FULL)' if not args.db else url}")
    print(f"bulk ingest: {n:,} events in batches of {args.batch:,} from {args.clients} clients, "
          f"{args.citizens:,} citizens")
    blob_rate, bare_rate = len(rows) / blob_s, len(rows) / bare_s
    ack_rate, scored_rate = n / ingest["ack_s"], n / ingest["scored_s"]
    print(f"  acknowledged (durable): {ingest['ack_s']:7.2f} s  {ack_rate:>10,.0f} events/s; one blob per batch "
          f"(ceiling) {blob_rate:,.0f}/s: ratio {ack_rate / blob_rate:.2f}")
    print(f"  scored (caught up)    : {ingest['scored_s']:7.2f} s  {scored_rate:>10,.0f} events/s; bare SQLite "
          f"executemany (ceiling) {bare_rate:,.0f}/s: ratio {scored_rate / bare_rate:.2f} (target 0.8)")
    if copy_s is not None:
        copy_rate = len(rows) / copy_s
        print(f"  {'':22s}   bare PostgreSQL COPY (ceiling, same rows, a commit per batch) {copy_rate:,.0f}/s: "
              f"ratio {scored_rate / copy_rate:.2f}")
    print(f"look-ups: {looks['requests']:,} requests from {args.concurrency} clients in {args.seconds:g} s: "
          f"{looks['rps']:,.0f} req/s, p50 {looks['p50_ms']:.1f} ms, p99 {looks['p99_ms']:.1f} ms, "
          f"status {looks['status']}")
    if bare is not None:
        print(f"  bare FastAPI (peer): {peer['rps']:,.0f} req/s, p50 {peer['p50_ms']:.1f} ms, "
              f"p99 {peer['p99_ms']:.1f} ms: ratio {looks['rps'] / peer['rps']:.2f} (target 0.9; p99 target 20 ms)")
    print(f"  while ingesting {fed:,.0f} events/s (asked {args.ingest_rate:,.0f}, {args.ingest_clients} senders): "
          f"{busy['rps']:,.0f} req/s, "
          f"p50 {busy['p50_ms']:.1f} ms, p99 {busy['p99_ms']:.1f} ms (target 50 ms)")
    print(f"  load generator: {looks['generator']}"
          + (f"; socket errors (connect, read, write, timeout): {looks['socket_errors']}"
             if looks.get("socket_errors") else ""))


if __name__ == "__main__":
    main()
