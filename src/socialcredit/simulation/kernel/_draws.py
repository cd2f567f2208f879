"""Random draws on the counter-based streams: geometric jumps over citizens, Poisson counts."""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros

from socialcredit.simulation._hash import bits, uniform
from socialcredit.simulation.kernel._scoring import JIT


@nb.njit(inline="always", **JIT)
def gap(key, n, inv):
    """Citizens skipped before the next candidate: floor(log(u) / log(1 - p)), inv = 1/log(1-p),
    with u in (0, 1] from draw n of the stream.

    log(u) from the draw's bits (exponent by counting leading zeros, mantissa m in [0.5, 1)) and
    an odd series in (m-1)/(m+1), relative error < 2e-7: cheaper than libm, the same on every device.
    """
    q = (bits(key, n) >> np.uint64(11)) + np.uint64(1)  # u = q / 2**53
    lz = leading_zeros(q)
    m = np.float64((q << lz) >> np.uint64(11)) * 1.1102230246251565e-16  # 2**-53
    z = (m - 1.0) / (m + 1.0)
    z2 = z * z
    ln = (np.int64(11) - np.int64(lz)) * 0.6931471805599453 + 2.0 * z * (1.0 + z2 * (1.0 / 3.0 + z2 * (
        0.2 + z2 * (1.0 / 7.0 + z2 * (1.0 / 9.0 + z2 / 11.0)))))
    return ln * inv


@nb.njit(inline="always", **JIT)
def next_candidate(key, draw, inv, i, hi):
    """The next candidate after citizen i (a geometric jump, draw `draw`), or hi when the jump
    leaves [.., hi); and the next draw."""
    jump = gap(key, draw, inv)
    if jump >= hi - i:
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
