"""The geometric jumps: the table that decides most of them gives the log series' own jumps."""

import numba as nb
import numpy as np
import pytest

from socialcredit.simulation._hash import stream_key
from socialcredit.simulation.kernel._draws import (
    _LOG_BITS,
    _LOG_TABLE,
    _LOG_TABLE_ERROR,
    _log_mantissa,
    gap,
    next_candidate,
)


@nb.njit
def _disagreements(key, inv, draws, span):
    """Draws of a stream whose candidate (from i = -1, the jump leaving at `span`) differs from
    the one the series' jump makes."""
    bad = 0
    for n in range(draws):
        jump = gap(key, n, inv)
        want = span - 1 if jump >= span else int(jump)
        got, after = next_candidate(key, n, inv, -1, span - 1)
        bad += got != want or after != n + 1
    return bad


# From bots' and volunteers' rates down to the rarest kinds' (whose jumps the series decides
# often: the table's bound grows with 1/log(1-p)).
@pytest.mark.parametrize("p", [0.9, 0.142857, 0.02, 0.003, 1e-4, 6.25e-7])
@pytest.mark.parametrize("span", [1, 3, 100, 32768])
def test_the_table_gives_the_series_jumps(p, span):
    key = np.uint64(stream_key(7, span, 3, int(p * 1e7)))
    assert _disagreements(key, 1.0 / np.log1p(-p), 200_000, span) == 0


def test_the_table_stays_well_within_its_error_bound():
    rng = np.random.default_rng(5)
    bits53 = rng.integers(2**52, 2**53, 2_000_000, dtype=np.uint64)
    row = (bits53 >> np.uint64(52 - _LOG_BITS)).astype(np.int64) - 2**_LOG_BITS
    d = (bits53 & np.uint64(2 ** (52 - _LOG_BITS) - 1)).astype(np.float64) * 2.0**-53
    table = _LOG_TABLE[row, 0] + d * (_LOG_TABLE[row, 1] + d * _LOG_TABLE[row, 2])
    series = _log_mantissa(bits53.astype(np.float64) * 2.0**-53)
    assert np.abs(table - series).max() < _LOG_TABLE_ERROR / 10
