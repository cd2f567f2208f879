"""Events: the record that crosses every boundary, read from files and checked."""

from socialcredit.events._table import (
    EVENT_FIELDS,
    EVENT_SCHEMA,
    REQUIRED,
    EventError,
    EventField,
    event_json_schema,
    event_sql_columns,
    read_events,
    validate_events,
)

__all__ = [
    "EVENT_FIELDS",
    "EVENT_SCHEMA",
    "EventError",
    "EventField",
    "REQUIRED",
    "event_json_schema",
    "event_sql_columns",
    "read_events",
    "validate_events",
]
