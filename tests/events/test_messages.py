"""Every refusal of validate_events, exactly: the message (origin, row from 1, column, what is
wrong, the value), and the row and column it carries for the API. Hand-made malformed frames."""

import datetime as dt

import polars as pl
import pytest

from socialcredit.events import Calendar, EventError, validate_events

GOOD = {"event_id": ["e1", "e2", "e3"], "citizen_id": ["c1", "c2", "c3"], "kind": ["k", "k", "k"],
        "day": ["0", "1", "2"]}


def _with(**columns):
    return pl.DataFrame({**GOOD, **columns})


CASES = [
    ("missing columns", pl.DataFrame({"event_id": ["e1"], "kind": ["k"]}),
     "in: missing column(s) citizen_id, day or date (required: event_id, citizen_id, kind, and day or date)",
     None, "citizen_id"),
    ("neither day nor date", pl.DataFrame({k: v for k, v in GOOD.items() if k != "day"}),
     "in: missing column(s) day or date (required: event_id, citizen_id, kind, and day or date)", None, "day"),
    ("a row with neither", _with(day=["0", None, "2"], date=[None, None, "2018-01-03"]),
     "in: row 2, column day: is empty (required, unless date is given) (got None)", 2, "day"),
    ("date not a date", _with(date=["2018-01-01", "2018-02-30", None], day=["0", None, "2"]),
     "in: row 2, column date: expected an ISO date (2018-03-01) or timestamp (2018-03-01T08:30:00+08:00) "
     "(got '2018-02-30')", 2, "date"),
    ("date in another format", _with(date=["01/02/2018", None, None]),
     "in: row 1, column date: expected an ISO date (2018-03-01) or timestamp (2018-03-01T08:30:00+08:00) "
     "(got '01/02/2018')", 1, "date"),
    ("timestamp with a bad time", _with(date=[None, "2018-01-02T25", None]),
     "in: row 2, column date: expected an ISO date (2018-03-01) or timestamp (2018-03-01T08:30:00+08:00) "
     "(got '2018-01-02T25')", 2, "date"),
    ("date before the calendar", _with(date=[None, None, "2017-12-31"], day=["0", "1", None]),
     "in: row 3, column date: is before day 0 of the calendar (2018-01-01) (got '2017-12-31')", 3, "date"),
    ("day and date disagree", _with(date=["2018-01-01", "2018-01-03", None]),
     "in: row 2, columns day and date disagree: day 1 is 2018-01-02, the date says 2018-01-03 (day 2)", 2, "date"),
    ("null event id", _with(event_id=["e1", None, "e3"]),
     "in: row 2, column event_id: is empty (required) (got None)", 2, "event_id"),
    ("empty event id", _with(event_id=["e1", "e2", ""]),
     "in: row 3, column event_id: is empty (required) (got '')", 3, "event_id"),
    ("empty citizen", _with(citizen_id=["", "c2", "c3"]),
     "in: row 1, column citizen_id: is empty (required) (got '')", 1, "citizen_id"),
    ("empty kind", _with(kind=["k", "", "k"]),
     "in: row 2, column kind: is empty (required) (got '')", 2, "kind"),
    ("negative day", _with(day=["0", "-1", "2"]),
     "in: row 2, column day: must be >= 0 (got -1)", 2, "day"),
    ("day not a number", _with(day=["0", "1", "two"]),
     "in: row 3, column day: expected a whole number, got 'two'", 3, "day"),
    ("day with a fraction", _with(day=pl.Series([0.0, 1.5, 2.0])),
     "in: row 2, column day: expected a whole number, got 1.5", 2, "day"),
    ("confidence not a number", _with(confidence=["0.5", "high", "0.1"]),
     "in: row 2, column confidence: expected a number, got 'high'", 2, "confidence"),
    ("confidence above 1", _with(confidence=pl.Series([0.5, 0.2, 1.5])),
     "in: row 3, column confidence: must lie within [0, 1] (got 1.5)", 3, "confidence"),
    ("confidence below 0", _with(confidence=pl.Series([-0.1, 0.2, 0.5])),
     "in: row 1, column confidence: must lie within [0, 1] (got -0.1)", 1, "confidence"),
    ("confidence not a number at all", _with(confidence=pl.Series([0.5, float("nan"), 0.5])),
     "in: row 2, column confidence: must lie within [0, 1] (got nan)", 2, "confidence"),
    ("text id given as a fraction", _with(citizen_id=pl.Series([1.0, 2.5, 3.0])),
     "in: row 2, column citizen_id: expected text, got 2.5", 2, "citizen_id"),
    ("duplicate ids", _with(event_id=["e1", "e2", "e1"]),
     "in: duplicate event_id 'e1' at rows 1, 3", 1, "event_id"),
    ("two ids twice: the first one named", pl.DataFrame({**{k: v + v[:1] for k, v in GOOD.items()},
                                                         "event_id": ["a", "b", "a", "b"]}),
     "in: duplicate event_id 'a' at rows 1, 3", 1, "event_id"),
]


@pytest.mark.parametrize(("frame", "message", "row", "column"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_malformed_table_is_refused_exactly(frame, message, row, column):
    with pytest.raises(EventError) as caught:
        validate_events(frame, origin="in")
    assert str(caught.value) == message
    assert (caught.value.row, caught.value.column) == (row, column)


def test_a_date_is_its_day_number_of_the_calendar():
    frame = _with(day=[None, "31", None], date=["2018-01-01", "2018-02-01", " 2018-12-31T23:59:59+08:00 "])
    assert validate_events(frame)["day"].to_list() == [0, 31, 364]
    assert "date" not in validate_events(frame).columns
    later = Calendar(dt.date(2020, 1, 1))
    assert validate_events(_with(day=[None] * 3, date=["2020-01-01", "2020-03-01 08:00", "2021-01-01T00:00Z"]),
                           calendar=later)["day"].to_list() == [0, 60, 366]
    assert later.iso(60) == "2020-03-01" and later.day_of(dt.date(2021, 1, 1)) == 366


def test_without_an_origin_the_message_says_events():
    with pytest.raises(EventError, match="^events: row 1, column kind: is empty"):
        validate_events(_with(kind=["", "k", "k"]))


def test_blank_optional_text_and_padded_numbers_are_accepted():
    out = validate_events(_with(day=[" 0", "1 ", "2"], confidence=["", " 0.5", None]), origin="in")
    assert out["day"].to_list() == [0, 1, 2]
    assert out["confidence"].to_list() == [None, 0.5, None]
    assert out["source"].to_list() == [None, None, None]


def test_whole_numbers_as_ids_become_text_without_a_decimal_point():
    out = validate_events(_with(citizen_id=pl.Series([1.0, 2.0, 3.0]), event_id=pl.Series([7, 8, 9])), origin="in")
    assert out["citizen_id"].to_list() == ["1", "2", "3"] and out["event_id"].to_list() == ["7", "8", "9"]
