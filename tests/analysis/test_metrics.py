"""The metrics on small hand-made runs whose answers are known."""

import polars as pl
import pytest

from socialcredit.analysis import _metrics as m
from socialcredit.policy import load_policy
from socialcredit.simulation._kinds import KIND_NAMES

TAZ = load_policy("taz-2018")  # classes AAA >= 1300, AA >= 1150, A >= 1000, B >= 850, C >= 600, D
GROUPS = pl.Enum(["reference", "ten-fold"])


def bits(*kinds):
    return sum(1 << KIND_NAMES.index(k) for k in kinds)


def citizens(rows, **columns):
    frame = pl.DataFrame(rows, orient="row", schema=["citizen_id", "group", "score", "class", "wrongful_points"])
    return frame.with_columns(region=pl.lit("town"), group=pl.col("group").cast(GROUPS),
                              wrongful_points=pl.col("wrongful_points").cast(pl.Int16), **columns)


def test_wrongful_rate_per_kind_is_wrongful_over_observed():
    daily = pl.DataFrame({"day": [0, 1], "traffic.red_light.observed": [6, 4], "traffic.red_light.wrongful": [2, 1],
                          "public.littering.observed": [5, 5], "public.littering.wrongful": [0, 0],
                          "online.pornography.observed": [0, 0], "online.pornography.wrongful": [0, 0]})
    out = m.wrongful_by_kind(daily)
    assert out.rows() == [("traffic.red_light", 10, 3, 0.3), ("public.littering", 10, 0, 0.0)]


def test_class_shares_sum_regions_per_day():
    daily = pl.DataFrame({"day": [0, 0, 1, 1], "region": ["a", "b", "a", "b"],
                          "class.A": [3, 1, 2, None], "class.D": [0, 0, 1, 1]})
    out = m.class_shares(daily.lazy())
    assert out.filter(pl.col("day") == 1).select("class", "citizens", "share").rows() == [
        ("A", 2, 0.5), ("D", 2, 0.5)]
    assert out.filter(pl.col("day") == 0)["share"].to_list() == [1.0, 0.0]


def test_score_histogram_bins_and_skips_unscored():
    frame = pl.DataFrame({"region": ["t"] * 5, "score": [995, 1001, 1009, 1010, None]})
    assert m.score_histogram(frame, width=10).select("score_bin", "citizens").rows() == [
        (990, 1), (1000, 2), (1010, 1)]


def test_wrongful_by_group_counts_innocents_points_and_pushed_down():
    frame = citizens([
        ("c1", "reference", 595, "D", -10),    # 605 without: C, pushed down
        ("c2", "reference", 1000, "A", -5),    # 1005 without: still A
        ("c3", "reference", 700, "C", 0),
        ("c4", "reference", 845, "D", -10),    # 855 would be B, but a class cap holds them at D anyway
        ("c5", "ten-fold", 845, "C", -10),     # 855 without: B, pushed down
        ("c6", "ten-fold", 1200, "AA", -5),
    ])
    ref, ten = m.wrongful_by_group(frame, {"town": TAZ}).iter_rows(named=True)
    assert (ref["citizens"], ref["innocents_hit"], ref["points_lost"], ref["pushed_down"]) == (4, 3, 25, 1)
    assert (ten["citizens"], ten["innocents_hit"], ten["points_lost"], ten["pushed_down"]) == (2, 2, 15, 1)
    assert ref["hit_rate"] == 0.75 and ten["hit_rate"] == 1.0
    assert ten["hit_rate_ratio"] == pytest.approx(4 / 3)
    assert ten["pushed_rate_ratio"] == pytest.approx(0.5 / 0.25)


def test_d_reasons_weighs_rules_by_points_among_d_citizens():
    frame = citizens([("c1", "reference", 500, "D", 0), ("c2", "reference", 550, "D", 0),
                      ("c3", "reference", 1000, "A", 0)]).with_columns(
        scored_kinds=pl.Series([bits("traffic.red_light", "traffic.drunk_driving"), bits("traffic.red_light"),
                                bits("traffic.red_light")], dtype=pl.UInt32))
    out = m.d_reasons(frame, {"town": TAZ})
    assert out.select("rule", "citizens", "weight").rows() == [("drunk-driving", 1, 50), ("red-light", 2, 10)]
    assert out["share"].to_list() == pytest.approx([50 / 60, 10 / 60])
    assert m.d_reasons(frame, {"town": TAZ}, from_bottom=3).select("rule", "citizens").rows() == [("red-light", 1)]


def test_deterrence_compares_first_and_last_days():
    daily = pl.DataFrame({"day": [0, 1, 2, 3], "traffic.red_light.true": [10, 10, 5, 5]})
    out = m.deterrence(daily, ["traffic.red_light"], first_days=2, last_days=2)
    assert out.row(0) == ("traffic.red_light", 10.0, 5.0, -0.5)


def test_complaints_index_against_the_first_weeks():
    daily = pl.DataFrame({"day": list(range(14)), "social.complaint.true": [10] * 7 + [5] * 7})
    assert m.complaints_weekly(daily, first_weeks=1)["index"].to_list() == [1.0, 0.5]


def test_bots_among_the_top_class_against_everyone():
    frame = pl.DataFrame({"class": ["AAA", "AAA"] + ["B"] * 8 + [None],
                          "bot": [True, True, True] + [False] * 7 + [True]})
    row = m.bots_among_top(frame, ["AAA"]).row(0, named=True)
    assert (row["top_citizens"], row["top_share"], row["population_share"]) == (2, 1.0, 0.3)
    assert row["ratio"] == pytest.approx(1 / 0.3)


def test_class_by_age_band_shares_within_the_band():
    frame = pl.DataFrame({"age": [10, 17, 20, 25, 70], "class": ["A", "B", "D", "D", "A"]})
    out = m.class_by(m.with_age_band(frame), "age_band")
    assert out.with_columns(pl.col("age_band").cast(pl.String)).rows() == [
        ("0-17", "A", 1, 0.5), ("0-17", "B", 1, 0.5), ("18-29", "D", 2, 1.0), ("60+", "A", 1, 1.0)]


@pytest.mark.parametrize(("days", "admission_day", "ages"), [
    (60, 30, [18]), (100, 160, []), (365, 160, [19]), (600, 160, [18, 19]), (800, 100, [19, 20])])
def test_applicant_ages_follow_the_yearly_birthday(days, admission_day, ages):
    assert m.applicant_ages(days, admission_day) == ages


def test_admission_rate_by_parent_class():
    frame = pl.DataFrame({
        "citizen_id": ["p1", "p2", "k1", "k2", "k3", "k4"], "class": ["AAA", "D", "B", "B", "B", "B"],
        "age": [45, 50, 18, 18, 18, 30], "parent": [None, None, "p1", "p1", "p2", "p2"],
        "admitted": [False, False, True, False, False, True]})
    assert m.admission_by_parent_class(frame, [18]).rows() == [("AAA", 2, 1, 0.5), ("D", 1, 0, 0.0)]


def test_misidentification_by_the_group_of_the_person_seen():
    people = pl.DataFrame({"citizen_id": ["a", "b"], "group": pl.Series(["reference", "ten-fold"], dtype=GROUPS)})
    events = pl.DataFrame({"source": ["camera"] * 15 + ["browsing"], "actor_id": ["a"] * 10 + ["b"] * 6,
                           "wrongful": [True] + [False] * 9 + [True, True, False, False, False, True]})
    out = m.misidentified_by_group(events.lazy(), people.lazy())
    assert out.select("events", "wrongful", "rate").rows() == [(10, 1, 0.1), (5, 2, 0.4)]
    assert out["ratio"].to_list() == pytest.approx([1.0, 4.0])


def test_camera_confidence_bins_each_kind_to_shares():
    events = pl.DataFrame({"source": ["camera"] * 4 + ["courts"], "confidence": [0.981, 0.984, 0.991, 0.93, None],
                           "wrongful": [False, False, False, True, False]})
    out = m.camera_confidence(events, width=0.005)
    assert out.select("wrongful", "confidence", "events").rows() == [
        (False, 0.98, 2), (False, 0.99, 1), (True, 0.93, 1)]
    assert out["share"].to_list() == pytest.approx([2 / 3, 1 / 3, 1.0])


def test_consequences_and_holders_sum_regions_per_day():
    daily = pl.DataFrame({"day": [0, 0, 1], "jobs_lost": [1, 2, 3], "gate_stops": [0, 1, 1],
                          "benefit.cheaper-loans": [5, None, 6], "sanction.flight-ban": [1, 1, 0]})
    assert m.consequences_daily(daily).select("day", "gate_stops", "jobs_lost").rows() == [(0, 1, 3), (1, 1, 3)]
    assert m.holders_daily(daily).rows() == [(0, 5, 2), (1, 6, 0)]
