"""The offers rule against a plain re-statement of it, over random profiles."""

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from socialcredit.offers import DISCOUNTS, OFFER_RECORDS, SIGNALS, VALID_DAYS, WINDOW_DAYS, build_offers

TODAY = 200
KINDS = [s.prefix + item for s in SIGNALS for item in ("jackets", "running_shoes", "baby_food")]
# Events that are no profile record: a scored kind, an unknown signal, an item in capitals.
OTHERS = ["traffic.red_light", "instore.glanced_at.jackets", "shop.Jackets", "shopping.jackets"]


def records(rows) -> pl.DataFrame:
    return pl.DataFrame(
        [{"event_id": f"e-{i:03d}", "day": day, "kind": kind, "source": "e-commerce", "source_ref": None,
          "confidence": None} for i, (day, kind) in enumerate(rows)],
        schema={"event_id": pl.String, "day": pl.Int32, "kind": pl.String, "source": pl.String,
                "source_ref": pl.String, "confidence": pl.Float64})


def expected(rows) -> list[tuple]:
    weight = {}
    for i, (day, kind) in enumerate(rows):
        signal = next((s for s in SIGNALS if kind.startswith(s.prefix)), None)
        if kind not in KINDS or signal is None or not TODAY - WINDOW_DAYS < day <= TODAY:
            continue
        item = kind[len(signal.prefix):]
        total, last, ids = weight.get(item, (0, -1, []))
        weight[item] = (total + signal.weight, max(last, day), [*ids, (day, f"e-{i:03d}")])
    out = []
    for item, (total, last, ids) in weight.items():
        discount = next(d for at_least, d in DISCOUNTS if total >= at_least)
        newest_first = [e for _, e in sorted(ids, reverse=True)]
        out.append((item, total, discount, newest_first[:OFFER_RECORDS], len(newest_first), last))
    out.sort(key=lambda o: (-o[1], -o[5], o[0]))
    return [o[:5] for o in out]


@given(st.lists(st.tuples(st.integers(0, TODAY + 5), st.sampled_from(KINDS + OTHERS)), max_size=80))
def test_offers_follow_the_rule(rows):
    profile, offers = build_offers(records(rows), TODAY)
    got = [(o["item"], o["interest"], o["discount"], o["records"], o["n_records"]) for o in offers]
    assert got == expected(rows)
    assert all(o["valid_until_day"] == TODAY + VALID_DAYS for o in offers)
    assert all(o["title"] == f"{o['discount']:.0%} off {o['item'].replace('_', ' ')}" for o in offers)
    # The profile holds every record up to today, older than the window too, and nothing else.
    kept = sorted(f"e-{i:03d}" for i, (day, kind) in enumerate(rows) if kind in KINDS and day <= TODAY)
    assert sorted(profile["event_id"]) == kept


def test_the_signals_weigh_as_documented():
    rows = [(TODAY, "instore.stopped_at.jackets"), (TODAY - 1, "instore.tried_on.jackets"),
            (TODAY - 2, "shop.jackets"), (TODAY - 3, "instore.stopped_at.dresses")]
    profile, offers = build_offers(records(rows), TODAY)
    assert [(o["item"], o["interest"], o["title"]) for o in offers] == [
        ("jackets", 6, "15% off jackets"), ("dresses", 1, "5% off dresses")]
    assert profile["signal"].to_list() == ["stopped at", "tried on", "bought", "stopped at"]
    assert offers[0]["records"] == ["e-000", "e-001", "e-002"]


def test_an_offer_lists_its_newest_records_and_says_how_many_there_are():
    rows = [(TODAY - (i % WINDOW_DAYS), "instore.stopped_at.jackets") for i in range(3 * OFFER_RECORDS)]
    _, offers = build_offers(records(rows), TODAY)
    assert offers[0]["n_records"] == 3 * OFFER_RECORDS and len(offers[0]["records"]) == OFFER_RECORDS
    newest = sorted(((day, f"e-{i:03d}") for i, (day, _) in enumerate(rows)), reverse=True)[:OFFER_RECORDS]
    assert offers[0]["records"] == [e for _, e in newest]
