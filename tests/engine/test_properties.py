"""Property tests: the engine agrees with a plain reading of the rules, batch or incremental."""

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from socialcredit.engine import ScoreState, class_history, score_ledger
from socialcredit.policy import parse_policy
from tests.conftest import SMALL_POLICY, events
from tests.engine.reference import reference_scores

POLICY = parse_policy(SMALL_POLICY)
AGED = POLICY.model_copy(update={"min_age": 1})  # scores a citizen from their first birthday
KINDS = ["k.capped", "k.camera", "k.reward", "k.drunk", "k.unknown"]

event_rows = st.lists(
    st.fixed_dictionaries({
        "citizen_id": st.sampled_from(["a", "b", "c", "d"]),
        "kind": st.sampled_from(KINDS),
        "day": st.integers(0, 8),
        "source": st.sampled_from([None, "camera", "police", "platform"]),
        "confidence": st.one_of(st.none(), st.sampled_from([0.0, 0.5, 0.89, 0.9, 0.95, 1.0])),
    }),
    max_size=60,
)


# Birth days of a, b and c (d is not in the register): each comes of age (365 days later) on a day
# from -5 to 10, around the events' days 0-8.
births_of = st.fixed_dictionaries({c: st.integers(-370, -355) for c in ("a", "b", "c")})


def register(births: dict[str, int]) -> pl.DataFrame:
    return pl.DataFrame({"citizen_id": list(births), "birth_day": list(births.values())})


def with_ids(rows, salt):
    # Ids whose string order differs from their numeric order, so the cap's ordering is exercised.
    return [{"event_id": f"{(i * 7919 + salt) % 1000}", **r} for i, r in enumerate(rows)]


def as_dict(frame: pl.DataFrame) -> dict:
    return {r["citizen_id"]: (r["score"], r["class"]) for r in frame.iter_rows(named=True)}


@settings(max_examples=200, deadline=None)
@given(rows=event_rows, as_of=st.integers(0, 12), salt=st.integers(0, 999))
def test_batch_engine_matches_the_reference(rows, as_of, salt):
    rows = with_ids(rows, salt)
    if not rows:
        return
    result = score_ledger(POLICY, events(rows), as_of=as_of)
    assert as_dict(result.scores) == reference_scores(POLICY, rows, as_of)


@settings(max_examples=200, deadline=None)
@given(rows=event_rows, data=st.data(), salt=st.integers(0, 999))
def test_incremental_equals_batch_for_any_split_order_and_advance(rows, data, salt):
    rows = with_ids(rows, salt)
    if not rows:
        return
    order = data.draw(st.permutations(range(len(rows))))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=5)))
    final_day = data.draw(st.integers(0, 12))
    advances = sorted(data.draw(st.lists(st.integers(0, final_day), min_size=len(cuts), max_size=len(cuts))))
    state = ScoreState(POLICY)
    start = 0
    for cut, day in zip([*cuts, len(rows)], [*advances, final_day], strict=True):
        batch = [rows[i] for i in order[start:cut]]
        if batch:
            state.apply(events(batch))
        state.advance(day)
        start = cut
    assert as_dict(state.scores()) == as_dict(score_ledger(POLICY, events(rows), as_of=final_day).scores)


@settings(max_examples=100, deadline=None)
@given(rows=event_rows, salt=st.integers(0, 999))
def test_single_batch_statuses_match_the_batch_engine(rows, salt):
    rows = with_ids(rows, salt)
    if not rows:
        return
    as_of = max(r["day"] for r in rows)
    state = ScoreState(POLICY, as_of=as_of)
    status = state.apply(events(rows))
    assert status.equals(score_ledger(POLICY, events(rows), as_of=as_of).decisions["status"])


def test_a_late_event_with_a_smaller_id_takes_the_capped_place():
    state = ScoreState(POLICY, as_of=5)
    first = state.apply(events([{"event_id": "b", "citizen_id": "x", "kind": "k.reward", "day": 5}]))
    assert first.to_list() == ["counted"]
    second = state.apply(events([{"event_id": "a", "citizen_id": "x", "kind": "k.reward", "day": 5}]))
    assert second.to_list() == ["counted"]
    assert as_dict(state.scores()) == {"x": (1040, "B")}


def test_advancing_backwards_is_refused():
    state = ScoreState(POLICY, as_of=3)
    try:
        state.advance(2)
    except ValueError as exc:
        assert "cannot go back" in str(exc)
    else:
        raise AssertionError("advance(2) after day 3 should fail")


def test_score_of_and_due_tell_what_advance_will_change():
    state = ScoreState(POLICY, as_of=0)
    state.apply(events([{"event_id": "1", "citizen_id": "x", "kind": "k.capped", "day": 0},
                        {"event_id": "2", "citizen_id": "y", "kind": "k.reward", "day": 2}]))
    score, klass = state.score_of(pl.Series(["x", "y", "new"]))
    assert list(score) == [990, 1000, 1000] and [POLICY.class_names[k] for k in klass] == ["B", "B", "B"]
    assert state.due(1).to_list() == []
    assert sorted(state.due(3).to_list()) == ["x", "y"]  # y's reward starts on day 2, x's point expires on day 3
    state.advance(3)
    assert list(state.score_of(pl.Series(["x", "y"]))[0]) == [1000, 1040]
    assert "new" in state.scores()["citizen_id"].to_list()


@settings(max_examples=200, deadline=None)
@given(rows=event_rows, as_of=st.integers(0, 12), salt=st.integers(0, 999), births=births_of)
def test_min_age_batch_engine_matches_the_reference(rows, as_of, salt, births):
    rows = with_ids(rows, salt)
    if not rows:
        return
    result = score_ledger(AGED, events(rows), as_of=as_of, births=register(births))
    assert as_dict(result.scores) == reference_scores(AGED, rows, as_of, births)
    first = {c: b + 365 for c, b in births.items()}
    underage = [r["event_id"] for r in rows if r["kind"] != "k.unknown" and r["day"] < first.get(r["citizen_id"], 0)]
    assert sorted(result.decisions.filter(pl.col("status") == "underage")["event_id"]) == sorted(underage)


@settings(max_examples=150, deadline=None)
@given(rows=event_rows, data=st.data(), salt=st.integers(0, 999), births=births_of)
def test_min_age_incremental_equals_batch_and_due_names_who_comes_of_age(rows, data, salt, births):
    rows = with_ids(rows, salt)
    if not rows:
        return
    order = data.draw(st.permutations(range(len(rows))))
    cut = data.draw(st.integers(0, len(rows)))
    middle, final_day = sorted(data.draw(st.lists(st.integers(0, 12), min_size=2, max_size=2)))
    # The register arrives in two parts, each before its citizens' events: a first, then b and c.
    first = [i for i in order[:cut] if rows[i]["citizen_id"] in ("a", "d")]
    rest = [i for i in order if i not in first]
    state = ScoreState(AGED, births=register({"a": births["a"]}))
    if first:
        state.apply(events([rows[i] for i in first]))
    state.add_births(register({"b": births["b"], "c": births["c"]}))
    if rest:
        state.apply(events([rows[i] for i in rest]))
    state.advance(middle)
    coming = {c for c, b in births.items() if middle < b + 365 <= final_day}
    assert coming <= set(state.due(final_day))
    state.advance(final_day)
    expected = score_ledger(AGED, events(rows), as_of=final_day, births=register(births))
    assert as_dict(state.scores()) == as_dict(expected.scores)
    _, klass = state.score_of(pl.Series(["a", "b", "c", "d"]))
    assert [k < 0 for k in klass] == [c in births and births[c] + 365 > final_day for c in "abcd"]


def reference_history(policy, rows, as_of, births=None) -> list[tuple[str, int, int]]:
    """Day by day, the reference's class of every citizen with an event; a row where it changes
    from the day before (from the start class, or on the day a citizen comes of age)."""
    names = policy.class_names
    start = names.index(next(c.name for c in policy.classes if c.min is None or policy.start >= c.min))
    first = {c: b + 365 * policy.min_age for c, b in (births or {}).items()}
    out, before = [], {}
    for day in range(as_of + 1):
        classes = reference_scores(policy, rows, day, births)
        for citizen in sorted({r["citizen_id"] for r in rows}):
            if citizen not in classes:
                continue  # not of age yet
            now = names.index(classes[citizen][1])
            if citizen not in before:
                entry = first.get(citizen, 0)
                if entry > 0 and day == entry:
                    out.append((citizen, day, now))
                elif now != start:
                    out.append((citizen, day, now))
            elif now != before[citizen]:
                out.append((citizen, day, now))
            before[citizen] = now
    return sorted(out)


@settings(max_examples=150, deadline=None)
@given(rows=event_rows, as_of=st.integers(0, 12), salt=st.integers(0, 999))
def test_class_history_is_the_reference_class_day_by_day(rows, as_of, salt):
    rows = with_ids(rows, salt)
    if not rows:
        return
    history = class_history(POLICY, events(rows), as_of=as_of)
    assert sorted(history.iter_rows()) == reference_history(POLICY, rows, as_of)


@settings(max_examples=150, deadline=None)
@given(rows=event_rows, as_of=st.integers(0, 12), salt=st.integers(0, 999), births=births_of)
def test_class_history_starts_when_a_citizen_comes_of_age(rows, as_of, salt, births):
    rows = with_ids(rows, salt)
    if not rows:
        return
    history = class_history(AGED, events(rows), as_of=as_of, births=register(births))
    assert sorted(history.iter_rows()) == reference_history(AGED, rows, as_of, births)
