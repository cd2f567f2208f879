"""Scoring throughput: the engine on 10 million events for 1 million citizens.

Printed beside a plain polars group-by-sum over the same events, measured in the same run.
Run with `make bench` or `python benchmarks/bench_engine.py [--events N --citizens M]`.
"""

from __future__ import annotations

import argparse
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


def best_of(repeat: int, fn) -> float:
    """Shortest wall time of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--policy", default="taz-2018")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    events = validate_events(synthetic_events(args.policy, args.events, args.citizens, seed=1))
    compiled = CompiledPolicy.of(load_policy(args.policy))
    points = {r.kind: r.points for r in compiled.policy.rules}

    def groupby_sum() -> pl.DataFrame:
        return (events.lazy().with_columns(points=pl.col("kind").replace_strict(points, default=0))
                .group_by("citizen_id").agg(pl.col("points").sum()).collect())

    t_groupby = best_of(args.repeat, groupby_sum)
    t_engine = best_of(args.repeat, lambda: score_ledger(compiled, events))
    t_validate = best_of(1, lambda: validate_events(events))
    n = events.height
    print(f"events: {n:,}  citizens: {args.citizens:,}  policy: {args.policy}  threads: {pl.thread_pool_size()}")
    print(f"polars group-by-sum : {t_groupby:7.3f} s  {n / t_groupby / 1e6:7.1f} M events/s")
    print(f"engine score_ledger : {t_engine:7.3f} s  {n / t_engine / 1e6:7.1f} M events/s"
          f"  ({t_groupby / t_engine:.2f}x the group-by rate; target >= 0.5x)")
    print(f"event validation    : {t_validate:7.3f} s  {n / t_validate / 1e6:7.1f} M events/s (not in the engine time)")


if __name__ == "__main__":
    main()
