"""The commercial profile and the tailored offers built from it.

The e-commerce group's profile of a customer is a list of records: what its in-store cameras saw
the customer stop at or try on, and what the customer bought (taz report 2018: in-store cameras
record which clothes a customer stops at or tries on, feeding a commercial profile). Each record is
an event of the ledger whose kind names the signal and the item: `instore.stopped_at.<item>`,
`instore.tried_on.<item>` and `shop.<item>`. A policy need not score them: the service keeps them
as unscored records of the profile, sent by a platform's key.

The platform offers each item that the profile's recent records show interest in, at a discount
that grows with the interest; every offer carries the records it was built from. An in-store
record belongs to whoever the camera's face match took the customer for, so a look-alike's
interest can end up in someone's offers: the record's match confidence travels with it.

The simulator knows no items: it counts one offer per in-store record (simulation/kernel/_sensors.py),
which is the service's rule where every record is of another item, and an upper bound otherwise.
"""

from socialcredit.offers._profile import (
    DISCOUNTS,
    OFFER_RECORDS,
    PROFILE_KIND,
    PROFILE_KINDS_TEXT,
    SIGNALS,
    VALID_DAYS,
    WEAK_MATCH,
    WINDOW_DAYS,
    Signal,
    build_offers,
    is_profile_kind,
    is_profile_kind_text,
)

__all__ = ["DISCOUNTS", "OFFER_RECORDS", "PROFILE_KIND", "PROFILE_KINDS_TEXT", "SIGNALS", "Signal", "VALID_DAYS",
           "WEAK_MATCH", "WINDOW_DAYS", "build_offers", "is_profile_kind", "is_profile_kind_text"]
