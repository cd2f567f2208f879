"""Report build time: `write_report` on a 1,000,000-citizen, 365-day one-town run (target: under 30 s).

The run is simulated once with a 0.1% event sample and kept in the temporary folder, so later calls
time only the report. Run with `python benchmarks/bench_report.py [--population N --days D]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from socialcredit.analysis import write_report
from socialcredit.simulation import simulate
from socialcredit.simulation._forkserver import default_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    run = Path(tempfile.gettempdir()) / f"socialcredit-bench-report-{args.population}x{args.days}-s{args.seed}"
    if not (run / "manifest.json").is_file():
        t0 = time.perf_counter()
        simulate(population=args.population, days=args.days, seed=args.seed, out=run, events="sample:0.001")
        print(f"simulated {args.population:,} citizens x {args.days} days in {time.perf_counter() - t0:.1f} s "
              f"-> {run}")
    else:
        print(f"reusing {run}")
    out = run / "report.html"
    t0 = time.perf_counter()
    write_report(run, out=out)
    seconds = time.perf_counter() - t0
    print(f"write_report: {seconds:.2f} s on {default_threads()} threads ({os.cpu_count()} cpus), "
          f"{out.stat().st_size / 1e6:.1f} MB -> {out}  (target < 30 s)")


if __name__ == "__main__":
    main()
