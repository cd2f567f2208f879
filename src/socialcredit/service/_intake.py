"""What an incoming batch must be: read from a JSON array or NDJSON body and checked against the
policy, the sender's key and the service day; the first problem is named by its row and field."""

from __future__ import annotations

import io
import json

import polars as pl

from socialcredit.engine import CompiledPolicy
from socialcredit.events import INPUT_SCHEMA, Calendar, EventError, validate_events
from socialcredit.service._errors import Forbidden, Invalid, TooLarge
from socialcredit.service._keys import SENDING_ROLES, ApiKey

# `day` is read as a float so that 1.5 is reported as "not a whole number" rather than truncated.
_PARSE_SCHEMA = {**INPUT_SCHEMA, "day": pl.Float64()}
_FAST_SCHEMA = {**INPUT_SCHEMA, "day": pl.Int64()}
_TEXT_COLUMNS = [c for c, t in INPUT_SCHEMA.items() if t == pl.String()]
_JSON_TYPES = {"event_id": (str, int), "citizen_id": (str, int), "kind": (str,), "day": (int,),
               "date": (str,), "source": (str,), "source_ref": (str,), "confidence": (int, float)}
_JSON_NAMES = {"event_id": "text", "citizen_id": "text", "kind": "text", "day": "a whole number",
               "date": "an ISO date as text", "source": "text", "source_ref": "text", "confidence": "a number"}
MAX_BATCH_EVENTS = 1_000_000


def parse_events(body: bytes) -> pl.DataFrame:
    """Read a JSON array or NDJSON body into an event table (not yet validated).

    NDJSON, the bulk format, is read with days as integers: polars' NDJSON reader refuses a
    fraction or a JSON boolean there, and such a body is read again the slow way, which accepts a
    day written 5.0 and names the row and field of anything else. The JSON array reader takes 1.5
    as 1 and true as 1 in number columns: arrays are read with days as numbers (checked later) and
    looked at row by row when they hold a boolean.
    """
    stripped = body.lstrip()
    if not stripped:
        raise Invalid("empty body: send a JSON array or NDJSON lines of events")
    if stripped.startswith(b"["):
        if b"true" in body or b"false" in body:
            _diagnose(body, True)
        return _read(pl.read_json, body, True)
    try:
        frame = pl.read_ndjson(io.BytesIO(body), schema=_FAST_SCHEMA)
    except (pl.exceptions.PolarsError, ValueError, OverflowError):
        frame = _read(pl.read_ndjson, body, False)
    # The NDJSON reader takes a JSON true or false in a text column as the text "true" or "false":
    # only a batch with such a text is looked at row by row (a vectorised check, not a byte scan).
    if frame.height and frame.select(pl.any_horizontal(
            pl.col(_TEXT_COLUMNS).is_in(["true", "false"]).any())).item():
        _diagnose(body, False)
    return frame


def _read(read, body: bytes, is_array: bool) -> pl.DataFrame:
    try:
        return read(io.BytesIO(body), schema=_PARSE_SCHEMA)
    except (pl.exceptions.PolarsError, ValueError, OverflowError) as exc:
        _diagnose(body, is_array)
        raise Invalid(f"body cannot be read as events: {str(exc).splitlines()[0]}") from None


def _diagnose(body: bytes, is_array: bool) -> None:
    """Find the row and field polars refused; only runs on the error path."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"body is not UTF-8 (byte {exc.start})") from None
    if is_array:
        try:
            rows = json.loads(text)  # a list: the body starts with "["
        except json.JSONDecodeError as exc:
            raise Invalid(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    else:
        rows = []
        for lineno, line in enumerate((ln for ln in text.splitlines() if ln.strip()), start=1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise Invalid(f"row {lineno}: malformed JSON at column {exc.colno}: {exc.msg}",
                              row=lineno) from None
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise Invalid(f"row {i}: expected a JSON object, got {_json_type(row)}", row=i)
        for field, types in _JSON_TYPES.items():
            value = row.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
                raise Invalid(f"row {i}, field {field}: expected {_JSON_NAMES[field]}, got {value!r}",
                              row=i, field=field)


def _json_type(value) -> str:
    """What a decoded JSON value is, in JSON's words."""
    if value is None:
        return "null"
    return {bool: "true or false", int: "a number", float: "a number", str: "text", list: "an array"}[type(value)]


def check_batch(frame: pl.DataFrame, key: ApiKey, *, compiled: CompiledPolicy, day: int,
                calendar: Calendar) -> pl.DataFrame:
    """Validate a batch for `key` as of the service day (dates are day numbers of `calendar`); the
    first problem is raised with its row."""
    if key.role not in SENDING_ROLES:
        raise Forbidden(f"role '{key.role}' may not send events (senders: {', '.join(SENDING_ROLES)})")
    if frame.height > MAX_BATCH_EVENTS:
        raise TooLarge(f"batch of {frame.height:,} events; at most {MAX_BATCH_EVENTS:,} per batch")
    try:
        events = validate_events(frame, origin="batch", calendar=calendar)
    except EventError as exc:
        raise Invalid(str(exc), row=exc.row, field=exc.column) from None
    kinds = [r.kind for r in compiled.policy.rules]
    _refuse(events, ~events["kind"].is_in(kinds), "kind", Invalid,
            lambda v: f"unknown event kind {v!r}: policy '{compiled.policy.name}' has no rule for it")
    _refuse(events, events["day"] > day, "day",
            Invalid, lambda v: f"day {v} ({calendar.iso(v)}) is in the future of the service day "
                               f"{day} ({calendar.iso(day)})")
    _refuse(events, events["source"].is_null(), "source", Invalid,
            lambda v: "is empty; every event sent to the service names its source")
    _refuse(events, ~events["source"].is_in(list(key.sources)), "source", Forbidden,
            lambda v: f"key '{key.name}' may send only sources {', '.join(key.sources)}, not {v!r}")
    return events


def _refuse(events: pl.DataFrame, mask: pl.Series, field: str, error: type, message) -> None:
    if mask.any():
        row = int(mask.arg_true()[0])
        raise error(f"batch: row {row + 1}, field {field}: {message(events[field][row])}",
                    row=row + 1, field=field)
