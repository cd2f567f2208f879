"""GPU port throughput: 1.41 billion citizens x 365 days (pilot-regions-2018, events none) on CUDA.

Checks first that a small run gives the CPU's citizens.parquet and daily.parquet byte for byte,
then times the kernel shard by shard over the whole nation (state copied back to the host and
dropped: no Parquet is written, that is the CPU's and the disk's time, not the GPU's). Prints
citizen-days/s and seconds; `--seconds S` stops after S seconds and extrapolates. Without a GPU
(or without the 'gpu' extra) it prints that it skipped and exits 0.
Run with `python benchmarks/bench_gpu.py [--population N --days D --seconds S]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

NATION = 1_410_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--population", type=int, default=NATION)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--chunk-blocks", type=int, default=None)
    args = parser.parse_args()
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        print("bench_gpu: skipped (the CUDA simulator is on: no speed to measure)")
        return 0
    from socialcredit.simulation import _gpu

    problem = _gpu.gpu_problem()
    if problem is not None:
        print(f"bench_gpu: skipped ({problem})")
        return 0
    from numba import cuda

    from socialcredit.simulation import load_scenario, simulate
    from socialcredit.simulation._plan import make_plan
    from socialcredit.simulation._run import GPU_CHUNK_BLOCKS
    from socialcredit.simulation._shard import EventsMode

    device = cuda.get_current_device()
    print(f"bench_gpu: {device.name.decode() if isinstance(device.name, bytes) else device.name}, "
          f"compute capability {device.compute_capability}")

    # 1. Equality with the CPU on a small run (this also compiles the kernel: not timed below).
    with tempfile.TemporaryDirectory() as tmp:
        small = {"population": 40_000, "days": 30, "seed": 5, "scenario": "pilot-regions-2018",
                 "events": "sample:0.1", "overrides": {"block_size": 1024}}
        t0 = time.perf_counter()
        gpu = simulate(out=Path(tmp) / "cuda", device="cuda", **small)
        compile_s = time.perf_counter() - t0
        cpu = simulate(out=Path(tmp) / "cpu", device="cpu", **small)
        same = {name: (gpu.path / f"{name}.parquet").read_bytes()
                == (cpu.path / f"{name}.parquet").read_bytes() for name in ("citizens", "daily")}
        same["events"] = gpu.events.equals(cpu.events)
        print(f"small run (40,000 x 30, first GPU call incl. compile {compile_s:.1f} s): "
              + ", ".join(f"{k} {'identical' if v else 'DIFFERENT'}" for k, v in same.items()))

    # 2. The nation, shard by shard.
    plan = make_plan(load_scenario("pilot-regions-2018"), population=args.population,
                     days=args.days, seed=1)
    events = EventsMode(0)
    chunk = args.chunk_blocks or GPU_CHUNK_BLOCKS
    done_citizens = 0
    t0 = time.perf_counter()
    for first in range(0, plan.n_blocks, chunk):
        last = min(first + chunk, plan.n_blocks)
        st, _, _ = _gpu.simulate_blocks(plan, first, last, events, 1)
        done_citizens += len(st[0])
        del st
        elapsed = time.perf_counter() - t0
        print(f"  blocks {last}/{plan.n_blocks}: {done_citizens:,} citizens, {elapsed:.1f} s",
              flush=True)
        if args.seconds is not None and elapsed > args.seconds:
            break
    elapsed = time.perf_counter() - t0
    rate = done_citizens * plan.days / elapsed
    print(f"GPU: {done_citizens:,} citizens x {plan.days} days in {elapsed:.2f} s: "
          f"{rate:,.0f} citizen-days/s")
    if done_citizens < plan.population:
        print(f"GPU: stopped early; the whole {plan.population:,} x {plan.days} would take about "
              f"{plan.population * plan.days / rate:.0f} s (target: <= 15 s on one H200)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
