"""A policy's benefits and sanctions compiled once: what each class brings, when, and how much.

The simulator's kernel tables, the service's decisions (gate, flight, loan) and the report all read
this one object, so an effect means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from socialcredit.policy import Consequence, Policy
from socialcredit.policy._model import DECIDING_EFFECTS

BETWEEN, BENEFITS, SANCTIONS = 0, 1, 2  # the bands of classes (see CompiledConsequences.band)


@dataclass(frozen=True, eq=False)
class CompiledConsequence:
    """One benefit or sanction: the classes it covers, the days they must be held, its effect."""

    consequence: Consequence
    benefit: bool
    level: int  # its class's index (0 = top): a benefit covers level and better, a sanction level and worse
    params: Any  # the effect's parameters, typed (policy._model.EFFECTS)

    @property
    def name(self) -> str:
        """The policy's name for it."""
        return self.consequence.name

    @property
    def effect(self) -> str:
        """Its effect, from the policy vocabulary."""
        return self.consequence.effect

    @property
    def held_days(self) -> int:
        """Days in its band before it applies."""
        return self.consequence.held_days

    def covers(self, class_idx: int) -> bool:
        """True when a citizen in class `class_idx` is in its classes (held days aside)."""
        return class_idx <= self.level if self.benefit else class_idx >= self.level


@dataclass(frozen=True, eq=False)
class CompiledConsequences:
    """Per class, the benefits and sanctions in force; held days count from entering a band.

    The benefit band is the classes some benefit covers, the sanction band those some sanction
    covers (the policy keeps benefit classes above sanction classes, and held days only at a band's
    edge, so the day a citizen entered the band is the day they reached such a consequence's class).
    """

    policy: Policy
    items: tuple[CompiledConsequence, ...]
    bands: np.ndarray = field(repr=False)  # int8 per class: BETWEEN, BENEFITS or SANCTIONS

    @classmethod
    def of(cls, policy: Policy) -> CompiledConsequences:
        """Compile the benefits and sanctions of `policy`."""
        index = {name: i for i, name in enumerate(policy.class_names)}
        items = tuple(CompiledConsequence(c, benefit, index[c.class_], c.params)
                      for cs, benefit in ((policy.benefits, True), (policy.sanctions, False)) for c in cs)
        bands = np.zeros(len(index), np.int8)
        for item in items:
            for c in range(len(index)):
                if item.covers(c):
                    bands[c] = BENEFITS if item.benefit else SANCTIONS
        return cls(policy=policy, items=items, bands=bands)

    def band(self, class_idx: int) -> int:
        """BENEFITS, SANCTIONS or BETWEEN for a class."""
        return int(self.bands[class_idx])

    def possible(self, class_idx: int) -> tuple[CompiledConsequence, ...]:
        """What a citizen in this class holds once its held days have passed."""
        return tuple(c for c in self.items if c.covers(class_idx))

    def in_force(self, class_idx: int, since: int, day: int) -> tuple[CompiledConsequence, ...]:
        """What a citizen holds on `day`: in `class_idx`, in its band since the day `since`."""
        return tuple(c for c in self.possible(class_idx) if day - since >= c.held_days)

    def deciding(self, effect: str, benefit: bool) -> CompiledConsequence | None:
        """The one benefit (or sanction) of a deciding effect, if the policy has it."""
        if effect not in DECIDING_EFFECTS:
            raise ValueError(f"'{effect}' decides nothing; deciding effects: {', '.join(DECIDING_EFFECTS)}")
        return next((c for c in self.items if c.effect == effect and c.benefit == benefit), None)

    def held_for(self, effect: str, benefit: bool) -> np.ndarray:
        """Per class: the days a citizen must hold their band for the effect to apply, -1 never."""
        out = np.full(len(self.bands), -1, np.int64)
        item = self.deciding(effect, benefit)
        if item is not None:
            for c in range(len(out)):
                if item.covers(c):
                    out[c] = item.held_days
        return out
