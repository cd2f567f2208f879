"""Parameter sweeps: a grid of scenario settings times seeds, one outcomes row per run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import polars as pl

from socialcredit.simulation._run import Run, dask_client, simulate
from socialcredit.simulation._scenario import SimulationError, load_scenario, parse_value


def parse_seeds(text: str) -> list[int]:
    """Seeds from `1-5`, `1,2,7` or a mix (`1-3,9`)."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
        except ValueError:
            raise SimulationError(f"--seeds: expected numbers like 1-5 or 1,2,7 (got '{text}')") from None
    if not seeds or min(seeds) < 0:
        raise SimulationError(f"--seeds: expected non-negative seeds (got '{text}')")
    return seeds


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`section.field=v1,v2,...` strings to a grid of values per setting."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise SimulationError(f"--set '{item}': expected section.field=value[,value...]")
        grid[key.strip()] = [parse_value(v.strip()) for v in raw.split(",")]
    return grid


def sweep(*, scenario: str | Path, grid: dict[str, list[Any]], seeds: list[int], out: str | Path,
          population: int, days: int, policy: str | None = None, workers: int | None = None,
          scheduler: str | None = None, events: str = "none") -> pl.DataFrame:
    """Run every combination of `grid` for every seed; write outcomes.parquet beside the runs."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SimulationError(f"--out {out}: exists and is not an empty folder")
    if workers is not None and workers < 1:
        raise SimulationError(f"--workers must be at least 1 (got {workers})")
    keys = list(grid)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]
    for combo in combos:  # every setting is checked before anything runs or is written
        load_scenario(scenario, overrides=combo, policy=policy)
    jobs = [(f"run-{i:04d}", combo, seed)
            for i, (combo, seed) in enumerate(itertools.product(combos, seeds))]
    common = {"population": population, "days": days, "scenario": scenario, "policy": policy,
              "events": events}
    if workers is None and scheduler is None:
        runs = [simulate(seed=seed, out=out / name, overrides=combo, **common)
                for name, combo, seed in jobs]
    else:
        runs = _on_dask(jobs, common, out, workers, scheduler)
    rows = [_outcome(name, combo, seed, run) for (name, combo, seed), run in zip(jobs, runs, strict=True)]
    outcomes = pl.DataFrame(rows)
    outcomes.write_parquet(out / "outcomes.parquet")
    # What was varied, for readers of the folder (the report's sensitivity table).
    (out / "sweep.json").write_text(json.dumps({
        "scenario": str(scenario), "policy": policy, "population": population, "days": days,
        "grid": grid, "seeds": seeds}, indent=2, default=str), encoding="utf-8")
    return outcomes


def _on_dask(jobs: list, common: dict, out: Path, workers: int | None,
             scheduler: str | None) -> list[Run]:
    with dask_client(workers, scheduler) as client:
        futures = [client.submit(simulate, seed=seed, out=out / name, overrides=combo,
                                 pure=False, **common) for name, combo, seed in jobs]
        return client.gather(futures)


def _outcome(name: str, combo: dict[str, Any], seed: int, run: Run) -> dict[str, Any]:
    daily = run.daily
    last = daily.filter(pl.col("day") == daily["day"].max())
    classes = [c for c in daily.columns if c.startswith("class.")]
    scored = sum(int(last[c].sum() or 0) for c in classes)
    row: dict[str, Any] = {"run": name, "seed": seed, **combo,
                           "population": run.manifest.population, "days": run.manifest.days}
    for c in classes:
        row[f"share.{c.removeprefix('class.')}"] = (int(last[c].sum() or 0) / scored) if scored else None
    wrongful = [c for c in daily.columns if c.endswith(".wrongful")]
    row["wrongful_events"] = int(daily.select(pl.sum_horizontal(wrongful)).sum().item())
    row["wrongful_points"] = int(daily["wrongful_points"].sum())
    sanctions = [c for c in daily.columns if c.startswith("sanction.")]
    row["sanction_citizen_days"] = int(sum(int(daily[c].sum() or 0) for c in sanctions))
    for counter in ("jobs_lost", "flights_blocked", "trains_blocked", "gate_stops", "bots_deployed"):
        row[counter] = int(daily[counter].sum())
    row["top_share"], row["top_bot_share"], row["top_volunteer_share"] = _top_class(run)
    return row


def _top_class(run: Run) -> tuple[float | None, float | None, float | None]:
    """Share of the scored citizens in their policy's top class at the end, and the shares of
    newspaper bots' owners and of dedicated volunteers among them (None where nobody is scored,
    or nobody is at the top)."""
    tops = {region: policy.class_names[0] for region, policy in run.region_policies.items() if policy is not None}
    citizens = run.citizens.filter(pl.col("class").is_not_null())
    if citizens.height == 0:
        return None, None, None
    top = citizens.filter(pl.col("class") == pl.col("region").cast(pl.String).replace_strict(tops, default=None))
    if top.height == 0:
        return 0.0, None, None
    return top.height / citizens.height, float(top["bot"].mean()), float(top["volunteer"].mean())
