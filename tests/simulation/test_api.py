import polars as pl

import socialcredit
import socialcredit.simulation as simulation
from socialcredit.simulation._kinds import BYTES_PER_CITIZEN


def test_public_api_is_small_and_sorted():
    assert simulation.__all__ == sorted(simulation.__all__)
    for name in simulation.__all__:
        assert getattr(simulation, name).__doc__
    assert socialcredit.simulate is simulation.simulate
    assert socialcredit.Run is simulation.Run


def test_run_tables_are_polars_frames(busy_run):
    assert isinstance(busy_run.daily, pl.DataFrame)
    assert isinstance(busy_run.citizens, pl.DataFrame)
    assert isinstance(busy_run.events, pl.DataFrame)
    assert busy_run.citizens.height == 6000
    assert busy_run.daily.height == 40  # one region, 40 days
    assert busy_run.manifest["seed"] == 7


def test_state_per_citizen_fits_in_32_bytes(busy_run):
    assert BYTES_PER_CITIZEN <= 32
    memory = busy_run.manifest["memory"]
    assert memory["state_bytes_per_citizen"] == BYTES_PER_CITIZEN
    assert memory["peak_rss_bytes"] > 0


def test_citizens_table_has_the_promised_columns(busy_run):
    cols = set(busy_run.citizens.columns)
    for c in ("citizen_id", "region", "age", "group", "income_decile", "urban", "parent",
              "platform_member", "score", "class", "commercial_score", "commercial_class",
              "wrongful_points", "sanction_days", "benefit_days", "profile_age_error",
              "moves_street", "moves_mall", "moves_subway"):
        assert c in cols


def test_camera_profile_age_estimate_settles(busy_run):
    c = busy_run.citizens.filter(pl.col("sightings") > 0)
    once = c.filter(pl.col("sightings") == 1)["profile_age_error"].abs().mean()
    often = c.filter(pl.col("sightings") >= 8)["profile_age_error"].abs().mean()
    assert often < once
