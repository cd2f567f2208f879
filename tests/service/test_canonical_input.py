"""Canonical input at the door: one text rule for every id and text (events._table), checked before a
batch is acknowledged, on SQLite and PostgreSQL alike; the two readers of a body (polars, and the exact
json reader) give the same table or the same refusal for the same bytes."""

import json

import polars as pl
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socialcredit.events import EventError, check_text, validate_events
from socialcredit.service import create_app
from socialcredit.service._errors import Invalid
from socialcredit.service._intake import parse_events, read_exactly

from .conftest import auth, make_keys
from .conftest import handmade_event as event


@pytest.fixture(params=["sqlite", "postgresql"])
def door(request, make_service):
    """(client, keys, service) over a fresh database of each kind."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    service = make_service(url=url)
    keys = make_keys(service.db)
    with TestClient(create_app(service)) as client:
        yield client, keys, service


def _stored(service) -> int:
    return service.db.execute("SELECT COUNT(*) FROM events")[0][0] + service.db.inbox.execute(
        "SELECT COUNT(*) FROM inbox")[0][0]


@pytest.mark.parametrize(("value", "problem"), [
    ("hero\u0000", "holds U+0000, a control character"),
    ("a\nb", "holds U+000A, a control character"),
    ("\u202eevil", "holds U+202E, an invisible formatting character"),
    ("ab\u200b", "holds U+200B, an invisible formatting character"),
    ("\ufeffab", "holds U+FEFF, an invisible formatting character"),
    ("a\u2028b", "holds U+2028, a line separator"),
    ("  ", "begins or ends with whitespace"),
    ("c-1 ", "begins or ends with whitespace"),
    ("", "is empty (required)"),
    ("x" * 201, "is 201 characters long, at most 200 are allowed"),
])
@pytest.mark.parametrize("field", ["event_id", "citizen_id"])
def test_an_id_that_breaks_the_text_rule_is_refused_before_the_acknowledgement(door, field, value, problem):
    client, keys, service = door
    problem += ", which no text may hold" if problem.startswith("holds") else ""
    rows = [event(1), {**event(2), field: value}]
    for body in (json.dumps(rows), json.dumps(rows, ensure_ascii=False),  # the exact reader, and polars
                 "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)):
        r = client.post("/api/events", content=body.encode(), headers=auth(keys["agency"]))
        assert r.status_code == 422, r.text
        assert r.json()["error"].startswith(f"batch: row 2, column {field}: {problem} (got ")
        assert (r.json()["row"], r.json()["field"]) == (2, field)
    assert _stored(service) == 0


@pytest.mark.parametrize("escape", ["\\ud800", "\\udbff", "\\udc00x"])
def test_a_lone_surrogate_is_refused_not_turned_into_nul(door, escape):
    client, keys, service = door
    body = f'{{"event_id": "a{escape}", "citizen_id": "c-1", "kind": "traffic.red_light", "day": 1, ' \
           f'"source": "camera"}}'
    r = client.post("/api/events", content=body.encode(), headers=auth(keys["agency"]))
    assert r.status_code == 422 and (r.json()["row"], r.json()["field"]) == (1, "event_id"), r.text
    assert "a lone surrogate" in r.json()["error"]
    assert _stored(service) == 0


def test_a_nul_id_sent_twelve_times_moves_no_score(door):
    client, keys, service = door
    hero = event("x", kind="civic.heroic_act", source="community")
    assert client.post("/api/events", json=[hero], headers=auth(keys["agency"])).status_code == 200
    before = client.get("/api/citizens/c-1", headers=auth(keys["analyst"], "fuzzing")).json()
    for _ in range(12):
        r = client.post("/api/events", json=[{**hero, "event_id": "hero\u0000"}], headers=auth(keys["agency"]))
        assert r.status_code == 422
        r = client.post("/api/events", json=[hero], headers=auth(keys["agency"]))  # the same event again
        assert r.status_code == 200
    assert client.get("/api/citizens/c-1", headers=auth(keys["analyst"], "fuzzing")).json() == before
    assert service.db.execute("SELECT COUNT(*) FROM events")[0][0] == 1


@pytest.mark.parametrize(("body", "error", "row", "field"), [
    (b'[{"event_id": 1.5, "citizen_id": "c-1", "kind": "traffic.red_light", "day": 1, "source": "camera"}]',
     "row 1, field event_id: expected text, got 1.5", 1, "event_id"),
    (b'{"event_id": "e", "citizen_id": "c-1", "kind": "traffic.red_light", "day": 1, "source": "camera", '
     b'"confidence": NaN}', "row 1, field confidence: expected a number, got NaN (not a finite JSON number)", 1,
     "confidence"),
    (b'{"event_id": "a"}\n{"event_id": "e", "event_id": "f", "citizen_id": "c", "kind": "k", "day": 1}',
     "row 2: key 'event_id' is given twice in one object", 2, "event_id"),
    (b'[{"event_id": "e", "citizen_id": "c", "kind": "k", "day": 1, "day": 2}]',
     "row 1: key 'day' is given twice in one object", 1, "day"),
    (b'{"event_id": "a"}\n{"event_id": "caf\xc3\xa9\xff", "citizen_id": "c"}',
     "row 2, field event_id: not UTF-8 (byte 37 of the body)", 2, "event_id"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply: an event is a flat JSON object", None, None),
    (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "row 1: JSON nested too deeply: an event is a flat JSON object",
     1, None),
])
def test_what_the_json_module_reads_but_no_event_may_be_is_named(body, error, row, field):
    with pytest.raises(Invalid) as caught:
        parse_events(body)
    assert (caught.value.message, caught.value.row, caught.value.field) == (error, row, field)


def test_deep_nesting_is_a_422_not_a_500(door):
    client, keys, service = door
    r = client.post("/api/events", content=b"[" * 100_000 + b"]" * 100_000, headers=auth(keys["agency"]))
    assert r.status_code == 422, r.text


def test_a_huge_id_is_refused_with_a_short_message():
    frame = pl.DataFrame({"event_id": ["x" * 2**20], "citizen_id": ["c"], "kind": ["k"], "day": [1]})
    with pytest.raises(EventError) as caught:
        validate_events(frame, origin="batch")
    assert str(caught.value) == ("batch: row 1, column event_id: is 1,048,576 characters long, at most 200 are "
                                 f"allowed (got {'x' * 40!r}... (1,048,576 characters))")


def test_an_integer_id_is_its_digits():
    frame = parse_events(b'{"event_id": 12, "citizen_id": 7, "kind": "k", "day": 1}')
    assert frame["event_id"].to_list() == ["12"] and frame["citizen_id"].to_list() == ["7"]


def test_check_text_is_the_rule_for_an_id_from_elsewhere():
    assert check_text("c-1") == "c-1"
    for value, problem in [("a\x00b", "holds U+0000, a control character"),
                           ("a\ud800", "holds U+D800, a lone surrogate (half of a character)"),
                           (" c", "begins or ends with whitespace")]:
        with pytest.raises(EventError) as caught:
            check_text(value)
        assert str(caught.value) == f"citizen_id: {problem}{', which no text may hold' * ('holds' in problem)} " \
                                    f"(got {value!r})"
        assert caught.value.column == "citizen_id"


# -- the two readers agree --------------------------------------------------------------------------

_KEYS = st.sampled_from(["event_id", "citizen_id", "kind", "day", "date", "source", "source_ref", "confidence",
                         "other"])
_CHARS = st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from(
    ["\x00", "\n", "\ud800", "\udbff", "\u202e", "\u200b", ":", '"', "\\", "[", "{", " ", "\u0085"])
_TEXT = st.text(_CHARS, max_size=6) | st.sampled_from(
    ["e1", "c-1", "k", "2018-01-02", "camera", "1.5", "true", "null", "[x]"])
_VALUES = st.one_of(
    _TEXT, st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 1.5, 2.0, 1e400, float("nan"), 1e20]),
    st.lists(st.integers(0, 2) | _TEXT, max_size=2), st.dictionaries(st.sampled_from(["a", "day"]), _TEXT, max_size=1))
_GOOD = {"event_id": "e", "citizen_id": "c", "kind": "k", "day": 1, "source": "camera"}
# Rows of any keys and values, and good rows with one value changed (polars' table is then often used).
_ROW = st.lists(st.tuples(_KEYS, _VALUES), max_size=9) | st.tuples(_KEYS, _VALUES).map(
    lambda change: list({**_GOOD, change[0]: change[1]}.items())) | st.lists(st.tuples(_KEYS, _TEXT), max_size=2).map(
    lambda changes: list(_GOOD.items()) + changes)


def _encode(pairs: list, ascii_only: bool, separator: str) -> str:
    return "{" + ", ".join(json.dumps(k) + separator + json.dumps(v, ensure_ascii=ascii_only) for k, v in pairs) + "}"


@st.composite
def bodies(draw) -> bytes:
    rows = draw(st.lists(_ROW, min_size=1, max_size=3))
    ascii_only, separator = draw(st.booleans()), draw(st.sampled_from([":", ": ", " : "]))
    objects = [_encode(r, ascii_only, separator) for r in rows]
    text = "[" + ", ".join(objects) + "]" if draw(st.booleans()) else "\n".join(objects)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate unescaped: bytes that are not UTF-8


def _outcome(read):
    try:
        return "taken", validate_events(read(), origin="batch")
    except (Invalid, EventError) as exc:
        return "refused", str(exc)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies())
def test_the_fast_reader_and_the_exact_reader_agree(body):
    fast = _outcome(lambda: parse_events(body))
    exact = _outcome(lambda: read_exactly(body, body.lstrip().startswith(b"[")))
    assert fast[0] == exact[0], (body, fast, exact)
    if fast[0] == "taken":
        assert fast[1].equals(exact[1]), (body, fast[1], exact[1])
    else:
        assert fast[1] == exact[1], body
