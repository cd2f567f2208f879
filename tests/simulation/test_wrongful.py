"""Wrongful attribution appears at the configured false-match rate, by demographic group."""

import polars as pl
import pytest

from socialcredit.simulation import simulate

FMR = 0.002  # x1, x10, x100 by group (NIST FRVT differentials)


@pytest.fixture(scope="module")
def camera_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("wrongful") / "run"
    return simulate(population=30000, days=30, seed=5, out=out, events="all", overrides={
        "behaviour.rates.traffic.red_light": 0.08, "behaviour.deterrence": 0.0,
        "region.0.coverage.street": 1.0, "sensors.fmr": FMR, "sensors.gallery_exponent": 0.0,
        "sensors.fnmr": 0.05})


def test_false_matches_by_group_match_the_configured_rates(camera_run):
    events = camera_run.events.filter(pl.col("source") == "camera")
    groups = camera_run.citizens.select(actor_id="citizen_id", group="group")
    by_group = (events.join(groups, on="actor_id").group_by("group")
                .agg(n=pl.len(), wrongful=pl.col("wrongful").sum()).sort("group"))
    rates = dict(zip(by_group["group"].cast(pl.String), zip(by_group["n"], by_group["wrongful"],
                                                             strict=True), strict=True))
    for group, multiplier in (("reference", 1), ("ten-fold", 10), ("hundred-fold", 100)):
        n, wrongful = rates[group]
        p = FMR * multiplier
        assert abs(wrongful - n * p) < 4 * (n * p * (1 - p)) ** 0.5 + 1, group
    assert rates["hundred-fold"][1] / rates["hundred-fold"][0] > 20 * rates["reference"][1] / rates["reference"][0]


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
    missed = camera_run.daily["traffic.red_light.true"].sum() - camera_run.daily[
        "traffic.red_light.observed"].sum()
    assert missed > 0  # the 5% misses (and police who look away) leave acts unobserved


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
