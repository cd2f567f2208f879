"""Crash safety: SIGKILL the server amid a stream of batches, every acknowledged event survives once;
amid look-ups on PostgreSQL, every answered look-up is logged once."""

import sqlite3
import threading
import time

import httpx
import polars as pl

from socialcredit.engine import score_ledger
from socialcredit.events import validate_events
from socialcredit.policy import load_policy
from socialcredit.service import Database, _lookup_log, create_key
from socialcredit.service._lookups import PLACE_TYPES

from .conftest import CITIZEN, auth, event

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



def test_sigkill_loses_no_answered_lookup_on_postgresql_with_two_servers(pg_url, tmp_path, server_factory,
                                                                          monkeypatch):
    """Two servers on one PostgreSQL database answer look-ups from many clients; each is killed while
    answering (one while the other runs on), both restart at once; every answered look-up is
    logged exactly once."""
    monkeypatch.setenv(_lookup_log.STATE_DIR_ENV, str(tmp_path / "state"))  # inherited by the servers
    db = Database.open(pg_url)
    agency = create_key(db, role="agency", name="agency", sources=["camera"])
    bank = create_key(db, role="bank", name="bank")
    first, second = server_factory(pg_url), server_factory(pg_url)
    first.start()
    second.start()
    r = httpx.post(first.url + "/api/events", json=[event(1)], headers=auth(agency), timeout=30)
    assert r.status_code == 200, r.text
    sent: list[str] = []
    answered: list[str] = []

    def look(server, client_no: int):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            n = 0
            while True:
                purpose = f"{server.port}-{client_no}-{n}"
                sent.append(purpose)
                try:
                    r = client.get(f"/api/citizens/{CITIZEN}", headers=auth(bank, purpose))
                except httpx.TransportError:
                    return
                assert r.status_code == 200, r.text
                answered.append(purpose)
                n += 1

    lookers = [threading.Thread(target=look, args=(server, i)) for server in (first, second) for i in range(8)]
    for t in lookers:
        t.start()

    def kill_after(server, count: int) -> None:
        while len(answered) < count:
            time.sleep(0.005)
        server.kill()  # SIGKILL between two group commits of the log, most likely

    kill_after(first, 300)
    kill_after(second, len(answered) + 150)  # alone now; its look-ups while the other was down
    for t in lookers:
        t.join()
    starting = [threading.Thread(target=server.start) for server in (first, second)]
    for t in starting:  # at once: each crashed journal must still be replayed once
        t.start()
    for t in starting:
        t.join()
    first.stop()
    second.stop()

    logged = [p for (p,) in db.execute("SELECT purpose FROM lookups WHERE key_name = 'bank'")]
    db.close()
    missing = set(answered) - set(logged)
    assert not missing, f"{len(missing)} of {len(answered)} answered look-ups are not in the log"
    assert len(logged) == len(set(logged)), "a look-up was logged twice"
    assert set(logged) <= set(sent)
    assert not list((tmp_path / "state").rglob("*.journal"))  # clean stops leave no journal
