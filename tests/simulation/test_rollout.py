"""Roll-out over time: a region joins a scheme on a date, cameras change on a date; the preset
rollout-2018-2020 goes from the pilots to the nationwide scheme."""

import numpy as np
import polars as pl
import pytest

from socialcredit import load_policy, score_ledger
from socialcredit.events import validate_events
from socialcredit.simulation import SimulationError, simulate
from socialcredit.simulation._scenario import load_scenario
from tests.simulation._replay import ENGINE_COLUMNS

# Two towns: "early" scored from the start, its cameras off until day 20; "late" joins taz-2018 on
# day 30 (2018-01-31).
TWO_TOWNS = """
extends = "one-town"
name = "two-towns"
[[region]]
name = "early"
share = 0.5
policy = "taz-2018"
coverage = { street = 0.0, mall = 0.0, subway = 0.0 }
change = [{ date = 2018-01-21, coverage = { street = 1.0, mall = 1.0, subway = 1.0 } }]
[[region]]
name = "late"
share = 0.5
coverage = { street = 0.5, mall = 0.5, subway = 0.5 }
change = [{ date = 2018-01-31, policy = "taz-2018" }]
"""
BUSY = {"behaviour.rates.traffic.red_light": 0.05, "behaviour.rates.public.littering": 0.03}


@pytest.fixture(scope="module")
def two_towns(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rollout")
    (folder / "two-towns.toml").write_text(TWO_TOWNS, encoding="utf-8")
    return simulate(population=6000, days=60, seed=9, out=folder / "run", events="all",
                    scenario=folder / "two-towns.toml", overrides=BUSY)


def test_a_region_is_unscored_until_it_joins_then_scored_as_the_engine_scores_its_events_since(two_towns):
    run = two_towns
    assert run.manifest.policies == {"early": "taz-2018", "late": "taz-2018"}
    late = run.daily.filter(pl.col("region") == "late").sort("day")
    classes = [c for c in run.daily.columns if c.startswith("class.")]
    counts = late.select(pl.sum_horizontal(classes).alias("n"))["n"]
    citizens = run.citizens.filter(pl.col("region") == "late")
    assert late["class.A"][:30].is_null().all() and late["class.A"][30:].is_not_null().all()
    assert (counts[30:] == citizens.height).all()
    events = run.events.filter(pl.col("region") == "late")
    before, since = events.filter(pl.col("day") < 30), events.filter(pl.col("day") >= 30)
    assert before.height > 500 and (before["state_points"] == 0).all()
    assert (since["state_points"] != 0).sum() > 500
    # The scheme's ledger there starts on the day it joins: the engine gives the simulator's scores.
    result = score_ledger(load_policy("taz-2018"), validate_events(since.select(ENGINE_COLUMNS)), as_of=59)
    joined = result.scores.join(citizens.select("citizen_id", sim_score="score", sim_class="class"), on="citizen_id")
    assert joined.height == result.scores.height > 1000
    assert joined.filter((pl.col("score") != pl.col("sim_score"))
                         | (pl.col("class").cast(pl.String) != pl.col("sim_class"))).height == 0
    early_counts = run.daily.filter(pl.col("region") == "early").select(pl.sum_horizontal(classes))
    assert early_counts.to_series().is_not_null().all()


def test_cameras_see_nothing_until_their_coverage_rises(two_towns):
    early = two_towns.daily.filter(pl.col("region") == "early").sort("day")
    sightings = early["sightings"].to_numpy()
    assert (sightings[:20] == 0).all() and (sightings[20:] > 0).all()
    cams = two_towns.events.filter((pl.col("region") == "early") & (pl.col("source") == "camera"))
    assert cams.height > 100 and cams["day"].min() == 20


def test_one_policy_everywhere_keeps_the_joining_date(tmp_path):
    (tmp_path / "two-towns.toml").write_text(TWO_TOWNS, encoding="utf-8")
    scenario = load_scenario(tmp_path / "two-towns.toml", policy="rongcheng")
    early, late = scenario.regions
    assert early.policy == "rongcheng" and late.policy is None
    assert late.scheme == "rongcheng" and str(late.joins()) == "2018-01-31"


@pytest.mark.parametrize(("change", "message"), [
    ('{ date = 2017-12-01, policy = "taz-2018" }', r"change\[0\].date: 2017-12-01 is not after the start_date"),
    ('{ date = 2018-03-01 }', "a change needs a policy"),
    ('{ date = 2018-03-01, policy = "no-such-policy" }', r"region\[1\].change\[0\].policy"),
    ('{ date = 2018-03-01, policy = "taz-2018" }, { date = 2018-02-01, coverage = '
     '{ street = 1.0, mall = 1.0, subway = 1.0 } }', "dates must be distinct and in order"),
    ('{ date = 2018-03-01, policy = "taz-2018" }, { date = 2018-04-01, policy = "rongcheng" }',
     "a region joins a scheme once"),
])
def test_a_bad_change_is_refused_naming_it(tmp_path, change, message):
    text = TWO_TOWNS.replace('change = [{ date = 2018-01-31, policy = "taz-2018" }]', f"change = [{change}]")
    (tmp_path / "bad.toml").write_text(text, encoding="utf-8")
    with pytest.raises(SimulationError, match=message):
        load_scenario(tmp_path / "bad.toml")


def test_a_region_with_a_policy_cannot_join_another():
    with pytest.raises(SimulationError, match="a region joins a scheme once, and only if it has none"):
        load_scenario("pilot-regions-2018",
                      overrides={"region.0.change": [{"date": "2019-01-01", "policy": "taz-2018"}]})


def test_the_rollout_preset_goes_from_the_pilots_to_the_nation(tmp_path):
    scenario = load_scenario("rollout-2018-2020")
    pilots, rest = scenario.regions[:12], scenario.regions[12]
    assert rest.name == "rest-of-china" and all(r.policy is not None for r in pilots)
    assert str(rest.joins()) == "2020-01-01" and rest.scheme == "taz-2018"
    assert all(str(r.changes[0].date) == "2019-01-01" and r.changes[0].coverage.subway > r.coverage.subway
               for r in pilots)
    run = simulate(population=3000, days=1096, seed=2, out=tmp_path / "run", scenario="rollout-2018-2020")
    daily = run.daily.filter(pl.col("region") == "rest-of-china").sort("day")
    scored = daily.select(pl.sum_horizontal([c for c in daily.columns if c.startswith("class.")])).to_series()
    start = (np.datetime64("2020-01-01") - np.datetime64("2018-01-01")).astype(int)
    rest_citizens = run.citizens.filter(pl.col("region") == "rest-of-china")
    assert daily["class.A"][:start].is_null().all() and daily["class.A"][start:].is_not_null().all()
    assert (scored[start:] == rest_citizens.height).all()
    assert rest_citizens["score"].is_not_null().all()
    # Its events count from 2020 only.
    events_points = run.daily.filter(pl.col("region") == "rest-of-china").sort("day")["traffic.red_light.counted"]
    assert events_points[:start].sum() == 0 and events_points[start:].sum() > 0
