"""Demographic differentials: false matches land on the seen person's own group, so the wrongly
penalised per head of each group stand to each other exactly as the configured multipliers."""

import math

import polars as pl

from socialcredit.simulation import simulate

MULTIPLIERS = {"reference": 1.0, "ten-fold": 10.0, "hundred-fold": 100.0}


def test_wrongful_hits_per_head_follow_the_group_multipliers(tmp_path):
    """Red lights are as frequent in every group, so a group's false-match hits per head over the
    reference group's equal its multiplier; a Poisson count's log has SE 1/sqrt(hits), and the
    ratio is tested within 4 SE of the log of the multiplier."""
    run = simulate(population=40_000, days=60, seed=17, out=tmp_path / "groups", events="all", overrides={
        "behaviour.rates.traffic.red_light": 0.3, "behaviour.deterrence": 0.0,
        "region.0.coverage.street": 1.0, "sensors.fmr": 0.002, "sensors.gallery_exponent": 0.0,
        "sensors.max_fmr": 1.0})
    citizens = run.citizens.select("citizen_id", "group")
    wrongful = (run.events.filter((pl.col("source") == "camera") & pl.col("wrongful"))
                .join(citizens, on="citizen_id"))
    actors = wrongful.join(citizens.rename({"citizen_id": "actor_id", "group": "actor_group"}), on="actor_id")
    assert (actors["group"] == actors["actor_group"]).all()  # the look-alike is of the seen person's group
    sizes = dict(citizens.group_by("group").len().iter_rows())
    hits = dict(wrongful.group_by("group").len().iter_rows())
    reference = hits["reference"] / sizes["reference"]
    for group, multiplier in MULTIPLIERS.items():
        assert hits[group] > 300, group
        ratio = hits[group] / sizes[group] / reference
        se = math.sqrt(1 / hits[group] + 1 / hits["reference"])
        assert abs(math.log(ratio) - math.log(multiplier)) < 4 * se, (group, ratio, multiplier)
