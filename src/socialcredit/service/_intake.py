"""What an incoming batch must be: read from a JSON array or NDJSON body and checked against the
policy, the sender's key and the service day; the first problem is named by its row and field.

Two readers, one answer: polars reads a body fast, and its table is taken only when cheap counts over
the body prove that it says what Python's json module would (see `_plain`); any other body is read by
the exact reader (`read_exactly`), which names the row and field of what it refuses."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import polars as pl

from socialcredit.engine import CompiledPolicy
from socialcredit.events import INPUT_SCHEMA, Calendar, EventError, validate_events
from socialcredit.offers import PROFILE_KINDS_TEXT, is_profile_kind
from socialcredit.service._errors import Forbidden, Invalid, TooLarge
from socialcredit.service._keys import SENDING_ROLES, ApiKey

# `day` is read as a float so that 1.5 is reported as "not a whole number" rather than truncated.
_PARSE_SCHEMA = {**INPUT_SCHEMA, "day": pl.Float64()}
_FAST_SCHEMA = {**INPUT_SCHEMA, "day": pl.Int64()}
_TEXT_COLUMNS = [c for c, t in INPUT_SCHEMA.items() if t == pl.String()]
_NUMBER_COLUMNS = [c for c in INPUT_SCHEMA if c not in _TEXT_COLUMNS]
_JSON_TYPES = {"event_id": (str, int), "citizen_id": (str, int), "kind": (str,), "day": (int, float),
               "date": (str,), "source": (str,), "source_ref": (str,), "confidence": (int, float)}
_JSON_NAMES = {"event_id": "text", "citizen_id": "text", "kind": "text", "day": "a whole number",
               "date": "an ISO date as text", "source": "text", "source_ref": "text", "confidence": "a number"}
_JSON_SPACE = " \t\r"  # what may stand around a JSON value on an NDJSON line
MAX_BATCH_EVENTS = 1_000_000


def parse_events(body: bytes) -> pl.DataFrame:
    """Read a JSON array or NDJSON body into an event table (not yet validated).

    polars reads it first: NDJSON with days as integers (a fraction or a boolean there makes it
    refuse; it is then tried with days as numbers), arrays with days as numbers. Its table is taken
    when `_plain` proves it right; otherwise, or when polars refuses, the exact reader decides.
    """
    stripped = body.lstrip()
    if not stripped:
        raise Invalid("empty body: send a JSON array or NDJSON lines of events")
    is_array = stripped.startswith(b"[")
    frame = _read_fast(body, is_array)
    if frame is None or not _plain(body, frame):
        return read_exactly(body, is_array)
    return frame


def _read_fast(body: bytes, is_array: bool) -> pl.DataFrame | None:
    """polars' table of the body, or None where it refuses or may be wrong."""
    try:
        if is_array:
            # The array reader takes a JSON true or false as 1 or 0 in a number column.
            if b"true" in body or b"false" in body:
                return None
            return pl.read_json(io.BytesIO(body), schema=_PARSE_SCHEMA)
        try:
            return pl.read_ndjson(io.BytesIO(body), schema=_FAST_SCHEMA)
        except (pl.exceptions.PolarsError, ValueError, OverflowError):
            return pl.read_ndjson(io.BytesIO(body), schema=_PARSE_SCHEMA)
    except (pl.exceptions.PolarsError, ValueError, OverflowError):
        return None


def _plain(body: bytes, frame: pl.DataFrame) -> bool:
    """Whether the body is plain: every key in it is an event field holding a JSON string (text
    fields) or number, once per object, with no escape, so that polars' table is what it says.

    polars keeps the first of two equal keys, stringifies a number, boolean, array or object given
    for a text, and turns a lone surrogate escape into NUL; the json module does none of that. Two
    byte counts tell: without a backslash, a quote only opens or closes a string, so with K keys
    and S strings the body holds 2K + 2S quotes and K + (colons inside strings) colons. polars'
    table has N non-null values (N_text of them texts), and K >= N, S >= N_text; equality in both
    counts leaves no room for a repeated, unknown or null key, or a text given as anything but a
    string (an array or object given for a text would be stringified by polars: those start with
    [ or {, and are sent to the exact reader too).
    """
    if b"\\" in body:
        return False
    counts = frame.select(texts=pl.sum_horizontal(pl.col(_TEXT_COLUMNS).count()),
                          numbers=pl.sum_horizontal(pl.col(_NUMBER_COLUMNS).count())).row(0)
    n_text, n_number = (int(c) for c in counts)
    raw = np.frombuffer(body, np.uint8)
    if int(np.count_nonzero(raw == ord('"'))) != 4 * n_text + 2 * n_number:
        return False
    if frame.select(pl.any_horizontal(pl.col(_TEXT_COLUMNS).str.contains(r"^[\[{]").any())).item():
        return False
    colons = int(np.count_nonzero(raw == ord(":")))
    keys = n_text + n_number
    if colons == keys:
        return True
    inside = frame.select(pl.sum_horizontal(pl.col(_TEXT_COLUMNS).str.count_matches(":", literal=True).sum()))
    return colons == keys + int(inside.item())


class _Literal:
    """A JSON constant or number the json module reads but no event may hold: NaN, Infinity, 1e400."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _finite(text: str) -> float | _Literal:
    value = float(text)
    return value if math.isfinite(value) else _Literal(text)


class _Object(dict):
    """A decoded JSON object; `repeated` is a key it named twice (None if none)."""

    repeated: str | None = None


def _object(pairs: list) -> _Object:
    obj = _Object(pairs)
    if len(obj) < len(pairs):
        seen: set = set()
        obj.repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_float=_finite, parse_constant=_Literal)


def read_exactly(body: bytes, is_array: bool) -> pl.DataFrame:
    """Read the body with Python's json module into an event table, refusing what polars would
    take wrongly: a key named twice, a text given as a number with a fraction, a boolean, NaN or
    Infinity, a lone surrogate, bytes that are not UTF-8, nesting too deep to read."""
    bad_byte = None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Read on with the bad bytes as lone surrogates, to name the row and field that holds them.
        bad_byte, text = exc.start, body.decode("utf-8", "surrogateescape")
    if is_array:
        rows = _decode(text, None, bad_byte, body)
        lines = None
    else:
        lines = [(n, ln) for n, ln in enumerate(text.split("\n"), start=1) if ln.strip(_JSON_SPACE)]
        rows = [_decode(ln, i, bad_byte, body) for i, (_, ln) in enumerate(lines, start=1)]
    for i, row in enumerate(rows, start=1):
        _check_row(row, i, bad_byte)
    if bad_byte is not None:  # in a key or a field that is not an event's
        raise Invalid(f"body is not UTF-8 (byte {bad_byte}, line {_line_of(body, bad_byte)})")
    columns = {}
    for name, dtype in _PARSE_SCHEMA.items():
        values = [row.get(name) for row in rows]
        if dtype == pl.String():
            values = [v if v is None or isinstance(v, str) else str(v) for v in values]
        else:
            values = [v if v is None else float(v) for v in values]
        columns[name] = pl.Series(name, values, dtype=dtype)
    return pl.DataFrame(columns)


def _decode(text: str, row: int | None, bad_byte: int | None, body: bytes):
    """One JSON value: the whole array (`row` None) or the NDJSON line of event `row`."""
    where = "" if row is None else f"row {row}: "
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        if bad_byte is not None:
            raise Invalid(f"{where}body is not UTF-8 (byte {bad_byte}, line {_line_of(body, bad_byte)})",
                          row=row) from None
        if row is None:
            raise Invalid(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        raise Invalid(f"row {row}: malformed JSON at column {exc.colno}: {exc.msg}", row=row) from None
    except RecursionError:
        raise Invalid(f"{where}JSON nested too deeply: an event is a flat JSON object", row=row) from None
    except ValueError as exc:  # a number beyond Python's digit limit for integers
        raise Invalid(f"{where}a number in the body cannot be read: {exc}", row=row) from None


def _check_row(row, i: int, bad_byte: int | None) -> None:
    if not isinstance(row, dict):
        raise Invalid(f"row {i}: expected a JSON object, got {_json_type(row)}", row=i)
    if row.repeated is not None:
        raise Invalid(f"row {i}: key {row.repeated!r} is given twice in one object", row=i,
                      field=row.repeated if row.repeated in _JSON_TYPES else None)
    for field, types in _JSON_TYPES.items():
        value = row.get(field)
        if value is None:
            continue
        if isinstance(value, _Literal):
            raise Invalid(f"row {i}, field {field}: expected {_JSON_NAMES[field]}, got {value} "
                          "(not a finite JSON number)", row=i, field=field)
        if isinstance(value, bool) or not isinstance(value, types):
            raise Invalid(f"row {i}, field {field}: expected {_JSON_NAMES[field]}, got {_short(value)}",
                          row=i, field=field)
        if isinstance(value, int) and field in _NUMBER_COLUMNS and abs(value) >= 2**1024:  # beyond a float
            raise Invalid(f"row {i}, field {field}: expected {_JSON_NAMES[field]}, got {_short(value)} "
                          "(not a finite JSON number)", row=i, field=field)
        if isinstance(value, str) and not value.isascii():
            _check_unicode(value, i, field, bad_byte)


def _check_unicode(value: str, row: int, field: str, bad_byte: int | None) -> None:
    """A text must be Unicode characters: no lone surrogate (from an escape or a bad byte)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = value[exc.start]
        if bad_byte is not None and "\udc80" <= char <= "\udcff":
            raise Invalid(f"row {row}, field {field}: not UTF-8 (byte {bad_byte} of the body)",
                          row=row, field=field) from None
        raise Invalid(f"row {row}, field {field}: holds U+{ord(char):04X}, a lone surrogate (half of a "
                      "character), which no text may hold", row=row, field=field) from None


def _line_of(body: bytes, offset: int) -> int:
    return body.count(b"\n", 0, offset) + 1


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text):,} characters)"


def _json_type(value) -> str:
    """What a decoded JSON value is, in JSON's words."""
    if value is None:
        return "null"
    return {bool: "true or false", int: "a number", float: "a number", _Literal: "a number", str: "text",
            list: "an array"}.get(type(value), "an object")


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
    # A kind no rule scores is refused, unless it is a record of the commercial profile, which a
    # platform's key sends where the policy lets some role see profiles (grant field `offers`).
    profile = events.select(is_profile_kind(pl.col("kind")) & ~pl.col("kind").is_in(kinds)).to_series()
    _refuse(events, ~events["kind"].is_in(kinds) & ~profile, "kind", Invalid,
            lambda v: f"unknown event kind {v!r}: policy '{compiled.policy.name}' has no rule for it, and it is "
                      f"no commercial-profile record ({PROFILE_KINDS_TEXT})")
    if key.role != "platform" or not any("offers" in g.fields for g in compiled.policy.grants):
        why = ("only a platform's key sends records of the commercial profile" if key.role != "platform" else
               f"policy '{compiled.policy.name}' lets no role see commercial profiles (grant field 'offers'), so "
               "it keeps none")
        _refuse(events, profile, "kind", Forbidden, lambda v: f"{v!r} is a commercial-profile record: {why}")
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
