"""Feedback moves rates in the stated direction (same seed, one parameter changed)."""

import polars as pl

from socialcredit.simulation import simulate


def _run(tmp_path, name, **overrides):
    return simulate(population=8000, days=60, seed=9, out=tmp_path / name, overrides=overrides)


def test_deterrence_lowers_the_penalised_rate(tmp_path):
    base = {"behaviour.rates.traffic.red_light": 0.05, "region.0.coverage.street": 1.0}
    none = _run(tmp_path, "none", **base, **{"behaviour.deterrence": 0.0})
    strong = _run(tmp_path, "strong", **base, **{"behaviour.deterrence": 0.9})
    late = pl.col("day") >= 30
    a = none.daily.filter(late)["traffic.red_light.true"].sum()
    b = strong.daily.filter(late)["traffic.red_light.true"].sum()
    assert b < 0.7 * a


def test_self_censorship_lowers_complaints_where_they_are_penalised(tmp_path):
    base = {"behaviour.rates.social.complaint": 0.05}
    free = _run(tmp_path, "free", **base, **{"behaviour.self_censorship": 0.0,
                                              "behaviour.peer_censorship": 0.0})
    afraid = _run(tmp_path, "afraid", **base, **{"behaviour.self_censorship": 0.5,
                                                 "behaviour.peer_censorship": 3.0})
    a = free.daily["social.complaint.true"]
    b = afraid.daily["social.complaint.true"]
    assert b.sum() < 0.6 * a.sum()
    # Peers seen penalised push complaints down further as the run goes on.
    assert b.tail(10).sum() < b.head(10).sum()


def test_conformity_raises_rewarded_acts(tmp_path):
    base = {"behaviour.rates.civic.volunteering": 0.05, "behaviour.gaming": 0.0}
    flat = _run(tmp_path, "flat", **base, **{"behaviour.conformity": 0.0})
    keen = _run(tmp_path, "keen", **base, **{"behaviour.conformity": 1.0})
    late = pl.col("day") >= 30
    a = flat.daily.filter(late)["civic.volunteering.true"].sum()
    b = keen.daily.filter(late)["civic.volunteering.true"].sum()
    assert b > 1.3 * a


def test_bots_game_the_party_newspaper_reward(tmp_path):
    run = _run(tmp_path, "bots", **{"behaviour.gaming": 1.0, "behaviour.savvy_share": 0.3})
    daily = run.daily
    assert daily["bots_deployed"].sum() == run.citizens["bot"].sum() > 50
    visits = daily["online.party_newspaper_visit.counted"]
    assert visits.tail(10).mean() > 2 * visits.head(10).mean()
    bots = run.citizens.filter(pl.col("bot"))
    humans = run.citizens.filter(~pl.col("bot") & (pl.col("age") >= 18))
    assert bots["score"].mean() > humans["score"].mean()


def test_no_reward_no_bots(tmp_path):
    run = simulate(population=8000, days=60, seed=9, out=tmp_path / "acc", policy="accountable",
                   overrides={"behaviour.gaming": 1.0, "behaviour.savvy_share": 0.3})
    assert run.citizens["bot"].sum() == 0
