"""The defaulter list: a stock at the start, new listings, delisting by compliance, and its bans."""

import math

import polars as pl
import pytest

from socialcredit.simulation import simulate

NO_NEW_LISTINGS = {"behaviour.rates.court.judgment_default": 0.0}


def _run(tmp_path, name, days, overrides, population=20_000, **kwargs):
    run = simulate(population=population, days=days, seed=11, out=tmp_path / name, overrides=overrides, **kwargs)
    return pl.read_parquet(run.path / "daily.parquet"), pl.read_parquet(run.path / "citizens.parquet")


def _by_day(daily, column):
    return daily.group_by("day").agg(pl.col(column).sum()).sort("day")[column].to_list()


def test_the_run_starts_with_the_given_share_of_adults_listed(tmp_path):
    share = 0.01
    daily, citizens = _run(tmp_path, "start", 1, {"population.listed_share": share, **NO_NEW_LISTINGS},
                           population=40_000)
    adults = citizens.filter(pl.col("age") >= 18)
    assert citizens.filter(pl.col("age") < 18)["blacklisted"].sum() == 0
    listed = adults["blacklisted"].sum()
    assert _by_day(daily, "listed") == [listed]
    # A binomial share of ~31,000 adults: 4 standard errors either side.
    se = math.sqrt(share * (1 - share) / adults.height)
    assert abs(listed / adults.height - share) < 4 * se


def test_by_default_the_list_starts_empty_and_holds_only_new_listings(tmp_path):
    daily, citizens = _run(tmp_path, "empty", 120, {})
    listed, new = _by_day(daily, "listed"), _by_day(daily, "blacklisted")
    assert listed == [sum(new[: t + 1]) for t in range(120)] and listed[-1] > 0
    assert _by_day(daily, "delisted") == [0] * 120
    assert citizens["blacklisted"].sum() == listed[-1]


def test_listed_defaulters_leave_at_the_daily_delisting_chance(tmp_path):
    chance, days = 0.01, 100
    daily, citizens = _run(tmp_path, "leave", days, {"population.listed_share": 0.05,
                                                     "consequences.delisting": chance, **NO_NEW_LISTINGS})
    listed, left = _by_day(daily, "listed"), _by_day(daily, "delisted")
    start = listed[0] + left[0]
    assert all(listed[t] == listed[t - 1] - left[t] for t in range(1, days))
    assert citizens["blacklisted"].sum() == listed[-1]
    # Each of ~780 listed people stays on with chance (1 - 0.01)^100: 4 binomial standard errors.
    stay = (1 - chance) ** days
    assert abs(listed[-1] / start - stay) < 4 * math.sqrt(stay * (1 - stay) / start)


def test_the_stock_follows_listings_and_delistings_day_by_day(tmp_path):
    daily, _ = _run(tmp_path, "flows", 120, {"population.listed_share": 0.02, "consequences.delisting": 0.002,
                                             "behaviour.rates.court.judgment_default": 0.0005})
    listed, new, left = (_by_day(daily, c) for c in ("listed", "blacklisted", "delisted"))
    assert sum(new) > 50 and sum(left) > 50
    assert all(listed[t] == listed[t - 1] + new[t] - left[t] for t in range(1, 120))


def test_a_delisted_defaulter_travels_again(tmp_path):
    """With the class bans off, blocked trains are the list's alone: delisting nearly everyone
    on the first day leaves almost nothing blocked."""
    settings = {"population.listed_share": 0.05, **NO_NEW_LISTINGS}
    kept, _ = _run(tmp_path, "kept", 60, settings, policy="accountable")
    gone, _ = _run(tmp_path, "gone", 60, {**settings, "consequences.delisting": 0.99}, policy="accountable")
    assert kept["trains_blocked"].sum() > 300  # ~780 listed x 0.01 trips a day x 60 days
    assert gone["trains_blocked"].sum() < kept["trains_blocked"].sum() / 20


@pytest.mark.parametrize(("key", "value", "message"), [
    ("population.listed_share", 1.5, "population.listed_share"),
    ("consequences.delisting", 1.0, "consequences.delisting"),
])
def test_bad_list_settings_are_refused_naming_them(tmp_path, key, value, message):
    from socialcredit.simulation import SimulationError

    with pytest.raises(SimulationError, match=message):
        simulate(population=100, days=1, seed=1, out=tmp_path / "bad", overrides={key: value})
