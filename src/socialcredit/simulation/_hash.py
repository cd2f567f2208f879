"""Counter-based random numbers: a uniform is a pure function of (seed, block, day, stream, n).

No generator state is carried between draws, so any split of the citizens into chunks, shards,
workers or devices draws the same numbers for the same citizen on the same day.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53
POPULATION_DAY = 0xFFFFF  # the "day" key of draws made once, when the population is built


@nb.njit(inline="always", cache=True)
def mix(z):
    """The splitmix64 finaliser: a bijective scramble of 64 bits."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@nb.njit(cache=True)
def stream_key(seed, block, day, stream):
    """The key of one random stream; draw n of it is `uniform(key, n)`."""
    h = mix(np.uint64(seed) * _GOLDEN + np.uint64(0x632BE59BD9B4E019))
    h = mix(h ^ (np.uint64(block) * _M1))
    h = mix(h ^ (np.uint64(day) * _M2))
    return mix(h ^ (np.uint64(stream) * _GOLDEN))


@nb.njit(inline="always", cache=True)
def bits(key, n):
    """Draw n of a stream as 64 random bits."""
    return mix(key + np.uint64(n) * _GOLDEN)


@nb.njit(inline="always", cache=True)
def uniform(key, n):
    """Draw n of a stream: a float in [0, 1)."""
    return np.float64(bits(key, n) >> _S11) * _TO_UNIT
