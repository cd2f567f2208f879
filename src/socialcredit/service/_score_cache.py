"""The score cache: each process keeps the engine's ScoreState of the whole ledger in memory (built
from the ledger at start), applies each projected batch to it (cost grows with the batch, not the
ledger) and writes the rows of the touched citizens whose score or class moved (or who have none
yet), and their class changes.

The state stays exact: every write to the ledger bumps `ledger_gen` in the meta table in its own
transaction; the state is valid for the generation it was brought to, a write first checks it
(another process may have written: PostgreSQL, `db load`) and rebuilds it from the ledger when
it is behind, a write that is rolled back drops it, and a citizen with a voided event (an upheld
appeal) is re-scored from their ledger, since the state cannot take an event out."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

from socialcredit.engine import BIRTHS_SCHEMA, ScoreState, score_ledger
from socialcredit.events import EVENT_SCHEMA
from socialcredit.service._db import EVENT_COLUMNS

_BUILD_CHUNK = 500_000  # ledger rows read at a time when the scoring state is rebuilt


class Before(NamedTuple):
    """Citizens' score and class index (-1: not of age) before a write, and whether the state knew them."""

    score: np.ndarray
    klass: np.ndarray
    known: np.ndarray


class ScoreCache:
    """The Ledger's scores (a mixin over its database, compiled policy and service day)."""

    def _sync(self, cur) -> ScoreState:
        """The incremental state, up to date with the ledger as of this transaction."""
        gen = self._gens(cur)
        day = int(self.db.get_meta(self._own("day"), "0", cur))
        if self._state is None or self._state_gen != gen or self._state.as_of != day:
            self._state = None
            self._day = day
            self._state, per_day = self._build(cur, day)
            self._dirty = set()
            self._state_gen = gen
            if not self.partitioned:
                self._count_with_build(cur, gen, per_day)
        return self._state

    def _build(self, cur, day: int) -> tuple[ScoreState, dict[int, int]]:
        """The state of the ledger (of this process's partition), voided events left out, read in
        chunks; and those events per day."""
        state = ScoreState(self.compiled, as_of=day, births=self._births(cur))
        per_day: dict[int, int] = {}
        events = self.db.partition_table("events", self.partition)
        cur.execute(self.db.sql(f"SELECT {', '.join(EVENT_COLUMNS)} FROM {events} WHERE voided = 0"))
        while True:
            chunk = cur.fetchmany(_BUILD_CHUNK)
            if not chunk:
                break
            frame = pl.DataFrame(chunk, schema=EVENT_SCHEMA, orient="row")
            state.apply(frame)
            for d, n in frame.group_by("day").len().iter_rows():
                per_day[d] = per_day.get(d, 0) + n
        return state, per_day

    def _births(self, cur, citizen_ids: pl.Series | None = None) -> pl.DataFrame | None:
        """The register of births (of these citizens), None when the policy has no min_age."""
        if not self.compiled.policy.min_age:
            return None
        db = self.db
        if citizen_ids is None:
            return db.frame("SELECT citizen_id, birth_day FROM births", (), BIRTHS_SCHEMA, cur)
        return db.frame(f"SELECT citizen_id, birth_day FROM births WHERE {db.any_of('citizen_id')}",
                        (db.list_param(citizen_ids),), BIRTHS_SCHEMA, cur)

    def births_of(self, citizen_id: str) -> pl.DataFrame | None:
        """This citizen's row of the register of births, None when the policy has no min_age."""
        return self._births(None, pl.Series([citizen_id]))

    def scored_from(self, citizen_id: str) -> int | None:
        """The first day the policy scores this citizen, None when it scores them from the start."""
        first = self.compiled.scored_from(pl.Series([citizen_id]), self.births_of(citizen_id))
        return None if first is None or first[0] <= 0 else int(first[0])

    def _score_new(self, cur, state: ScoreState, events: pl.DataFrame) -> None:
        """Apply events just stored (each once) to the state; write the touched citizens' scores."""
        if events.height == 0:
            return
        self._write_scores(cur, state, *self._apply_new(state, events))

    def _apply_new(self, state: ScoreState, events: pl.DataFrame) -> tuple[pl.Series, Before]:
        """Apply events just stored (each once) to the state; return the touched citizens and what
        they were before (for `_write_scores`)."""
        ids = events["citizen_id"].unique()
        self._mutated = True
        known = state.known(ids)
        score, klass = state.score_of(ids)  # citizens first seen now start with no points
        state.apply(events)
        return ids, Before(score, klass, known)

    def _write_scores(self, cur, state: ScoreState, ids: pl.Series, before: Before) -> None:
        """Write the rows of these citizens whose score or class moved (or who have no row yet, as far
        as the state knows); a row's `as_of` is the service day of its last change."""
        score, after = state.score_of(ids)
        # A citizen not of the policy's age has no score (and, the day going only forward, had none
        # before). A citizen the state knows, of age before, has the row it had then.
        had_row = before.known & (before.klass >= 0)
        moved = (after >= 0) & ~(had_row & (score == before.score) & (after == before.klass))
        touched = pl.DataFrame({"citizen_id": ids, "score": score, "class_idx": after, "old": before.klass,
                                "had_row": had_row, "moved": moved})
        if self._dirty:
            # Whether or not the state sees a move: it still counts their voided events.
            dirty = touched["citizen_id"].is_in(list(self._dirty))
            if dirty.any():
                self.rescore(cur, touched["citizen_id"].filter(dirty))
                touched = touched.filter(~dirty)
        # In key order: the upsert then walks the scores index front to back.
        new = touched.filter(pl.col("moved")).drop("moved").sort("citizen_id")
        if new.height == 0:
            return
        self._count_classes(cur, new, self._old_classes(cur, new))
        names = pl.Series(self.class_names, dtype=pl.String)
        new = new.with_columns(**{"class": names.gather(new["class_idx"])},
                               as_of=pl.lit(self.day, pl.Int32))
        changed = new.filter(pl.col("class_idx") != pl.col("old"))
        if changed.height:
            self.db.insert_frame(cur, "class_history",
                                 changed.select("citizen_id", day="as_of", class_idx="class_idx"))
        self.db.insert_frame(cur, "scores", new.select("citizen_id", "score", "class", "class_idx", "as_of"),
                             conflict="ON CONFLICT (citizen_id) DO UPDATE SET score = excluded.score, "
                                      "class = excluded.class, class_idx = excluded.class_idx, "
                                      "as_of = excluded.as_of")

    def _old_classes(self, cur, new: pl.DataFrame) -> pl.DataFrame | None:
        """The rows in `scores` now of the citizens in `new` (citizen_id, old), for the class counts:
        those the state knew have the class it had; the others are read (a loaded run's citizens
        have a row before their first event). None when no counts are kept."""
        if self._delta is None:
            return None
        fresh = new.filter(~pl.col("had_row"))
        db = self.db
        read = pl.DataFrame(db.rows_matching("SELECT citizen_id, class_idx FROM scores WHERE {match}", "citizen_id",
                                             fresh["citizen_id"], (), cur),
                            schema={"citizen_id": pl.String, "old": pl.Int32}, orient="row") if fresh.height else None
        kept = new.filter(pl.col("had_row")).select("citizen_id", pl.col("old").cast(pl.Int32))
        return kept if read is None else pl.concat([kept, read])

    def rescore(self, cur, citizen_ids: pl.Series) -> None:
        """Re-score these citizens from their whole ledger, as of the service day, in `cur`.

        The slow path, for citizens the incremental state cannot score (an event voided).
        """
        if len(citizen_ids) == 0:
            return
        db = self.db
        ids = db.list_param(citizen_ids)
        old = db.frame(f"SELECT citizen_id, class_idx FROM scores WHERE {db.any_of('citizen_id')}",
                       (ids,), {"citizen_id": pl.String, "old": pl.Int32}, cur)
        ledger = db.frame(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events "
                          f"WHERE voided = 0 AND {db.any_of('citizen_id')}", (ids,), EVENT_SCHEMA, cur)
        new = self._scores(ledger, citizen_ids, cur)
        self._count_classes(cur, new, old)
        changed = (new.join(old, on="citizen_id", how="left")
                   .filter(pl.col("class_idx") != pl.col("old").fill_null(self.start_class)))
        if changed.height:
            db.insert_frame(cur, "class_history", changed.select("citizen_id", day="as_of", class_idx="class_idx"))
        db.insert_frame(cur, "scores", new, conflict=(
            "ON CONFLICT (citizen_id) DO UPDATE SET score = excluded.score, class = excluded.class, "
            "class_idx = excluded.class_idx, as_of = excluded.as_of"))

    def _scores(self, ledger: pl.DataFrame, citizen_ids: pl.Series, cur) -> pl.DataFrame:
        """Score and class per citizen (of age), as of the service day."""
        c = self.compiled
        births = self._births(cur, citizen_ids)
        result = score_ledger(c, ledger, as_of=self.day, births=births)
        scored = result.scores.with_columns(class_idx=pl.col("class").to_physical().cast(pl.Int32),
                                            **{"class": pl.col("class").cast(pl.String)})
        # Citizens whose every event was voided are back at the start (if of age).
        alone = pl.DataFrame({"citizen_id": citizen_ids.unique()}).join(scored, on="citizen_id", how="anti")
        first = c.scored_from(alone["citizen_id"], births)
        if first is not None:
            alone = alone.filter(pl.Series(first <= self.day))
        start = alone.with_columns(score=pl.lit(c.policy.start, pl.Int64),
                                   **{"class": pl.lit(self.class_names[self.start_class])},
                                   class_idx=pl.lit(self.start_class, pl.Int32))
        return (pl.concat([scored, start], how="diagonal_relaxed")
                .select("citizen_id", "score", "class", "class_idx", as_of=pl.lit(self.day, pl.Int32)))
