"""The event table: the one record that crosses every boundary, read and checked.

An event says when it happened by a day number or by an ISO date (or timestamp), or both when they
agree; a checked table holds the day number (the calendar says which date day 0 is).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from socialcredit.errors import SocialCreditError
from socialcredit.events._calendar import Calendar


@dataclass(frozen=True)
class EventField:
    """One column of the event record: written once here, and every other form derived from it (the
    polars schema, the JSON Schema of the API, the SQL columns of the ledger, the README's table)."""

    name: str
    dtype: pl.DataType
    required: bool
    json: dict  # JSON Schema of the value in an API body
    sql: str | None  # the column's SQL type ("{real}": the database's floating-point type); None: not stored
    meaning: str
    instead_of: str | None = None  # a field that may be given instead of this one (one of the two is required)
    max_length: int | None = None  # a stored text: at most this many characters, under the text rule (TEXT_RULE)

    @property
    def requirement(self) -> str:
        """Whether it is required, as the README's table says it."""
        if self.required:
            return "yes"
        return f"unless `{self.instead_of}` is given" if self.instead_of else "no"

    @property
    def described(self) -> str:
        """Its type in words, as the README's table gives it."""
        kind = self.json["type"][0] if isinstance(self.json["type"], list) else self.json["type"]
        if kind == "string":
            return f"text of at most {self.max_length} characters" if self.max_length else "text"
        if "maximum" in self.json:
            return f"{kind} in [{self.json['minimum']}, {self.json['maximum']}]"
        return f"{kind} >= {self.json['minimum']}" if "minimum" in self.json else kind


EVENT_FIELDS: tuple[EventField, ...] = (
    EventField("event_id", pl.String(), True, {"type": "string", "minLength": 1}, "TEXT",
               "unique id; also the order in which events of one rule, citizen and day count against "
               "`max_per_day` (string order)", max_length=200),
    EventField("citizen_id", pl.String(), True, {"type": "string", "minLength": 1}, "TEXT",
               "the citizen the event is attributed to", max_length=200),
    EventField("kind", pl.String(), True, {"type": "string", "minLength": 1}, "TEXT",
               "what happened, e.g. `traffic.red_light`", max_length=200),
    EventField("day", pl.Int32(), False, {"type": ["integer", "null"], "minimum": 0}, "INTEGER",
               "day number of the event (day 0: the calendar's start date)", instead_of="date"),
    EventField("date", pl.String(), False, {"type": ["string", "null"], "minLength": 10}, None,
               "date of the event, ISO `2018-03-01` or a timestamp `2018-03-01T08:30:00+08:00` (its date as "
               "written); stored as its day number, which must equal `day` where both are given",
               instead_of="day"),
    EventField("source", pl.String(), False, {"type": ["string", "null"], "minLength": 1}, "TEXT",
               "who reported it: `camera`, `traffic-police`, `e-commerce`, ...", max_length=200),
    EventField("source_ref", pl.String(), False, {"type": ["string", "null"], "minLength": 1}, "TEXT",
               "the camera, order, case or post behind it", max_length=500),
    EventField("confidence", pl.Float64(), False, {"type": ["number", "null"], "minimum": 0, "maximum": 1},
               "{real}", "match confidence of the attribution (face recognition); missing means 1.0"),
)
# The checked, stored record (a date is stored as its day number) and what an input may hold.
EVENT_SCHEMA: dict[str, pl.DataType] = {f.name: f.dtype for f in EVENT_FIELDS if f.sql is not None}
INPUT_SCHEMA: dict[str, pl.DataType] = {f.name: f.dtype for f in EVENT_FIELDS}
REQUIRED = tuple(f.name for f in EVENT_FIELDS if f.required)
TEXT_FIELDS = tuple(f for f in EVENT_FIELDS if f.max_length)  # the stored texts, under the text rule
_TEXT_FIELD = {f.name: f for f in TEXT_FIELDS}
# The text rule: a stored text is printable Unicode, neither empty nor starting or ending with
# whitespace, and at most its field's max_length characters. Refused: control characters (Cc: NUL,
# newlines, ...), and the invisible characters that make two ids look alike or reorder what a reader
# sees: the Arabic letter mark, zero-width characters and bidi marks (U+200B-U+200F), line and paragraph
# separators and bidi embeddings and overrides (U+2028-U+202E), the word joiner, invisible operators and
# bidi isolates (U+2060-U+2069) and the byte order mark. Lone surrogates (Cs) cannot be held by polars
# text at all; `check_text` refuses them in Python strings. One pattern, read by polars (Rust) and Python.
UNSAFE_CHARACTERS = r"\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_TEXT_PROBLEM = rf"[{UNSAFE_CHARACTERS}]|^\s|\s$"
_PY_TEXT_PROBLEM = re.compile(rf"[{UNSAFE_CHARACTERS}\ud800-\udfff]|^\s|\s$")
_WHAT_CHARACTER = {"Cc": "a control character", "Cs": "a lone surrogate (half of a character)",
                   "Zl": "a line separator", "Zp": "a paragraph separator"}
WHEN = ("day", "date")  # one of them is required
# After the date: nothing, or a time of day with an optional UTC offset.
_TIME_OF_DAY = r"^([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"


def event_json_schema(*, required: tuple[str, ...] = ()) -> dict:
    """The JSON Schema of one event in an API body (`required`: optional columns the API requires,
    which may then not be null either)."""

    def value(f: EventField) -> dict:
        schema = f.json
        if f.name in required and isinstance(schema["type"], list):
            schema = {**schema, "type": next(t for t in schema["type"] if t != "null")}
        return {**schema, "maxLength": f.max_length} if f.max_length else schema

    return {"type": "object", "required": [*REQUIRED, *required],
            "anyOf": [{"required": [name]} for name in WHEN],
            "properties": {f.name: value(f) for f in EVENT_FIELDS}}


def text_problem(value: str, field: str) -> str | None:
    """What breaks the text rule in `value` as a `field` (see TEXT_FIELDS), or None if it keeps it."""
    spec = _TEXT_FIELD[field]
    if value == "":
        return "is empty (required)" if spec.required else "is empty (leave it out instead)"
    if len(value) > spec.max_length:
        return f"is {len(value):,} characters long, at most {spec.max_length} are allowed"
    found = _PY_TEXT_PROBLEM.search(value)
    if found is None:
        return None
    char = found.group()
    if char.isspace() and unicodedata.category(char) not in _WHAT_CHARACTER:
        return "begins or ends with whitespace"
    what = _WHAT_CHARACTER.get(unicodedata.category(char), "an invisible formatting character")
    return f"holds U+{ord(char):04X}, {what}, which no text may hold"


def check_text(value: str, field: str = "citizen_id") -> str:
    """`value` if it keeps the text rule as a `field` (an id in a URL, say); else EventError naming the field."""
    problem = text_problem(value, field)
    if problem is not None:
        raise EventError(f"{field}: {problem} (got {_shown(value)})", column=field)
    return value


def event_sql_columns(real: str) -> str:
    """The ledger table's event columns in SQL (`real`: the database's floating-point type); the
    table's key is declared beside them (see service._db)."""
    return ", ".join(f"{f.name} {f.sql.format(real=real)}" + (" NOT NULL" if f.required else "")
                     for f in EVENT_FIELDS if f.sql is not None)


FORMATS = (".csv", ".parquet", ".ndjson", ".jsonl")


class EventError(SocialCreditError, ValueError):
    """Events that cannot be accepted; the message names the row and the column."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None):
        self.row = row
        self.column = column
        super().__init__(message)


def read_events(path: str | Path, *, calendar: Calendar | None = None) -> pl.DataFrame:
    """Read and validate an event file (.csv, .parquet or .ndjson); dates are day numbers of
    `calendar` (default: day 0 is 2018-01-01)."""
    path = Path(path)
    if not path.is_file():
        raise EventError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            raw = _read_csv(path)
        elif suffix == ".parquet":
            raw = pl.read_parquet(path)
        elif suffix in (".ndjson", ".jsonl"):
            raw = _read_ndjson(path)
        else:
            raise EventError(f"{path}: unknown event file type '{suffix}' (use {', '.join(FORMATS)})")
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise EventError(f"{path}: cannot be read: {exc}") from None
    return validate_events(raw, origin=str(path), calendar=calendar)


# Delimiters other than the comma that spreadsheets write (a locale with decimal commas: ';').
_OTHER_DELIMITERS = {";": "';'", "\t": "a tab", "|": "'|'"}


def _read_csv(path: Path) -> pl.DataFrame:
    """A CSV event file as text columns; a row with more or fewer fields than the header, or a
    file with another delimiter, is an EventError that says so."""
    with path.open("rb") as fh:
        header = fh.readline().decode("utf-8", errors="replace")
    if "," not in header:
        found = max(_OTHER_DELIMITERS, key=header.count)
        if found in header:
            raise EventError(f"{path}: the header has one column, {header.strip()[:80]!r}: the delimiter seems "
                             f"to be {_OTHER_DELIMITERS[found]}; event files are comma-separated")
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.ComputeError as exc:
        if "more fields" not in str(exc):
            raise
        raw = None
    # Polars fills a short row's missing fields with nulls: only then can the last column hold one.
    if raw is None or (raw.width and raw[:, -1].null_count()):
        _check_field_counts(path)
    if raw is None:  # polars found a long row that Python's csv module reads otherwise (quoting)
        raise EventError(f"{path}: cannot be read: a row has more fields than the header")
    return raw


def _check_field_counts(path: Path) -> None:
    """Raise an EventError naming the first row whose number of fields is not the header's."""
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        records = (fields for fields in reader if fields)  # a blank line is no row, as for polars
        for row, fields in enumerate(records, start=1):
            if len(fields) != len(header):
                more_or_fewer = "more" if len(fields) > len(header) else "fewer"
                raise EventError(f"{path}: row {row} (line {reader.line_num}) has {len(fields)} fields, "
                                 f"{more_or_fewer} than the header's {len(header)}", row=row)


def _read_ndjson(path: Path) -> pl.DataFrame:
    # Read every column as text first so that a bad value is reported by row, not as a parse error.
    import json

    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EventError(f"{path}: line {lineno}: not valid JSON ({exc.msg})", row=lineno) from None
            if not isinstance(obj, dict):
                raise EventError(f"{path}: line {lineno}: expected a JSON object", row=lineno)
            rows.append({k: (None if v is None else str(v)) for k, v in obj.items()})
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame(
        schema={c: pl.String for c in (*REQUIRED, "day")}
    )


def validate_events(frame: pl.DataFrame, *, origin: str = "events",
                    calendar: Calendar | None = None) -> pl.DataFrame:
    """Check columns, types, values and unique ids; return the table in the canonical schema, with
    each event's date (where it gave one) as its day number of `calendar` (default: day 0 is
    2018-01-01).

    Rows are numbered from 1 in messages (the first data row is row 1).
    """
    missing = [c for c in REQUIRED if c not in frame.columns]
    if not any(c in frame.columns for c in WHEN):
        missing.append(" or ".join(WHEN))
    if missing:
        raise EventError(f"{origin}: missing column(s) {', '.join(missing)} "
                         f"(required: {', '.join(REQUIRED)}, and {' or '.join(WHEN)})",
                         column=missing[0].split(" ")[0])
    unknown = [c for c in frame.columns if c not in INPUT_SCHEMA]
    frame = frame.drop(unknown)
    columns = []
    for name, dtype in INPUT_SCHEMA.items():
        col = frame.get_column(name) if name in frame.columns else pl.Series(name, [None] * frame.height)
        columns.append(_cast(col, dtype, origin))
    out = pl.DataFrame(columns)
    for name in REQUIRED:
        _fail_where(out, out[name].is_null(), origin, name, "is empty (required)")
    if out["date"].null_count() < out.height:
        out = _date_as_day(out, calendar or Calendar(), origin)
    out = out.drop("date")
    _fail_where(out, out["day"].is_null(), origin, "day", "is empty (required, unless date is given)")
    _check_texts(out, origin)
    _fail_where(out, out["day"] < 0, origin, "day", "must be >= 0")
    conf = out["confidence"]
    _fail_where(out, conf.is_not_null() & (conf.is_nan() | (conf < 0) | (conf > 1)),
                origin, "confidence", "must lie within [0, 1]")
    _check_unique_ids(out["event_id"], origin)
    return out


def _date_as_day(out: pl.DataFrame, calendar: Calendar, origin: str) -> pl.DataFrame:
    """Each given date's day number in `day`, where it agrees with a day given beside it."""
    text = out["date"].str.strip_chars()
    date = text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    bad = text.is_not_null() & (date.is_null() | ~text.str.slice(10).str.contains(_TIME_OF_DAY))
    _fail_where(out, bad, origin, "date", "expected an ISO date (2018-03-01) or timestamp (2018-03-01T08:30:00+08:00)")
    day = out.select(calendar.days(pl.lit(date))).to_series()
    _fail_where(out, day < 0, origin, "date", f"is before day 0 of the calendar ({calendar.start.isoformat()})")
    disagree = out["day"].is_not_null() & day.is_not_null() & (out["day"] != day)
    if disagree.any():
        row = int(disagree.arg_true()[0])
        given = int(out["day"][row])
        raise EventError(f"{origin}: row {row + 1}, columns day and date disagree: day {given} is "
                         f"{calendar.iso(given)}, the date says {date[row].isoformat()} (day {day[row]})",
                         row=row + 1, column="date")
    return out.with_columns(day=pl.coalesce("day", day.cast(pl.Int32)))


def _check_texts(out: pl.DataFrame, origin: str) -> None:
    """The text rule over every text column at once, vectorised; the first row that breaks it is named."""
    bad = out.select((~pl.col(f.name).str.len_chars().is_between(1, f.max_length)
                      | pl.col(f.name).str.contains(_TEXT_PROBLEM)).alias(f.name) for f in TEXT_FIELDS)
    for spec in TEXT_FIELDS:
        if bad[spec.name].any():
            row = int(bad[spec.name].arg_true()[0])
            value = out[spec.name][row]
            problem = text_problem(value, spec.name) or "breaks the text rule"
            raise EventError(f"{origin}: row {row + 1}, column {spec.name}: {problem} (got {_shown(value)})",
                             row=row + 1, column=spec.name)


def _shown(value) -> str:
    """A value as a message quotes it: a long text by its start and length."""
    if isinstance(value, str) and len(value) > 60:
        return f"{value[:40]!r}... ({len(value):,} characters)"
    return repr(value)


def _check_unique_ids(ids: pl.Series, origin: str) -> None:
    # Hashes first: exact string de-duplication is many times slower and rarely needed.
    if ids.hash().n_unique() == len(ids):
        return
    dup = ids.is_duplicated()
    if not dup.any():
        return
    rows = dup.arg_true()
    first = ids[int(rows[0])]
    where = [int(r) + 1 for r in rows.filter(ids.gather(rows) == first)]
    raise EventError(f"{origin}: duplicate event_id '{first}' at rows {', '.join(map(str, where))}",
                     row=where[0], column="event_id")


def _cast(col: pl.Series, dtype: pl.DataType, origin: str) -> pl.Series:
    if dtype == pl.String():
        if col.dtype == pl.String:
            return col
        if col.dtype.is_float():
            bad = col.is_not_null() & (col != col.round())
            if bad.any():
                row = int(bad.arg_true()[0])
                raise EventError(f"{origin}: row {row + 1}, column {col.name}: expected text, got {_shown(col[row])}",
                                 row=row + 1, column=col.name)
            col = col.cast(pl.Int64)
        return col.cast(pl.String)
    source = col.str.strip_chars() if col.dtype == pl.String else col
    cast = source.cast(dtype, strict=False)
    bad = cast.is_null() & source.is_not_null()
    if col.dtype == pl.String:
        bad = bad & (source != "")
    if dtype.is_integer() and col.dtype.is_float():
        bad = bad | (col.is_not_null() & (col != col.round()))
    if bad.any():
        row = int(bad.arg_true()[0])
        expected = "a whole number" if dtype.is_integer() else "a number"
        raise EventError(f"{origin}: row {row + 1}, column {col.name}: expected {expected}, got {_shown(col[row])}",
                         row=row + 1, column=col.name)
    return cast.alias(col.name)


def _fail_where(frame: pl.DataFrame, mask: pl.Series, origin: str, column: str, what: str) -> None:
    if mask.any():
        row = int(mask.arg_true()[0])
        value = frame[column][row]
        raise EventError(f"{origin}: row {row + 1}, column {column}: {what} (got {_shown(value)})",
                         row=row + 1, column=column)
