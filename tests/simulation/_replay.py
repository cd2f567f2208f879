"""An independent replay of a run's events through the engine, day by day (for the daily tables).

The simulator keeps classes, class counts and held-days clocks incrementally in its kernel; these
helpers rebuild every citizen's class on every day from events.parquet with the engine's own
incremental state (`ScoreState`: apply the events of day t, then read the scores as of day t),
and the consequences in force from those classes alone, as the policy defines them.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from socialcredit.engine import CompiledPolicy, ScoreState
from socialcredit.events import validate_events
from socialcredit.policy import Policy

ENGINE_COLUMNS = ["event_id", "citizen_id", "kind", "day", "source", "source_ref", "confidence"]


def daily_classes(policy: Policy, events: pl.DataFrame, citizen_ids: pl.Series, days: int,
                  births: pl.DataFrame | None = None) -> np.ndarray:
    """Class index (0 = top) of each citizen at the end of each day: an int array [days, citizens];
    -1 on the days a citizen is not scored (under the policy's min_age, by `births`)."""
    state = ScoreState(policy, births=births)
    ledger = validate_events(events.select(ENGINE_COLUMNS))
    by_day = ledger.partition_by("day", as_dict=True)
    out = np.zeros((days, len(citizen_ids)), np.int64)
    for t in range(days):
        state.advance(t)
        if (t,) in by_day:
            state.apply(by_day[(t,)])
        out[t] = state.score_of(citizen_ids)[1]
    return out


def start_class(policy: Policy) -> int:
    """The class everyone starts in (day 0, before any event)."""
    return int(CompiledPolicy.of(policy).classify(np.array([policy.start]))[0])


def holders(policy: Policy, classes: np.ndarray, klass: str, benefit: bool, held_days: int) -> np.ndarray:
    """Who holds a benefit (its class and better) or a sanction (its class and worse) on each day.

    A citizen whose classes have qualified without a break since the end of day s (day 0 for one
    who started in a qualifying class) holds it at the end of day t when t - s >= held_days.
    """
    c = policy.class_names.index(klass)
    qualifies = ((classes <= c) if benefit else (classes >= c)) & (classes >= 0)
    start = start_class(policy)
    # Before day 0 everyone scored then was in the start class; one who comes of age later enters it then.
    before = (classes[0] >= 0) & (start <= c if benefit else start >= c)
    since = np.zeros(classes.shape[1], np.int64)
    out = np.zeros(classes.shape, bool)
    for t in range(classes.shape[0]):
        since = np.where(qualifies[t] & ~before, t, since)
        out[t] = qualifies[t] & (t - since >= held_days)
        before = qualifies[t]
    return out


def consequences(policy: Policy, classes: np.ndarray) -> dict[str, np.ndarray]:
    """Holders [days, citizens] of every benefit and sanction of the policy, by name."""
    out = {}
    for items, benefit in ((policy.benefits, True), (policy.sanctions, False)):
        for item in items:
            out[item.name] = holders(policy, classes, item.class_, benefit, item.held_days)
    return out
