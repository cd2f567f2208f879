"""Reason codes: why one citizen has the score and class they have."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from socialcredit.engine._batch import score_ledger
from socialcredit.engine._compiled import CompiledPolicy
from socialcredit.policy import Policy

MAX_FACTORS = 4  # as many key factors as a US credit-score adverse-action notice gives


@dataclass(frozen=True)
class Explanation:
    """Score, class, the key factors behind them, and every event with its points."""

    citizen_id: str
    as_of: int
    score: int | None  # None (and no class) for a citizen the policy does not score yet: under its min_age
    class_name: str | None
    score_class: str | None
    capped_by: str | None
    factors: pl.DataFrame
    events: pl.DataFrame


def explain(policy: Policy | CompiledPolicy, events: pl.DataFrame, citizen_id: str, *,
            as_of: int | None = None, births: pl.DataFrame | None = None) -> Explanation:
    """Explain one citizen's score as of `as_of` (default: the ledger's largest day); `births` as
    in `score_ledger`."""
    compiled = policy if isinstance(policy, CompiledPolicy) else CompiledPolicy.of(policy)
    mine = events.filter(pl.col("citizen_id") == citizen_id)
    if mine.height == 0:
        raise KeyError(f"citizen '{citizen_id}' has no events in the ledger")
    if as_of is None:
        as_of = int(events["day"].max())
    result = score_ledger(compiled, mine, as_of=as_of, births=births)
    decisions = result.decisions.sort(["day", "event_id"])
    counted = decisions.filter(pl.col("status") == "counted")
    factors = (
        counted.group_by("rule", "reason")
        .agg(points=pl.col("points").sum(), events=pl.len())
        .with_columns(effect=pl.when(pl.col("points") < 0).then(pl.lit("lowered"))
                      .when(pl.col("points") > 0).then(pl.lit("raised")).otherwise(pl.lit("none")))
        .sort([pl.col("points").abs(), "rule"], descending=[True, False])
        .head(MAX_FACTORS)
        .select("rule", "reason", "effect", "points", "events")
    )
    events_out = decisions.select("event_id", "day", "kind", "rule", "points", "status", "reason",
                                  "source", "source_ref", "confidence")
    if result.scores.height == 0:  # not of the policy's age yet
        return Explanation(citizen_id=citizen_id, as_of=as_of, score=None, class_name=None, score_class=None,
                           capped_by=None, factors=factors, events=events_out)
    row = result.scores.row(0, named=True)
    score_class = compiled.policy.class_names[int(compiled.classify(np.array([row["score"]]))[0])]
    capped_by = None
    if row["class"] != score_class:
        capping = [r for r in compiled.policy.rules if r.class_at_most == row["class"]]
        ids = set(counted["rule"].to_list())
        capped_by = next(r.id for r in capping if r.id in ids)
    return Explanation(
        citizen_id=citizen_id, as_of=as_of, score=row["score"], class_name=row["class"],
        score_class=score_class, capped_by=capped_by, factors=factors, events=events_out,
    )
