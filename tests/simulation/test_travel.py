"""Travel: trips grow with income, a ban covers some train classes only, the refused try less, a
class-based ban reaches the carriers for the scenario's share of its holders."""

import math

import polars as pl
import pytest

from socialcredit.simulation import simulate

# Everyone adult is listed from day 0 and nobody leaves: every covered trip is a blocked purchase.
ALL_LISTED = {"population.listed_share": 1.0, "behaviour.rates.court.judgment_default": 0.0}


def _run(tmp_path, name, days, overrides, population=40_000):
    run = simulate(population=population, days=days, seed=21, out=tmp_path / name, policy="accountable",
                   overrides={**ALL_LISTED, **overrides})
    return pl.read_parquet(run.path / "daily.parquet"), pl.read_parquet(run.path / "citizens.parquet")


def test_travel_grows_with_income(tmp_path):
    """Who was refused a ticket (here: whoever tried once) by income decile: 1 - (1 - r(d+1)/5.5)^days."""
    rate, days = 0.001, 100
    _, citizens = _run(tmp_path, "income", days, {"consequences.flight": rate, "consequences.train": 0.0})
    shares = (citizens.filter(pl.col("age") >= 18).group_by("income_decile")
              .agg(pl.col("refused_travel").mean().alias("share"), pl.len().alias("n")).sort("income_decile"))
    assert shares.height == 10
    for d, share, n in shares.iter_rows():
        expected = 1 - (1 - rate * (d + 1) / 5.5) ** days
        assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / n), (d, share, expected)
    assert shares["share"][9] > 5 * shares["share"][0]


@pytest.mark.parametrize("share", [0.1, 0.6])
def test_a_ban_covers_the_given_share_of_train_trips(tmp_path, share):
    daily, _ = _run(tmp_path, f"trains-{share}", 30, {"consequences.flight": 0.0,
                                                     "consequences.train_banned_share": share})
    trips, blocked = daily["trains"].sum(), daily["trains_blocked"].sum()
    assert trips > 5000
    assert abs(blocked / trips - share) < 4 * math.sqrt(share * (1 - share) / trips)


def test_a_refused_traveller_tries_less(tmp_path):
    settings = {"consequences.flight": 0.01, "consequences.train": 0.0}
    never, citizens = _run(tmp_path, "never", 60, {**settings, "consequences.retry": 0.0})
    # Refused once, never again: one blocked purchase per refused traveller.
    assert never["flights_blocked"].sum() == citizens["refused_travel"].sum() > 1000
    again, _ = _run(tmp_path, "again", 60, {**settings, "consequences.retry": 1.0})
    half, _ = _run(tmp_path, "half", 60, {**settings, "consequences.retry": 0.5})
    assert never["flights_blocked"].sum() < half["flights_blocked"].sum() < again["flights_blocked"].sum()


def test_without_bans_everyone_travels_and_nobody_is_refused(tmp_path):
    daily, citizens = _run(tmp_path, "free", 30, {"consequences.blacklist_bans": False})
    assert daily["flights"].sum() > 0 and daily["trains"].sum() > 0
    assert daily["flights_blocked"].sum() == daily["trains_blocked"].sum() == 0
    assert citizens["refused_travel"].sum() == 0


def _class_banned(tmp_path, name, reach):
    """Everyone adult lands in taz-2018's class D (a judgment default on day 0 costs 450 points) and
    flies; the defaulter list itself blocks nothing, so only class-based bans do."""
    run = simulate(population=20_000, days=30, seed=3, out=tmp_path / name, policy="taz-2018", overrides={
        "population.listed_share": 0.0, "behaviour.rates.court.judgment_default": 0.5,
        "consequences.blacklist_bans": False, "consequences.flight": 0.05, "consequences.train": 0.05,
        "consequences.train_banned_share": 1.0, "consequences.flight_ban_reach": reach,
        "consequences.train_ban_reach": reach})
    return pl.read_parquet(run.path / "daily.parquet"), pl.read_parquet(run.path / "citizens.parquet")



def test_a_class_ban_reaches_the_carriers_for_the_given_share_of_its_holders(tmp_path):
    runs = {reach: _class_banned(tmp_path, f"reach-{reach}", reach) for reach in (0.0, 0.3, 1.0)}
    for reach, (_, citizens) in runs.items():
        in_d = citizens.filter(pl.col("class") == "D")
        assert in_d.height > 5000
        # Whose ban reaches the airlines is fixed per citizen; citizens.parquet says who.
        share = in_d["flight_ban"].mean()
        assert abs(share - reach) <= 4 * math.sqrt(reach * (1 - reach) / in_d.height), (reach, share)
        assert citizens.filter(pl.col("class") != "D")["flight_ban"].sum() == 0
    blocked = {reach: daily.select(pl.sum("flights_blocked", "trains_blocked")).row(0)
               for reach, (daily, _) in runs.items()}
    assert blocked[0.0] == (0, 0)
    # The same travellers try (retry 1: the refused are undeterred): blocks scale with the reach.
    for full, part in zip(blocked[1.0], blocked[0.3], strict=True):
        assert full > 1000
        assert abs(part / full - 0.3) < 4 * math.sqrt(0.3 * 0.7 / full), (part, full)
