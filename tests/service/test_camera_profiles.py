"""A run's camera profiles as the service stores them: from the simulator's citizens.parquet columns.

Hand-written frames, on purpose: each case is a citizens table the simulator may or may not write
(older runs, runs without cameras), and the function must say what the data centre knows of it.
"""

import json
import math

import polars as pl
import pytest

from socialcredit.service._loading import camera_profiles


def _citizens(**extra):
    return pl.DataFrame({"citizen_id": ["c1", "c2", "c3"], "age": [30, 41, 9],
                         "profile_age": pl.Series([33, None, 10], dtype=pl.UInt8),
                         "sightings": pl.Series([6, 0, 1], dtype=pl.UInt8), **extra})


def test_a_profile_holds_the_estimate_its_standard_error_and_the_sightings_by_place():
    citizens = _citizens(moves_street=pl.Series([4, 0, 1], dtype=pl.UInt8),
                         moves_mall=pl.Series([2, 0, 0], dtype=pl.UInt8))
    profiles = camera_profiles(citizens, age_noise=4.0)
    assert profiles.columns == ["citizen_id", "age_estimate", "age_uncertainty", "sightings", "by_place"]
    rows = {r["citizen_id"]: r for r in profiles.iter_rows(named=True)}
    assert rows["c1"]["age_estimate"] == 33.0 and rows["c1"]["sightings"] == 6
    assert rows["c1"]["age_uncertainty"] == round(4.0 / math.sqrt(6 * 6), 2)
    assert rows["c3"]["age_uncertainty"] == round(4.0 / math.sqrt(6 * 1), 2)
    assert rows["c2"]["age_estimate"] is None and rows["c2"]["age_uncertainty"] is None
    assert json.loads(rows["c1"]["by_place"]) == {"street": 4, "mall": 2}
    assert "age" not in profiles.columns  # the true age is the simulation's knowledge only


def test_without_the_noise_of_the_run_the_uncertainty_is_unknown():
    profiles = camera_profiles(_citizens(), age_noise=None)
    assert profiles.schema["age_uncertainty"] == pl.Float64
    assert profiles["age_uncertainty"].is_null().all()
    assert profiles["age_estimate"].to_list() == [33.0, None, 10.0]


def test_without_sightings_by_place_each_profile_has_an_empty_breakdown():
    profiles = camera_profiles(_citizens(), age_noise=4.0)
    assert profiles["by_place"].to_list() == ["{}", "{}", "{}"]


@pytest.mark.parametrize("missing", ["profile_age", "sightings"])
def test_a_table_without_estimates_or_sightings_has_no_profiles(missing):
    assert camera_profiles(_citizens().drop(missing), age_noise=4.0) is None
