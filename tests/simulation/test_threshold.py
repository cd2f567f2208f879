"""Face recognition with a threshold trade-off: a policy's min_confidence lowers wrongful penalties
and raises misses, as the match-score model says (fixed seeds, 4 standard errors)."""

import math

import polars as pl
import pytest

from socialcredit.simulation import simulate

POLICY = """
name = "threshold-{m}"
title = "Red lights by camera at a confidence of {m}"
start = 1000
min = 0
max = 2000
[[class]]
name = "A"
min = 500
[[class]]
name = "D"
[[rule]]
id = "red-light"
kind = "traffic.red_light"
points = -5
reason = "red light"
sources = ["camera"]
min_confidence = {m}
"""
SEEN = {"behaviour.rates.traffic.red_light": 0.1, "behaviour.deterrence": 0.0,
        "region.0.coverage.street": 1.0, "sensors.fmr": 0.01, "sensors.gallery_exponent": 0.0}
THRESHOLD, FNMR, FALSE_TAIL, TRUE_TAIL = 0.8, 0.05, 1.0, 0.5  # one-town's sensors


def _camera_events(tmp_path, m):
    policy = tmp_path / f"policy-{m}.toml"
    policy.write_text(POLICY.format(m=m))
    run = simulate(population=20_000, days=30, seed=23, out=tmp_path / f"run-{m}", events="all",
                   policy=str(policy), overrides=SEEN)
    return run.events.filter((pl.col("source") == "camera") & (pl.col("kind") == "traffic.red_light"))


def _share(frame, where):
    k, n = frame.filter(where).height, frame.height
    return k / n, math.sqrt(max(k, 1) / n * (1 - k / n) / n)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("threshold")
    return {m: _camera_events(folder, m) for m in (0.8, 0.9, 0.99)}


@pytest.mark.parametrize("m", [0.9, 0.99])
def test_confidences_follow_the_match_score_model(runs, m):
    """False matches reaching m: ((1 - m) / (1 - threshold)) ** false_tail; mates reaching it:
    1 - fnmr ((1 - threshold) / (1 - m)) ** true_tail over the 1 - fnmr found at the threshold."""
    events = runs[0.8]
    wrong, right = events.filter(pl.col("wrongful")), events.filter(~pl.col("wrongful"))
    assert wrong.height > 500
    assert (events["confidence"] >= THRESHOLD).all()
    false_share, se = _share(wrong, pl.col("confidence") >= m)
    assert abs(false_share - ((1 - m) / (1 - THRESHOLD)) ** FALSE_TAIL) < 4 * se
    true_share, se = _share(right, pl.col("confidence") >= m)
    expected = (1 - FNMR * ((1 - THRESHOLD) / (1 - m)) ** TRUE_TAIL) / (1 - FNMR)
    assert abs(true_share - expected) < 4 * se, (true_share, expected)


def test_raising_min_confidence_lowers_wrongful_penalties_and_raises_misses(runs):
    """Counted by the policy: state points on an event. Each step up in min_confidence counts fewer
    false matches (the wrongful penalties) and fewer true ones (the misses rise)."""
    counted = {m: (_share(e.filter(pl.col("wrongful")), pl.col("state_points") != 0),
                   _share(e.filter(~pl.col("wrongful")), pl.col("state_points") != 0))
               for m, e in runs.items()}
    (w_lo, w_lo_se), (t_lo, t_lo_se) = counted[0.8]
    assert w_lo == t_lo == 1.0  # at the camera's own threshold every match counts
    for low, high in ((0.8, 0.9), (0.9, 0.99)):
        (w1, s1), (t1, u1) = counted[low]
        (w2, s2), (t2, u2) = counted[high]
        assert w1 - w2 > 4 * math.hypot(s1, s2), ("wrongful", low, high, w1, w2)
        assert t1 - t2 > 4 * math.hypot(u1, u2), ("misses", low, high, t1, t2)


def test_the_harm_is_counted_each_day_moves_down_a_class_by_events_not_committed(tmp_path):
    """Two classes, A from the start score and D below it: a citizen's first counted red light moves
    them into D, so the daily wrongful downgrades (all into the bottom class) are the citizens whose
    first counted event, in the kernel's order, was a false match, day by day."""
    policy = tmp_path / "two.toml"
    policy.write_text(POLICY.format(m=0.8).replace("min = 500", "min = 1000"))
    run = simulate(population=20_000, days=30, seed=29, out=tmp_path / "harm", events="all",
                   policy=str(policy), overrides=SEEN)
    counted = run.events.filter(pl.col("state_points") != 0).sort("event_id")
    first = counted.group_by("citizen_id", maintain_order=True).first()
    expected = first.filter(pl.col("wrongful")).group_by("day").len().sort("day")
    daily = run.daily.group_by("day").agg(pl.col("wrongful_downgrades", "wrongful_into_bottom").sum()).sort("day")
    got = daily.filter(pl.col("wrongful_downgrades") > 0)
    assert expected["len"].sum() > 50
    assert got["day"].to_list() == expected["day"].to_list()
    assert got["wrongful_downgrades"].to_list() == expected["len"].to_list()
    assert (daily["wrongful_into_bottom"] == daily["wrongful_downgrades"]).all()
