"""Compile the numba kernels into their caches (`make install` runs this once per install).

The first simulation, score or service start after an install then does not wait for them.
A tiny run of every events mode compiles the simulator's kernel and its writers; scoring the
run's events with the engine compiles the engine's kernels on the threaded path and the plain one.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import polars as pl

from socialcredit.engine import score_ledger
from socialcredit.engine._batch import THREADED_FROM
from socialcredit.events import validate_events
from socialcredit.simulation import Run, simulate


def main() -> None:
    """Compile and cache every kernel; print how long it took."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sc-warm-") as tmp:
        for events in ("all", "none"):
            simulate(population=2_000, days=3, seed=1, out=Path(tmp) / events, events=events)
        run = Run.open(Path(tmp) / "all")
        ledger = validate_events(run.events.select("event_id", "citizen_id", "kind", "day", "source", "source_ref",
                                                   "confidence"))
        score_ledger(run.state_policy(), ledger)
        many = pl.concat([ledger] * (THREADED_FROM // max(ledger.height, 1) + 1)).with_row_index("n").with_columns(
            event_id=pl.col("event_id") + "." + pl.col("n").cast(pl.String)).drop("n")
        score_ledger(run.state_policy(), many)
    print(f"numba kernels compiled and cached in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
