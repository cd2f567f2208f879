"""Wrongful attribution appears at the configured false-match rate, by demographic group."""

import math

import polars as pl
import pytest

from socialcredit.simulation import load_scenario, simulate

FMR = 0.004  # the reference group's false-match rate here (gallery_exponent 0: no gallery growth)
# NIST FRVT (docs/sources.md#nist-frvt-demographics-2019): false-match rates differ between
# demographic groups by a factor of 10 to 100; the one-town groups are named for the two ends.
NIST = {"reference": 1.0, "ten-fold": 10.0, "hundred-fold": 100.0}


@pytest.fixture(scope="module")
def camera_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("wrongful") / "run"
    return simulate(population=30000, days=30, seed=5, out=out, events="all", overrides={
        "behaviour.rates.traffic.red_light": 0.3, "behaviour.deterrence": 0.0,
        "region.0.coverage.street": 1.0, "sensors.fmr": FMR, "sensors.gallery_exponent": 0.0,
        "sensors.fnmr": 0.05})


def _by_true_group(run):
    """Camera observations and wrongful attributions among them, by the TRUE actor's group."""
    events = run.events.filter(pl.col("source") == "camera")
    groups = run.citizens.select(actor_id="citizen_id", group="group")
    table = (events.join(groups, on="actor_id").group_by("group")
             .agg(n=pl.len(), wrongful=pl.col("wrongful").sum()))
    return {g: (n, w) for g, n, w in table.select(pl.col("group").cast(pl.String), "n", "wrongful").iter_rows()}


def test_the_town_scenario_configures_the_nist_differentials():
    groups = {g.name: g.fmr_multiplier for g in load_scenario("one-town").population.groups}
    assert groups == NIST


def test_false_matches_by_group_match_the_configured_rates(camera_run):
    """Each group's wrongful attributions are binomial(n, p) with p = FMR x its multiplier:
    within 4 SE, sqrt(n p (1 - p))."""
    rates = _by_true_group(camera_run)
    for group, multiplier in NIST.items():
        n, wrongful = rates[group]
        p = FMR * multiplier
        assert abs(wrongful - n * p) < 4 * math.sqrt(n * p * (1 - p)), (group, n, wrongful, n * p)


def test_false_match_rates_differ_between_groups_ten_and_hundred_fold(camera_run):
    """The realised false-match rate of a group over the reference group's estimates its
    multiplier (the look-alike search decides who is named, not whether the match is false).

    SE of the log of a binomial proportion: sqrt((1 - p) / (n p)); of the log ratio, the root of
    the sum for both groups. With about 180,000 camera observations the SE is about 0.057
    (ten-fold) and 0.044 (hundred-fold): a multiplier of 6 instead of 10, or 60 instead of 100,
    moves the log ratio by 0.51, about 9 and 12 SE, against a tolerance of 4 SE.
    """
    rates = _by_true_group(camera_run)
    n_ref, w_ref = rates["reference"]
    for group in ("ten-fold", "hundred-fold"):
        n, wrongful = rates[group]
        p, p_ref = FMR * NIST[group], FMR
        se = math.sqrt((1 - p) / (n * p) + (1 - p_ref) / (n_ref * p_ref))
        log_ratio = math.log((wrongful / n) / (w_ref / n_ref))
        assert abs(log_ratio - math.log(NIST[group])) < 4 * se, (group, math.exp(log_ratio), se)
        assert abs(math.log(6 / 10)) > 7 * se  # the test has the power it claims


def test_a_false_match_lands_on_an_innocent_of_the_same_region(camera_run):
    wrong = camera_run.events.filter(pl.col("wrongful"))
    assert wrong.height > 100
    assert (wrong["citizen_id"] != wrong["actor_id"]).all()
    regions = camera_run.citizens.select("citizen_id", "region")
    joined = wrong.join(regions, on="citizen_id").join(
        regions.rename({"citizen_id": "actor_id", "region": "actor_region"}), on="actor_id")
    assert (joined["region"] == joined["actor_region"]).all()


def test_wrongful_points_are_exact(camera_run):
    wrong = camera_run.events.filter(pl.col("wrongful"))
    per_citizen = wrong.group_by("citizen_id").agg(pl.col("state_points").sum())
    joined = per_citizen.join(camera_run.citizens.select("citizen_id", "wrongful_points"),
                              on="citizen_id")
    assert (joined["state_points"] == joined["wrongful_points"]).all()
    assert camera_run.daily["wrongful_points"].sum() == wrong["state_points"].sum()
    quiet = camera_run.citizens.filter(~pl.col("citizen_id").is_in(per_citizen["citizen_id"].implode()))
    assert (quiet["wrongful_points"] == 0).all() and quiet.height > 1000


def test_cameras_miss_at_the_configured_rate_and_police_catch_a_few_of_the_rest(camera_run):
    """Urban red lights are all in view (street coverage 1): the camera misses one in 20 (fnmr
    0.05), and traffic police catch 2% of those. So police records over camera records of urban
    actors estimate 0.05 x 0.02 / 0.95; the police count is binomial: 4 SE is 4 sqrt(n p)."""
    events = camera_run.events.join(camera_run.citizens.select(actor_id="citizen_id", urban="urban"),
                                    on="actor_id").filter(
        pl.col("urban") & (pl.col("kind") == "traffic.red_light"))
    camera = (events["source"] == "camera").sum()
    police = (events["source"] == "traffic-police").sum()
    expected = camera * 0.05 * 0.02 / 0.95
    assert abs(police - expected) < 4 * math.sqrt(expected), (police, expected)
    assert camera + police == events.height


def test_in_store_cameras_profile_platform_customers_seen_in_malls(camera_run):
    citizens = camera_run.citizens
    profiled = citizens.filter(pl.col("instore_clothes_stops") > 0)
    assert profiled.height > 100
    # Only customers have a commercial profile, and a record needs a mall sighting of somebody.
    assert profiled["platform_member"].all()
    daily = camera_run.daily
    assert citizens["instore_clothes_stops"].cast(pl.Int64).sum() == daily["instore_records"].sum()
    assert daily["instore_records"].sum() < daily["sightings"].sum()
    # The in-store match is the camera's face match: look-alikes get records too, at its error rate.
    assert 0 < daily["instore_wrongful"].sum() < daily["instore_records"].sum()
