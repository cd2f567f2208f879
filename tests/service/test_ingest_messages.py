"""The ingestion checks word for word, in process: what `parse_events` and `check_batch` refuse,
with the exact message, row and field a sender reads (the HTTP tests check the status and where)."""

import json

import polars as pl
import pytest

from socialcredit.engine import CompiledPolicy
from socialcredit.events import Calendar
from socialcredit.policy import load_policy
from socialcredit.service._errors import Forbidden, Invalid, TooLarge
from socialcredit.service._intake import MAX_BATCH_EVENTS, check_batch, parse_events
from socialcredit.service._keys import SENDING_ROLES, ApiKey

COMPILED = CompiledPolicy.of(load_policy("taz-2018"))
AGENCY = ApiKey(name="city", role="agency", sources=("camera", "courts"))


def event(i, **extra):  # malformed input is made by hand
    return {"event_id": f"e-{i}", "citizen_id": "c-1", "kind": "traffic.red_light", "day": 1,
            "source": "camera", **extra}


def ndjson(*rows) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def check(rows, key=AGENCY, day=5):
    return check_batch(pl.DataFrame(rows, schema_overrides={"day": pl.Float64}), key, compiled=COMPILED, day=day,
                       calendar=Calendar())


def test_an_array_after_leading_whitespace_is_an_array():
    frame = parse_events(b"  \n\t" + json.dumps([event(1), event(2)]).encode())
    assert frame["event_id"].to_list() == ["e-1", "e-2"] and frame["day"].to_list() == [1, 1]


@pytest.mark.parametrize(("body", "error", "row", "field"), [
    # A JSON false (or true) in an array's number column: the array reader would take it as 0.
    (json.dumps([event(1), event(2, day=False)]).encode(), "row 2, field day: expected a whole number, got False", 2,
     "day"),
    (json.dumps([event(1, day=True)]).encode(), "row 1, field day: expected a whole number, got True", 1, "day"),
    # The NDJSON reader takes a JSON false in a text column as the text "false": looked at row by row.
    (ndjson(event(1), event(2, source=False)), "row 2, field source: expected text, got False", 2, "source"),
    (ndjson(event(1), event(2), event(3, citizen_id=True)), "row 3, field citizen_id: expected text, got True", 3,
     "citizen_id"),
])
def test_a_json_boolean_is_refused_where_the_readers_would_take_it(body, error, row, field):
    with pytest.raises(Invalid) as caught:
        parse_events(body)
    assert (caught.value.message, caught.value.row, caught.value.field) == (error, row, field)


def test_the_text_false_is_text():
    frame = parse_events(ndjson(event(1, source="false"), event(2, source="true")))
    assert frame["source"].to_list() == ["false", "true"]


@pytest.mark.parametrize(("literal", "shown"), [("1e400", "1e400"), ("NaN", "NaN"), ("-Infinity", "-Infinity")])
def test_what_json_allows_no_number_to_be_is_named_by_row_and_field(literal, shown):
    body = f'[{{"event_id":"e","citizen_id":"c","kind":"k","day":1}},{{"event_id":"f","citizen_id":"c",'\
           f'"kind":"k","day":1,"confidence":{literal}}}]'.encode()
    with pytest.raises(Invalid) as caught:
        parse_events(body)
    assert (caught.value.message, caught.value.row, caught.value.field) == (
        f"row 2, field confidence: expected a number, got {shown} (not a finite JSON number)", 2, "confidence")


def test_only_senders_may_send_and_the_message_lists_them():
    bank = ApiKey(name="b", role="bank")
    with pytest.raises(Forbidden) as caught:
        check([event(1)], key=bank)
    assert caught.value.message == f"role 'bank' may not send events (senders: {', '.join(SENDING_ROLES)})"
    assert SENDING_ROLES == ("agency", "security", "platform")


def test_a_batch_of_the_largest_size_passes_and_one_more_is_too_large():
    rows = {"event_id": [f"e-{i}" for i in range(MAX_BATCH_EVENTS + 1)], "citizen_id": "c-1",
            "kind": "traffic.red_light", "day": 1.0, "source": "camera"}
    frame = pl.DataFrame(rows)
    assert check_batch(frame.head(MAX_BATCH_EVENTS), AGENCY, compiled=COMPILED, day=5,
                       calendar=Calendar()).height == MAX_BATCH_EVENTS
    with pytest.raises(TooLarge) as caught:
        check_batch(frame, AGENCY, compiled=COMPILED, day=5, calendar=Calendar())
    assert caught.value.message == "batch of 1,000,001 events; at most 1,000,000 per batch"


@pytest.mark.parametrize(("rows", "error", "row", "field", "kind"), [
    ([event(1), {**event(2), "day": -1.0}], "batch: row 2, column day: must be >= 0 (got -1)", 2, "day", Invalid),
    ([event(1), event(2), event(3, source=None)],
     "batch: row 3, field source: is empty; every event sent to the service names its source", 3, "source", Invalid),
    ([event(1), event(2, day=6)],
     "batch: row 2, field day: day 6 (2018-01-07) is in the future of the service day 5 (2018-01-06)", 2, "day",
     Invalid),
    ([event(1), event(2, source="banks")],
     "batch: row 2, field source: key 'city' may send only sources camera, courts, not 'banks'", 2, "source",
     Forbidden),
])
def test_each_refusal_of_a_batch_word_for_word(rows, error, row, field, kind):
    with pytest.raises(kind) as caught:
        check(rows)
    assert (caught.value.message, caught.value.row, caught.value.field) == (error, row, field)
