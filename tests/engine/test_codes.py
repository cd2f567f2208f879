"""Integer citizen codes and the batch engine's fast paths: the same answers as the plain reading."""

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socialcredit.engine import CompiledPolicy, ScoreState, _batch, _codes, _kernels, score_ledger
from socialcredit.engine._codes import exact_codes, text_codes
from socialcredit.engine._compiled import capped_mask
from socialcredit.policy import parse_policy
from tests.conftest import SMALL_POLICY, events
from tests.engine.reference import reference_scores

POLICY = parse_policy(SMALL_POLICY)
AGED = POLICY.model_copy(update={"min_age": 1})
KINDS = ["k.capped", "k.camera", "k.reward", "k.drunk", "k.unknown"]


def as_dict(frame: pl.DataFrame) -> dict:
    return {r["citizen_id"]: (r["score"], r["class"]) for r in frame.iter_rows(named=True)}


def many_rows(n_events: int, n_citizens: int, seed: int) -> list[dict]:
    """A ledger with many citizens, crowded capped days and ids whose string order is not numeric."""
    rng = np.random.default_rng(seed)
    sources = [None, "camera", "police", "platform"]
    return [{"event_id": str(int(i)), "citizen_id": f"c{int(c)}", "kind": KINDS[int(k)], "day": int(d),
             "source": sources[int(s)], "confidence": float(p)}
            for i, c, k, d, s, p in zip(rng.permutation(n_events) * 7 + 3, rng.integers(0, n_citizens, n_events),
                                        rng.integers(0, len(KINDS), n_events), rng.integers(0, 6, n_events),
                                        rng.integers(0, len(sources), n_events),
                                        rng.choice([0.5, 0.9, 1.0], n_events), strict=True)]


@settings(max_examples=60, deadline=None)
@given(keys=st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 40), max_size=300))
def test_factorise_gives_equal_codes_exactly_to_equal_keys(keys):
    keys = np.array(keys, dtype=np.uint64)
    codes, first = _kernels.factorise(keys)
    assert len(first) == len(np.unique(keys))
    assert (keys[first][codes] == keys).all()  # each row's code leads back to its own key
    assert (first[codes] <= np.arange(len(keys))).all()  # and to its first row


def test_text_codes_number_every_text_and_sort_the_distinct_ones():
    values = pl.Series("citizen_id", ["b", "a", "é", "b", "10", "9", "a"])
    coded = text_codes(values)
    assert coded.distinct.gather(coded.codes).equals(values)
    assert coded.ordered.to_list() == sorted(set(values)) == coded.distinct.gather(coded.order).to_list()


def test_texts_sharing_a_hash_are_coded_the_exact_way(monkeypatch):
    values = pl.Series("citizen_id", ["ab", "cd", "ab", "e", "cd"])
    monkeypatch.setattr(_codes, "text_hashes", lambda v: v.str.len_bytes().cast(pl.UInt64).to_numpy())
    coded = text_codes(values)  # "ab" and "cd" share a hash: the check sees it
    assert coded.distinct.gather(coded.codes).equals(values)
    assert coded.ordered.to_list() == ["ab", "cd", "e"]
    assert exact_codes(values).codes.tolist() == coded.codes.tolist()


@pytest.mark.parametrize("threaded", [False, True])
def test_many_citizens_crowded_caps_and_expiry_match_the_reference(monkeypatch, threaded):
    if threaded:
        monkeypatch.setattr(_batch, "THREADED_FROM", 0)
    rows = many_rows(6000, 1500, seed=3)
    ledger = events(rows)
    for as_of in (0, 3, 5, 9):
        result = score_ledger(POLICY, ledger, as_of=as_of)
        assert as_dict(result.scores) == reference_scores(POLICY, rows, as_of)
        assert result.scores["citizen_id"].to_list() == sorted({r["citizen_id"] for r in rows})
    assert result.status_counts()["cap"] > 0 and result.status_counts()["expired"] > 0
    state = ScoreState(POLICY, as_of=9)
    state.apply(ledger)
    assert state.scores().equals(result.scores)


def test_a_hash_collision_between_citizens_changes_no_answer(monkeypatch):
    rows = many_rows(3000, 700, seed=5)
    births = pl.DataFrame({"citizen_id": [f"c{i}" for i in range(0, 700, 3)],
                           "birth_day": [(i % 11) - 368 for i in range(0, 700, 3)]})
    expected = score_ledger(AGED, events(rows), as_of=4, births=births)
    monkeypatch.setattr(_codes, "text_hashes", lambda v: (v.str.len_bytes() % 2).cast(pl.UInt64).to_numpy())
    monkeypatch.setattr(_batch, "THREADED_FROM", 0)
    exact = []
    monkeypatch.setattr(_batch, "exact_codes", lambda values: exact.append(1) or exact_codes(values))
    result = score_ledger(AGED, events(rows), as_of=4, births=births)
    assert exact == [1]  # the drafted codes failed their check, and the exact ones were made
    assert result.scores.equals(expected.scores)
    assert result.decisions.equals(expected.decisions)
    given_births = dict(zip(births["citizen_id"], births["birth_day"], strict=True))
    assert as_dict(result.scores) == reference_scores(AGED, rows, 4, given_births)


def test_caps_on_citizen_codes_equal_caps_on_citizen_ids():
    rows = many_rows(4000, 300, seed=7)
    ledger = events(rows)
    compiled = CompiledPolicy.of(POLICY)
    rule, status = compiled.passing_status(ledger)
    day, passing = ledger["day"].to_numpy(), status == 0
    by_ids = capped_mask(rule, ledger["citizen_id"], day, ledger["event_id"], compiled.cap, passing)
    by_codes = capped_mask(rule, text_codes(ledger["citizen_id"]).codes, day, ledger["event_id"], compiled.cap, passing)
    assert by_ids.sum() > 0 and (by_ids == by_codes).all()


def test_caps_on_codes_too_wide_for_one_key_group_by_the_codes_themselves():
    compiled = CompiledPolicy.of(POLICY)
    rule = np.zeros(3, dtype=np.int32)  # k.capped: 2 a day
    big = 2**31 - 1  # citizen code x day span does not fit in 63 bits beside the rules
    mask = capped_mask(rule, np.array([big, big, 0]), np.array([big, big, 0]),
                       pl.Series(["b", "a", "c"]), compiled.cap, np.ones(3, dtype=bool))
    assert not mask.any()
    mask = capped_mask(np.zeros(4, dtype=np.int32), np.array([big] * 4), np.array([big, big, big, 0]),
                       pl.Series(["d", "b", "a", "c"]), compiled.cap, np.ones(4, dtype=bool))
    assert mask.tolist() == [True, False, False, False]  # "d" comes after "a" and "b"
