"""A policy turned into arrays, so that every decision is a vectorised lookup."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property

import numpy as np
import polars as pl

from socialcredit.policy import Policy


class Status(IntEnum):
    """Why an event does or does not count, as of a day."""

    COUNTED = 0
    UNKNOWN_KIND = 1
    SOURCE = 2
    CONFIDENCE = 3
    CAP = 4
    EXPIRED = 5
    FUTURE = 6
    UNDERAGE = 7


STATUS_NAMES = ["counted", "unknown_kind", "source", "confidence", "cap", "expired", "future", "underage"]
STATUS_DTYPE = pl.Enum(STATUS_NAMES)


def status_series(status: np.ndarray) -> pl.Series:
    """Status codes (`Status`) as the `status` column of the engine's answers."""
    return pl.Series("status", status.astype(np.uint32)).replace_strict(
        dict(enumerate(STATUS_NAMES)), return_dtype=STATUS_DTYPE)
NO_RULE = -1
# The scoring calendar's year: a citizen's age steps every 365 days from their birth day.
YEAR_DAYS = 365
# A register of births: citizen_id, birth_day (a day index: day 0 is the ledger's first day).
BIRTHS_SCHEMA = {"citizen_id": pl.String, "birth_day": pl.Int64}
_ALWAYS = np.iinfo(np.int64).min // 2  # the first scored day of a citizen of no known age


@dataclass(frozen=True, eq=False)
class CompiledPolicy:
    """Per-rule arrays of a policy (index = position in `policy.rules`)."""

    policy: Policy
    points: np.ndarray = field(repr=False)  # int64
    cap: np.ndarray = field(repr=False)  # int32, 0 = no cap
    expires: np.ndarray = field(repr=False)  # int32, 0 = never
    min_confidence: np.ndarray = field(repr=False)  # float64
    class_cap: np.ndarray = field(repr=False)  # int16 class index, -1 = none
    source_ids: list[str] = field(repr=False)
    source_ok: np.ndarray = field(repr=False)  # bool [rule, source code + 1]; column 0 = no source
    class_mins: np.ndarray = field(repr=False)  # int64, descending, one per class but the last

    @classmethod
    def of(cls, policy: Policy) -> CompiledPolicy:
        """Compile `policy`."""
        rules = policy.rules
        names = policy.class_names
        sources = sorted({s for r in rules for s in (r.sources or [])})
        source_ok = np.ones((len(rules), len(sources) + 1), dtype=bool)
        for i, rule in enumerate(rules):
            if rule.sources is not None:
                source_ok[i, :] = False
                for s in rule.sources:
                    source_ok[i, sources.index(s) + 1] = True
        return cls(
            policy=policy,
            points=np.array([r.points for r in rules], dtype=np.int64),
            cap=np.array([r.max_per_day or 0 for r in rules], dtype=np.int32),
            expires=np.array([r.expires_after_days or 0 for r in rules], dtype=np.int32),
            min_confidence=np.array([r.min_confidence for r in rules], dtype=np.float64),
            class_cap=np.array(
                [names.index(r.class_at_most) if r.class_at_most else -1 for r in rules],
                dtype=np.int16,
            ),
            source_ids=sources,
            source_ok=source_ok,
            class_mins=np.array([c.min for c in policy.classes[:-1]], dtype=np.int64),
        )

    @property
    def n_rules(self) -> int:
        """Number of rules."""
        return len(self.policy.rules)

    def rule_index(self, kind: pl.Series) -> np.ndarray:
        """Rule index for each event kind, NO_RULE where no rule scores it."""
        return _lookup(kind, self._rule_of_kind, NO_RULE)

    def source_code(self, source: pl.Series) -> np.ndarray:
        """Column of `source_ok` for each event's source (0 = missing or not named by any rule)."""
        return _lookup(source, self._source_column, 0)

    def event_codes(self, events: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """`rule_index` of the events' kinds and `source_code` of their sources, looked up together."""
        from socialcredit.engine import _kernels

        looked_up = events.select(_position(pl.col("kind"), self._rule_of_kind),
                                  _position(pl.col("source"), self._source_column))
        return _kernels.look_up(looked_up[:, 0].to_numpy(), _table(self._rule_of_kind, NO_RULE),
                                looked_up[:, 1].to_numpy(), _table(self._source_column, 0))

    @cached_property
    def _rule_of_kind(self) -> dict[str, int]:
        return {r.kind: i for i, r in enumerate(self.policy.rules)}

    @cached_property
    def _source_column(self) -> dict[str, int]:
        return {s: i + 1 for i, s in enumerate(self.source_ids)}

    def scored_from(self, citizen_id: pl.Series, births: pl.DataFrame | None) -> np.ndarray | None:
        """The first day the policy scores each citizen: their birth day (from `births`) plus its
        `min_age` years. None when it scores everyone from the start (no min_age, or no register);
        a citizen the register does not list is scored from the start (their age is not known)."""
        if self.policy.min_age == 0 or births is None:
            return None
        born = (pl.DataFrame({"citizen_id": citizen_id.cast(pl.String)})
                .join(births, on="citizen_id", how="left", maintain_order="left")["birth_day"])
        return np.where(born.is_null().to_numpy(), _ALWAYS,
                        born.fill_null(0).to_numpy() + YEAR_DAYS * self.policy.min_age)

    def passing_status(self, events: pl.DataFrame, births: pl.DataFrame | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(rule index, status) per event before caps and expiry: counted, unknown kind, underage
        (before the citizen is scored: see `scored_from`), source, confidence."""
        rule, source = self.event_codes(events)
        first = self.scored_from(events["citizen_id"], births) if self.n_rules else None
        return rule, self.status_before_caps(events, rule, source, first)

    def status_before_caps(self, events: pl.DataFrame, rule: np.ndarray, source: np.ndarray,
                           first: np.ndarray | None) -> np.ndarray:
        """`passing_status`'s status, given the events' `event_codes` and each event's citizen's first
        scored day (`scored_from`; None: from the start)."""
        from socialcredit.engine import _kernels

        if not self.n_rules:
            return np.full(len(rule), Status.UNKNOWN_KIND, dtype=np.int8)
        confidence = events["confidence"]
        return _kernels.statuses(
            rule, source, (confidence.fill_null(1.0) if confidence.null_count() else confidence).to_numpy(),
            events["day"].to_numpy(),
            np.zeros(0, np.int64) if first is None else first, self.source_ok, self.min_confidence)

    def classify(self, score: np.ndarray, cap_class: np.ndarray | None = None) -> np.ndarray:
        """Class index (0 = top) of each score, lowered to `cap_class` where that is lower."""
        ascending = self.class_mins[::-1]
        idx = len(self.class_mins) - np.searchsorted(ascending, score, side="right")
        if cap_class is not None:
            idx = np.maximum(idx, cap_class)
        return idx.astype(np.int16)

    def clamp(self, total: np.ndarray) -> np.ndarray:
        """Score from the sum of active points: start + total, clamped to [min, max]."""
        p = self.policy
        return np.clip(p.start + total, p.min, p.max).astype(np.int64)

    def class_series(self, idx: np.ndarray, name: str = "class") -> pl.Series:
        """Class names for class indices, as an Enum series ordered top to bottom."""
        names = self.policy.class_names
        return pl.Series(name, idx, dtype=pl.Int16).cast(pl.UInt32).replace_strict(
            dict(enumerate(names)), return_dtype=pl.Enum(names)
        )


def _position(values: pl.Expr, mapping: dict[str, int]) -> pl.Expr:
    """The position of each value among `mapping`'s keys, len(mapping) where it is not one (or null).

    An Enum cast finds a text among a few faster than `replace_strict`; texts outside it become null.
    """
    if not mapping:
        return values.is_null().cast(pl.UInt32) * 0
    return values.cast(pl.String).cast(pl.Enum(list(mapping)), strict=False).to_physical() \
        .cast(pl.UInt32).fill_null(len(mapping))


def _table(mapping: dict[str, int], default: int) -> np.ndarray:
    return np.array([*mapping.values(), default], dtype=np.int32)


def _lookup(values: pl.Series, mapping: dict[str, int], default: int) -> np.ndarray:
    """`mapping[value]` for each value, `default` where it has none (or is null)."""
    position = values.to_frame().select(_position(pl.col(values.name), mapping))[:, 0]
    return _table(mapping, default)[position.to_numpy()]


def capped_mask(rule: np.ndarray, citizen: pl.Series | np.ndarray, day: np.ndarray, event_id: pl.Series,
                cap: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """True for candidate events beyond their rule's `max_per_day` for that citizen and day.

    The first `cap` candidates of a (rule, citizen, day) group count, in `event_id` string order.
    `citizen`: the citizen ids, or integer codes equal where the ids are (`text_codes`).
    """
    from socialcredit.engine import _kernels

    out = np.zeros(len(rule), dtype=bool)
    where = _kernels.limited_rows(rule, cap, candidates)
    if not len(where):
        return out
    group = _group_codes(rule[where], citizen[where], day[where], len(cap)) \
        if isinstance(citizen, np.ndarray) else None
    if group is None:
        return _capped_by_texts(out, where, rule, citizen, day, event_id, cap)
    limit = cap[rule[where]]
    crowded = np.bincount(group)[group] > limit
    if not crowded.any():
        return out
    where, limit = where[crowded], limit[crowded]
    ranked = (pl.DataFrame({"row": where, "group": group[crowded], "event_id": event_id.gather(where), "cap": limit})
              .sort(["group", "event_id"])
              .with_columns(rank=pl.int_range(pl.len()).over("group")))
    out[ranked.filter(pl.col("rank") >= pl.col("cap"))["row"].to_numpy()] = True
    return out


def _capped_by_texts(out: np.ndarray, where: np.ndarray, rule: np.ndarray, citizen: pl.Series | np.ndarray,
                     day: np.ndarray, event_id: pl.Series, cap: np.ndarray) -> np.ndarray:
    """`capped_mask` for the candidate rows `where`, grouping by the citizens themselves."""
    sub = pl.DataFrame({
        "row": where,
        "rule": rule[where],
        "citizen": citizen[where] if isinstance(citizen, np.ndarray) else citizen.gather(where),
        "day": day[where],
        "event_id": event_id.gather(where),
        "cap": cap[rule[where]],
    })
    keys = ["rule", "citizen", "day"]
    crowded = sub.filter(pl.len().over(keys) > pl.col("cap"))
    if crowded.height == 0:
        return out
    ranked = crowded.sort([*keys, "event_id"]).with_columns(
        rank=pl.int_range(pl.len()).over(keys)
    )
    out[ranked.filter(pl.col("rank") >= pl.col("cap"))["row"].to_numpy()] = True
    return out


def _group_codes(rule: np.ndarray, citizen: np.ndarray, day: np.ndarray, n_rules: int) -> np.ndarray | None:
    """A code per distinct (rule, citizen code, day), or None where the three do not fit in 63 bits."""
    from socialcredit.engine import _kernels

    citizen, day = citizen.astype(np.int64), day.astype(np.int64)
    low, n_citizens = int(day.min()), int(citizen.max()) + 1
    span = int(day.max()) - low + 1
    if min(citizen.min(), low) < 0 or n_rules * n_citizens * span >= 2**63:
        return None
    key = (rule.astype(np.int64) * n_citizens + citizen) * span + (day - low)
    return _kernels.factorise(key.astype(np.uint64))[0]
