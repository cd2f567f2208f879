"""Reason codes: one citizen's explanation, every field worked out by hand from the small policy."""

import polars as pl
import pytest

from socialcredit.engine import CompiledPolicy, explain
from tests.conftest import events


def ev(i, kind, day, citizen="x", **extra):
    return {"event_id": i, "citizen_id": citizen, "kind": kind, "day": day, **extra}


# Citizen x by day 3 (small policy: start 1000; A >= 1050, B >= 950, else C):
#   capped: 2 counted on day 1 and 2 on day 2 (cap 2 a day, -10 each, expiring after 3 days): -40
#   reward: +40 on day 2 (cap 1: the second is capped)
#   camera: -30 at confidence 0.95, one at 0.5 refused (min 0.9)
#   drunk:  -1 on day 3, holding the class at C while it counts (4 days)
#   and an unknown kind. Another citizen's event on day 9 sets the ledger's last day.
LEDGER = [
    ev("c1", "k.capped", 1), ev("c2", "k.capped", 1), ev("c3", "k.capped", 1),
    ev("c4", "k.capped", 2), ev("c5", "k.capped", 2),
    ev("r1", "k.reward", 2), ev("r2", "k.reward", 2),
    ev("m1", "k.camera", 2, source="camera", source_ref="mall", confidence=0.95),
    ev("m2", "k.camera", 3, source="camera", source_ref="street", confidence=0.5),
    ev("d1", "k.drunk", 3), ev("u1", "k.unknown", 3),
    ev("y1", "k.reward", 9, citizen="y"),
]


def test_explanation_on_a_given_day(small_policy):
    e = explain(small_policy, events(LEDGER), "x", as_of=3)
    assert (e.citizen_id, e.as_of, e.score) == ("x", 3, 1000 - 40 + 40 - 30 - 1)
    assert (e.score_class, e.class_name, e.capped_by) == ("B", "C", "drunk")
    # Largest effect first; equal effects (capped -40, reward +40) by rule id.
    assert e.factors.rows() == [
        ("capped", "capped and expiring", "lowered", -40, 4),
        ("reward", "rewarded", "raised", 40, 1),
        ("camera", "seen by a camera", "lowered", -30, 1),
        ("drunk", "class held at C", "lowered", -1, 1),
    ]
    assert e.factors.columns == ["rule", "reason", "effect", "points", "events"]
    assert e.events.columns == ["event_id", "day", "kind", "rule", "points", "status", "reason", "source",
                                "source_ref", "confidence"]
    by_id = {r["event_id"]: r for r in e.events.iter_rows(named=True)}
    assert e.events["event_id"].to_list() == ["c1", "c2", "c3", "c4", "c5", "m1", "r1", "r2", "d1", "m2", "u1"]
    assert {i: r["status"] for i, r in by_id.items()} == {
        "c1": "counted", "c2": "counted", "c3": "cap", "c4": "counted", "c5": "counted", "r1": "counted",
        "r2": "cap", "m1": "counted", "m2": "confidence", "d1": "counted", "u1": "unknown_kind"}
    assert by_id["m1"]["reason"] == "seen by a camera" and by_id["m1"]["source_ref"] == "mall"
    assert by_id["m1"]["points"] == -30 and by_id["c3"]["points"] == 0


def test_explanation_defaults_to_the_ledgers_last_day(small_policy):
    """As of day 9 (citizen y's event) the capped and drunk events have expired: no class cap."""
    e = explain(CompiledPolicy.of(small_policy), events(LEDGER), "x")
    assert (e.as_of, e.score, e.score_class, e.class_name, e.capped_by) == (9, 1000 + 40 - 30, "B", "B", None)
    assert e.factors.rows() == [("reward", "rewarded", "raised", 40, 1),
                                ("camera", "seen by a camera", "lowered", -30, 1)]


@pytest.mark.parametrize(("points", "effect"), [(0, "none"), (1, "raised"), (-1, "lowered")])
def test_a_factors_effect_is_the_sign_of_its_points(small_policy, points, effect):
    from socialcredit.policy import parse_policy
    from tests.conftest import SMALL_POLICY

    policy = parse_policy(SMALL_POLICY.replace("points = -1\n", f"points = {points}\n"), source="drunk")
    e = explain(policy, events([ev("d1", "k.drunk", 3), ev("c1", "k.capped", 3)]), "x")
    assert e.factors.rows() == [("capped", "capped and expiring", "lowered", -10, 1),
                                ("drunk", "class held at C", effect, points, 1)]


def test_a_citizen_without_events_is_a_key_error(small_policy):
    with pytest.raises(KeyError, match="'nobody' has no events"):
        explain(small_policy, events(LEDGER), "nobody")
    assert explain(small_policy, events(LEDGER).filter(pl.col("citizen_id") == "y"), "y").as_of == 9


def test_a_citizen_under_the_min_age_is_explained_as_not_scored(small_policy):
    aged = small_policy.model_copy(update={"min_age": 18})
    ledger = events([{"event_id": "1", "citizen_id": "kid", "kind": "k.reward", "day": 3},
                     {"event_id": "2", "citizen_id": "kid", "kind": "k.reward", "day": 4}])
    births = pl.DataFrame({"citizen_id": ["kid"], "birth_day": [-18 * 365 + 4]})  # of age on day 4
    young = explain(aged, ledger, "kid", as_of=3, births=births)
    assert (young.citizen_id, young.as_of, young.score, young.class_name, young.score_class,
            young.capped_by, young.factors.height) == ("kid", 3, None, None, None, None, 0)
    assert young.events["status"].to_list() == ["underage", "future"]
    grown = explain(aged, ledger, "kid", as_of=4, births=births)
    assert (grown.score, grown.class_name) == (1040, "B")
    assert grown.events["status"].to_list() == ["underage", "counted"]
