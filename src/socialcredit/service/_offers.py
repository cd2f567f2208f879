"""Tailored offers: the platform's commercial profile of a citizen and the offers built from it
(`socialcredit.offers`), under the grant `offers`; logged like any look-up, so the citizen sees who
used the profile."""

from __future__ import annotations

import polars as pl

from socialcredit.events import EVENT_SCHEMA
from socialcredit.offers import SIGNALS, build_offers
from socialcredit.service._keys import ApiKey

PROFILE_ROWS = 500  # the newest records of the profile an answer lists (it says how many there are)
# The ledger's rows that can be profile records, found by the index on citizen_id; the kinds'
# exact form (offers.PROFILE_KIND) is checked after.
_CANDIDATES = " OR ".join(f"substr(kind, 1, {len(p)}) = '{p}'" for p in sorted({s.prefix for s in SIGNALS}))


class Offers:
    """The Service's offers (a mixin: it reads the Service's database, grants and calendar)."""

    def offers(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> dict:
        """The citizen's commercial profile (its newest PROFILE_ROWS records, and how many it holds) and
        the offers made from it, each with the records it came from; for roles whose grant has
        'offers'; logged."""
        fields = self._permit(key, citizen_id, purpose, "offers")
        self._status(citizen_id)  # an unknown citizen is a 404, as in every look-up
        cols = ("event_id", "day", "kind", "source", "source_ref", "confidence")
        records = self.db.frame(
            f"SELECT {', '.join(cols)} FROM events WHERE citizen_id = ? AND voided = 0 AND ({_CANDIDATES})",
            (citizen_id,), {c: EVENT_SCHEMA[c] for c in cols} | {"day": pl.Int32})
        profile, offers = build_offers(records, self.day)
        dated = self._dated(profile.select(*cols, "item", "signal"))
        shown = {e for offer in offers for e in offer["records"]}
        wanted = dated.with_row_index().filter((pl.col("index") < PROFILE_ROWS) | pl.col("event_id").is_in(list(shown)))
        by_id = {r["event_id"]: r for r in wanted.drop("index").to_dicts()}
        for offer in offers:
            offer["valid_until"] = self.calendar.iso(offer["valid_until_day"])
            offer["records"] = [by_id[e] for e in offer["records"]]
        self._record(key, citizen_id, purpose, fields, "offers")
        return {"citizen_id": citizen_id, "day": self.day, "date": self.date, "profile_records": dated.height,
                "profile": [by_id[e] for e in dated["event_id"].head(PROFILE_ROWS)], "offers": offers}
