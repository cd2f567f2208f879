"""`validate`: a run beside the published record, target by target.

A targets file (TOML, `targets-2018.toml` ships with the package) lists published figures, each
with how a run is compared with it:

- `flow`: a yearly count (flight purchases blocked in 2018): the measure summed over the run's
  days in that year, per year;
- `stock`: a count at a date (people on the list at the end of 2018): the measure on that day;
- `ratio`: one measure over another (`over`), both taken as flows (`of = "flow"`) or stocks.

Counts are scaled from the sample to the population the targets describe (`represents`): a run
of N citizens where each stands for P/N people. A simulated count comes with its 95% interval
(the sample's count is Poisson; exact Garwood limits), so a user sees when a sample is too small
to tell.

Measures name what a run holds, in the run's own column names:
- `daily.<column>`: a column of daily.parquet, summed over regions (and days, for a flow);
- `citizens.<column>`: citizens at the run's end where a boolean column is true, or where a
  comparison holds (`citizens.commercial_score>=700`);
- `holders.<effect>`: citizens holding a state-score consequence with that effect (flight_ban,
  train_ban, ...: the policy's consequence vocabulary). A class-based travel
  ban counts where it reaches the carriers' lists: the holders times the scenario's
  `consequences.<effect>_reach`, the expected number (each holder's ban reaches the lists with
  that chance, fixed per citizen), whose sampling error is that of the holders.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy.stats import chi2

from socialcredit._validation import location
from socialcredit.engine import CompiledConsequences
from socialcredit.errors import SocialCreditError
from socialcredit.policy._model import EFFECTS
from socialcredit.simulation import Run
from socialcredit.simulation._kinds import REACH_EFFECTS

DEFAULT_TARGETS = "targets-2018.toml"
MEASURE = re.compile(r"^(daily|holders)\.([A-Za-z0-9_.-]+)$|^citizens\.([a-z0-9_]+)(?:(>=|<)(-?[0-9.]+))?$")
_STRICT = ConfigDict(extra="forbid", frozen=True)


class ValidationFailure(SocialCreditError, ValueError):
    """A targets file or a run that cannot be compared; the message names the target and field."""


class Target(BaseModel):
    """One published figure and how a run is compared with it."""

    model_config = _STRICT
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=1)
    published: float = Field(gt=0)
    unit: str = Field(min_length=1)
    year: int = Field(ge=1900, le=2100)
    compare: Literal["flow", "stock", "ratio"]
    measure: str
    over: str | None = None
    of: Literal["flow", "stock"] = "flow"
    date: dt.date | None = None
    tolerance: float = Field(gt=1.0)
    derived: bool = False
    source: str = Field(pattern=r"^docs/sources\.md#[a-z0-9-]+$")
    note: str = ""

    @model_validator(mode="after")
    def _check(self) -> Target:
        for field in ("measure", "over"):
            value = getattr(self, field)
            if value is not None and not MEASURE.match(value):
                raise ValueError(f"{field}: '{value}' is not a measure (daily.<column>, "
                                 f"citizens.<column>[>=|<number], holders.<effect>)")
        if (self.compare == "ratio") != (self.over is not None):
            raise ValueError("over: a ratio needs `over` (the denominator), and only a ratio has it")
        stock = self.compare == "stock" or (self.compare == "ratio" and self.of == "stock")
        if stock and self.date is None:
            raise ValueError("date: a stock is counted at a date (e.g. date = 2018-12-31)")
        if stock and self.date is not None and self.date.year != self.year:
            raise ValueError(f"date: {self.date} is not in the target's year {self.year}")
        return self


class Targets(BaseModel):
    """A targets file: the population its figures describe, and the figures."""

    model_config = _STRICT
    title: str = Field(min_length=1)
    represents: int = Field(ge=1)
    targets: list[Target] = Field(alias="target", min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Targets:
        names = [t.name for t in self.targets]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"target[{i}].name: '{name}' is used twice")
        return self


def load_targets(path: str | Path | None = None) -> Targets:
    """Read a targets file (the shipped `targets-2018.toml` when `path` is None)."""
    if path is None:
        text, source = resources.files("socialcredit.analysis").joinpath(DEFAULT_TARGETS).read_text(
            encoding="utf-8"), DEFAULT_TARGETS
    else:
        path = Path(path)
        if not path.is_file():
            raise ValidationFailure(f"targets {path}: no such file")
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationFailure(f"targets {source}: TOML syntax error: {exc}") from None
    try:
        return Targets.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailure(f"invalid targets {source}:\n  " + "\n  ".join(
            f"{location(e['loc'], {'targets': 'target'}) or 'targets'}: {e['msg']}"
            for e in exc.errors())) from None


@dataclass(frozen=True)
class Row:
    """One target beside the run: the simulated value (scaled), its interval and the verdict."""

    target: Target
    simulated: float | None  # None: the run does not model the measure, or does not cover the date
    low: float | None
    high: float | None
    sample: float | None  # the count in the sample the value was scaled from (a ratio: numerator)
    status: Literal["within", "outside", "not modelled", "not covered"]
    why: str = ""

    @property
    def ratio(self) -> float | None:
        """Simulated over published."""
        return None if self.simulated is None else self.simulated / self.target.published

    def as_dict(self) -> dict[str, Any]:
        """The row for `--json`: the target's fields, then the comparison."""
        t = self.target
        return {"name": t.name, "title": t.title, "published": t.published, "unit": t.unit,
                "year": t.year, "compare": t.compare, "tolerance": t.tolerance, "derived": t.derived,
                "source": t.source, "simulated": self.simulated, "interval": [self.low, self.high],
                "sample_count": self.sample, "ratio": self.ratio, "status": self.status,
                "why": self.why}


@dataclass(frozen=True)
class Comparison:
    """A run beside a targets file."""

    run: Path
    targets: Targets
    rows: list[Row]
    scale: float  # people each simulated citizen stands for, in the targets' population
    period: tuple[dt.date, dt.date]  # the run's first and last day

    @property
    def passed(self) -> bool:
        """Every target the run covers is within its tolerance (and at least one is covered)."""
        covered = [r for r in self.rows if r.status != "not covered"]
        return bool(covered) and all(r.status == "within" for r in covered)

    def frame(self) -> pl.DataFrame:
        """The table: target | published | simulated | ratio | tolerance | status."""
        return pl.DataFrame([{
            "target": r.target.title + (" (derived)" if r.target.derived else ""),
            "unit": r.target.unit, "published": r.target.published, "simulated": r.simulated,
            "95% interval": "-" if r.low is None else f"{_num(r.low)} - {_num(r.high)}",
            "ratio": r.ratio, "tolerance": f"x{r.target.tolerance:g}", "status": r.status,
            "why": r.why} for r in self.rows],
            schema={"target": pl.String, "unit": pl.String, "published": pl.Float64,
                    "simulated": pl.Float64, "95% interval": pl.String, "ratio": pl.Float64,
                    "tolerance": pl.String, "status": pl.String, "why": pl.String})

    def as_json(self) -> str:
        """What `validate --json` prints."""
        return json.dumps({"run": str(self.run), "targets": self.targets.title,
                           "represents": self.targets.represents, "people_per_citizen": self.scale,
                           "period": [d.isoformat() for d in self.period], "passed": self.passed,
                           "rows": [r.as_dict() for r in self.rows]}, indent=2)


def compare_run(run_dir: str | Path, targets: Targets) -> Comparison:
    """Compare the run in `run_dir` with each target."""
    run = _RunTables(Path(run_dir))
    scale = targets.represents / run.manifest.population
    rows = [_row(run, t, scale) for t in targets.targets]
    return Comparison(Path(run_dir), targets, rows, scale, (run.start, run.end))


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


class _RunTables:
    """The parts of a run folder the measures read."""

    def __init__(self, path: Path) -> None:
        if not (path / "manifest.json").is_file():
            raise ValidationFailure(f"{path}: not a run folder (no manifest.json)")
        self.path = path
        run = Run.open(path)
        self.manifest = run.manifest
        self.calendar = self.manifest.calendar
        self.start = self.calendar.start
        self.days = self.manifest.days
        self.end = self.calendar.date_of(self.days - 1)
        self.daily = run.scan("daily")
        self.daily_columns = self.daily.collect_schema().names()
        self.citizens = run.scan("citizens")
        self.citizen_columns = self.citizens.collect_schema().names()
        # Effect -> the names of the state policies' consequences with it (the daily columns
        # benefit.<name> and sanction.<name> count their holders).
        self.effects: dict[str, set[str]] = {}
        for policy in filter(None, run.region_policies.values()):
            for item in CompiledConsequences.of(policy).items:
                self.effects.setdefault(item.effect, set()).add(item.name)
        self.reach = {effect: float(getattr(self.manifest.scenario.consequences, f"{effect}_reach", 1.0))
                      for effect in REACH_EFFECTS}

    def day_of(self, date: dt.date) -> int:
        return self.calendar.day_of(date)

    def days_in(self, year: int) -> tuple[int, int]:
        """The run's day indices [first, last) that fall in `year`."""
        first = max(0, self.day_of(dt.date(year, 1, 1)))
        last = min(self.days, self.day_of(dt.date(year + 1, 1, 1)))
        return first, max(first, last)

    def daily_sum(self, columns: list[str], first: int, last: int) -> float:
        total = self.daily.filter(pl.col("day").is_between(first, last - 1)).select(
            pl.sum_horizontal(pl.col(c).fill_null(0) for c in columns).sum()).collect().item()
        return float(total or 0)


def _measure(run: _RunTables, measure: str, how: str, target: Target) -> tuple[float | None, float, str]:
    """The count in the sample, the factor that makes it the measure (per year for a flow; times
    the reach of a travel ban), and why there is no count (the run does not model the measure, or
    does not cover the target's time)."""
    m = MEASURE.match(measure)
    assert m is not None  # checked when the targets were loaded
    source, column, citizen_column, op, number = m.groups()
    if how == "flow":
        first, last = run.days_in(target.year)
        if last <= first:
            return None, 1.0, f"not covered: the run ({run.start} to {run.end}) has no day in {target.year}"
        per_year = 365.0 / (last - first)
    else:
        assert target.date is not None
        first = run.day_of(target.date)
        last, per_year = first + 1, 1.0
        if not 0 <= first < run.days:
            return None, 1.0, f"not covered: the run ({run.start} to {run.end}) does not reach {target.date}"
    if citizen_column is not None:
        if how == "flow":
            return None, 1.0, f"not modelled: {measure} is the run's end state, not a flow"
        if abs(first - (run.days - 1)) > 31:
            return None, 1.0, f"not covered: citizens.parquet holds the state on {run.end}, not {target.date}"
        if citizen_column not in run.citizen_columns:
            return None, 1.0, f"not modelled: citizens.parquet has no column '{citizen_column}'"
        col = pl.col(citizen_column)
        where = col if op is None else (col >= float(number)) if op == ">=" else (col < float(number))
        return float(run.citizens.select(where.fill_null(False).sum()).collect().item()), 1.0, ""
    if source == "holders":
        if column not in EFFECTS:
            return None, 1.0, f"not modelled: no effect '{column}' (effects: {', '.join(EFFECTS)})"
        names = run.effects.get(column, set())
        columns = [c for c in run.daily_columns
                   if c.split(".", 1)[0] in ("benefit", "sanction") and c.split(".", 1)[1] in names]
        if not columns:
            return 0.0, per_year, ""  # no policy of the run attaches that effect: nobody holds it
    elif column not in run.daily_columns:
        return None, 1.0, f"not modelled: daily.parquet has no column '{column}'"
    else:
        columns = [column]
    reach = run.reach.get(column, 1.0) if source == "holders" else 1.0
    return run.daily_sum(columns, first, last), per_year * reach, ""


def _poisson_interval(count: float) -> tuple[float, float]:
    """Exact (Garwood) 95% limits of a Poisson count."""
    low = 0.0 if count <= 0 else chi2.ppf(0.025, 2 * count) / 2
    return float(low), float(chi2.ppf(0.975, 2 * count + 2) / 2)


def _row(run: _RunTables, target: Target, scale: float) -> Row:
    how = target.of if target.compare == "ratio" else target.compare
    count, per_year, why = _measure(run, target.measure, how, target)
    if count is None:
        return Row(target, None, None, None, None, *_missing(why))
    low, high = _poisson_interval(count)
    if target.compare == "ratio":
        assert target.over is not None
        denominator, per_year_over, why = _measure(run, target.over, how, target)
        if denominator is None:
            return Row(target, None, None, None, count, *_missing(why))
        if denominator <= 0:
            return Row(target, None, None, None, count, "outside",
                       f"{target.over}: none in the sample, the ratio is undefined")
        # The interval is the numerator's (the rarer count of the usual ratios, whose error dominates).
        factor = per_year / (denominator * per_year_over)
    else:
        factor = per_year * scale
    value = count * factor
    ratio = value / target.published
    within = 1 / target.tolerance <= ratio <= target.tolerance
    return Row(target, value, low * factor, high * factor, count, "within" if within else "outside",
               "" if within else f"{ratio:.2g}x the published value")


def _missing(why: str) -> tuple[Literal["not modelled", "not covered"], str]:
    """A measure's "not modelled: ..." or "not covered: ..." as (status, reason)."""
    status, reason = why.split(": ", 1)
    return ("not modelled" if status == "not modelled" else "not covered"), reason
