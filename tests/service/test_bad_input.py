"""Bad input: a clear 4xx naming row and field, and a rejected batch writes nothing."""

import json

import pytest
from fastapi.testclient import TestClient

from socialcredit.service import Settings, create_app

from .conftest import DAY, auth, make_keys
from .conftest import handmade_event as event  # malformed input is made by hand


def nothing_stored(service):
    assert service.db.execute("SELECT COUNT(*) FROM events")[0][0] == 0
    assert service.db.inbox.execute("SELECT COUNT(*) FROM inbox")[0][0] == 0
    assert service.db.execute("SELECT COUNT(*) FROM scores")[0][0] == 0


@pytest.mark.parametrize(("rows", "row", "field", "words"), [
    ([event(1), {**event(2), "day": "tuesday"}], 2, "day", "expected a whole number"),
    ([event(1), {**event(2), "day": 1.5}], 2, "day", "expected a whole number"),
    ([event(1), {**event(2), "day": True}], 2, "day", "expected a whole number"),
    ([event(1), {**event(2), "day": -1}], 2, "day", "must be >= 0"),
    ([event(1), event(2, day=DAY + 1)], 2, "day", "future of the service day"),
    ([event(1), event(2, kind="made.up")], 2, "kind", "unknown event kind 'made.up'"),
    ([event(1), event(1)], 1, "event_id", "duplicate event_id 'e-1' at rows 1, 2"),
    ([event(1), {**event(2), "citizen_id": None}], 2, "citizen_id", "is empty"),
    ([event(1), {k: v for k, v in event(2).items() if k != "kind"}], 2, "kind", "is empty"),
    ([event(1), {**event(2), "confidence": 1.5}], 2, "confidence", "within [0, 1]"),
    ([event(1), {**event(2), "confidence": "high"}], 2, "confidence", "expected a number"),
    ([event(1), {**event(2), "source": None}], 2, "source", "names its source"),
    ([event(1), {**event(2), "kind": ["a"]}], 2, "kind", "expected text"),
    ([event(1), 7], 2, None, "expected a JSON object"),
])
def test_bad_rows_are_named_and_nothing_is_stored(send, service, rows, row, field, words):
    r = send(rows)
    assert r.status_code == 422, r.text
    body = r.json()
    assert words in body["error"]
    assert body.get("row") == row and body.get("field") == field
    nothing_stored(service)


@pytest.mark.parametrize(("body", "row", "error"), [
    (b"[{", None, "malformed JSON at line 1, column 3: Expecting property name enclosed in double quotes"),
    (b'[{"event_id": "a"},\n {"event_id": }]', None, "malformed JSON at line 2, column 15: Expecting value"),
    (b"{not json}", 1, "row 1: malformed JSON at column 2: Expecting property name enclosed in double quotes"),
    (b'{"a": 1}\n\n[', 2, "row 2: malformed JSON at column 2: Expecting value"),  # blank lines are no rows
    (b"\xff\xfe", 1, "row 1: body is not UTF-8 (byte 0, line 1)"),
    (b'[{"event_id": "caf\xc3\xa9\xff"}]', 1, "row 1, field event_id: not UTF-8 (byte 20 of the body)"),
    (b"", None, "empty body: send a JSON array or NDJSON lines of events"),
    (b"  \n ", None, "empty body: send a JSON array or NDJSON lines of events"),
    (b"42", 1, "row 1: expected a JSON object, got a number"),
    (b"[4.5]", 1, "row 1: expected a JSON object, got a number"),
    (b'{"a": 1}\n"text"', 2, "row 2: expected a JSON object, got text"),
    (b"[[1, 2]]", 1, "row 1: expected a JSON object, got an array"),
    (b"null", 1, "row 1: expected a JSON object, got null"),
    (b'[{"event_id": "a"}, true]', 2, "row 2: expected a JSON object, got true or false"),
])
def test_malformed_bodies_are_422_with_what_and_where(client, keys, service, body, row, error):
    r = client.post("/api/events", content=body, headers=auth(keys["agency"]))
    assert r.status_code == 422, (body, r.text)
    assert r.json()["error"] == error and r.json().get("row") == row
    nothing_stored(service)


def test_ndjson_errors_name_the_line(send, service):
    r = send([event(1), event(2), {**event(3), "day": "x"}], ndjson=True)
    assert r.status_code == 422 and r.json()["row"] == 3 and r.json()["field"] == "day"
    nothing_stored(service)


def test_huge_bodies_are_413(make_service):
    service = make_service(settings=Settings(max_body_bytes=10_000))
    keys = make_keys(service.db)
    rows = json.dumps([event(i) for i in range(200)]).encode()
    with TestClient(create_app(service)) as client:
        r = client.post("/api/events", content=rows, headers=auth(keys["agency"]))
        assert r.status_code == 413 and "10,000" in r.json()["error"]

        def chunks():  # no Content-Length: the limit holds while streaming
            for i in range(0, len(rows), 1000):
                yield rows[i:i + 1000]

        r = client.post("/api/events", content=chunks(), headers=auth(keys["agency"]))
        assert r.status_code == 413
    nothing_stored(service)


def test_bad_bodies_of_other_endpoints_are_422(client, keys):
    r = client.post("/api/loans/quote", json={"citizen_id": "c-1", "amount": -5}, headers=auth(keys["bank"]))
    assert r.status_code == 422
    r = client.post("/api/appeals", content=b"{", headers=auth(keys["citizen"]))
    assert r.status_code == 422
    r = client.post("/api/appeals/abc/decision", json={"upheld": True}, headers=auth(keys["agency"]))
    assert r.status_code == 422
