"""Metrics of a run: pure functions from polars frames (daily, citizens, events) to small tables.

Every function takes frames or lazy frames with the columns a run writes (see simulation._shard and
simulation._run.daily_frame) and returns a small DataFrame; nothing here reads files or plots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import polars as pl
from scipy import stats

from socialcredit.policy import Policy
from socialcredit.simulation._kinds import KIND_NAMES

Frame = pl.DataFrame | pl.LazyFrame
CONSEQUENCES = {  # daily counter -> what a reader calls it
    "loans_discounted": "cheaper loans granted",
    "loans_refused": "loans refused",
    "flights_discounted": "cheaper flights",
    "flights_blocked": "flights blocked",
    "trains_blocked": "train tickets blocked",
    "gate_stops": "stops at subway gates",
    "jobs_lost": "jobs lost",
    "admissions_helped": "admissions helped by a parent's class",
    "admissions_hurt": "admissions hurt by a parent's class",
}
AGE_BANDS = ((0, "0-17"), (18, "18-29"), (30, "30-44"), (45, "45-59"), (60, "60+"))
LEVEL = 0.95  # of every interval the report shows


def share_interval(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of the share `k` of `n` (NaN, NaN when `n` is 0).

    Wilson rather than the normal approximation: it stays inside [0, 1] and is not empty at k = 0.
    """
    if n <= 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(k), int(n)).proportion_ci(LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def rate_ratio_interval(k1: int, n1: int, k0: int, n0: int) -> tuple[float, float]:
    """The 95% exact conditional interval of the ratio of two rates, (k1 / n1) / (k0 / n0).

    Given the k1 + k0 events of both groups, k1 is binomial with p = n1 R / (n1 R + n0) when the
    events are rare within each group (Poisson counts); the Clopper-Pearson limits of p, mapped back
    to R, are exact for any counts, zeros included (the upper limit is infinite when k0 is 0).
    NaN, NaN where there is no event at all.
    """
    if k1 + k0 <= 0 or n1 <= 0 or n0 <= 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(k1), int(k1 + k0)).proportion_ci(LEVEL, method="exact")

    def ratio(p: float) -> float:
        return math.inf if p >= 1 else p / (1 - p) * n0 / n1

    return ratio(ci.low), ratio(ci.high)


def with_share_intervals(frame: pl.DataFrame, count: str, total: str, share: str) -> pl.DataFrame:
    """Add `{share}_low` and `{share}_high`: each row's Wilson interval of `count` of `total`."""
    limits = [share_interval(k or 0, n or 0) for k, n in zip(frame[count], frame[total], strict=True)]
    return frame.with_columns(pl.Series(f"{share}_low", [lo for lo, _ in limits], pl.Float64),
                              pl.Series(f"{share}_high", [hi for _, hi in limits], pl.Float64))


def with_ratio_intervals(frame: pl.DataFrame, count: str, total: str, ratio: str) -> pl.DataFrame:
    """Add `{ratio}_low` and `{ratio}_high`: each row's rate, `count` of `total`, against the first
    row's, as an exact conditional interval (`rate_ratio_interval`)."""
    k0, n0 = (frame[count][0] or 0, frame[total][0] or 0) if frame.height else (0, 0)
    limits = [rate_ratio_interval(k or 0, n or 0, k0, n0) for k, n in zip(frame[count], frame[total], strict=True)]
    return frame.with_columns(pl.Series(f"{ratio}_low", [lo for lo, _ in limits], pl.Float64),
                              pl.Series(f"{ratio}_high", [hi for _, hi in limits], pl.Float64))


def _lazy(frame: Frame) -> pl.LazyFrame:
    return frame.lazy() if isinstance(frame, pl.DataFrame) else frame


def _columns(frame: Frame) -> list[str]:
    return _lazy(frame).collect_schema().names()


def class_columns(daily: Frame) -> list[str]:
    """The state's class names in the order the daily table holds them (best first)."""
    return [c.removeprefix("class.") for c in _columns(daily) if c.startswith("class.")]


def class_shares(daily: Frame) -> pl.DataFrame:
    """Per day and state class: citizens and their share of the scored population."""
    classes = class_columns(daily)
    per_day = (_lazy(daily).group_by("day").agg(pl.col(f"class.{c}").sum().alias(c) for c in classes)
               .unpivot(index="day", variable_name="class", value_name="citizens"))
    return (per_day.with_columns(share=pl.col("citizens") / pl.col("citizens").sum().over("day"))
            .with_columns(pl.col("class").cast(pl.Enum(classes)))
            .sort("day", "class").collect())


def score_histogram(citizens: Frame, *, width: int = 10) -> pl.DataFrame:
    """Final state scores in bins of `width` points, per region (unscored citizens left out)."""
    return (_lazy(citizens).filter(pl.col("score").is_not_null())
            .group_by("region", score_bin=(pl.col("score") // width) * width)
            .agg(citizens=pl.len()).sort("region", "score_bin").collect())


def _class_rank(score: pl.Expr, policy: Policy) -> pl.Expr:
    """0 for the top class of `policy`, 1 for the next, ...; the bottom class takes the rest."""
    expr = pl.lit(len(policy.classes) - 1)
    for i in reversed(range(len(policy.classes) - 1)):
        expr = pl.when(score >= policy.classes[i].min).then(pl.lit(i)).otherwise(expr)
    return expr


def _per_region(policies: Mapping[str, Policy], make) -> pl.Expr:
    """One expression that applies `make(policy)` to the citizens of each region under that policy."""
    expr = pl.lit(None)
    for region, policy in policies.items():
        expr = pl.when(pl.col("region").cast(pl.String) == region).then(make(policy)).otherwise(expr)
    return expr


def d_reasons(citizens: Frame, policies: Mapping[str, Policy], *, by: str = "group",
              from_bottom: int = 0) -> pl.DataFrame:
    """Why citizens sit in their policy's bottom class (or `from_bottom` classes above it): per `by` and
    deduction rule, how many of them were scored under it (`scored_kinds` bits) and that count weighted
    by the rule's points."""
    rules = pl.DataFrame(
        [(region, r.id, r.reason, 1 << KIND_NAMES.index(r.kind), -r.points, p.class_names[-1 - from_bottom])
         for region, p in policies.items() for r in p.rules if r.points < 0 and r.kind in KIND_NAMES],
        schema={"region": pl.String, "rule": pl.String, "reason": pl.String, "mask": pl.Int64,
                "points": pl.Int64, "target": pl.String}, orient="row")
    in_class = (_lazy(citizens).with_columns(region=pl.col("region").cast(pl.String))
                .join(rules.lazy().select("region", "target").unique(), on="region")
                .filter(pl.col("class") == pl.col("target"))
                .select(by, "region", "scored_kinds"))
    hits = (in_class.join(rules.lazy(), on="region")
            .filter((pl.col("scored_kinds").cast(pl.Int64) & pl.col("mask")) != 0)
            .group_by(by, "rule").agg(pl.col("reason").min(), citizens=pl.len(),
                                      weight=pl.col("points").sum()))
    return (hits.with_columns(share=pl.col("weight") / pl.col("weight").sum().over(by))
            .sort(by, "weight", "rule", descending=[False, True, False]).collect())


def consequences_daily(daily: Frame) -> pl.DataFrame:
    """Per day: the consequence counters of every region summed (see CONSEQUENCES)."""
    have = [c for c in CONSEQUENCES if c in _columns(daily)]
    return _lazy(daily).group_by("day").agg(pl.col(have).sum()).sort("day").collect()


def holders_daily(daily: Frame) -> pl.DataFrame:
    """Per day: citizens holding each state benefit and sanction (columns `benefit.*`, `sanction.*`)."""
    have = [c for c in _columns(daily) if c.startswith(("benefit.", "sanction."))]
    return _lazy(daily).group_by("day").agg(pl.col(have).sum()).sort("day").collect()


def wrongful_by_kind(daily: Frame) -> pl.DataFrame:
    """Per kind: observed events, those attributed to an innocent, and their rate (kinds never seen left out)."""
    cols = set(_columns(daily))
    kinds = [k for k in KIND_NAMES if f"{k}.observed" in cols]
    totals = _lazy(daily).select(
        [pl.col(f"{k}.observed").sum().alias(f"{k}|observed") for k in kinds]
        + [pl.col(f"{k}.wrongful").sum().alias(f"{k}|wrongful") for k in kinds]).collect()
    return (pl.DataFrame({"kind": kinds,
                          "observed": [totals[f"{k}|observed"].item() for k in kinds],
                          "wrongful": [totals[f"{k}|wrongful"].item() for k in kinds]})
            .filter(pl.col("observed") > 0)
            .with_columns(rate=pl.col("wrongful") / pl.col("observed"))
            .sort("rate", "kind", descending=[True, False]))


def wrongful_by_group(citizens: Frame, policies: Mapping[str, Policy]) -> pl.DataFrame:
    """Per demographic group: innocents who lost points to false matches, points lost, and citizens
    in a lower class only because of them; rates, and ratios to the first (reference) group, each
    with its 95% interval (`_low`, `_high`).

    `wrongful_points` is what false attributions did to a citizen's state score. A citizen is pushed
    down when the score without them falls in a better class and no class cap holds them anyway.
    """
    scored = (_lazy(citizens).filter(pl.col("region").cast(pl.String).is_in(list(policies)))
              .with_columns(w=pl.col("wrongful_points").cast(pl.Int64)))
    rank_now = _per_region(policies, lambda p: _class_rank(pl.col("score"), p))
    rank_without = _per_region(policies, lambda p: _class_rank(pl.col("score") - pl.col("w"), p))
    rank_held = _per_region(policies, lambda p: pl.col("class").replace_strict(
        {n: i for i, n in enumerate(p.class_names)}, default=None, return_dtype=pl.Int64))
    pushed = (rank_without < rank_now) & (rank_held == rank_now)
    out = (scored.group_by("group").agg(
        citizens=pl.len(), innocents_hit=(pl.col("w") < 0).sum(),
        points_lost=-pl.col("w").clip(upper_bound=0).sum(), pushed_down=pushed.sum())
        .sort("group").with_columns(
            hit_rate=pl.col("innocents_hit") / pl.col("citizens"),
            points_per_1000=1000 * pl.col("points_lost") / pl.col("citizens"),
            pushed_rate=pl.col("pushed_down") / pl.col("citizens")))
    out = out.with_columns(
        (pl.col(c) / pl.col(c).first()).alias(f"{c}_ratio") for c in ("hit_rate", "pushed_rate")).collect()
    for count, rate in (("innocents_hit", "hit_rate"), ("pushed_down", "pushed_rate")):
        out = with_ratio_intervals(with_share_intervals(out, count, "citizens", rate), count, "citizens",
                                   f"{rate}_ratio")
    return out


def deterrence(daily: Frame, kinds: list[str], *, first_days: int = 14, last_days: int = 28) -> pl.DataFrame:
    """Per penalised kind: true acts per day in the first and in the last days, and the change."""
    days = _lazy(daily).select(pl.col("day").max()).collect().item() + 1
    if days < first_days + last_days:
        first_days = last_days = max(days // 2, 1)
    frame = _lazy(daily).select("day", *[pl.col(f"{k}.true") for k in kinds])
    early = frame.filter(pl.col("day") < first_days).select(pl.exclude("day").sum() / first_days).collect()
    late = frame.filter(pl.col("day") >= days - last_days).select(pl.exclude("day").sum() / last_days).collect()
    return (pl.DataFrame({"kind": kinds, "first_per_day": [early[f"{k}.true"].item() for k in kinds],
                          "last_per_day": [late[f"{k}.true"].item() for k in kinds]})
            .with_columns(change=pl.col("last_per_day") / pl.col("first_per_day") - 1)
            .sort("change", "kind"))


def complaints_weekly(daily: Frame, *, first_weeks: int = 2) -> pl.DataFrame:
    """Per week: complaints made (true acts) per day, and as an index of the first weeks (1.0 = as then)."""
    weekly = (_lazy(daily).group_by(week=pl.col("day") // 7)
              .agg(per_day=pl.col("social.complaint.true").sum() / pl.col("day").n_unique()).sort("week"))
    return weekly.with_columns(index=pl.col("per_day") / pl.col("per_day").head(first_weeks).mean()).collect()


def bots_among_top(citizens: Frame, top_classes: list[str]) -> pl.DataFrame:
    """Bot users' share in the top class(es) (with its 95% interval) and in the scored population,
    and their ratio."""
    scored = _lazy(citizens).filter(pl.col("class").is_not_null())
    out = scored.select(
        top_citizens=pl.col("class").is_in(top_classes).sum(),
        top_bots=(pl.col("bot") & pl.col("class").is_in(top_classes)).sum(),
        top_share=pl.col("bot").filter(pl.col("class").is_in(top_classes)).mean(),
        population_share=pl.col("bot").mean()).collect()
    return (out.with_columns(ratio=pl.col("top_share") / pl.col("population_share"))
            .pipe(with_share_intervals, "top_bots", "top_citizens", "top_share"))


def with_age_band(citizens: Frame) -> pl.LazyFrame:
    """Add `age_band` (0-17, 18-29, 30-44, 45-59, 60+)."""
    expr = pl.lit(AGE_BANDS[0][1])
    for low, name in AGE_BANDS[1:]:
        expr = pl.when(pl.col("age") >= low).then(pl.lit(name)).otherwise(expr)
    return _lazy(citizens).with_columns(age_band=expr.cast(pl.Enum([n for _, n in AGE_BANDS])))


def class_by(citizens: Frame, column: str) -> pl.DataFrame:
    """Per value of `column` and state class: citizens and their share within that value."""
    return (_lazy(citizens).filter(pl.col("class").is_not_null())
            .group_by(column, "class").agg(citizens=pl.len())
            .with_columns(share=pl.col("citizens") / pl.col("citizens").sum().over(column))
            .sort(column, "class").collect())


def applicant_ages(days: int, admission_day: int) -> list[int]:
    """Ages at the end of a run of everyone who applied (aged 18 on an admission day; all age on day 364)."""
    return sorted({18 + sum(1 for b in range(364, days, 365) if b > t) for t in range(admission_day, days, 365)})


def admission_by_parent_class(citizens: Frame, ages: list[int]) -> pl.DataFrame:
    """Per parent's final class: applicants with a parent (aged `ages` at the end), admitted ones, rate."""
    people = _lazy(citizens)
    parents = people.select(parent="citizen_id", parent_class="class")
    return (people.filter(pl.col("age").is_in(ages) & pl.col("parent").is_not_null())
            .select("parent", "admitted").join(parents, on="parent", how="left")
            .group_by("parent_class").agg(applicants=pl.len(), admitted=pl.col("admitted").sum())
            .with_columns(rate=pl.col("admitted") / pl.col("applicants")).sort("parent_class").collect())


def misidentified_by_group(events: Frame, citizens: Frame) -> pl.DataFrame:
    """Per demographic group of the person a camera really saw: camera events, those pinned on someone
    else, the rate, and its ratio to the first group (the face-recognition error differential), each
    with its 95% interval (`_low`, `_high`)."""
    groups = _lazy(citizens).select(actor_id="citizen_id", group="group")
    out = (_lazy(events).filter(pl.col("source") == "camera").select("actor_id", "wrongful")
           .join(groups, on="actor_id").group_by("group")
           .agg(events=pl.len(), wrongful=pl.col("wrongful").sum()).sort("group")
           .with_columns(rate=pl.col("wrongful") / pl.col("events")))
    out = out.with_columns(ratio=pl.col("rate") / pl.col("rate").first()).collect()
    return with_ratio_intervals(with_share_intervals(out, "wrongful", "events", "rate"), "wrongful", "events", "ratio")


def camera_confidence(events: Frame, *, width: float = 0.005) -> pl.DataFrame:
    """Camera events in bins of match confidence, rightful and wrongful, with each bin's share of its kind."""
    return (_lazy(events).filter((pl.col("source") == "camera") & pl.col("confidence").is_not_null())
            .group_by("wrongful", confidence=((pl.col("confidence") / width).floor() * width).round(6))
            .agg(events=pl.len())
            .with_columns(share=pl.col("events") / pl.col("events").sum().over("wrongful"))
            .sort("wrongful", "confidence").collect())
