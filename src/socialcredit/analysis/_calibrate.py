"""`calibrate`: fit a scenario's free parameters to published targets, write the fitted scenario.

Each try simulates the scenario with the free parameters set (the same seed every time, so the
objective is a deterministic function of the parameters) and compares the run with the targets.
The objective is the sum of squared log ratios simulated/published over the targets the run
models and covers; scipy's bounded Powell search minimises it over the parameters' ranges, in
log space where a range spans more than a factor of ten. The result is a scenario file that
`extends` the original and `set`s the fitted values, with the targets, the fit and the date in
its header.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from socialcredit.analysis._validate import Comparison, Targets, compare_run
from socialcredit.errors import SocialCreditError
from socialcredit.simulation import simulate
from socialcredit.simulation._scenario import SimulationError, current_value, load_scenario


class CalibrationError(SocialCreditError, ValueError):
    """A free parameter, range or target that cannot be fitted; the message names it."""


@dataclass(frozen=True)
class Free:
    """A free parameter: a scenario path (as `--set` takes it) and its range."""

    name: str
    low: float
    high: float

    @property
    def logarithmic(self) -> bool:
        return self.low > 0 and self.high / self.low > 10

    def value(self, u: float) -> float:
        """The parameter at `u` in [0, 1] of its range."""
        u = min(max(u, 0.0), 1.0)
        if self.logarithmic:
            return float(self.low * (self.high / self.low) ** u)
        return float(self.low + (self.high - self.low) * u)

    def position(self, value: float) -> float:
        if self.logarithmic:
            return math.log(value / self.low) / math.log(self.high / self.low)
        return (value - self.low) / (self.high - self.low)


def parse_free(items: list[str]) -> list[Free]:
    """`section.field=LO:HI` strings as free parameters."""
    if not items:
        raise CalibrationError("--free: name at least one parameter (section.field=LO:HI)")
    out: list[Free] = []
    for item in items:
        name, sep, span = item.partition("=")
        low_text, colon, high_text = span.partition(":")
        try:
            low, high = float(low_text), float(high_text)
        except ValueError:
            low = high = math.nan
        if not sep or not colon or not name.strip() or not (math.isfinite(low) and math.isfinite(high)):
            raise CalibrationError(f"--free '{item}': expected section.field=LO:HI with numbers LO < HI")
        if low >= high:
            raise CalibrationError(f"--free '{item}': LO must be below HI (got {low:g}:{high:g})")
        if any(f.name == name.strip() for f in out):
            raise CalibrationError(f"--free '{item}': {name.strip()} is named twice")
        out.append(Free(name.strip(), low, high))
    return out


@dataclass(frozen=True)
class Fit:
    """The fitted values, the comparisons before and after, and the tries it took."""

    free: list[Free]
    values: dict[str, float]
    start: Comparison
    best: Comparison
    objective_start: float
    objective_best: float
    tries: int


def objective(comparison: Comparison) -> float:
    """Sum of squared log ratios over the targets the run models and covers (an empty count:
    the ratio of one sample count to the published value, so that zero is far, not infinite)."""
    total = 0.0
    for row in comparison.rows:
        if row.simulated is None:
            continue
        simulated = row.simulated if row.simulated > 0 else row.target.published / 1000
        total += math.log(simulated / row.target.published) ** 2
    return total


def calibrate(*, scenario: str | Path, targets: Targets, free: list[Free], population: int,
              days: int, seed: int, budget: int, workers: int | None = None,
              on_try: Callable[[int, float], None] | None = None) -> Fit:
    """Fit `free` to `targets` in at most `budget` simulated runs."""
    if budget < 2:
        raise CalibrationError(f"--budget must be at least 2 runs (got {budget})")
    try:
        base = load_scenario(scenario)
    except SimulationError as exc:
        raise CalibrationError(str(exc)) from None
    starts, integers = [], set()
    for f in free:  # a bad name or a value the scenario refuses fails here, before any run
        current = current_value(base, f.name)
        if not isinstance(current, int | float) or isinstance(current, bool):
            raise CalibrationError(f"--free {f.name}: not a number in scenario {scenario} "
                                   f"(found {current!r})")
        if isinstance(current, int):
            integers.add(f.name)
        for bound in (f.low, f.high):
            try:
                load_scenario(scenario, overrides={f.name: _typed(bound, f.name in integers)})
            except SimulationError as exc:
                raise CalibrationError(f"--free {f.name}={f.low:g}:{f.high:g}: {exc}") from None
        starts.append(min(max(f.position(current), 0.0), 1.0) if f.low <= current <= f.high
                      else 0.5)  # a start outside the range: its middle

    def values_at(u) -> dict[str, float]:
        return {f.name: _typed(f.value(x), f.name in integers) for f, x in zip(free, u, strict=True)}

    seen: dict[tuple[float, ...], tuple[float, Comparison]] = {}

    def run(u: np.ndarray) -> float:
        key = tuple(round(float(x), 12) for x in u)
        if key in seen:
            return seen[key][0]
        if len(seen) >= budget:
            return math.inf  # out of runs: the search stops at the best one tried
        values = values_at(u)
        with tempfile.TemporaryDirectory(prefix="sc-calibrate-") as tmp:
            simulate(population=population, days=days, seed=seed, out=os.path.join(tmp, "run"),
                     scenario=scenario, overrides=values, workers=workers)
            comparison = compare_run(os.path.join(tmp, "run"), targets)
        value = objective(comparison)
        seen[key] = (value, comparison)
        if on_try is not None:
            on_try(len(seen), min(v for v, _ in seen.values()))
        return value

    u0 = np.array(starts)
    run(u0)
    minimize(run, u0, method="Powell", bounds=[(0.0, 1.0)] * len(free),
             options={"maxfev": budget, "xtol": 1e-3, "ftol": 1e-4})
    best_key = min(seen, key=lambda k: seen[k][0])
    start_value, start = seen[tuple(round(float(x), 12) for x in u0)]
    if not any(r.simulated is not None for r in start.rows):
        raise CalibrationError("no target is modelled and covered by a run of this scenario: "
                               "nothing to fit")
    return Fit(free, values_at(best_key), start, seen[best_key][1], start_value, seen[best_key][0],
               len(seen))


def _typed(value: float, integer: bool) -> float | int:
    return round(value) if integer else value


def calibrated_scenario(fit: Fit, *, scenario: str | Path, targets_file: str, out: Path,
                        population: int, days: int, seed: int) -> str:
    """The text of the fitted scenario file: a header with targets and fit, then the settings."""
    base = load_scenario(scenario)
    path = Path(scenario)
    extends = (os.path.relpath(path.resolve(), out.resolve().parent)
               if path.suffix == ".toml" or path.exists() else str(scenario))
    lines = [f"# {base.name}, calibrated by `socialcredit calibrate` on {dt.date.today().isoformat()}.",
             f"# Runs of {population:,} citizens x {days} days, seed {seed}; {fit.tries} runs tried.",
             f"# Targets: {targets_file} ({fit.best.targets.title}).",
             "# Objective (sum of squared log ratios simulated/published): "
             f"{fit.objective_start:.4g} before, {fit.objective_best:.4g} after.",
             "#", "# target: published | simulated before -> after (ratio after)"]
    for before, after in zip(fit.start.rows, fit.best.rows, strict=True):
        if after.simulated is None:
            lines.append(f"#   {after.target.name}: {after.target.published:g} | {after.status}")
        else:
            lines.append(f"#   {after.target.name}: {after.target.published:g} | "
                         f"{_g(before.simulated)} -> {_g(after.simulated)} ({after.ratio:.3g}x)")
    lines += ["#", "# Fitted (range searched):"]
    lines += [f"#   {f.name} = {fit.values[f.name]:.6g} ({f.low:g} to {f.high:g})" for f in fit.free]
    lines += ["", f"extends = {_toml_string(extends)}", f"name = {_toml_string(base.name + '-calibrated')}",
              f"title = {_toml_string(base.title + ' (calibrated)')}", "", "[set]"]
    lines += [f"{_toml_string(name)} = {value:.6g}" for name, value in fit.values.items()]
    return "\n".join(lines) + "\n"


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
