"""Events per day and citizens per class for /api/stats: counted once from the tables (with the
scoring state, when a write builds it from the ledger; else at the first request), then kept up to
date by the writes of this process. Each write collects what it changes (events stored or
voided per day; each re-scored citizen's old and new class) and adds it when it commits. The
counts hold for one ledger generation; a write by another process (PostgreSQL, `db load`) leaves
them behind it, and they are counted again. A partitioned ledger, written by several processes at
once, is counted again whenever a generation moved."""

from __future__ import annotations

import numpy as np
import polars as pl


class Counts:
    """The Ledger's statistics (a mixin over its database and write lock)."""

    def counts(self) -> tuple[dict[int, int], list[int]]:
        """Events per day (voided ones left out) and scored citizens per class index."""
        gen = self._gens(None, every=True)
        if (held := self._held_counts(gen)) is not None:
            return held
        if self.partitioned:
            # Not under the write locks (they would stop every partition's projection): kept only
            # if no generation moved while counting.
            days, classes = self._count(None)
            if self._gens(None, every=True) == gen:
                with self._counts_lock:
                    self._counts = Tally(gen, dict(days), list(classes))
            return days, classes
        # Counted under the write lock: no write runs meanwhile, and every write after it keeps
        # the counts up to date (a count taken beside a running write would be behind it at once).
        with self.write() as cur:
            gen = self._gens(cur)
            # A write that ended while this waited for the lock brought them up to date: its commit
            # is seen before it adds what it changed, so the check above can miss it.
            if (held := self._held_counts(gen)) is not None:
                return held
            days, classes = self._count(cur)
            with self._counts_lock:
                self._counts = Tally(gen, dict(days), list(classes))
        return days, classes

    def _held_counts(self, gen: tuple[int, ...]) -> tuple[dict[int, int], list[int]] | None:
        """A copy of the counts if they hold for generations `gen`, else None."""
        with self._counts_lock:
            counts = self._counts
            if counts is not None and counts.gen == gen:
                return dict(counts.days), list(counts.classes)
        return None

    def _count_with_build(self, cur, gen: tuple[int, ...], per_day: dict[int, int]) -> None:
        """Count, in the write that just rebuilt the scoring state from the ledger (its scan gave the
        events per day), unless the counts hold already: a service counts as it starts, and its
        first /api/stats does not stop the projection while it scans the ledger (3.2 s at 2,000,000
        events)."""
        counts = self._counts
        if counts is not None and counts.gen == gen:
            return
        days, classes = self._count(cur, per_day)
        tally = Tally(gen, days, classes)
        with self._counts_lock:
            self._counts = tally
        self._counted_here = tally  # dropped if this write rolls back (it may have counted its own rows)
        self._delta = TallyChange(tally, len(self.class_names))  # what this write changes counts on top

    def _count(self, cur, per_day: dict[int, int] | None = None) -> tuple[dict[int, int], list[int]]:
        db = self.db
        days = per_day if per_day is not None else {int(d): int(n) for d, n in db.execute(
            "SELECT day, COUNT(*) FROM events WHERE voided = 0 GROUP BY day", (), cur)}
        classes = [0] * len(self.class_names)
        for idx, n in db.execute("SELECT class_idx, COUNT(*) FROM scores GROUP BY class_idx", (), cur):
            classes[int(idx)] += int(n)
        return days, classes

    def _count_days(self, days: pl.Series, sign: int) -> None:
        if self._delta is not None and len(days):
            for day, n in pl.DataFrame({"day": days}).group_by("day").len().iter_rows():
                self._delta.days[int(day)] = self._delta.days.get(int(day), 0) + sign * int(n)

    def _count_classes(self, cur, new: pl.DataFrame, old: pl.DataFrame | None = None) -> None:
        """Count the class moves of the citizens in `new` (citizen_id, class_idx) about to be written;
        `old` (citizen_id, old): their rows in `scores` now, read here when not given."""
        delta = self._delta
        if delta is None or new.height == 0:
            return
        if old is None:
            db = self.db
            old = db.frame(f"SELECT citizen_id, class_idx FROM scores WHERE {db.any_of('citizen_id')}",
                           (db.list_param(new["citizen_id"]),), {"citizen_id": pl.String, "old": pl.Int32}, cur)
        n = len(delta.classes)
        delta.classes += np.bincount(new["class_idx"].to_numpy(), minlength=n)[:n]
        delta.classes -= np.bincount(old["old"].to_numpy(), minlength=n)[:n]

    def _begin_counts(self) -> None:
        counts = self._counts
        self._counted_here = None
        self._delta = None if counts is None or self.partitioned else TallyChange(counts, len(self.class_names))

    def _end_counts(self, committed: bool) -> None:
        delta, self._delta = self._delta, None
        if not committed and self._counted_here is not None:
            with self._counts_lock:
                if self._counts is self._counted_here:
                    self._counts = None
        if delta is None or not committed or delta.gen is None:
            return
        with self._counts_lock:
            counts = self._counts
            if counts is not delta.counts or counts.gen != tuple(g - 1 for g in delta.gen):
                return
            for day, n in delta.days.items():
                counts.days[day] = counts.days.get(day, 0) + n
                if counts.days[day] == 0:
                    del counts.days[day]
            counts.classes = [int(a + b) for a, b in zip(counts.classes, delta.classes, strict=True)]
            counts.gen = delta.gen


class Tally:
    """Events per day and citizens per class index, as of ledger generations `gen`."""

    def __init__(self, gen: tuple[int, ...], days: dict[int, int], classes: list[int]):
        self.gen = gen
        self.days = days
        self.classes = classes


class TallyChange:
    """What one write changes in `counts`; `gen`: the generation it brings them to (set by _bump)."""

    def __init__(self, counts: Tally, n_classes: int):
        self.counts = counts
        self.days: dict[int, int] = {}
        self.classes = np.zeros(n_classes, dtype=np.int64)
        self.gen: tuple[int, ...] | None = None
        self.valid = True
