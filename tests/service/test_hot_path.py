"""The fast paths keep the service's behaviour: the lean look-up, the key cache, the asynchronous
look-up log, NDJSON parsing, the incremental statistics and the appeals list."""

import json
import sqlite3
import threading
import time

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient

from socialcredit.service import (
    Database,
    Forbidden,
    Invalid,
    Service,
    Unauthorized,
    authenticate,
    create_app,
    create_key,
    revoke_key,
)
from socialcredit.service._lookups import PLACE_TYPES

from .conftest import CITIZEN, DAY, auth, make_keys
from .conftest import handmade_event as event

ROLES_TO_TRY = ("citizen", "bank", "employer", "agency", "analyst", "airline")


def test_the_lean_lookup_answers_exactly_as_the_fastapi_route(send, client, keys):
    send([event(1), event(2, citizen="c-2", day=3)])
    app = client.app
    lean = app.lean_lookup
    cases = [(role, cid, purpose) for role in ROLES_TO_TRY for cid in (CITIZEN, "c-2", "nobody")
             for purpose in (None, "audit 7")]
    answers = {}
    for route in ("lean", "fastapi"):
        app.lean_lookup = lean if route == "lean" else None
        answers[route] = [
            (r.status_code, {k: v for k, v in r.json().items() if k != "day"}, r.headers["content-type"])
            for role, cid, purpose in cases
            for r in [client.get(f"/api/citizens/{cid}", headers=auth(keys[role], purpose))]]
        for secret in ("sc_unknown", ""):
            r = client.get(f"/api/citizens/{CITIZEN}", headers={"Authorization": f"Bearer {secret}"})
            answers[route].append((r.status_code, r.json(), r.headers["content-type"]))
    app.lean_lookup = lean
    assert answers["lean"] == answers["fastapi"]
    assert {status for status, _, _ in answers["lean"]} >= {200, 401, 403, 404}


def test_a_key_revoked_or_created_elsewhere_counts_at_the_next_request(service, client, tmp_path):
    url = f"/api/citizens/{CITIZEN}"
    other = Database.open(service.db.url)  # another connection, as `socialcredit keys` would be
    try:
        secret = create_key(other, role="bank", name="elsewhere")
        assert client.get(url, headers=auth(secret, "mortgage")).status_code == 404  # known key: no such citizen
        assert client.get(url, headers=auth(secret, "mortgage")).status_code == 404  # now from the cache
        revoke_key(other, "elsewhere")
        r = client.get(url, headers=auth(secret, "mortgage"))
        assert r.status_code == 401 and "was revoked" in r.json()["error"]
    finally:
        other.close()
    # On the same connection (its own commits do not change SQLite's data_version) as well.
    mine = create_key(service.db, role="bank", name="here")
    assert authenticate(service.db, mine).name == "here"
    revoke_key(service.db, "here")
    with pytest.raises(Unauthorized, match="revoked"):
        authenticate(service.db, mine)


def test_lookups_are_answered_before_their_log_commit_and_all_logged_at_a_clean_stop(make_service):
    service = make_service()
    keys = make_keys(service.db)
    bank = authenticate(service.db, keys["bank"])
    service.start()
    agency = authenticate(service.db, keys["agency"])
    service.ingest(agency, "\n".join(json.dumps(event(i, citizen=f"c-{i}")) for i in range(7)).encode())
    for i in range(300):
        service.lookup_json(bank, f"c-{i % 7}", "mortgage")
    service.stop()  # a clean stop writes what is queued
    rows = service.db.log.execute("SELECT citizen_id, key_name, role, purpose, fields, endpoint FROM lookups")
    assert len(rows) == 300
    assert set(rows) == {(f"c-{i}", "bank", "bank", "mortgage", "score,class,sanctions", "lookup") for i in range(7)}
    assert service.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'lookups'") == []  # a file of its own


def test_the_log_is_read_after_what_was_queued(service, client, keys, send):
    send([event(1)])
    for i in range(20):
        client.get(f"/api/citizens/{CITIZEN}", headers=auth(keys["bank"], f"loan {i}"))
    log = client.get(f"/api/citizens/{CITIZEN}/lookups", headers=auth(keys["citizen"])).json()["lookups"]
    assert [e["purpose"] for e in log] == [f"loan {i}" for i in reversed(range(20))]


def _serve_a_citizen(tmp_path, server_factory, name: str):
    """A server with one citizen on record; returns it and a bank key."""
    url = f"sqlite:///{tmp_path}/{name}"
    db = Database.open(url)
    agency = create_key(db, role="agency", name="agency", sources=["camera"])
    bank = create_key(db, role="bank", name="bank")
    db.close()
    server = server_factory(url)
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/api/events", json=[event(1)], headers=auth(agency)).status_code == 200
    return server, bank


def _logged_purposes(path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT purpose FROM lookups WHERE key_name = 'bank' "
                                           "ORDER BY id")]


def test_a_server_stopped_cleanly_keeps_every_lookup(tmp_path, server_factory):
    server, bank = _serve_a_citizen(tmp_path, server_factory, "log.db")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for i in range(200):
            assert c.get(f"/api/citizens/{CITIZEN}", headers=auth(bank, f"purpose {i}")).status_code == 200
    server.stop()  # SIGTERM: uvicorn shuts down, the service writes the queued rows
    assert _logged_purposes(tmp_path / "log.db-log") == [f"purpose {i}" for i in range(200)]


def test_sigkill_loses_no_answered_lookup_from_the_log(tmp_path, server_factory):
    server, bank = _serve_a_citizen(tmp_path, server_factory, "seen.db")
    answered: list[str] = []
    stop = threading.Event()

    def look():
        with httpx.Client(base_url=server.url, timeout=30) as client:
            n = 0
            while not stop.is_set():
                try:
                    r = client.get(f"/api/citizens/{CITIZEN}", headers=auth(bank, f"loan-{n}"))
                except httpx.TransportError:
                    return
                assert r.status_code == 200, r.text
                answered.append(f"loan-{n}")
                n += 1

    looker = threading.Thread(target=look)
    looker.start()
    while len(answered) < 300:
        time.sleep(0.005)
    server.kill()  # SIGKILL between two group commits of the log, most likely
    stop.set()
    looker.join()
    server.start()  # commits what the log's journal holds beyond the last commit
    server.stop()
    logged = _logged_purposes(tmp_path / "seen.db-log")
    missing = set(answered) - set(logged)
    assert not missing, f"{len(missing)} answered look-ups are not in the log"
    assert len(logged) == len(set(logged)), "a look-up was logged twice"


def test_a_lookup_log_in_the_main_file_moves_to_the_log_file(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the layout before the log had a file of its own
        conn.execute("CREATE TABLE lookups (id INTEGER PRIMARY KEY AUTOINCREMENT, citizen_id TEXT NOT NULL, "
                     "key_name TEXT NOT NULL, role TEXT NOT NULL, purpose TEXT, fields TEXT NOT NULL, "
                     "endpoint TEXT NOT NULL, at TEXT NOT NULL, day INTEGER NOT NULL)")
        conn.executemany("INSERT INTO lookups (citizen_id, key_name, role, purpose, fields, endpoint, at, day) "
                         "VALUES (?, 'b', 'bank', ?, 'score', 'lookup', 't', 1)",
                         [(CITIZEN, f"p{i}") for i in range(5)])
    service = Service.open(f"sqlite:///{path}", "taz-2018")
    try:
        citizen = authenticate(service.db, create_key(service.db, role="citizen", name="c", citizen=CITIZEN))
        log = service.lookups(citizen, CITIZEN)["lookups"]
        assert [e["purpose"] for e in log] == [f"p{i}" for i in reversed(range(5))]
        assert service.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'lookups'") == []
    finally:
        service.close()
    Service.open(f"sqlite:///{path}", "taz-2018").close()  # opening again moves nothing twice
    with sqlite3.connect(f"{path}-log") as conn:
        assert conn.execute("SELECT COUNT(*) FROM lookups").fetchone()[0] == 5


@pytest.mark.parametrize(("line", "status", "field"), [
    ({"day": 5.0}, 200, None),
    ({"day": 1.5}, 422, "day"),
    ({"day": True}, 422, "day"),
    ({"source_ref": True}, 422, "source_ref"),
    ({"citizen_id": False}, 422, "citizen_id"),
    ({"confidence": True}, 422, "confidence"),
    ({"source_ref": "true"}, 200, None),  # the text "true" is text
])
def test_ndjson_fast_path_refuses_what_the_slow_path_refused(send, service, line, status, field):
    r = send([event(1), {**event(2), **line}], ndjson=True)
    assert r.status_code == status, r.text
    if status == 422:
        assert r.json()["row"] == 2 and r.json()["field"] == field
    stored = service.db.execute("SELECT event_id, day, source_ref FROM events ORDER BY event_id")
    assert len(stored) == (2 if status == 200 else 0)


def _scanned(service) -> tuple[dict, list]:
    days = dict(service.db.execute("SELECT day, COUNT(*) FROM events WHERE voided = 0 GROUP BY day"))
    classes = [0] * len(service.policy.class_names)
    for idx, n in service.db.execute("SELECT class_idx, COUNT(*) FROM scores GROUP BY class_idx"):
        classes[idx] += n
    return days, classes


def test_stats_kept_by_the_writes_equal_a_count_of_the_tables(make_service):
    service = make_service("accountable")
    keys = make_keys(service.db)
    with TestClient(create_app(service)) as client:
        stats = lambda: client.get("/api/stats", headers=auth(keys["analyst"])).json()  # noqa: E731
        assert stats()["events"] == 0
        heavy = [event(f"d{i}", citizen=f"c-{i % 40}", kind="traffic.drunk_driving", day=1 + i % 9,
                       source="traffic-police") for i in range(120)]
        light = [event(f"r{i}", citizen=f"c-{i % 50}", day=1 + i % 5, confidence=0.99) for i in range(200)]
        for rows in (heavy[:60], light, heavy[60:], light[:30]):  # the last one re-sent: counted once
            assert client.post("/api/events", json=rows, headers=auth(keys["agency"])).status_code == 200
            body = stats()
            days, classes = _scanned(service)
            assert {e["day"]: e["events"] for e in body["events_per_day"]} == days
            assert list(body["classes"].values()) == classes
        assert body["events"] == 320 and sum(classes) == 50
        # An upheld appeal voids an event: one fewer on its day, the citizen re-scored.
        citizen = create_key(service.db, role="citizen", name="c0", citizen="c-0")
        appeal = client.post("/api/appeals", json={"event_id": "e-d0", "reason": "not me"},
                             headers=auth(citizen)).json()["id"]
        assert client.post(f"/api/appeals/{appeal}/decision", json={"upheld": True},
                           headers=auth(keys["agency"])).status_code == 200
        body = stats()
        assert body["events"] == 319
        days, classes = _scanned(service)
        assert {e["day"]: e["events"] for e in body["events_per_day"]} == days
        assert list(body["classes"].values()) == classes
        # Another process writes to the ledger: the counts are taken again, not carried on.
        other = Service.open(service.db.url)
        try:
            other.ingest(authenticate(other.db, keys["agency"]),
                         json.dumps([event("o1", citizen="c-new", day=DAY)]).encode())
        finally:
            other.close()
        body = stats()
        assert body["events"] == 320 and {e["day"]: e["events"] for e in body["events_per_day"]} == _scanned(service)[0]
        assert list(body["classes"].values()) == _scanned(service)[1]


def test_appeals_are_listed_under_a_role_check(make_service):
    service = make_service("accountable")
    keys = make_keys(service.db)
    agency = authenticate(service.db, keys["agency"])
    service.ingest(agency, json.dumps([event(1, confidence=0.99), event(2, citizen="c-2", confidence=0.99)]).encode())
    me = authenticate(service.db, keys["citizen"])
    other = authenticate(service.db, create_key(service.db, role="citizen", name="c2", citizen="c-2"))
    mine = service.file_appeal(me, "e-1", "not me")["id"]
    theirs = service.file_appeal(other, "e-2", "wrong person")["id"]
    service.decide_appeal(agency, theirs, False, "seen on camera")
    assert [a["id"] for a in service.list_appeals(agency)] == [mine, theirs]
    open_ = service.list_appeals(agency, status="open")
    # accountable grants the agency 'class' alone: the appeal, not the contested event's details.
    assert [(a["id"], a["citizen_id"], a["status"], "kind" in a) for a in open_] == [(mine, CITIZEN, "open", False)]
    own = service.list_appeals(me)
    assert [(a["id"], a["kind"], a["day"], a["date"]) for a in own] == [(mine, "traffic.red_light", 1, "2018-01-02")]
    assert [a["note"] for a in service.list_appeals(other)] == ["seen on camera"]
    with pytest.raises(Forbidden, match="own citizen"):
        service.list_appeals(me, citizen_id="c-2")
    for role in ("bank", "analyst", "security", "airline"):
        with pytest.raises(Forbidden):
            service.list_appeals(authenticate(service.db, keys[role]))
    with pytest.raises(Invalid, match="unknown appeal status"):
        service.list_appeals(agency, status="pending")


def test_ingest_keeps_the_inbox_body_readable_as_events(make_service):
    service = make_service()
    keys = make_keys(service.db)
    agency = authenticate(service.db, keys["agency"])
    # The references a simulated run holds (place types) and a live feed's camera names, all distinct.
    refs = [*PLACE_TYPES, None] + [f"cam-town-subway-{i}" for i in range(26)]
    rows = [event(i, citizen=f"c-{i % 3}", source_ref=refs[i], confidence=0.5 + i / 100) for i in range(30)]
    batch, n = service.ledger.ingest(agency, "\n".join(json.dumps(r) for r in rows).encode())
    assert n == 30
    while service.ledger.project():
        pass
    stored = pl.DataFrame(service.db.execute("SELECT event_id, citizen_id, kind, day, source, source_ref, confidence "
                                             "FROM events ORDER BY CAST(SUBSTR(event_id, 3) AS INTEGER)"),
                          orient="row", schema=["event_id", "citizen_id", "kind", "day", "source", "source_ref",
                                                "confidence"])
    assert stored.to_dicts() == rows
