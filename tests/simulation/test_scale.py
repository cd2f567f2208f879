"""Regions, consequences and the pilot-regions preset on a small population."""

import polars as pl

from socialcredit.simulation import simulate


def test_pilot_regions_keep_their_shares_and_policies(tmp_path):
    run = simulate(population=20000, days=3, seed=4, out=tmp_path / "pilots",
                   scenario="pilot-regions-2018", overrides={"block_size": 4096})
    counts = run.citizens.group_by("region").len()
    rest = counts.filter(pl.col("region") == "rest-of-china")["len"].item()
    assert abs(rest / 20000 - 0.9324) < 0.001
    unscored = run.citizens.filter(pl.col("region") == "rest-of-china")
    assert unscored["score"].is_null().all() and unscored["class"].is_null().all()
    assert run.citizens.filter(pl.col("region") == "rongcheng")["score"].is_not_null().all()
    daily = run.daily.filter(pl.col("region") == "rest-of-china")
    assert daily["class.A"].is_null().all()


def test_class_d_brings_job_loss_travel_bans_and_hurts_children(tmp_path):
    # Frequent offences push many into D; admission day falls inside the run.
    run = simulate(population=20000, days=170, seed=8, out=tmp_path / "harsh", overrides={
        "behaviour.rates.online.pornography": 0.2, "behaviour.deterrence": 0.0,
        "consequences.job_loss": 0.05, "consequences.flight": 0.05})
    daily = run.daily
    assert daily["class.D"].max() > 1000
    assert daily["jobs_lost"].sum() > 100
    assert daily["flights_blocked"].sum() > 100
    assert daily["gate_stops"].sum() > 0
    assert daily["admissions_applied"].sum() > 0 and daily["admissions_hurt"].sum() > 0
    d = run.citizens.filter(pl.col("class") == "D")
    assert (d["sanction_days"] > 0).all()
    assert d["flight_ban"].all() and d["gate_flagged"].all()
    a = run.citizens.filter(pl.col("class") == "A")
    assert (a["loan_price"] == "standard").all() and (a["insurance"] == "standard").all()
    assert d["employed"].mean() < run.citizens.filter(pl.col("class") == "A")["employed"].mean()
