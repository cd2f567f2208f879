"""The commercial profile and the tailored offers built from it (see the package's docstring)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Signal:
    """One kind of profile record: the prefix of its event kinds, the interest it shows, in words."""

    prefix: str
    weight: int
    verb: str


# Interest weights (ASSUMPTION: trying an item on says more than stopping at it; buying says most).
SIGNALS: tuple[Signal, ...] = (
    Signal("instore.stopped_at.", 1, "stopped at"),
    Signal("instore.tried_on.", 2, "tried on"),
    Signal("shop.", 3, "bought"),
)
ITEM = "[a-z0-9][a-z0-9_]*"  # an item: lower-case letters, digits and "_"
# A profile record's kind: a signal's prefix, then an item.
PROFILE_KIND = f"^({'|'.join(re.escape(s.prefix) for s in SIGNALS)}){ITEM}$"
# The kinds in words, for a refusal.
PROFILE_KINDS_TEXT = ", ".join(f"{s.prefix}<item>" for s in SIGNALS)
# The records an offer is built from are those of the last WINDOW_DAYS days (ASSUMPTION: a season
# of clothes); an offer runs VALID_DAYS days (ASSUMPTION: two weeks, as retail promotions often do).
WINDOW_DAYS = 90
VALID_DAYS = 14
# An offer lists the newest OFFER_RECORDS of the records it was built from (and how many there were).
OFFER_RECORDS = 20
# The discount for an item's interest (the sum of its records' weights), highest first
# (ASSUMPTION: 5% for a single glance, 10% from a try-on and a glance or a purchase, 15% from twice that).
DISCOUNTS: tuple[tuple[int, float], ...] = ((6, 0.15), (3, 0.10), (1, 0.05))
# A face match below this confidence is marked as weak where a record is shown (ASSUMPTION: one in
# ten false-match decisions at a typical operating threshold; the pages say "may be someone else").
WEAK_MATCH = 0.9
_PROFILE_KIND = re.compile(PROFILE_KIND)


def is_profile_kind(kind: pl.Expr) -> pl.Expr:
    """Whether each event kind is a commercial-profile record."""
    return kind.str.contains(PROFILE_KIND)


def is_profile_kind_text(kind: str) -> bool:
    """Whether one event kind is a commercial-profile record."""
    return _PROFILE_KIND.match(kind) is not None


def build_offers(records: pl.DataFrame, today: int) -> tuple[pl.DataFrame, list[dict]]:
    """The profile and the offers of one customer on day `today`.

    `records`: the customer's events (event_id, day, kind, source, source_ref, confidence); those
    that are no profile record are left out. Returns the profile (its records newest first, with
    `item`, `signal` (the verb) and `weight`) and the offers, strongest interest first: each with
    its item, title, discount, interest, last valid day, `records`: the event ids of the newest
    OFFER_RECORDS records it came from, and `n_records`: how many there were.
    """
    signal = pl.lit(None, pl.String)
    weight = pl.lit(None, pl.Int32)
    item = pl.lit(None, pl.String)
    for s in SIGNALS:  # the prefixes are disjoint: one at most matches
        hit = pl.col("kind").str.starts_with(s.prefix)
        signal = pl.when(hit).then(pl.lit(s.verb)).otherwise(signal)
        weight = pl.when(hit).then(pl.lit(s.weight, pl.Int32)).otherwise(weight)
        item = pl.when(hit).then(pl.col("kind").str.slice(len(s.prefix))).otherwise(item)
    profile = (records.filter(is_profile_kind(pl.col("kind")) & (pl.col("day") <= today))
               .with_columns(item=item, signal=signal, weight=weight)
               .sort(["day", "event_id"], descending=True))
    recent = profile.filter(pl.col("day") > today - WINDOW_DAYS)
    interest = (recent.group_by("item")
                .agg(interest=pl.col("weight").sum(), records=pl.col("event_id"), last=pl.col("day").max())
                .sort(["interest", "last", "item"], descending=[True, True, False]))
    offers = []
    for row in interest.iter_rows(named=True):
        discount = next(d for at_least, d in DISCOUNTS if row["interest"] >= at_least)
        label = row["item"].replace("_", " ")
        offers.append({"item": row["item"], "title": f"{discount:.0%} off {label}", "discount": discount,
                       "interest": row["interest"], "valid_until_day": today + VALID_DAYS,
                       "records": row["records"][:OFFER_RECORDS], "n_records": len(row["records"])})
    return profile, offers
