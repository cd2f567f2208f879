"""The incremental state beyond the property tests: big batches, types, what `due` and `advance` see."""

import numpy as np
import polars as pl

from socialcredit.engine import ScoreState, score_ledger
from socialcredit.events import validate_events
from socialcredit.policy import parse_policy
from tests.conftest import SMALL_POLICY, events

POLICY = parse_policy(SMALL_POLICY)


def big_ledger(n_events: int, n_citizens: int, seed: int) -> pl.DataFrame:
    """Random events of the small policy's kinds (ids in random order, so batches interleave)."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["k.capped", "k.camera", "k.reward", "k.drunk", "k.unknown"])
    return validate_events(pl.DataFrame({
        "event_id": [f"e{i}" for i in rng.permutation(n_events)],
        "citizen_id": [f"c{i}" for i in rng.integers(0, n_citizens, n_events)],
        "kind": kinds[rng.integers(0, len(kinds), n_events)],
        "day": rng.integers(0, 6, n_events).astype(np.int32),
        "source": np.array(["camera", "police", None], dtype=object)[rng.integers(0, 3, n_events)],
        "confidence": rng.choice([0.5, 0.95, 1.0], n_events),
    }))


def test_batches_far_larger_than_the_state_equal_the_batch_engine():
    """Thousands of new citizens at once (past any initial room), in batches big enough for polars
    to join in parallel: every event must still land on its own citizen."""
    ledger = big_ledger(300_000, 60_000, seed=1)
    state = ScoreState(POLICY)
    for part in (ledger.slice(0, 5_000), ledger.slice(5_000, 200_000), ledger.slice(205_000)):
        state.apply(part)
    state.advance(5)
    assert state.n_citizens == ledger["citizen_id"].n_unique()
    assert state.scores().equals(score_ledger(POLICY, ledger, as_of=5).scores)


def test_scores_have_one_schema_batch_or_incremental():
    ledger = events([{"event_id": "1", "citizen_id": "a", "kind": "k.reward", "day": 0}])
    schema = {"citizen_id": pl.String, "score": pl.Int64, "class": pl.Enum(POLICY.class_names)}
    assert score_ledger(POLICY, ledger).scores.schema == schema
    state = ScoreState(POLICY)
    state.apply(ledger)
    assert state.scores().schema == schema
    score, klass = state.score_of(pl.Series(["a", "new"]))
    assert (score.dtype, klass.dtype) == (np.int64, np.int16)
    assert score.tolist() == [1040, 1000]


def test_nothing_due_is_an_empty_citizen_id_series():
    state = ScoreState(POLICY)
    due = state.due(10)
    assert (due.name, due.dtype, due.len()) == ("citizen_id", pl.String, 0)


def test_an_event_expiring_after_one_day_counts_on_its_day_only():
    policy = parse_policy(SMALL_POLICY.replace("expires_after_days = 3", "expires_after_days = 1"))
    ledger = events([{"event_id": "1", "citizen_id": "a", "kind": "k.capped", "day": 2}])
    for as_of, score, status in [(1, 1000, "future"), (2, 990, "counted"), (3, 1000, "expired")]:
        result = score_ledger(policy, ledger, as_of=as_of)
        assert (result.scores["score"].item(), result.decisions["status"].item()) == (score, status), as_of
        state = ScoreState(policy, as_of=as_of)
        assert state.apply(ledger).equals(result.decisions["status"])
        assert state.scores()["score"].item() == score, as_of
    state = ScoreState(policy)
    state.apply(ledger)
    assert state.due(1).to_list() == [] and state.due(2).to_list() == ["a"]
    state.advance(2)
    assert state.scores()["score"].item() == 990 and state.due(3).to_list() == ["a"]
    state.advance(3)
    assert state.scores()["score"].item() == 1000


def test_the_first_event_of_a_batch_can_lose_to_the_cap():
    """k.reward allows one a day: in one batch, the later id sent first is the one refused."""
    batch = events([{"event_id": "r2", "citizen_id": "x", "kind": "k.reward", "day": 2},
                    {"event_id": "r1", "citizen_id": "x", "kind": "k.reward", "day": 2}])
    status = ScoreState(POLICY, as_of=3).apply(batch)
    assert status.to_list() == ["cap", "counted"]
    assert score_ledger(POLICY, batch, as_of=3).decisions.sort("event_id")["status"].to_list() == ["counted", "cap"]


def test_due_names_exactly_who_comes_of_age_in_the_window_beside_the_scheduled():
    aged = POLICY.model_copy(update={"min_age": 1})
    # Of age (1 year = 365 days) on days 2, 5, 6 and 9; "then" was of age before day 5.
    births = pl.DataFrame({"citizen_id": ["d2", "d5", "d6", "d9", "then"],
                           "birth_day": [2 - 365, 5 - 365, 6 - 365, 9 - 365, -400]})
    state = ScoreState(aged, as_of=5, births=births)
    assert sorted(state.due(8)) == ["d6"]  # after as_of (d5 is of age on day 5 itself) and by day 8
    assert sorted(state.due(9)) == ["d6", "d9"]
    # Beside a citizen whose points start in the window, both are named.
    state.apply(events([{"event_id": "x", "citizen_id": "other", "kind": "k.reward", "day": 7},
                        {"event_id": "y", "citizen_id": "d6", "kind": "k.reward", "day": 7}]))
    assert sorted(state.due(8)) == ["d6", "other"]  # d6 once, though both of age and with points
    score, klass = state.score_of(pl.Series(["d2", "d6", "then", "unlisted"]))
    assert klass.tolist() == [1, -1, 1, 1] and score.tolist() == [1000] * 4  # -1: not of age yet
    # Without a min_age the register changes nothing: nobody comes of age.
    plain = ScoreState(POLICY, as_of=5, births=pl.concat([births, pl.DataFrame(
        {"citizen_id": ["born-on-7"], "birth_day": [7]})]))
    assert len(plain.due(9)) == 0
