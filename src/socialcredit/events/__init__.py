"""Events: the record that crosses every boundary, read from files and checked."""

from socialcredit.events._table import EVENT_SCHEMA, REQUIRED, EventError, read_events, validate_events

__all__ = [
    "EVENT_SCHEMA",
    "EventError",
    "REQUIRED",
    "read_events",
    "validate_events",
]
