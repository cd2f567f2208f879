"""A batch that cannot be stored never blocks the others: after failing alone a few times with an
error of its data it is quarantined (with its sender, error and body), the projector moves on, a
restarted service starts and projects, and the quarantine is shown to its sender and to analysts."""

import io
import json
import sqlite3

import polars as pl
import pytest
from fastapi.testclient import TestClient

from socialcredit.service import Service, authenticate, create_app
from socialcredit.service._errors import Forbidden
from socialcredit.service._inbox import POISON_ATTEMPTS
from socialcredit.service._keys import now

from .conftest import DAY, auth, make_keys
from .conftest import handmade_event as event


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/q.db"


def _body(*ids) -> bytes:
    return json.dumps([event(i, citizen=f"c-{i}") for i in ids]).encode()


def _project_all(service) -> int:
    """Project until the inbox is empty, as the projector loop does (a failure is tried again)."""
    failures = 0
    while failures <= POISON_ATTEMPTS:
        try:
            if not service.ledger.project():
                return failures
        except Exception:
            failures += 1
    raise AssertionError("the projection never got past a failing batch")


def test_a_batch_that_fails_to_store_is_quarantined_and_the_others_are_projected(make_service, url, monkeypatch):
    service = make_service(url=url)
    keys = make_keys(service.db)
    agency, security = authenticate(service.db, keys["agency"]), authenticate(service.db, keys["security"])
    batches = [service.ingest(agency, _body(*ids), wait=False)["batch"] for ids in (["a1", "a2"], ["poison"])]
    batches.append(service.ingest(security, _body("s1"), wait=False)["batch"])
    insert = service.db.insert_frame
    refusal = sqlite3.IntegrityError if service.db.dialect == "sqlite" else __import__("psycopg").DataError

    def refuse_poison(cur, table, frame, **kwargs):  # a storage error of that batch's data, every time
        if table == "events" and "e-poison" in frame["event_id"].to_list():
            raise refusal("the database refuses e-poison")
        return insert(cur, table, frame, **kwargs)

    monkeypatch.setattr(service.db, "insert_frame", refuse_poison)
    assert _project_all(service) == POISON_ATTEMPTS - 1  # the last failure quarantines instead of raising
    ids = {r[0] for r in service.db.execute("SELECT event_id FROM events")}
    assert ids == {"e-a1", "e-a2", "e-s1"}
    assert service.ledger.pending() == 0
    assert service.ledger.wait_projected(batches[0], 0) and service.ledger.wait_projected(batches[2], 0)
    assert not service.ledger.wait_projected(batches[1], 0)  # quarantined, not in the ledger

    [held] = service.quarantined(agency)
    assert (held["batch"], held["key"], held["events"]) == (batches[1], "agency", 1)
    assert "the database refuses e-poison" in held["error"]
    assert service.quarantined(security) == []  # a sender sees only its own
    assert [b["batch"] for b in service.quarantined(authenticate(service.db, keys["analyst"]))] == [batches[1]]
    with pytest.raises(Forbidden):
        service.quarantined(authenticate(service.db, keys["citizen"]))
    assert service.stats(authenticate(service.db, keys["analyst"]))["quarantined"] == 1
    body = service.db.inbox.execute("SELECT body FROM quarantine")[0][0]
    assert pl.read_ipc(io.BytesIO(bytes(body)))["event_id"].to_list() == ["e-poison"]  # kept as it came
    with TestClient(create_app(service)) as client:  # the same over HTTP
        r = client.get("/api/batches/quarantined", headers=auth(keys["security"]))
        assert r.status_code == 200 and r.json() == []
        r = client.get("/api/batches/quarantined", headers=auth(keys["analyst"]))
        assert r.status_code == 200 and [(b["batch"], b["key"]) for b in r.json()] == [(batches[1], "agency")]
        assert client.get("/api/batches/quarantined", headers=auth(keys["bank"])).status_code == 403


def test_a_failure_of_the_database_itself_quarantines_nothing(make_service, tmp_path, monkeypatch):
    service = make_service()
    agency = authenticate(service.db, make_keys(service.db)["agency"])
    service.ingest(agency, _body("a1"), wait=False)
    monkeypatch.setattr(service.db, "insert_frame", lambda *a, **k: (_ for _ in ()).throw(
        sqlite3.OperationalError("database is locked")))
    for _ in range(POISON_ATTEMPTS + 2):
        with pytest.raises(sqlite3.OperationalError):
            service.ledger.project()
    assert service.ledger.pending() == 1 and service.ledger.quarantined_batches() == []
    monkeypatch.undo()
    assert service.ledger.project() == 1


def _inject(db, key_name: str, frame: pl.DataFrame) -> None:
    """A batch committed to the inbox as an older service acknowledged it, unchecked."""
    buf = io.BytesIO()
    frame.with_columns(pl.col("kind", "source", "source_ref").cast(pl.Categorical)).write_ipc(buf)
    with db.inbox.transaction() as cur:
        db.inbox.execute("INSERT INTO inbox (key_name, n_events, body, received) VALUES (?, ?, ?, ?)",
                         (key_name, frame.height, buf.getvalue(), now()), cur)


def test_a_service_starts_with_a_poisoned_batch_in_the_inbox_and_quarantines_it(url):
    service = Service.open(url, "taz-2018")
    service.ledger.set_day(DAY)
    agency = authenticate(service.db, make_keys(service.db)["agency"])
    service.ingest(agency, _body("before"), wait=False)
    if service.db.dialect == "postgresql":  # a NUL in a text: PostgreSQL refuses to store it
        poison = pl.DataFrame({"event_id": ["hero\x00"], "citizen_id": ["c-1"], "kind": ["civic.heroic_act"],
                               "day": [1], "source": ["community"], "source_ref": [None], "confidence": [None]},
                              schema_overrides={"day": pl.Int32, "source_ref": pl.String, "confidence": pl.Float64})
        _inject(service.db, "agency", poison)
    else:  # a body that is no Arrow file
        with service.db.inbox.transaction() as cur:
            service.db.inbox.execute("INSERT INTO inbox (key_name, n_events, body, received) VALUES (?, ?, ?, ?)",
                                     ("agency", 1, b"not an arrow file", now()), cur)
    service.ingest(agency, _body("after"), wait=False)
    service.close()

    restarted = Service.open(url)
    try:
        restarted.start()
        ids = {r[0] for r in restarted.db.execute("SELECT event_id FROM events")}
        assert ids == {"e-before", "e-after"} and restarted.ledger.pending() == 0
        [held] = restarted.ledger.quarantined_batches()
        assert held["key"] == "agency" and held["error"]
    finally:
        restarted.close()
