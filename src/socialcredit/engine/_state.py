"""Incremental scoring: apply batches of events to a running state, advance the day."""

from __future__ import annotations

import numpy as np
import polars as pl

from socialcredit.engine._compiled import (
    BIRTHS_SCHEMA,
    NO_RULE,
    YEAR_DAYS,
    CompiledPolicy,
    Status,
    status_series,
)
from socialcredit.policy import Policy

_DELTA_SCHEMA = {"code": pl.Int64, "rule": pl.Int32, "day": pl.Int32, "sign": pl.Int8}
_EMPTY_KEPT = pl.DataFrame(schema={"event_id": pl.String, "code": pl.Int64, "rule": pl.Int32,
                                   "day": pl.Int32, "counted": pl.Boolean})


class ScoreState:
    """Scores of every citizen seen so far, kept up to date batch by batch.

    Applying any split of a ledger, in any order of batches, and advancing to day T gives the same
    scores and classes as `score_ledger(policy, ledger, as_of=T)`. The work per batch grows with the
    batch and the days it touches, not with the ledger: counted points are kept as running totals,
    the days on which points start or expire are scheduled, and only the (rule, citizen, day) groups
    with a `max_per_day` cap keep their events, so that a late event can be ranked among them.

    `births` (citizen_id, birth_day) is the register a policy's `min_age` reads (see
    `score_ledger`); a citizen not of age has class -1 in `score_of` and is not in `scores`.
    """

    def __init__(self, policy: Policy | CompiledPolicy, *, as_of: int = 0, births: pl.DataFrame | None = None):
        self.compiled = policy if isinstance(policy, CompiledPolicy) else CompiledPolicy.of(policy)
        self.as_of = as_of
        self.births = None if births is None else births.select(BIRTHS_SCHEMA.keys()).cast(BIRTHS_SCHEMA)
        self._ids = pl.DataFrame(schema={"citizen_id": pl.String, "code": pl.Int64})
        n_classes = len(self.compiled.policy.classes)
        self._total = np.zeros(0, dtype=np.int64)
        self._cap_counts = np.zeros((0, n_classes), dtype=np.int32)
        self._schedule: dict[int, list[pl.DataFrame]] = {}
        self._capped: dict[int, pl.DataFrame] = {}

    @property
    def n_citizens(self) -> int:
        """Number of citizens seen."""
        return self._ids.height

    def apply(self, events: pl.DataFrame) -> pl.Series:
        """Add a validated batch of events; return each event's status as of `as_of`, in the batch's
        order: the Series "status" of `score_ledger(...).decisions` (counted, cap, future, ...)."""
        compiled = self.compiled
        codes = self._codes_for(events["citizen_id"])
        rule, status = compiled.passing_status(events, self.births)
        day = events["day"].to_numpy().astype(np.int32)
        passing = status == Status.COUNTED
        safe_rule = np.where(rule == NO_RULE, 0, rule)
        limited = passing & (compiled.cap[safe_rule] > 0)
        free = passing & ~limited
        deltas = [pl.DataFrame({"code": codes[free], "rule": rule[free], "day": day[free],
                                "sign": np.ones(int(free.sum()), dtype=np.int8)}, schema=_DELTA_SCHEMA)]
        if limited.any():
            batch = pl.DataFrame({
                "event_id": events["event_id"].filter(pl.Series(limited)),
                "code": codes[limited], "rule": rule[limited], "day": day[limited],
                "row": np.flatnonzero(limited), "counted": False,
            })
            cap_deltas, lost = self._rank_capped(batch)
            deltas.append(cap_deltas)
            status[lost] = Status.CAP
        self._apply_deltas(pl.concat(deltas))
        counted = status == Status.COUNTED
        expires = compiled.expires[safe_rule]
        status[counted & (day > self.as_of)] = Status.FUTURE
        status[counted & (day <= self.as_of) & (expires > 0) & (self.as_of >= day + expires)] = Status.EXPIRED
        return status_series(status)

    def advance(self, day: int) -> None:
        """Move the state forward to `day`: points start and expire as scheduled."""
        if day < self.as_of:
            raise ValueError(f"cannot go back from day {self.as_of} to day {day}")
        due = sorted(d for d in self._schedule if self.as_of < d <= day)
        for d in due:
            for entry in self._schedule.pop(d):
                self._add(entry["code"].to_numpy(), entry["points"].to_numpy(),
                          entry["cap_class"].to_numpy(), entry["sign"].to_numpy())
        self.as_of = day

    def add_births(self, births: pl.DataFrame) -> None:
        """Add citizens to the register of births (a citizen listed again takes the new birth day).

        Events already applied keep the status they had; add a citizen before their events."""
        births = births.select(BIRTHS_SCHEMA.keys()).cast(BIRTHS_SCHEMA)
        self.births = births if self.births is None else pl.concat(
            [self.births.join(births, on="citizen_id", how="anti"), births])

    def scores(self) -> pl.DataFrame:
        """Score and class of every citizen seen (and of age), sorted by citizen_id."""
        ids = self._ids.sort("citizen_id")
        score, klass = self.score_of(ids["citizen_id"])
        scored = klass >= 0
        return pl.DataFrame({"citizen_id": ids["citizen_id"].filter(pl.Series(scored)),
                             "score": score[scored]}).with_columns(self.compiled.class_series(klass[scored]))

    def score_of(self, citizen_ids: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """Score and class index (0 = top) of these citizens; unseen ones join at the start score;
        class -1 for a citizen not of the policy's age as of `as_of`."""
        score, klass = self._score_and_class(self._codes_for(citizen_ids))
        first = self.compiled.scored_from(citizen_ids, self.births)
        if first is not None:
            klass[first > self.as_of] = -1
        return score, klass

    def due(self, day: int) -> pl.Series:
        """The citizens whose points start or expire, or who come of age, after `as_of` and by
        `day` (whom `advance` changes)."""
        codes = [entry["code"] for at, entries in self._schedule.items() if self.as_of < at <= day
                 for entry in entries]
        # Codes are handed out in the order rows join `_ids`, so a code is its row.
        ids = self._ids["citizen_id"].gather(pl.concat(codes).unique().sort()) if codes else \
            pl.Series("citizen_id", [], dtype=pl.String)
        min_age = self.compiled.policy.min_age
        if min_age and self.births is not None:
            first = pl.col("birth_day") + YEAR_DAYS * min_age
            of_age = self.births.filter((first > self.as_of) & (first <= day))["citizen_id"]
            ids = pl.concat([ids, of_age.filter(~of_age.is_in(ids.implode()))]) if len(ids) else of_age
        return ids

    def _score_and_class(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score = self.compiled.clamp(self._total[codes])
        counts = self._cap_counts[codes]
        cap_class = np.where(counts > 0, np.arange(counts.shape[1]), -1).max(axis=1, initial=-1)
        return score, self.compiled.classify(score, cap_class)

    def _codes_for(self, citizen_id: pl.Series) -> np.ndarray:
        batch = pl.DataFrame({"citizen_id": citizen_id.cast(pl.String)})
        known = batch.join(self._ids, on="citizen_id", how="left", maintain_order="left")
        unseen = known.filter(pl.col("code").is_null())["citizen_id"].unique(maintain_order=True)
        if len(unseen):
            start = self._ids.height
            fresh = pl.DataFrame({"citizen_id": unseen,
                                  "code": np.arange(start, start + len(unseen), dtype=np.int64)})
            self._ids = pl.concat([self._ids, fresh])
            self._grow(self._ids.height)
            known = batch.join(self._ids, on="citizen_id", how="left", maintain_order="left")
        return known["code"].to_numpy()

    def _grow(self, n: int) -> None:
        if n <= len(self._total):
            return
        size = max(n, 2 * len(self._total), 1024)
        total = np.zeros(size, dtype=np.int64)
        total[: len(self._total)] = self._total
        counts = np.zeros((size, self._cap_counts.shape[1]), dtype=np.int32)
        counts[: len(self._cap_counts)] = self._cap_counts
        self._total, self._cap_counts = total, counts

    def _rank_capped(self, batch: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
        """Rank new capped events among the kept ones of their groups, in one pass; return the changes."""
        keys = ["code", "rule", "day"]
        days = batch["day"].unique().to_list()
        kept = pl.concat([_EMPTY_KEPT, *(self._capped.pop(d) for d in days if d in self._capped)])
        groups = batch.select(keys).unique()
        touched = kept.join(groups, on=keys, how="semi").with_columns(row=pl.lit(-1, pl.Int64))
        rest = kept.join(groups, on=keys, how="anti")
        ranked = (pl.concat([touched, batch.select(*_EMPTY_KEPT.columns, "row")])
                  .sort([*keys, "event_id"])
                  .with_columns(rank=pl.int_range(pl.len()).over(keys)))
        now = ranked["rank"].to_numpy() < self.compiled.cap[ranked["rule"].to_numpy()]
        ranked = ranked.with_columns(now=pl.Series(now))
        changes = ranked.filter(pl.col("now") != pl.col("counted")).select(
            *keys, sign=pl.when(pl.col("now")).then(1).otherwise(-1))
        lost = ranked.filter((pl.col("row") >= 0) & ~pl.col("now"))["row"].to_numpy()
        merged = pl.concat([rest, ranked.select(*_EMPTY_KEPT.columns[:-1], counted="now")])
        # Kept by day, so that a batch of one day touches that day's events only.
        self._capped.update({day: part for (day,), part in merged.partition_by("day", as_dict=True).items()})
        return changes.cast(_DELTA_SCHEMA), lost

    def _apply_deltas(self, deltas: pl.DataFrame) -> None:
        if deltas.height == 0:
            return
        c = self.compiled
        code = deltas["code"].to_numpy()
        rule = deltas["rule"].to_numpy()
        day = deltas["day"].to_numpy().astype(np.int64)
        sign = deltas["sign"].to_numpy().astype(np.int64)
        points = c.points[rule] * sign
        expires = c.expires[rule].astype(np.int64)
        cap_class = c.class_cap[rule]
        active = (day <= self.as_of) & ((expires == 0) | (self.as_of < day + expires))
        self._add(code[active], points[active], cap_class[active], sign[active])
        starts = day > self.as_of
        self._schedule_at(day[starts], code[starts], points[starts], cap_class[starts], sign[starts])
        ends = (expires > 0) & (day + expires > self.as_of)
        self._schedule_at((day + expires)[ends], code[ends], -points[ends], cap_class[ends], -sign[ends])

    def _schedule_at(self, at: np.ndarray, code, points, cap_class, sign) -> None:
        if len(at) == 0:
            return
        frame = pl.DataFrame({"at": at, "code": code, "points": points, "cap_class": cap_class,
                              "sign": sign})
        for (when,), part in frame.group_by("at"):
            self._schedule.setdefault(int(when), []).append(part)

    def _add(self, code: np.ndarray, points: np.ndarray, cap_class: np.ndarray, sign: np.ndarray) -> None:
        np.add.at(self._total, code, points)
        classed = cap_class >= 0
        if classed.any():
            np.add.at(self._cap_counts, (code[classed], cap_class[classed]), sign[classed].astype(np.int32))
