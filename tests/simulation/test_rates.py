"""Observed rates match configured rates (fixed seeds, z-tests at 4 standard deviations)."""

import math

import polars as pl
import pytest

from socialcredit.simulation import simulate
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


def test_census_defaults_shape_the_population(rate_run):
    c = rate_run.citizens
    assert abs(c["male"].mean() - 105 / 205) < 0.02
    assert abs((c["age"] < 15).mean() - 0.18) < 0.02
    assert abs((c["age"] >= 60).mean() - 0.19) < 0.02
    assert abs(c["urban"].mean() - 0.8) < 0.02  # one-town: mostly urban
    assert abs(c["platform_member"].mean() - 800 / 1410) < 0.02
    children = c.filter(pl.col("age") < 18)
    assert children["parent"].is_not_null().mean() > 0.5


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
    # times the citizens of the right age; everyone is a year younger before day 365.
    final_age = aging_run.citizens["age"]
    daily = aging_run.daily
    for days, years_back in ((pl.col("day") < 365, 1), (pl.col("day") >= 365, 0)):
        in_range = ((final_age - years_back) >= ages[0]) & ((final_age - years_back) <= ages[1])
        n_days = daily.filter(days)["day"].n_unique()
        expected = base * int(in_range.sum()) * n_days
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
