"""Class histories: the days a citizen's class changed, replayed from the ledger.

Held days count whole days (engine.CompiledConsequences), so a history holds the class at the end
of each day on which it changed: a citizen who leaves a class and returns within a day never left.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from socialcredit.engine._compiled import CompiledPolicy, Status, capped_mask
from socialcredit.policy import Policy

HISTORY_SCHEMA = {"citizen_id": pl.String, "day": pl.Int64, "class_idx": pl.Int32}


def class_history(policy: Policy | CompiledPolicy, events: pl.DataFrame, *, as_of: int | None = None,
                  births: pl.DataFrame | None = None) -> pl.DataFrame:
    """Every change of class up to day `as_of` (default: the ledger's last day), one row per
    citizen and day on which their end-of-day class differs from the day before (citizen_id, day,
    class_idx; 0 is the top class).

    A citizen starts in the start score's class on day 0, or on the day they come of age (`births`,
    for a policy with a `min_age`: that day is a row too, the day they enter the classes). Points
    count from their event's day and leave on the day they expire; a `class_at_most` holds while
    its event counts. Sorted by citizen and day.
    """
    compiled = policy if isinstance(policy, CompiledPolicy) else CompiledPolicy.of(policy)
    day = events["day"].to_numpy()
    if as_of is None:
        as_of = int(day.max()) if len(day) else 0
    rule, status = compiled.passing_status(events, births)
    passing = status == Status.COUNTED
    counted = passing & ~capped_mask(rule, events["citizen_id"], day, events["event_id"], compiled.cap, passing)
    counted &= day <= as_of
    idx = np.flatnonzero(counted)
    rules = rule[idx]
    start, points = day[idx], compiled.points[rules]
    expires = compiled.expires[rules].astype(np.int64)
    ends = (expires > 0) & (start + expires <= as_of)  # the points leave within the history
    end_idx = idx[ends]
    citizen = events["citizen_id"].cast(pl.String)
    caps = compiled.class_cap[rules]
    levels = sorted({int(c) for c in caps if c >= 0})
    # One row per change: its day, the points it moves and, per capping class, +1 or -1 holder.
    changes = pl.DataFrame({
        "citizen_id": pl.concat([citizen.gather(idx), citizen.gather(end_idx)]),
        "day": np.concatenate([start, (start + expires)[ends]]),
        "points": np.concatenate([points, -points[ends]]),
        **{f"cap{c}": np.concatenate([(caps == c).astype(np.int64), -(caps[ends] == c).astype(np.int64)])
           for c in levels},
    })
    caps_cols = [f"cap{c}" for c in levels]
    entries = _entries(compiled, citizen.unique(), births, as_of)
    per_day = (
        pl.concat([changes, entries.select("citizen_id", "day", points=pl.lit(0, pl.Int64),
                                           **{c: pl.lit(0, pl.Int64) for c in caps_cols})], how="vertical_relaxed")
        .group_by("citizen_id", "day").agg(pl.col("points", *caps_cols).sum())
        .sort("citizen_id", "day")
        .with_columns(pl.col("points", *caps_cols).cum_sum().over("citizen_id"))
    )
    cap_class = np.full(per_day.height, -1, np.int64)
    for c, col in zip(levels, caps_cols, strict=True):
        cap_class = np.where(per_day[col].to_numpy() > 0, np.maximum(cap_class, c), cap_class)
    klass = compiled.classify(compiled.clamp(per_day["points"].to_numpy()), cap_class).astype(np.int32)
    start_class = int(compiled.classify(np.array([compiled.policy.start]))[0])
    history = (per_day.select("citizen_id", "day").with_columns(class_idx=pl.Series(klass))
               .join(entries.select("citizen_id", first=pl.col("day")), on="citizen_id", how="left")
               .filter(pl.col("first").is_null() | (pl.col("day") >= pl.col("first"))))
    before = pl.col("class_idx").shift(1).over("citizen_id")
    entered = pl.col("first").is_not_null() & (pl.col("day") == pl.col("first"))
    return (history.filter(entered | (pl.col("class_idx") != before.fill_null(start_class)))
            .select(HISTORY_SCHEMA.keys()).cast(HISTORY_SCHEMA))


def _entries(compiled: CompiledPolicy, citizens: pl.Series, births: pl.DataFrame | None,
             as_of: int) -> pl.DataFrame:
    """The day each citizen of age later than day 0 enters the classes, by `as_of`."""
    first = compiled.scored_from(citizens, births)
    if first is None:
        return pl.DataFrame(schema={"citizen_id": pl.String, "day": pl.Int64})
    frame = pl.DataFrame({"citizen_id": citizens, "day": first})
    return frame.filter((pl.col("day") > 0) & (pl.col("day") <= as_of))
