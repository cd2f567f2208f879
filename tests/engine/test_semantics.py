"""Each clause of the scoring semantics, on ledgers small enough to check by hand."""

import polars as pl
import pytest

from socialcredit.engine import STATUS_NAMES, score_ledger
from socialcredit.events import EventError
from tests.conftest import events


def scored(policy, rows, as_of=None, **kw):
    result = score_ledger(policy, events(rows), as_of=as_of, **kw)
    return result, {r["citizen_id"]: (r["score"], r["class"]) for r in result.scores.iter_rows(named=True)}


def ev(i, citizen, kind, day, **extra):
    return {"event_id": i, "citizen_id": citizen, "kind": kind, "day": day, **extra}


def test_start_score_and_class_for_citizen_with_only_unscored_events(small_policy):
    result, s = scored(small_policy, [ev("1", "a", "k.unknown", 0)])
    assert s == {"a": (1000, "B")}
    assert result.status_counts()["unknown_kind"] == 1
    assert result.unknown_kinds.rows() == [("k.unknown", 1)]


def test_strict_refuses_unknown_kinds(small_policy):
    with pytest.raises(EventError, match="k.unknown"):
        score_ledger(small_policy, events([ev("1", "a", "k.unknown", 0)]), strict=True)


def test_cap_keeps_the_first_events_in_event_id_string_order(small_policy):
    # "10" < "9" as strings: the cap of 2 keeps 10 and 11, not 9.
    rows = [ev("9", "a", "k.capped", 1), ev("10", "a", "k.capped", 1), ev("11", "a", "k.capped", 1),
            ev("12", "a", "k.capped", 2), ev("13", "b", "k.capped", 1)]
    result, s = scored(small_policy, rows, as_of=2)
    status = dict(zip(result.decisions["event_id"], result.decisions["status"], strict=True))
    assert status == {"9": "cap", "10": "counted", "11": "counted", "12": "counted", "13": "counted"}
    assert s["a"] == (970, "B")
    assert s["b"] == (990, "B")


def test_cap_counts_only_events_that_passed_source_and_confidence(small_policy):
    rows = [ev("1", "a", "k.reward", 0), ev("2", "a", "k.reward", 0)]
    result, s = scored(small_policy, rows)
    assert list(result.decisions["status"]) == ["counted", "cap"]
    assert s["a"] == (1040, "B")


def test_expiry_counts_on_days_d_to_d_plus_n_minus_1(small_policy):
    rows = [ev("1", "a", "k.capped", 5)]
    for as_of, expected in [(4, 1000), (5, 990), (7, 990), (8, 1000)]:
        result, s = scored(small_policy, rows, as_of=as_of)
        assert s["a"][0] == expected, as_of
    assert list(scored(small_policy, rows, as_of=8)[0].decisions["status"]) == ["expired"]
    assert list(scored(small_policy, rows, as_of=4)[0].decisions["status"]) == ["future"]


def test_as_of_defaults_to_the_largest_day(small_policy):
    result, s = scored(small_policy, [ev("1", "a", "k.capped", 0), ev("2", "b", "k.reward", 9)])
    assert result.as_of == 9
    assert s["a"][0] == 1000  # expired after day 2


def test_confidence_threshold_is_inclusive_and_missing_means_certain(small_policy):
    rows = [ev("1", "a", "k.camera", 0, source="camera", confidence=0.9),
            ev("2", "b", "k.camera", 0, source="camera", confidence=0.8999),
            ev("3", "c", "k.camera", 0, source="police")]
    result, s = scored(small_policy, rows)
    assert list(result.decisions["status"]) == ["counted", "confidence", "counted"]
    assert s["a"][0] == 970 and s["b"][0] == 1000 and s["c"][0] == 970


def test_sources_restrict_and_a_missing_source_is_not_accepted(small_policy):
    rows = [ev("1", "a", "k.camera", 0, source="platform"), ev("2", "b", "k.camera", 0),
            ev("3", "c", "k.reward", 0, source="anything")]
    result, _ = scored(small_policy, rows)
    assert list(result.decisions["status"]) == ["source", "source", "counted"]


def test_score_is_clamped_to_min_and_max(small_policy):
    low = [ev(str(i), "a", "k.camera", i, source="camera") for i in range(10)]
    high = [ev(f"h{i}", "b", "k.reward", i) for i in range(10)]
    _, s = scored(small_policy, low + high)
    assert s["a"] == (900, "C")
    assert s["b"] == (1100, "A")


def test_class_is_the_first_whose_min_is_reached(small_policy):
    _, s = scored(small_policy, [ev("1", "a", "k.reward", 0), ev("2", "a", "k.reward", 1),
                                 ev("3", "b", "k.reward", 0), ev("4", "b", "k.capped", 0)])
    assert s["a"] == (1080, "A")
    assert s["b"] == (1030, "B")


def test_class_at_most_lowers_the_class_while_the_event_counts(small_policy):
    rows = [ev("r1", "a", "k.reward", 0), ev("r2", "a", "k.reward", 1), ev("d", "a", "k.drunk", 1)]
    assert scored(small_policy, rows, as_of=1)[1]["a"] == (1079, "C")
    assert scored(small_policy, rows, as_of=4)[1]["a"] == (1079, "C")
    assert scored(small_policy, rows, as_of=5)[1]["a"] == (1080, "A")  # expired: cap lifted


def test_decisions_carry_rule_points_reason_and_provenance(small_policy):
    rows = [ev("1", "a", "k.camera", 3, source="camera", source_ref="cam-7", confidence=0.95)]
    d = scored(small_policy, rows)[0].decisions.row(0, named=True)
    assert d["rule"] == "camera" and d["points"] == -30 and d["reason"] == "seen by a camera"
    assert d["source_ref"] == "cam-7" and d["confidence"] == 0.95 and d["status"] == "counted"


def test_every_status_name_is_reachable(small_policy):
    rows = [ev("1", "a", "k.reward", 0), ev("2", "a", "k.unknown", 0),
            ev("3", "a", "k.camera", 0, source="x"), ev("4", "a", "k.camera", 0, source="camera", confidence=0.1),
            ev("5", "a", "k.reward", 0), ev("6", "a", "k.capped", 0), ev("7", "a", "k.reward", 20),
            ev("8", "m", "k.reward", 0)]
    births = pl.DataFrame({"citizen_id": ["m"], "birth_day": [-360]})  # of age (1) on day 5
    result, _ = scored(small_policy.model_copy(update={"min_age": 1}), rows, as_of=10, births=births)
    counts = result.status_counts()
    assert set(counts) == set(STATUS_NAMES)
    assert all(n == 1 for name, n in counts.items() if name != "counted") and counts["counted"] == 1


def test_one_row_per_citizen_sorted_by_id(small_policy):
    result, _ = scored(small_policy, [ev("1", "z", "k.reward", 0), ev("2", "a", "k.unknown", 0),
                                      ev("3", "m", "k.reward", 0), ev("4", "z", "k.reward", 1)])
    assert result.scores["citizen_id"].to_list() == ["a", "m", "z"]


def test_empty_ledger_scores_nobody(small_policy):
    result = score_ledger(small_policy, events([ev("1", "a", "k.reward", 0)]).clear())
    assert result.scores.height == 0


def test_strict_names_every_unknown_kind_sorted_up_to_ten(small_policy):
    rows = [ev(str(i), "a", f"k.unknown{i:02d}", 0) for i in range(12, 0, -1)]
    with pytest.raises(EventError) as caught:
        score_ledger(small_policy, events(rows), strict=True)
    assert caught.value.column == "kind"
    assert str(caught.value) == ("unknown event kind(s) with no rule in policy 'small': "
                                 + ", ".join(f"k.unknown{i:02d}" for i in range(1, 11)))


def test_an_empty_ledger_scores_no_one_as_of_day_0(small_policy):
    from socialcredit.events import EVENT_SCHEMA, validate_events

    result = score_ledger(small_policy, validate_events(pl.DataFrame(schema=EVENT_SCHEMA)))
    assert (result.as_of, result.scores.height, result.status_counts()["counted"]) == (0, 0, 0)


def test_unknown_kinds_beside_a_single_rule_score_nothing():
    from socialcredit.policy import parse_policy

    one = parse_policy('name = "one"\ntitle = "t"\nstart = 10\nmin = 0\nmax = 20\n[[class]]\nname = "A"\n'
                       'min = 10\n[[class]]\nname = "B"\n[[rule]]\nid = "r"\nkind = "k.r"\npoints = -1\n'
                       'reason = "r"\nexpires_after_days = 2\n')
    result, s = scored(one, [ev("1", "a", "k.other", 0), ev("2", "b", "k.r", 0)], as_of=5)
    assert s == {"a": (10, "A"), "b": (10, "A")}
    assert list(result.decisions["status"]) == ["unknown_kind", "expired"]


def test_min_age_events_before_the_birthday_do_not_count_and_the_minor_has_no_score(small_policy):
    aged = small_policy.model_copy(update={"min_age": 18})
    births = pl.DataFrame({"citizen_id": ["kid", "adult"], "birth_day": [-18 * 365 + 10, -30 * 365]})
    rows = [ev("1", "kid", "k.reward", 9), ev("2", "kid", "k.reward", 10), ev("3", "adult", "k.reward", 0),
            ev("4", "stranger", "k.reward", 0)]
    result, s = scored(aged, rows, as_of=9, births=births)
    assert s == {"adult": (1040, "B"), "stranger": (1040, "B")}  # not in the register: scored
    assert list(result.decisions["status"]) == ["underage", "future", "counted", "counted"]
    result, s = scored(aged, rows, as_of=10, births=births)
    assert s["kid"] == (1040, "B")  # event 1 (day 9) never counts: the kid was 17 that day
    assert list(result.decisions["status"])[:2] == ["underage", "counted"]
    # Without the register, or with min_age 0, everyone is scored.
    assert scored(aged, rows, as_of=10)[1]["kid"] == (1080, "A")
    assert scored(small_policy, rows, as_of=10, births=births)[1]["kid"] == (1080, "A")
