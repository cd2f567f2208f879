"""Tailored offers: the platform's commercial profile of a citizen and the offers built from it
(`socialcredit.offers`), under the grant `offers`; logged like any look-up, so the citizen sees who
used the profile."""

from __future__ import annotations

import polars as pl

from socialcredit.events import EVENT_SCHEMA
from socialcredit.offers import SIGNALS, build_offers
from socialcredit.service._keys import ApiKey

# The ledger's rows that can be profile records, found by the index on citizen_id; the kinds'
# exact form (offers.PROFILE_KIND) is checked after.
_CANDIDATES = " OR ".join(f"substr(kind, 1, {len(p)}) = '{p}'" for p in sorted({s.prefix for s in SIGNALS}))


class Offers:
    """The Service's offers (a mixin: it reads the Service's database, grants and calendar)."""

    def offers(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> dict:
        """The citizen's commercial profile (its records newest first) and the offers made from it,
        each with the records it came from; for roles whose grant has 'offers'; logged."""
        fields = self._permit(key, citizen_id, purpose, "offers")
        self._status(citizen_id)  # an unknown citizen is a 404, as in every look-up
        cols = ("event_id", "day", "kind", "source", "source_ref", "confidence")
        records = self.db.frame(
            f"SELECT {', '.join(cols)} FROM events WHERE citizen_id = ? AND voided = 0 AND ({_CANDIDATES})",
            (citizen_id,), {c: EVENT_SCHEMA[c] for c in cols} | {"day": pl.Int32})
        profile, offers = build_offers(records, self.day)
        dated = self._dated(profile.select(*cols, "item", "signal"))
        by_id = {r["event_id"]: r for r in dated.to_dicts()}
        for offer in offers:
            offer["valid_until"] = self.calendar.iso(offer["valid_until_day"])
            offer["records"] = [by_id[e] for e in offer["records"]]
        self._record(key, citizen_id, purpose, fields, "offers")
        return {"citizen_id": citizen_id, "day": self.day, "date": self.date,
                "profile": dated.to_dicts(), "offers": offers}
