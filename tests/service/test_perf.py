"""The service benchmark, small, against a real server process: it runs and loses nothing."""

import importlib.util
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

import polars as pl

from socialcredit.policy import load_policy
from socialcredit.service import Database, create_key

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import one another, as when run from there
_spec = importlib.util.spec_from_file_location("bench_service", BENCHMARKS / "bench_service.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_bulk_ingest_and_lookups_through_a_real_server(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/bench.db"
    db = Database.open(url)
    sender = create_key(db, role="agency", name="a", sources=sorted(
        {(r.sources or ["camera"])[0] for r in load_policy("taz-2018").rules}))
    bank = create_key(db, role="bank", name="b")
    db.close()
    bodies = bench.make_bodies(30_000, 10_000, 5_000)
    proc, base = bench.start_server(url, log=tmp_path / "server.log")
    try:
        ingest = bench.bench_ingest(base, sender, bodies, clients=2)
        ids = [str(i) for i in range(200)]
        looks = bench.bench_lookups(base, bank, ids, concurrency=16, seconds=1.5)  # wrk where installed
        python = bench.bench_lookups(base, bank, ids, concurrency=8, seconds=1.0, generator="python")
        # The steady sender keeps to its rate with new events (ids after the bulk's).
        steady = bench.make_bodies(20_000, 2_000, 5_000, seed=7, first_id=30_000)
        stop, sent = threading.Event(), [0]
        feeder = threading.Thread(target=bench.steady_sender, args=(steady, base, sender, 4_000, 2_000, stop, sent))
        started = time.perf_counter()
        feeder.start()
        time.sleep(1.5)
        stop.set()
        feeder.join()
        assert 0 < sent[0] <= 4_000 * (time.perf_counter() - started) + 2_000
    finally:
        proc.terminate()
        proc.wait()
    # The peers and ceilings answer the same questions: the bare FastAPI app the same look-ups.
    peer, peer_url = bench.start_bare_fastapi(str(tmp_path / "bench.db"), tmp_path)
    try:
        bare = bench.bench_lookups(peer_url, bank, ids, concurrency=8, seconds=1.0, generator="python")
    finally:
        peer.terminate()
        peer.wait()
    assert bare["requests"] > 50 and set(bare["status"]) == {200}
    assert bench.blob_ceiling(bodies, tmp_path / "blobs.db") > 0
    rows = pl.concat([pl.read_ndjson(b) for b in bodies])
    assert bench.bare_insert(rows, tmp_path / "bare.db", batch=10_000)[0] == 30_000
    assert ingest["events"] == 30_000
    for result in (looks, python):
        assert result["requests"] > 50 and set(result["status"]) == {200}
        assert result["status"][200] == result["requests"] and 0 < result["p50_ms"] <= result["p99_ms"]
    assert python["generator"].startswith("python")
    assert looks["generator"] == ("wrk" if os.access(bench.WRK, os.X_OK) else python["generator"])
    # Every look-up was logged (the server was stopped cleanly: the queued rows were written).
    with sqlite3.connect(tmp_path / "bench.db-log") as conn:
        logged = conn.execute("SELECT COUNT(*) FROM lookups WHERE key_name = 'b'").fetchone()[0]
    assert logged >= looks["requests"] + python["requests"]
    with capsys.disabled():
        print(f"\n  ingest {30_000 / ingest['ack_s']:,.0f} events/s acknowledged, "
              f"{30_000 / ingest['scored_s']:,.0f} scored; look-ups {looks['rps']:,.0f} req/s, "
              f"p99 {looks['p99_ms']:.1f} ms at 16 clients ({looks['generator']})")
