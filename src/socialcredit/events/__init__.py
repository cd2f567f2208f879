"""Events: the record that crosses every boundary, read from files and checked, and the calendar
that turns their dates into day numbers."""

from socialcredit.events._calendar import DEFAULT_START, Calendar
from socialcredit.events._table import (
    EVENT_FIELDS,
    EVENT_SCHEMA,
    INPUT_SCHEMA,
    REQUIRED,
    TEXT_FIELDS,
    EventError,
    EventField,
    check_text,
    event_json_schema,
    event_sql_columns,
    read_events,
    validate_events,
)

__all__ = [
    "Calendar",
    "DEFAULT_START",
    "EVENT_FIELDS",
    "EVENT_SCHEMA",
    "EventError",
    "EventField",
    "INPUT_SCHEMA",
    "REQUIRED",
    "TEXT_FIELDS",
    "check_text",
    "event_json_schema",
    "event_sql_columns",
    "read_events",
    "validate_events",
]
