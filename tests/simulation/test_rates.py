"""Observed rates match configured rates (fixed seeds, z-tests at 4 standard deviations)."""

import math

import numpy as np
import polars as pl
import pytest

from socialcredit.policy import load_policy
from socialcredit.simulation import load_scenario, simulate
from socialcredit.simulation._kinds import KINDS

QUIET = {"behaviour.conformity": 0.0, "behaviour.deterrence": 0.0}


@pytest.fixture(scope="module")
def rate_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rates") / "run"
    return simulate(population=20000, days=30, seed=11, out=out, overrides={
        **QUIET, "behaviour.rates.finance.bill_paid_on_time": 0.05})


def _z(observed: float, expected: float) -> float:
    return (observed - expected) / math.sqrt(expected)


def test_true_acts_happen_at_the_configured_daily_rate(rate_run):
    citizens = rate_run.citizens
    adults = citizens.filter(pl.col("age").is_between(18, 90)).height
    expected = 0.05 * adults * 30
    observed = rate_run.daily["finance.bill_paid_on_time.true"].sum()
    assert abs(_z(observed, expected)) < 4


def test_platforms_see_their_customers_and_banks_half_of_the_rest(rate_run):
    citizens = rate_run.citizens.filter(pl.col("age").is_between(18, 90))
    members = citizens["platform_member"].mean()
    true = rate_run.daily["finance.bill_paid_on_time.true"].sum()
    observed = rate_run.daily["finance.bill_paid_on_time.observed"].sum()
    expected = true * (members + (1 - members) * 0.5)
    assert abs(observed - expected) < 4 * math.sqrt(true * 0.25)


# docs/sources.md#census-2020 (7th national census, 2020) and #taz-2018.
CENSUS = {"male": 105 / 205, "age 0-14": 0.18, "age 60+": 0.19, "platform_member": 800 / 1410}
CENSUS_N = 200_000


@pytest.fixture(scope="module")
def census_run(tmp_path_factory):
    """One day of 200,000 citizens: the population as drawn, before anyone acts."""
    out = tmp_path_factory.mktemp("census") / "run"
    return simulate(population=CENSUS_N, days=1, seed=12, out=out)


def test_the_town_scenario_configures_the_census_defaults():
    population = load_scenario("one-town").population
    assert population.male_share == pytest.approx(CENSUS["male"], abs=5e-5)
    assert population.age_0_14 == CENSUS["age 0-14"]
    assert 1 - population.age_0_14 - population.age_15_59 == pytest.approx(CENSUS["age 60+"])
    assert population.platform_share == pytest.approx(CENSUS["platform_member"], abs=5e-5)


def test_census_defaults_shape_the_population(census_run):
    """Each share is a binomial proportion of n = 200,000 draws: the tolerance is
    4 * sqrt(p (1 - p) / n), about 0.0045 for p near one half. A male share of 0.5 instead of
    105/205 (0.0122 off) lies 11 standard errors away."""
    c = census_run.citizens
    assert c.height == CENSUS_N
    urban = load_scenario("one-town").regions[0].urban  # one-town: ASSUMPTION, mostly urban
    measured = {"male": c["male"].mean(), "age 0-14": (c["age"] < 15).mean(),
                "age 60+": (c["age"] >= 60).mean(), "platform_member": c["platform_member"].mean(),
                "urban": c["urban"].mean()}
    for name, p in {**CENSUS, "urban": urban}.items():
        tolerance = 4 * math.sqrt(p * (1 - p) / CENSUS_N)
        assert abs(measured[name] - p) < tolerance, (name, measured[name], p, tolerance)
    # Within each age band the years are equally likely (0-14, 15-59, 60-89): a chi-square test on
    # the counts per year against the band's share spread evenly (df = 90 - 1; 4 SD above the mean).
    counts = c.group_by("age").len().sort("age")
    assert counts["age"].to_list() == list(range(90))
    share = np.concatenate([np.full(15, 0.18 / 15), np.full(45, 0.63 / 45), np.full(30, 0.19 / 30)])
    expected = share * CENSUS_N
    chi2 = (((counts["len"].to_numpy() - expected) ** 2) / expected).sum()
    assert chi2 < 89 + 4 * math.sqrt(2 * 89), chi2


def test_young_citizens_find_a_parent_at_the_rate_the_household_draw_gives(census_run):
    """Under-25s get a parent by 8 draws of a citizen of their block (same region), taking the
    first one 20 to 45 years older: P(parent) = 1 - (1 - q)^8 with q the block's share of such
    ages. The count of those with a parent is within 4 SE (sum of p (1 - p)) of its expectation;
    every parent is of the child's block and 20-45 years older."""
    block = census_run.manifest.block_size
    c = census_run.citizens.with_columns(
        index=pl.col("citizen_id").str.slice(1).cast(pl.Int64)).with_columns(
        block=pl.col("index") // block)
    expected, variance = 0.0, 0.0
    for part in c.partition_by("block"):
        ages = np.bincount(part["age"].to_numpy(), minlength=256)
        young = part.filter(pl.col("age") < 25)
        for a, n in young.group_by("age").len().iter_rows():
            q = ages[a + 20: a + 46].sum() / part.height
            p_parent = 1 - (1 - q) ** 8
            expected += n * p_parent
            variance += n * p_parent * (1 - p_parent)
    young = c.filter(pl.col("age") < 25)
    observed = young["parent"].is_not_null().sum()
    assert abs(observed - expected) < 4 * math.sqrt(variance), (observed, expected)
    assert c.filter(pl.col("age") >= 25)["parent"].is_null().all()
    parents = young.filter(pl.col("parent").is_not_null()).join(
        c.select(parent="citizen_id", parent_age="age", parent_block="block"), on="parent")
    assert parents.height == observed
    assert (parents["parent_block"] == parents["block"]).all()
    assert ((parents["parent_age"] - parents["age"]).is_between(20, 45)).all()


@pytest.fixture(scope="module")
def aging_run(tmp_path_factory):
    """Past a birthday: the kernel walks citizens grouped by starting age, so this checks that
    the age ranges of kinds follow the citizens as they grow older."""
    out = tmp_path_factory.mktemp("aging") / "run"
    return simulate(population=20000, days=400, seed=5, out=out, events="all",
                    overrides={**QUIET, "behaviour.gaming": 0.0})


@pytest.mark.parametrize("kind, base, ages", [
    ("online.excess_gaming", 0.015, (10, 40)),  # deviant: the rate scales with the deviance level
    ("civic.volunteering", 0.003, (14, 85)),  # civic: thinned against the civic trait
])
def test_age_limited_kinds_follow_ages_through_a_birthday(aging_run, kind, base, ages):
    # Both traits are spread evenly with mean factor 1, so the population rate is the base rate
    # times the citizens of the right age, plus the dedicated volunteers' weekly shifts (default
    # behaviour.volunteer_rate) for volunteering; everyone is a year younger before day 365.
    final_age = aging_run.citizens["age"]
    extra = aging_run.citizens["volunteer"].cast(pl.Float64) / 7 if kind == "civic.volunteering" else 0.0
    daily = aging_run.daily
    for days, years_back in ((pl.col("day") < 365, 1), (pl.col("day") >= 365, 0)):
        in_range = ((final_age - years_back) >= ages[0]) & ((final_age - years_back) <= ages[1])
        n_days = daily.filter(days)["day"].n_unique()
        expected = float(((base + extra) * in_range).sum()) * n_days
        observed = daily.filter(days)[f"{kind}.true"].sum()
        assert abs(_z(observed, expected)) < 4, (kind, years_back, observed, expected)


def test_every_actor_was_of_the_kinds_age_on_the_day(aging_run):
    ages = pl.DataFrame({"kind": [k[0] for k in KINDS], "min_age": [k[2][0] for k in KINDS],
                         "max_age": [k[2][1] for k in KINDS]})
    actors = aging_run.citizens.select(pl.col("citizen_id").alias("actor_id"), "age")
    events = (aging_run.events.join(actors, on="actor_id").join(ages, on="kind")
              .with_columns(age_then=pl.col("age") - (pl.col("day") < 365).cast(pl.Int64)))
    assert events.filter(pl.col("day") >= 365).height > 1000
    outside = events.filter((pl.col("age_then") < pl.col("min_age"))
                            | (pl.col("age_then") > pl.col("max_age")))
    assert outside.height == 0, outside.group_by("kind").len()


@pytest.fixture(scope="module")
def standing_run(tmp_path_factory):
    """Three days with every event written: the standing records appear on day 0."""
    return simulate(population=30_000, days=3, seed=13, out=tmp_path_factory.mktemp("standing") / "run",
                    events="all")


@pytest.mark.parametrize("kind", ["finance.credit_history_long", "assets.verified"])
def test_standing_records_exist_on_day_0_by_income_for_platform_customers(standing_run, kind):
    spec = next(k for k in KINDS if k[0] == kind)
    base, (min_age, max_age) = spec[3], spec[2]
    records = pl.read_parquet(standing_run.path / "events.parquet").filter(pl.col("kind") == kind)
    assert records["day"].unique().to_list() == [0]
    assert records["citizen_id"].is_unique().all()
    citizens = standing_run.citizens.with_columns(
        holds=pl.col("citizen_id").is_in(records["citizen_id"].implode()))
    eligible = pl.col("platform_member") & pl.col("age").is_between(min_age, max_age)
    assert citizens.filter(~eligible)["holds"].sum() == 0
    shares = citizens.filter(eligible).group_by("income_decile").agg(
        pl.col("holds").mean().alias("share"), pl.len().alias("n")).sort("income_decile")
    assert shares.height == 10
    for decile, share, n in shares.iter_rows():
        expected = min(base * ((decile + 1) / 5.5) ** 2, 1.0)
        assert abs(share - expected) <= 4 * math.sqrt(expected * (1 - expected) / n) + 1e-9, (decile, share)


def test_standing_records_spread_the_commercial_scores(standing_run):
    """Three days in, a customer's commercial score is the start plus the points of the standing
    records they hold, give or take the few daily records of three days."""
    sesame = load_policy("sesame")
    points = {r.kind: r.points for r in sesame.rules}
    events = pl.read_parquet(standing_run.path / "events.parquet").filter(pl.col("day") == 0)
    held = events.filter(pl.col("kind").is_in(["finance.credit_history_long", "assets.verified"])).group_by(
        "citizen_id").agg(pl.col("kind").replace_strict(points, return_dtype=pl.Int64).sum().alias("standing"))
    members = standing_run.citizens.filter(pl.col("platform_member")).join(held, on="citizen_id", how="left")
    rest = members["commercial_score"] - members["standing"].fill_null(0) - sesame.start
    assert (rest.abs() <= 30).mean() > 0.99
    assert (members["standing"] == points["finance.credit_history_long"] + points["assets.verified"]).sum() > 50
