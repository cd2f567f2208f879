"""Observed rates match configured rates (fixed seeds, z-tests at 4 standard deviations)."""

import math

import polars as pl
import pytest

from socialcredit.simulation import simulate

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
