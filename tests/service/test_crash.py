"""Crash safety: SIGKILL the server amid a stream of batches; every acknowledged event survives once."""

import sqlite3
import threading
import time

import httpx
import polars as pl

from socialcredit.engine import score_ledger
from socialcredit.events import validate_events
from socialcredit.policy import load_policy
from socialcredit.service import Database, create_key
from socialcredit.service._lookups import PLACE_TYPES

from .conftest import auth

BATCH = 2000


def batch(n: int) -> list[dict]:
    """Hand-made batches: the crash test needs many batches that say which batch each event is of."""
    return [{"event_id": f"b{n}-{i}", "citizen_id": f"c-{(n * 7 + i) % 500}", "kind": "traffic.red_light",
             "day": 1 + i % 50, "source": "camera", "source_ref": PLACE_TYPES[i % 3]}
            for i in range(BATCH)]


def test_sigkill_loses_no_acknowledged_event_and_leaves_no_partial_batch(tmp_path, server_factory):
    url = f"sqlite:///{tmp_path}/crash.db"
    db = Database.open(url)
    key = create_key(db, role="agency", name="agency", sources=["camera"])
    db.close()
    server = server_factory(url)
    server.start()
    acked: list[int] = []
    sent: list[int] = []
    stop = threading.Event()

    def stream():
        with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as client:
            n = 0
            while not stop.is_set():
                sent.append(n)
                try:
                    r = client.post("/api/events", json=batch(n), params={"wait": n % 2 == 0})
                except httpx.TransportError:
                    return
                assert r.status_code in (200, 202), r.text
                acked.append(n)
                if n == 3:  # a re-sent acknowledged batch must not count twice
                    assert client.post("/api/events", json=batch(0)).status_code == 200
                n += 1

    sender = threading.Thread(target=stream)
    sender.start()
    while len(acked) < 12:
        time.sleep(0.01)
    server.kill()  # SIGKILL while the stream goes on
    stop.set()
    sender.join()
    assert len(sent) > len(acked) or sent[-1] == acked[-1]

    server.start()
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as client:
        deadline = time.monotonic() + 60
        while client.get("/api/stats").json()["pending_batches"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    server.stop()

    with sqlite3.connect(tmp_path / "crash.db") as conn:
        stored = pl.DataFrame(conn.execute("SELECT event_id, citizen_id, kind, day, source, source_ref, "
                                           "confidence FROM events").fetchall(), orient="row",
                              schema=["event_id", "citizen_id", "kind", "day", "source", "source_ref", "confidence"])
        scores = pl.DataFrame(conn.execute("SELECT citizen_id, score, class FROM scores").fetchall(),
                              orient="row", schema=["citizen_id", "score", "class"])
    per_batch = stored.group_by(pl.col("event_id").str.extract(r"^b(\d+)-").cast(pl.Int64).alias("b")).len()
    counts = dict(per_batch.iter_rows())
    for n in acked:
        assert counts.get(n) == BATCH, f"acknowledged batch {n} has {counts.get(n)} of {BATCH} events"
    for n in set(sent) - set(acked):
        assert counts.get(n, 0) in (0, BATCH), f"partial batch {n}: {counts.get(n)} events"
    assert stored["event_id"].is_unique().all()
    expected = score_ledger(load_policy("taz-2018"), validate_events(stored), as_of=100).scores
    assert scores.sort("citizen_id").equals(expected.with_columns(pl.col("class").cast(pl.String)))

