"""numba kernels of the engine: codes from 64-bit keys, rule and source look-ups, statuses, the rows
a cap may limit, and per-citizen sums.

Imported on first use, so that importing the engine (or the command line) does not load numba.
Status codes are `Status`'s values: COUNTED 0, UNKNOWN_KIND 1, SOURCE 2, CONFIDENCE 3, EXPIRED 5,
FUTURE 6, UNDERAGE 7.
"""

from __future__ import annotations

import numba as nb
import numpy as np

JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: a slot is the top bits of key * _GOLDEN
_RADIX = 8  # rows are first split by the top 8 bits of their key, so that each table stays in cache


@nb.njit(**JIT)
def factorise(keys):
    """(code per row, first row of each code): one code per distinct key, equal keys equal codes
    (fewer than 2**31 rows).

    Rows are first split into 256 parts by the top bits of their mixed key, so that each part's
    table stays in cache; a code is its part's, then its first appearance's, order.
    """
    n = keys.shape[0]
    n_parts = 1 << _RADIX
    part_shift = np.uint64(64 - _RADIX)
    start = np.zeros(n_parts + 1, np.int64)
    for i in range(n):
        start[np.int64((keys[i] * _GOLDEN) >> part_shift) + 1] += 1
    largest = 0
    for p in range(n_parts):
        largest = max(largest, start[p + 1])
        start[p + 1] += start[p]
    rows = np.empty(n, np.int32)
    parted = np.empty(n, np.uint64)
    fill = start[:-1].copy()
    for i in range(n):
        p = np.int64((keys[i] * _GOLDEN) >> part_shift)
        rows[fill[p]] = i
        parted[fill[p]] = keys[i]
        fill[p] += 1
    bits = 4
    while (1 << bits) < 2 * largest:
        bits += 1
    slot_key = np.zeros(1 << bits, np.uint64)
    slot_code = np.zeros(1 << bits, np.int32)  # code + 1; 0 marks an empty slot
    parted_codes = np.empty(n, np.int32)
    first = np.empty(n, np.int64)
    count = 0
    for p in range(n_parts):
        bits = 4
        while (1 << bits) < 2 * (start[p + 1] - start[p]):
            bits += 1
        mask = (1 << bits) - 1
        slot_shift = np.uint64(64 - bits)
        slot_code[: 1 << bits] = 0
        for j in range(start[p], start[p + 1]):
            key = parted[j]
            s = np.int64(((key * _GOLDEN) << np.uint64(_RADIX)) >> slot_shift)  # bits below the part's
            while True:
                code = slot_code[s]
                if code == 0:
                    slot_key[s] = key
                    first[count] = rows[j]
                    parted_codes[j] = count
                    count += 1
                    slot_code[s] = count
                    break
                if slot_key[s] == key:
                    parted_codes[j] = code - 1
                    break
                s = (s + 1) & mask
    codes = np.empty(n, np.int32)
    for j in range(n):
        codes[rows[j]] = parted_codes[j]
    return codes, first[:count].copy()


@nb.njit(**JIT)
def look_up(position, table, other_position, other_table):
    """`table[position]` and `other_table[other_position]`, in one pass."""
    out = np.empty(position.shape[0], np.int32)
    other = np.empty(position.shape[0], np.int32)
    for i in range(position.shape[0]):
        out[i] = table[position[i]]
        other[i] = other_table[other_position[i]]
    return out, other


@nb.njit(**JIT)
def ranks(keys, order_keys):
    """Position in `order_keys` of each of `keys` (the same distinct keys in another order)."""
    count = order_keys.shape[0]
    bits = 4
    while (1 << bits) < 2 * count:
        bits += 1
    mask = (1 << bits) - 1
    shift = np.uint64(64 - bits)
    slot_key = np.zeros(1 << bits, np.uint64)
    slot_pos = np.zeros(1 << bits, np.int64)  # position + 1; 0 marks an empty slot
    for c in range(count):
        s = np.int64((order_keys[c] * _GOLDEN) >> shift)
        while slot_pos[s] != 0:
            s = (s + 1) & mask
        slot_key[s] = order_keys[c]
        slot_pos[s] = c + 1
    out = np.empty(keys.shape[0], np.int32)
    for c in range(keys.shape[0]):
        s = np.int64((keys[c] * _GOLDEN) >> shift)
        while slot_key[s] != keys[c] or slot_pos[s] == 0:
            s = (s + 1) & mask
        out[c] = slot_pos[s] - 1
    return out


@nb.njit(**JIT)
def limited_rows(rule, cap, candidates):
    """The candidate rows whose rule (>= 0) has a cap (> 0)."""
    rows = np.empty(rule.shape[0], np.int64)
    count = 0
    for i in range(rule.shape[0]):
        if candidates[i] and rule[i] >= 0 and cap[rule[i]] > 0:
            rows[count] = i
            count += 1
    return rows[:count].copy()


@nb.njit(**JIT)
def statuses(rule, source, confidence, day, first, source_ok, min_confidence):
    """Status of each event before caps: UNKNOWN_KIND (1) where `rule` < 0, then UNDERAGE (day before
    its citizen's `first` scored day; `first` empty: none), SOURCE, CONFIDENCE, else COUNTED."""
    n = rule.shape[0]
    aged = first.shape[0] > 0
    status = np.empty(n, np.int8)
    for i in range(n):
        r = rule[i]
        if r < 0:
            status[i] = 1
        elif aged and day[i] < first[i]:
            status[i] = 7
        elif not source_ok[r, source[i]]:
            status[i] = 2
        elif confidence[i] < min_confidence[r]:
            status[i] = 3
        else:
            status[i] = 0
    return status


@nb.njit(**JIT)
def settle(status, rule, day, codes, as_of, points, expires, class_cap, n_citizens):
    """Mark counted events FUTURE or EXPIRED as of `as_of` (in place); return the points each event
    adds, and per citizen code the sum of them and the lowest class a rule caps them at (-1: none)."""
    applied = np.zeros(status.shape[0], np.int64)
    total = np.zeros(n_citizens, np.int64)
    cap_class = np.full(n_citizens, -1, np.int16)
    for i in range(status.shape[0]):
        if status[i] != 0:
            continue
        r = rule[i]
        if day[i] > as_of:
            status[i] = 6
        elif expires[r] > 0 and as_of >= day[i] + expires[r]:
            status[i] = 5
        else:
            c = codes[i]
            applied[i] = points[r]
            total[c] += points[r]
            if class_cap[r] > cap_class[c]:
                cap_class[c] = class_cap[r]
    return applied, total, cap_class
