"""The commercial profile and the tailored offers built from it.

The e-commerce group's profile of a customer is a list of records: what its in-store cameras saw
the customer stop at or try on, and what the customer bought (taz report 2018: in-store cameras
record which clothes a customer stops at or tries on, feeding a commercial profile). Each record is
an event of the ledger whose kind names the signal and the item: `instore.stopped_at.<item>`,
`instore.tried_on.<item>` and `shop.<item>`. A policy need not score them: the service keeps them
as unscored records of the profile.

The platform offers an item that the profile's recent records show interest in, at a discount
that grows with the interest; every offer carries the records it was built from. An in-store
record belongs to whoever the camera's face match took the customer for, so a look-alike's
interest can end up in someone's offers: the record's match confidence travels with it.

The simulator counts offers by the same rule (simulation/kernel/_sensors.py: an offer for each
in-store record of a platform customer, taken or not).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

__all__ = ["PROFILE_KIND", "SIGNALS", "WINDOW_DAYS", "VALID_DAYS", "Signal", "build_offers", "is_profile_kind"]


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
# A profile record's kind: a signal's prefix and an item in lower-case letters, digits and "_".
PROFILE_KIND = r"^(instore\.stopped_at|instore\.tried_on|shop)\.[a-z0-9][a-z0-9_]*$"
# The records an offer is built from are those of the last WINDOW_DAYS days (ASSUMPTION: a season
# of clothes); an offer runs VALID_DAYS days (ASSUMPTION: two weeks, as retail promotions often do).
WINDOW_DAYS = 90
VALID_DAYS = 14
# The discount for an item's interest (the sum of its records' weights), highest first
# (ASSUMPTION: 5% for a single glance, up to 15% for an item tried on and looked at again).
DISCOUNTS: tuple[tuple[int, float], ...] = ((6, 0.15), (3, 0.10), (1, 0.05))


def is_profile_kind(kind: pl.Expr) -> pl.Expr:
    """Whether each event kind is a commercial-profile record."""
    return kind.str.contains(PROFILE_KIND)


def build_offers(records: pl.DataFrame, today: int) -> tuple[pl.DataFrame, list[dict]]:
    """The profile and the offers of one customer on day `today`.

    `records`: the customer's events (event_id, day, kind, source, source_ref, confidence); those
    that are no profile record are left out. Returns the profile (its records newest first, with
    `item`, `signal` (the verb) and `weight`) and the offers, strongest interest first: each with
    its item, title, discount, interest, last valid day and `records`, the event ids it came from.
    """
    signal = pl.lit(None, pl.String)
    weight = pl.lit(None, pl.Int32)
    item = pl.lit(None, pl.String)
    for s in reversed(SIGNALS):  # the longest prefix decides ("shop." is no prefix of the others)
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
                       "records": row["records"]})
    return profile, offers
