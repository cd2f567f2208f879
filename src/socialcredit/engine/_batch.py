"""Batch scoring: a whole ledger of events in, decisions, scores and classes out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from socialcredit.engine._codes import draft_codes, exact_codes, finish_codes
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
# From this many events on, `score_ledger` does independent steps in two helper threads.
THREADED_FROM = 1 << 16


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
    return (_score(compiled, events, day, as_of, strict, births, exact=False)
            or _score(compiled, events, day, as_of, strict, births, exact=True))


def _score(compiled: CompiledPolicy, events: pl.DataFrame, day: np.ndarray, as_of: int, strict: bool,
           births: pl.DataFrame | None, *, exact: bool) -> Scoring | None:
    """`score_ledger` with citizen codes drafted from hashes (None where two citizens share a hash),
    or `exact` ones."""
    from socialcredit.engine import _kernels

    # Citizens as integer codes, made once: caps and sums work on them, `scores` is in their order.
    # On a large ledger two helper threads look up kinds and sources (polars) while the citizens are
    # coded (numba), then check the codes and sort the citizens while caps and expiry are applied.
    citizen = events["citizen_id"]
    with ThreadPoolExecutor(2) if events.height >= THREADED_FROM else nullcontext() as pool:
        looked_up = pool.submit(compiled.event_codes, events) if pool else None
        draft = None if exact else draft_codes(citizen)
        citizens = exact_codes(citizen) if draft is None else None
        finished = pool.submit(finish_codes, draft, pool) if pool and draft else None
        codes = citizens.codes if draft is None else draft.codes
        n_citizens = len(citizens.distinct) if draft is None else len(draft.first)
        first = None  # each citizen's first scored day, by code
        if births is not None and compiled.policy.min_age:
            first = compiled.scored_from(citizens.distinct if draft is None else citizen.gather(draft.first), births)
        rule, source = looked_up.result() if pool else compiled.event_codes(events)
        status = compiled.status_before_caps(events, rule, source, None if first is None else first[codes])
        if strict and (status == Status.UNKNOWN_KIND).any():
            kinds = events.filter(pl.Series(status == Status.UNKNOWN_KIND))["kind"].unique().sort()
            raise EventError(f"unknown event kind(s) with no rule in policy "
                             f"'{compiled.policy.name}': {', '.join(kinds.head(10))}", column="kind")
        passing = status == Status.COUNTED
        status[capped_mask(rule, codes, day, events["event_id"], compiled.cap, passing)] = Status.CAP
        applied, total, cap_class = _kernels.settle(status, rule, day, codes, as_of, compiled.points,
                                                    compiled.expires, compiled.class_cap, n_citizens)
        if citizens is None:
            citizens = finished.result() if finished else finish_codes(draft)
    if citizens is None:
        return None  # two citizens share a hash
    order, ids = citizens.order, citizens.ordered
    if first is not None:
        of_age = first[order] <= as_of
        order, ids = order[of_age], ids.filter(pl.Series(of_age))
    score = compiled.clamp(total[order])
    klass = compiled.classify(score, cap_class[order])
    scores = pl.DataFrame({"citizen_id": ids, "score": score}).with_columns(compiled.class_series(klass))
    return Scoring(compiled, events, as_of, rule, status, applied, scores)
