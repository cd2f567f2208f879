"""Incremental scoring: apply batches of events to a running state, advance the day."""

from __future__ import annotations

import numpy as np
import polars as pl

from socialcredit.engine._codes import text_hashes
from socialcredit.engine._compiled import (
    BIRTHS_SCHEMA,
    NO_RULE,
    YEAR_DAYS,
    CompiledPolicy,
    Status,
    status_series,
)
from socialcredit.policy import Policy

_DELTA_SCHEMA = {"code": pl.Int64, "rule": pl.Int32, "day": pl.Int32, "sign": pl.Int8}


class ScoreState:
    """Scores of every citizen seen so far, kept up to date batch by batch.

    Applying any split of a ledger, in any order of batches, and advancing to day T gives the same
    scores and classes as `score_ledger(policy, ledger, as_of=T)`. The work per batch grows with the
    batch and the days it touches, not with the ledger: counted points are kept as running totals,
    the days on which points start or expire are scheduled, and only the (rule, citizen, day) groups
    with a `max_per_day` cap keep their events, so that a late event can be ranked among them.

    `births` (citizen_id, birth_day) is the register a policy's `min_age` reads (see
    `score_ledger`); a citizen not of age has class -1 in `score_of` and is not in `scores`.
    """

    def __init__(self, policy: Policy | CompiledPolicy, *, as_of: int = 0, births: pl.DataFrame | None = None):
        self.compiled = policy if isinstance(policy, CompiledPolicy) else CompiledPolicy.of(policy)
        self.as_of = as_of
        self.births = None if births is None else births.select(BIRTHS_SCHEMA.keys()).cast(BIRTHS_SCHEMA)
        # A citizen's code is the order they were first seen in; `_names` holds the ids in code order.
        # Codes are found from the ids' 64-bit hashes, kept sorted beside their codes (a batch's
        # look-up costs the batch and a binary search, not a join with every citizen), and checked
        # against `_names`; should two ids share a hash, a join on the ids themselves (`_exact`) is
        # used from then on.
        self._n = 0
        self._names: list[pl.Series] = []
        self._hashes = np.zeros(0, np.uint64)
        self._hash_codes = np.zeros(0, np.int64)
        self._exact: pl.DataFrame | None = None
        n_classes = len(self.compiled.policy.classes)
        self._total = np.zeros(0, dtype=np.int64)
        self._cap_counts = np.zeros((0, n_classes), dtype=np.int32)
        self._schedule: dict[int, list[pl.DataFrame]] = {}
        self._kept = _Kept()

    @property
    def n_citizens(self) -> int:
        """Number of citizens seen."""
        return self._n

    def known(self, citizen_ids: pl.Series) -> np.ndarray:
        """Whether each of these citizens has been seen (has an event applied) already."""
        ids = citizen_ids.cast(pl.String)
        if self._exact is None:
            codes = self._look_up(ids)[0]
            if self._checked(ids, codes):
                return codes >= 0
            self._to_exact()
        return ids.is_in(self._exact["citizen_id"].implode()).to_numpy()

    def apply(self, events: pl.DataFrame) -> pl.Series:
        """Add a validated batch of events; return each event's status as of `as_of`, in the batch's
        order: the Series "status" of `score_ledger(...).decisions` (counted, cap, future, ...)."""
        compiled = self.compiled
        codes = self._codes_for(events["citizen_id"])
        rule, status = compiled.passing_status(events, self.births)
        day = events["day"].to_numpy().astype(np.int32)
        passing = status == Status.COUNTED
        safe_rule = np.where(rule == NO_RULE, 0, rule)
        limited = passing & (compiled.cap[safe_rule] > 0)
        free = passing & ~limited
        deltas = [pl.DataFrame({"code": codes[free], "rule": rule[free], "day": day[free],
                                "sign": np.ones(int(free.sum()), dtype=np.int8)}, schema=_DELTA_SCHEMA)]
        if limited.any():
            rows = np.flatnonzero(limited)
            cap_deltas, lost = self._rank_capped(events["event_id"].gather(rows), codes[rows], rule[rows],
                                                 day[rows], rows)
            deltas.append(cap_deltas)
            status[lost] = Status.CAP
        self._apply_deltas(pl.concat(deltas))
        counted = status == Status.COUNTED
        expires = compiled.expires[safe_rule]
        status[counted & (day > self.as_of)] = Status.FUTURE
        status[counted & (day <= self.as_of) & (expires > 0) & (self.as_of >= day + expires)] = Status.EXPIRED
        return status_series(status)

    def advance(self, day: int) -> None:
        """Move the state forward to `day`: points start and expire as scheduled."""
        if day < self.as_of:
            raise ValueError(f"cannot go back from day {self.as_of} to day {day}")
        due = sorted(d for d in self._schedule if self.as_of < d <= day)
        for d in due:
            for entry in self._schedule.pop(d):
                self._add(entry["code"].to_numpy(), entry["points"].to_numpy(),
                          entry["cap_class"].to_numpy(), entry["sign"].to_numpy())
        self.as_of = day

    def add_births(self, births: pl.DataFrame) -> None:
        """Add citizens to the register of births (a citizen listed again takes the new birth day).

        Events already applied keep the status they had; add a citizen before their events."""
        births = births.select(BIRTHS_SCHEMA.keys()).cast(BIRTHS_SCHEMA)
        self.births = births if self.births is None else pl.concat(
            [self.births.join(births, on="citizen_id", how="anti"), births])

    def scores(self) -> pl.DataFrame:
        """Score and class of every citizen seen (and of age), sorted by citizen_id."""
        ids = self._all_names().sort()
        score, klass = self.score_of(ids)
        scored = klass >= 0
        return pl.DataFrame({"citizen_id": ids.filter(pl.Series(scored)),
                             "score": score[scored]}).with_columns(self.compiled.class_series(klass[scored]))

    def score_of(self, citizen_ids: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """Score and class index (0 = top) of these citizens; unseen ones join at the start score;
        class -1 for a citizen not of the policy's age as of `as_of`."""
        score, klass = self._score_and_class(self._codes_for(citizen_ids))
        first = self.compiled.scored_from(citizen_ids, self.births)
        if first is not None:
            klass[first > self.as_of] = -1
        return score, klass

    def due(self, day: int) -> pl.Series:
        """The citizens whose points start or expire, or who come of age, after `as_of` and by
        `day` (whom `advance` changes)."""
        codes = [entry["code"] for at, entries in self._schedule.items() if self.as_of < at <= day
                 for entry in entries]
        # A code is its citizen's position in `_names`.
        ids = self._all_names().gather(pl.concat(codes).unique().sort()) if codes else \
            pl.Series("citizen_id", [], dtype=pl.String)
        min_age = self.compiled.policy.min_age
        if min_age and self.births is not None:
            first = pl.col("birth_day") + YEAR_DAYS * min_age
            of_age = self.births.filter((first > self.as_of) & (first <= day))["citizen_id"]
            ids = pl.concat([ids, of_age.filter(~of_age.is_in(ids.implode()))]) if len(ids) else of_age
        return ids

    def _score_and_class(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score = self.compiled.clamp(self._total[codes])
        counts = self._cap_counts[codes]
        cap_class = np.where(counts > 0, np.arange(counts.shape[1]), -1).max(axis=1, initial=-1)
        return score, self.compiled.classify(score, cap_class)

    def _codes_for(self, citizen_id: pl.Series) -> np.ndarray:
        ids = citizen_id.cast(pl.String)
        if self._exact is None:
            codes, hashes = self._look_up(ids)
            unseen = np.flatnonzero(codes < 0)
            fresh, first = np.zeros(0, np.uint64), np.zeros(0, np.int64)
            if len(unseen):
                # One new code per distinct hash, in the order of first appearance.
                fresh, at, inverse = np.unique(hashes[unseen], return_index=True, return_inverse=True)
                rank = np.empty(len(at), np.int64)
                rank[np.argsort(at, kind="stable")] = np.arange(len(at))
                codes[unseen] = self._n + rank[inverse.ravel()]
                first = unseen[np.sort(at)]
            if self._checked(ids, codes, first):
                if len(first):
                    n = self._n
                    self._add_names(ids.gather(first))
                    where = np.searchsorted(self._hashes, fresh)
                    self._hashes = np.insert(self._hashes, where, fresh)
                    self._hash_codes = np.insert(self._hash_codes, where, n + rank)
                return codes
            self._to_exact()
        return self._exact_codes_for(ids)

    def _look_up(self, ids: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """The code of each id found by its hash (-1: none), not yet checked; and the hashes."""
        hashes = text_hashes(ids)
        codes = np.full(len(ids), -1, np.int64)
        if len(self._hashes) and len(ids):
            order = np.argsort(hashes)  # sorted needles: the binary searches walk the table in order
            at = np.minimum(np.searchsorted(self._hashes, hashes[order]), len(self._hashes) - 1)
            found = self._hashes[at] == hashes[order]
            codes[order[found]] = self._hash_codes[at[found]]
        return codes, hashes

    def _checked(self, ids: pl.Series, codes: np.ndarray, first: np.ndarray | None = None) -> bool:
        """Whether every id with a code (>= 0) equals the id of its code (the codes from `n_citizens`
        on being new ones, whose ids are those of the rows `first`)."""
        names = self._all_names()
        if first is not None and len(first):
            names = pl.concat([names, ids.gather(first)])
        seen = codes >= 0
        if not seen.any():
            return True
        if not seen.all():
            ids, codes = ids.filter(pl.Series(seen)), codes[seen]
        return bool((names.gather(codes) == ids).all())

    def _to_exact(self) -> None:
        """Code by joins on the ids from now on (two ids share a hash)."""
        self._exact = pl.DataFrame({"citizen_id": self._all_names(), "code": np.arange(self._n, dtype=np.int64)})

    def _exact_codes_for(self, ids: pl.Series) -> np.ndarray:
        batch = pl.DataFrame({"citizen_id": ids})
        known = batch.join(self._exact, on="citizen_id", how="left", maintain_order="left")
        unseen = known.filter(pl.col("code").is_null())["citizen_id"].unique(maintain_order=True)
        if len(unseen):
            codes = np.arange(self._n, self._n + len(unseen), dtype=np.int64)
            fresh = pl.DataFrame({"citizen_id": unseen, "code": codes})
            self._exact = pl.concat([self._exact, fresh])
            self._add_names(unseen)
            known = batch.join(self._exact, on="citizen_id", how="left", maintain_order="left")
        return known["code"].to_numpy()

    def _add_names(self, names: pl.Series) -> None:
        self._names.append(names.alias("citizen_id"))
        self._n += len(names)
        self._grow(self._n)

    def _all_names(self) -> pl.Series:
        """Every citizen seen, in code order."""
        if len(self._names) != 1:
            self._names = [pl.concat(self._names, rechunk=True) if self._names else
                           pl.Series("citizen_id", [], dtype=pl.String)]
        return self._names[0]

    def _grow(self, n: int) -> None:
        if n <= len(self._total):
            return
        size = max(n, 2 * len(self._total), 1024)
        total = np.zeros(size, dtype=np.int64)
        total[: len(self._total)] = self._total
        counts = np.zeros((size, self._cap_counts.shape[1]), dtype=np.int32)
        counts[: len(self._cap_counts)] = self._cap_counts
        self._total, self._cap_counts = total, counts

    def _rank_capped(self, event_id: pl.Series, code: np.ndarray, rule: np.ndarray, day: np.ndarray,
                     row: np.ndarray) -> tuple[pl.DataFrame, np.ndarray]:
        """Rank new capped events among the kept ones of their groups (citizen, rule, day); return the
        changes to the points and the batch rows the cap leaves out. The work grows with the batch
        and the kept events of the groups it touches, not with all kept events."""
        kept = self._kept
        group = _group_key(code, rule, day)
        old = kept.rows_of(np.unique(group))
        n_old = len(old)
        ranked = pl.DataFrame({
            "group": np.concatenate([kept.group[old], group]),
            "event_id": pl.concat([kept.event_ids(old), event_id]),
            "at": np.concatenate([old, np.full(len(row), -1, np.int64)]),  # row in `kept`; -1: new
            "row": np.concatenate([np.full(n_old, -1, np.int64), row]),  # row in the batch; -1: kept
            "code": np.concatenate([kept.code[old], code]),
            "rule": np.concatenate([kept.rule[old], rule.astype(np.int32)]),
            "day": np.concatenate([kept.day[old], day.astype(np.int32)]),
            "counted": np.concatenate([kept.counted[old], np.zeros(len(row), bool)]),
        }).sort("code", "rule", "day", "event_id").with_columns(rank=pl.int_range(pl.len()).over("code", "rule", "day"))
        now = ranked["rank"].to_numpy() < self.compiled.cap[ranked["rule"].to_numpy()]
        counted = ranked["counted"].to_numpy()
        moved = now != counted
        changes = pl.DataFrame({"code": ranked["code"].to_numpy()[moved], "rule": ranked["rule"].to_numpy()[moved],
                                "day": ranked["day"].to_numpy()[moved],
                                "sign": np.where(now[moved], 1, -1).astype(np.int8)}, schema=_DELTA_SCHEMA)
        batch_row = ranked["row"].to_numpy()
        lost = batch_row[(batch_row >= 0) & ~now]
        at = ranked["at"].to_numpy()
        is_old = at >= 0
        kept.counted[at[is_old]] = now[is_old]
        new = ~is_old
        kept.add(ranked["group"].to_numpy()[new], ranked["event_id"].filter(pl.Series(new)),
                 ranked["code"].to_numpy()[new], ranked["rule"].to_numpy()[new], ranked["day"].to_numpy()[new],
                 now[new])
        return changes, np.sort(lost)

    def _apply_deltas(self, deltas: pl.DataFrame) -> None:
        if deltas.height == 0:
            return
        c = self.compiled
        code = deltas["code"].to_numpy()
        rule = deltas["rule"].to_numpy()
        day = deltas["day"].to_numpy().astype(np.int64)
        sign = deltas["sign"].to_numpy().astype(np.int64)
        points = c.points[rule] * sign
        expires = c.expires[rule].astype(np.int64)
        cap_class = c.class_cap[rule]
        active = (day <= self.as_of) & ((expires == 0) | (self.as_of < day + expires))
        self._add(code[active], points[active], cap_class[active], sign[active])
        starts = day > self.as_of
        self._schedule_at(day[starts], code[starts], points[starts], cap_class[starts], sign[starts])
        ends = (expires > 0) & (day + expires > self.as_of)
        self._schedule_at((day + expires)[ends], code[ends], -points[ends], cap_class[ends], -sign[ends])

    def _schedule_at(self, at: np.ndarray, code, points, cap_class, sign) -> None:
        if len(at) == 0:
            return
        frame = pl.DataFrame({"at": at, "code": code, "points": points, "cap_class": cap_class,
                              "sign": sign})
        for (when,), part in frame.group_by("at"):
            self._schedule.setdefault(int(when), []).append(part)

    def _add(self, code: np.ndarray, points: np.ndarray, cap_class: np.ndarray, sign: np.ndarray) -> None:
        np.add.at(self._total, code, points)
        classed = cap_class >= 0
        if classed.any():
            np.add.at(self._cap_counts, (code[classed], cap_class[classed]), sign[classed].astype(np.int32))


def _group_key(code: np.ndarray, rule: np.ndarray, day: np.ndarray) -> np.ndarray:
    """One int64 per (citizen code, rule, day) group, to find a group's kept rows: code in the top bits,
    rule in 12, day in 21. Equal groups have equal keys; distinct groups share one only beyond those
    ranges, and are then fetched together and ranked apart (by their columns, not the key)."""
    return ((code.astype(np.int64) << 33) | ((rule.astype(np.int64) & 0xFFF) << 21)
            | (day.astype(np.int64) & 0x1FFFFF))


class _Kept:
    """The events of capped rules that passed every other check, so that a later event can be ranked
    among those of its group: columns of append-only rows, and an index sorted by group key."""

    def __init__(self):
        self.size = 0
        self.group = np.zeros(0, np.int64)
        self.code = np.zeros(0, np.int64)
        self.rule = np.zeros(0, np.int32)
        self.day = np.zeros(0, np.int32)
        self.counted = np.zeros(0, bool)
        self._ids: list[pl.Series] = []
        self._sorted_group = np.zeros(0, np.int64)  # the index: group keys sorted, and their rows
        self._sorted_row = np.zeros(0, np.int64)

    def rows_of(self, groups: np.ndarray) -> np.ndarray:
        """The rows of these group keys (sorted, distinct)."""
        lo = np.searchsorted(self._sorted_group, groups, "left")
        hi = np.searchsorted(self._sorted_group, groups, "right")
        n = hi - lo
        if not n.any():
            return np.zeros(0, np.int64)
        first = np.repeat(lo - np.cumsum(n) + n, n)  # each index position: its range's start - offset
        return self._sorted_row[first + np.arange(int(n.sum()))]

    def event_ids(self, rows: np.ndarray) -> pl.Series:
        """The event ids of these rows."""
        if len(self._ids) > 1:
            self._ids = [pl.concat(self._ids, rechunk=True)]
        if not self._ids:
            return pl.Series("event_id", [], dtype=pl.String)
        return self._ids[0].gather(rows).alias("event_id")

    def add(self, group, event_id: pl.Series, code, rule, day, counted) -> None:
        """Append rows, and enter them in the index."""
        n, start = len(group), self.size
        if start + n > len(self.group):
            room = max(start + n, 2 * len(self.group), 1024)
            for name in ("group", "code", "rule", "day", "counted"):
                old = getattr(self, name)
                grown = np.zeros(room, old.dtype)
                grown[:start] = old[:start]
                setattr(self, name, grown)
        self.group[start:start + n] = group
        self.code[start:start + n] = code
        self.rule[start:start + n] = rule
        self.day[start:start + n] = day
        self.counted[start:start + n] = counted
        self._ids.append(event_id.alias("event_id"))
        self.size = start + n
        order = np.argsort(group, kind="stable")
        at = np.searchsorted(self._sorted_group, group[order], "right")
        self._sorted_group = np.insert(self._sorted_group, at, group[order])
        self._sorted_row = np.insert(self._sorted_row, at, np.arange(start, start + n, dtype=np.int64)[order])
