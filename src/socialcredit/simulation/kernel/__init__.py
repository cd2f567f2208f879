"""The fused kernel: one block of citizens, every day of a run, in one compiled loop.

A block (a fixed number of citizens, the unit of randomness and of attribution) is independent of
every other block: a false camera match picks the innocent from the same region within the same
block, households live within a block, peers are the block's citizens of the same region. So a
block's results depend only on (seed, block, parameters), never on how blocks are grouped into
chunks, shards, workers or devices.

Work grows with events, not citizens x days x kinds: each kind's acts are found by geometric
jumps over the citizens (thinning against the kind's largest possible rate), points expire from
a per-day bucket list, and classes are counted incrementally as scores change. The jumps walk the
block's citizens in an order grouped by region, deviance level and age (built once per block), so
a kind skips the ages it does not concern and deviant kinds thin against each level's own bound:
fewer rejected candidates, the dominant cost.

One module per concern, each a set of numba functions over the named layouts of `_layout`:
population (`_population`), acts and their observers (`_acts`), cameras and profiles
(`_sensors`), scores, classes and held days (`_scoring`), consequences (`_consequences`), random
draws (`_draws`), and the day loop that calls them (`_day.run_block`).

The kernel runs without numba's reference counting (_nrt=False), which otherwise costs more than
the model itself on the per-event path: it allocates nothing, all scratch comes from the caller,
and a full buffer makes it return OVERFLOW so that the caller retries the block with more room.
No divisor can be zero, so numpy's error model spares a check on every division.
"""

import hashlib
from itertools import chain
from pathlib import Path

from socialcredit.simulation import _hash, _kinds
from socialcredit.simulation.kernel._consequences import flight_bans_reaching, travel_top
from socialcredit.simulation.kernel._day import run_block
from socialcredit.simulation.kernel._layout import (
    AGES,
    GROUPS,
    LEVELS,
    N_PINT,
    OVERFLOW,
    P_CAP_CLASS,
    P_HI,
    P_HMIN_B,
    P_HMIN_S,
    P_KB,
    P_KS,
    P_LO,
    P_MIN_AGE,
    P_N_CLASSES,
    P_START,
    RECORD_ALL,
    RECORD_NONE,
    RECORD_SAMPLE,
    Consequences,
    Kinds,
    Params,
    Policies,
    Scratch,
    State,
    World,
)
from socialcredit.simulation.kernel._population import dedicated_volunteers

__all__ = ["AGES", "GROUPS", "LEVELS", "N_PINT", "OVERFLOW", "P_CAP_CLASS", "P_HI", "P_HMIN_B", "P_HMIN_S", "P_KB",
           "P_KS", "P_LO", "P_MIN_AGE", "P_N_CLASSES", "P_START", "RECORD_ALL", "RECORD_NONE", "RECORD_SAMPLE",
           "Consequences", "Kinds", "Params", "Policies", "Scratch", "State", "World",
           "dedicated_volunteers", "flight_bans_reaching", "run_block", "travel_top"]


def _drop_stale_cache() -> None:
    """Drop the kernel's compiled cache when any of its sources changed.

    numba checks a cached function against its own file only, but run_block holds the code of the
    helpers it inlines from the other kernel modules, and the constants of _kinds: after an edit of
    one of those it would load stale code. numba reads the cache at the first call, after this.
    """
    folder = Path(__file__).parent
    sources = [*sorted(folder.glob("*.py")), Path(_hash.__file__), Path(_kinds.__file__)]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    cache = folder / "__pycache__"
    stamp = cache / "kernel-sources.sha256"
    try:
        if stamp.read_text(encoding="ascii") == digest:
            return
    except OSError:
        pass
    try:
        for compiled in chain(cache.glob("*.nbi"), cache.glob("*.nbc")):
            compiled.unlink()
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest, encoding="ascii")
    except OSError:
        pass  # a read-only installation: numba caches elsewhere, keyed by files nobody edits


_drop_stale_cache()
