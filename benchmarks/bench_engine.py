"""Scoring throughput: the engine on 10 million events for 1 million citizens.

Printed beside a plain polars group-by-sum over the same events (the floor), measured in the same
run: the two alternate, round after round, and the medians are compared, so that a load that
drifts during the run weighs on both. Run with `make bench` or
`python benchmarks/bench_engine.py [--events N --citizens M --rounds R]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import polars as pl

from socialcredit.engine import CompiledPolicy, score_ledger
from socialcredit.events import validate_events
from socialcredit.policy import load_policy


def synthetic_events(policy_name: str, n_events: int, n_citizens: int, seed: int) -> pl.DataFrame:
    """Events spread over a year, with every kind of the policy and some unknown kinds."""
    policy = load_policy(policy_name)
    rng = np.random.default_rng(seed)
    kinds = [r.kind for r in policy.rules] + ["unscored.kind"]
    sources = sorted({s for r in policy.rules for s in (r.sources or [])} | {"camera"})
    citizen = rng.integers(0, n_citizens, n_events)
    return pl.DataFrame({
        "event_id": pl.Series(np.arange(n_events)).cast(pl.String).str.zfill(10),
        "citizen_id": pl.Series(citizen).cast(pl.String),
        "kind": pl.Series(rng.integers(0, len(kinds), n_events)).replace_strict(
            dict(enumerate(kinds)), return_dtype=pl.String),
        "day": rng.integers(0, 365, n_events).astype(np.int32),
        "source": pl.Series(rng.integers(0, len(sources), n_events)).replace_strict(
            dict(enumerate(sources)), return_dtype=pl.String),
        "source_ref": None,
        "confidence": rng.uniform(0.8, 1.0, n_events),
    }).with_columns(pl.col("source_ref").cast(pl.String))


def timed(fn) -> float:
    """Wall time of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--policy", default="taz-2018")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of floor and engine")
    args = parser.parse_args()

    events = validate_events(synthetic_events(args.policy, args.events, args.citizens, seed=1))
    compiled = CompiledPolicy.of(load_policy(args.policy))
    points = {r.kind: r.points for r in compiled.policy.rules}

    def groupby_sum() -> pl.DataFrame:
        return (events.lazy().with_columns(points=pl.col("kind").replace_strict(points, default=0))
                .group_by("citizen_id").agg(pl.col("points").sum()).collect())

    t_first = timed(lambda: score_ledger(compiled, events))  # loads (or compiles) the numba kernels
    load_before = os.getloadavg()[0]
    t_groupby, t_engine = [], []
    for _ in range(args.rounds):
        t_groupby.append(timed(groupby_sum))
        t_engine.append(timed(lambda: score_ledger(compiled, events)))
    load_after = os.getloadavg()[0]
    t_validate = timed(lambda: validate_events(events))
    n = events.height
    floor, engine = statistics.median(t_groupby), statistics.median(t_engine)
    print(f"events: {n:,}  citizens: {args.citizens:,}  policy: {args.policy}  threads: {pl.thread_pool_size()}"
          f"  cores: {os.cpu_count()}  load average: {load_before:.2f} -> {load_after:.2f}")
    print(f"median of {args.rounds} alternating rounds (each round: the floor, then the engine)")
    print(f"polars group-by-sum : {floor:7.3f} s  {n / floor / 1e6:7.1f} M events/s  (the floor)")
    print(f"engine score_ledger : {engine:7.3f} s  {n / engine / 1e6:7.1f} M events/s"
          f"  ({floor / engine:.2f}x the floor's rate; target >= 0.8x)")
    print("per round, floor/engine: " + "  ".join(f"{g / e:.2f}" for g, e in zip(t_groupby, t_engine, strict=True)))
    print(f"engine's first call : {t_first:7.3f} s (loads or compiles its numba kernels; not in the median)")
    print(f"event validation    : {t_validate:7.3f} s  {n / t_validate / 1e6:7.1f} M events/s (not in the engine time)")


if __name__ == "__main__":
    main()
