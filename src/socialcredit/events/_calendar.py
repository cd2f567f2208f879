"""Days and dates: every component counts time in day numbers from one start date.

Day 0 is the calendar's start date (a scenario's `start_date`; the service keeps the one of the
run it loaded, or the default). A day is a calendar day, so points expiring after 365 days and a
sanction held for 30 days count calendar days, whichever form (day number or date) an event came in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

# The presets' start (the first year of the pilots); also the calendar of a service database that
# never loaded a run and of event files scored on their own.
DEFAULT_START = dt.date(2018, 1, 1)


@dataclass(frozen=True)
class Calendar:
    """Day numbers and the dates they stand for (day 0: `start`)."""

    start: dt.date = DEFAULT_START

    def date_of(self, day: int) -> dt.date:
        """The date of day number `day`."""
        return self.start + dt.timedelta(days=int(day))

    def iso(self, day: int | None) -> str | None:
        """The ISO date of day number `day` (None stays None)."""
        return None if day is None else self.date_of(day).isoformat()

    def day_of(self, date: dt.date) -> int:
        """The day number of `date` (negative before the start)."""
        return (date - self.start).days

    def today(self, clock: Callable[[], dt.date] = dt.date.today) -> int:
        """Today's day number by `clock` (the wall clock's local date by default)."""
        return self.day_of(clock())

    def dates(self, days: pl.Expr) -> pl.Expr:
        """A column of day numbers as dates."""
        return pl.lit(self.start, pl.Date) + pl.duration(days=days)

    def days(self, dates: pl.Expr) -> pl.Expr:
        """A column of dates as day numbers."""
        return (dates - pl.lit(self.start, pl.Date)).dt.total_days()
