"""Batch scoring: a whole ledger of events in, decisions, scores and classes out."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from socialcredit.engine._compiled import (
    STATUS_NAMES,
    CompiledPolicy,
    Status,
    capped_mask,
    status_series,
)
from socialcredit.events import EventError
from socialcredit.policy import Policy

SCORE_SCHEMA = {"citizen_id": pl.String, "score": pl.Int64}


@dataclass(frozen=True, eq=False)
class Scoring:
    """The result of scoring a ledger as of one day."""

    compiled: CompiledPolicy
    events: pl.DataFrame
    as_of: int
    rule: np.ndarray
    status: np.ndarray
    applied: np.ndarray
    scores: pl.DataFrame

    @cached_property
    def decisions(self) -> pl.DataFrame:
        """One row per event: the rule, the points it adds as of `as_of`, and its status."""
        rules = self.compiled.policy.rules
        ids = pl.Series("rule_idx", self.rule, dtype=pl.Int32)
        return self.events.with_columns(
            rule=ids.replace_strict({i: r.id for i, r in enumerate(rules)}, default=None,
                                    return_dtype=pl.String),
            points=pl.Series(self.applied),
            status=status_series(self.status),
            reason=ids.replace_strict({i: r.reason for i, r in enumerate(rules)}, default=None,
                                      return_dtype=pl.String),
        )

    @cached_property
    def unknown_kinds(self) -> pl.DataFrame:
        """Event kinds no rule scores, with how many events had each."""
        mask = pl.Series(self.status == Status.UNKNOWN_KIND)
        return (self.events.filter(mask).group_by("kind").agg(events=pl.len())
                .sort(["events", "kind"], descending=[True, False]))

    def status_counts(self) -> dict[str, int]:
        """How many events ended in each status."""
        counts = np.bincount(self.status, minlength=len(STATUS_NAMES))
        return {name: int(n) for name, n in zip(STATUS_NAMES, counts, strict=True)}


def score_ledger(policy: Policy | CompiledPolicy, events: pl.DataFrame, *, as_of: int | None = None,
                 strict: bool = False, births: pl.DataFrame | None = None) -> Scoring:
    """Score a validated event table as of day `as_of` (default: its largest day).

    `births` (citizen_id, birth_day), for a policy with a `min_age`: the events of a citizen before
    they are of age do not count, and `scores` leaves out the citizens not of age by `as_of`.
    """
    compiled = policy if isinstance(policy, CompiledPolicy) else CompiledPolicy.of(policy)
    day = events["day"].to_numpy()
    if as_of is None:
        as_of = int(day.max()) if len(day) else 0
    rule, status = compiled.passing_status(events, births)
    if strict and (status == Status.UNKNOWN_KIND).any():
        kinds = events.filter(pl.Series(status == Status.UNKNOWN_KIND))["kind"].unique().sort()
        raise EventError(f"unknown event kind(s) with no rule in policy "
                         f"'{compiled.policy.name}': {', '.join(kinds.head(10))}", column="kind")
    passing = status == Status.COUNTED
    status[capped_mask(rule, events["citizen_id"], day, events["event_id"], compiled.cap, passing)] = Status.CAP
    counted = status == Status.COUNTED
    safe_rule = np.where(rule >= 0, rule, 0)
    future = counted & (day > as_of)
    expires = compiled.expires[safe_rule]
    expired = counted & ~future & (expires > 0) & (as_of >= day + expires)
    status[future] = Status.FUTURE
    status[expired] = Status.EXPIRED
    active = status == Status.COUNTED
    applied = np.where(active, compiled.points[safe_rule], 0)
    cap_class = np.where(active, compiled.class_cap[safe_rule], -1).astype(np.int16)
    # Lazy: polars plans the group-by and the sort together, which is faster than eager calls.
    per_citizen = (
        pl.DataFrame({"citizen_id": events["citizen_id"], "total": applied, "cap_class": cap_class}).lazy()
        .group_by("citizen_id")
        .agg(pl.col("total").sum(), pl.col("cap_class").max())
        .sort("citizen_id")
        .collect()
    )
    first = compiled.scored_from(per_citizen["citizen_id"], births)
    if first is not None:
        per_citizen = per_citizen.filter(pl.Series(first <= as_of))
    score = compiled.clamp(per_citizen["total"].to_numpy())
    klass = compiled.classify(score, per_citizen["cap_class"].to_numpy())
    scores = pl.DataFrame({"citizen_id": per_citizen["citizen_id"], "score": score}).with_columns(
        compiled.class_series(klass)
    )
    return Scoring(compiled, events, as_of, rule, status, applied, scores)
