"""Random draws on the counter-based streams: geometric jumps over citizens, Poisson counts."""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros

from socialcredit.simulation._hash import bits, uniform
from socialcredit.simulation.kernel._scoring import JIT


def _log_mantissa(m):
    """log(m) for m in [0.5, 1): an odd series in (m-1)/(m+1), absolute error < 1.1e-7."""
    z = (m - 1.0) / (m + 1.0)
    z2 = z * z
    return 2.0 * z * (1.0 + z2 * (1.0 / 3.0 + z2 * (0.2 + z2 * (1.0 / 7.0 + z2 * (1.0 / 9.0 + z2 / 11.0)))))


log_mantissa = nb.njit(inline="always", **JIT)(_log_mantissa)

# The series' two divisions made the jumps the kernel's largest cost. A jump only counts through
# its integer part, so a second-order table of the series on 256 intervals of [0.5, 1) (its value
# at each interval's start, then log's Taylor terms: within 3e-8 of the series) decides it whenever
# it lies farther than the table's error bound from an integer boundary, nearly always; the series
# decides the rest. The jumps stay the series' own, on every device.
_LOG_BITS = 8
_LOG_STARTS = 0.5 + np.arange(2**_LOG_BITS) / 2 ** (_LOG_BITS + 1)
_LOG_TABLE = np.stack([_log_mantissa(_LOG_STARTS), 1.0 / _LOG_STARTS, -0.5 / _LOG_STARTS**2], axis=1)
_LOG_TABLE_ERROR = 1e-6  # |table - series| < 3e-8, with room for the roundings of log(u) and the jump
_LOW_BITS = np.uint64(2 ** (52 - _LOG_BITS) - 1)  # a mantissa's offset within its interval


@nb.njit(inline="always", **JIT)
def mantissa(key, n):
    """Draw n of a stream as u = q / 2**53 in (0, 1]: the leading zeros of q, and q shifted to 53
    significant bits (u's mantissa m, in [0.5, 1), times 2**53)."""
    q = (bits(key, n) >> np.uint64(11)) + np.uint64(1)
    lz = leading_zeros(q)
    return lz, (q << lz) >> np.uint64(11)


@nb.njit(inline="always", **JIT)
def gap(key, n, inv):
    """Citizens skipped before the next candidate: floor(log(u) / log(1 - p)), inv = 1/log(1-p),
    with u in (0, 1] from draw n of the stream.

    log(u) from the draw's bits (exponent by counting leading zeros, mantissa m in [0.5, 1)) and
    the series of `log_mantissa`, relative error < 2e-7: cheaper than libm, the same on every device.
    """
    lz, bits53 = mantissa(key, n)
    m = np.float64(bits53) * 1.1102230246251565e-16  # 2**-53
    return ((np.int64(11) - np.int64(lz)) * 0.6931471805599453 + log_mantissa(m)) * inv


@nb.njit(inline="always", **JIT)
def next_candidate(key, draw, inv, i, hi):
    """The next candidate after citizen i (a geometric jump, draw `draw`), or hi when the jump
    leaves [.., hi); and the next draw."""
    span = hi - i  # at least 1: the jump leaves when it reaches span
    lz, bits53 = mantissa(key, draw)
    row = np.int64(bits53 >> np.uint64(52 - _LOG_BITS)) - (1 << _LOG_BITS)
    d = np.float64(bits53 & _LOW_BITS) * 1.1102230246251565e-16  # m - the interval's start
    ln = (np.int64(11) - np.int64(lz)) * 0.6931471805599453 + (
        _LOG_TABLE[row, 0] + d * (_LOG_TABLE[row, 1] + d * _LOG_TABLE[row, 2]))
    jump = ln * inv
    err = _LOG_TABLE_ERROR * abs(inv)
    if jump - err >= span:
        return hi, draw + 1
    if jump + err < span and int(jump - err) == int(jump + err):
        return i + 1 + int(jump - err), draw + 1
    jump = gap(key, draw, inv)  # near an integer boundary: the series decides
    if jump >= span:
        return hi, draw + 1
    return i + 1 + int(jump), draw + 1


@nb.njit(inline="always", **JIT)
def next_in_regions(key, draw, inv, i, r, region_lo):
    """The next candidate of a stream that walks every region's citizens in turn, each region
    starting its own jumps: (citizen, region, next draw); region == the number of regions at the end.
    Start from (i, r) = (-1, 0)."""
    n_regions = region_lo.shape[0] - 1
    while r < n_regions:
        i, draw = next_candidate(key, draw, inv, i, region_lo[r + 1])
        if i < region_lo[r + 1]:
            return i, r, draw
        r += 1
        if r < n_regions:
            i = region_lo[r] - 1
    return i, r, draw


@nb.njit(**JIT)
def poisson(lam, key, n):
    """A Poisson draw from uniforms n, n+1, ... of a stream (normal approximation above 50)."""
    if lam <= 0.0:
        return 0
    if lam > 50.0:
        u1 = max(uniform(key, n), 1e-300)
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * uniform(key, n + 1))
        return max(0, int(round(lam + math.sqrt(lam) * z)))
    limit = math.exp(-lam)
    prod = uniform(key, n)
    k = 0
    while prod > limit:
        prod *= uniform(key, n + 1 + k)
        k += 1
    return k
