"""The HTML report of a run: twelve sections of plots and short text (and the roll-out, for a scenario
whose regions change on dates, and the sensitivity table of a sweep), one self-contained file that
fits any screen."""

from __future__ import annotations

import colorsys
import hashlib
import html
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import plotly.graph_objects as go
import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape
from plotly.offline import get_plotlyjs

from socialcredit.analysis import _metrics as m
from socialcredit.analysis._audit import FLAGS, audit_policy
from socialcredit.analysis._lives import Life, choose_lives, replay_life
from socialcredit.analysis._validate import compare_run, load_targets
from socialcredit.engine import CompiledConsequences
from socialcredit.errors import SocialCreditError
from socialcredit.policy import Policy
from socialcredit.simulation import Manifest, Run, list_scenarios
from socialcredit.simulation._kinds import K_COMPLAINT, KIND_NAMES
from socialcredit.simulation._scenario import PRESET_PACKAGE as SCENARIOS
from socialcredit.simulation._scenario import SimulationError

PALETTE = ["#1a9850", "#66bd63", "#a6d96a", "#fee08b", "#fdae61", "#d73027", "#a50026", "#67001f"]
SERIES = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#db2777", "#65a30d"]
DASHES = ["dot", "dash", "dashdot", "longdash", "longdashdot"]
CONFIG = {"displaylogo": False, "responsive": True}
# plotly's d3 formats that match `number`: three significant digits as a percentage, counts with separators.
SHARE_D3, COUNT_D3 = ".3p", ",d"
INTERVALS = ("Brackets after a share or a ratio give its 95% interval: the Wilson score interval for a share "
             "(k of n), and for a ratio of two rates the exact conditional interval (given both groups' events, "
             "the Clopper-Pearson limits of the first group's part, mapped back to the ratio; events rare within "
             "each group). They describe the chance variation of a population of this size, not the model's "
             "assumptions.")

Kind = Literal["count", "share", "ratio", "points", "number", "text"]
# Every table column the report shows under a name of its own: header and how its numbers are shown.
COLUMNS: dict[str, tuple[str, Kind]] = {
    "": ("", "text"),
    "citizens": ("citizens", "count"),
    "innocents_hit": ("innocents who lost points", "count"),
    "hit_rate": ("share of the group hit", "share"),
    "hit_rate_ratio": ("hit, against the reference", "ratio"),
    "points_lost": ("points lost", "count"),
    "points_per_1000": ("points lost per 1,000 citizens", "number"),
    "pushed_down": ("pushed into a lower class", "count"),
    "pushed_rate": ("share pushed down", "share"),
    "pushed_rate_ratio": ("pushed down, against the reference", "ratio"),
    "weight": ("deduction weight (points)", "count"),
    "share": ("share of the group's weight", "share"),
    "held days": ("held days", "count"),
    "ratio": ("simulated / published", "number"),
    "published": ("published", "number"),
    "simulated": ("simulated", "number"),
    "day": ("day", "count"),
    "runs": ("runs", "count"),
    "events": ("events", "count"),
    "points": ("points", "points"),
    "score": ("score", "count"),
    "measure": ("measure", "text"),
    "first_day": ("from", "text"),
    "last_day": ("to", "text"),
    "confidence": ("match confidence", "number"),
}


class ReportError(SocialCreditError, ValueError):
    """A run folder the report cannot read; the message names the folder and what is missing."""


@dataclass
class _Run:
    """The report's view of a run (simulation.Run does the reading): its tables lazily."""

    path: Path

    def __post_init__(self) -> None:
        for name in ("manifest.json", "daily.parquet", "citizens.parquet"):
            if not (self.path / name).is_file():
                raise ReportError(f"{self.path}: not a run folder (no {name})")

    @cached_property
    def _run(self) -> Run:
        return Run.open(self.path)

    @property
    def manifest(self) -> Manifest:
        return self._run.manifest

    def dates(self, days: pl.Series) -> pl.Series:
        """Day numbers as the run's dates (the scenario's start date is day 0)."""
        return days.to_frame().select(self.manifest.calendar.dates(pl.col(days.name))).to_series()

    def date(self, day: int) -> str:
        """One day number as the run's ISO date."""
        return self.manifest.calendar.iso(day)

    @property
    def daily(self) -> pl.LazyFrame:
        return self._run.scan("daily")

    @property
    def citizens(self) -> pl.LazyFrame:
        return self._run.scan("citizens")

    @property
    def events(self) -> pl.LazyFrame | None:
        return self._run.scan("events")

    @property
    def all_events(self) -> bool:
        """Whether the events table holds every event of the run (not a sample, not missing)."""
        return self.events is not None and self.manifest.events == "all"

    @cached_property
    def policies(self) -> dict[str, Policy]:
        """Region -> the state policy scoring it (unscored regions left out), from the run's copies."""
        try:
            return {region: p for region, p in self._run.region_policies.items() if p is not None}
        except SimulationError as exc:
            raise ReportError(str(exc)) from None

    @cached_property
    def distinct_policies(self) -> list[Policy]:
        """Every policy of the run once: the regions' and the commercial one."""
        out = {p.name: p for p in self.policies.values()}
        commercial = self._run.commercial_policy
        if commercial is not None:
            out.setdefault(commercial.name, commercial)
        return list(out.values())

    @property
    def classes(self) -> list[str]:
        return m.class_columns(self.daily)

    @property
    def label(self) -> str:
        policies = ", ".join(sorted({p.name for p in self.policies.values()})) or "unscored"
        return f"{self.manifest.scenario.name} / {policies}"


@dataclass(frozen=True)
class _Note:
    """A remark beside a section's text: `info` says what a reader should know, `caveat` what limits it."""

    kind: Literal["info", "caveat"]
    text: str

    @property
    def label(self) -> str:
        return {"info": "Note", "caveat": "Caveat"}[self.kind]


@dataclass
class _Section:
    id: str
    title: str
    text: list[str]
    figures: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    notes: list[_Note] = field(default_factory=list)
    parts: list[_Section] = field(default_factory=list)  # titled parts of it (the lives)


def write_report(run_dir: str | Path, *, out: str | Path | None = None,
                 compare: str | Path | None = None, sweep: str | Path | None = None) -> Path:
    """Write the HTML report of the run in `run_dir` (optionally beside `compare`, and with the
    sensitivity table of the sweep folder `sweep`) and return its path."""
    run = _Run(Path(run_dir))
    other = _Run(Path(compare)) if compare is not None else None
    grid = _sweep(Path(sweep)) if sweep is not None else None
    sections = [_overview(run), _rollout(run), _distribution(run), _reasons(run), _consequences(run),
                _wrongful(run), _behaviour(run), _lives(run), _inequality(run), _audit(run), _compare(run, other),
                _sensitivity(grid), _record(run), _method(run)]
    sections = [s for s in sections if s is not None]
    env = Environment(loader=PackageLoader("socialcredit.analysis", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    man = run.manifest
    page = env.get_template("report.html.j2").render(
        title=f"Run report: {man.scenario.title}",
        subtitle=(f"{man.population:,} synthetic citizens standing for {man.represents:,} people "
                  f"({number(man.people_per_citizen)} each), {man.days} days from {_period(man)}, "
                  f"seed {man.seed}, policies: {run.label.split(' / ', 1)[1]}"),
        sections=sections, plotlyjs=get_plotlyjs())
    target = Path(out) if out is not None else run.path / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


# ----------------------------------------------------------------------------------------------
# numbers: one format for the whole report


def number(value: float | None, kind: Kind = "number") -> str:
    """The report's one format: counts with thousands separators, shares as percentages and ratios as
    factors (x1.50), both to three significant digits, points with their sign; "-" where missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "count":
        return f"{round(value):,}"
    if kind == "points":
        return f"{round(value):+,}"
    if kind == "share":
        return _significant(100 * value) + "%"
    if kind == "ratio":
        return "x" + ("\u221e" if math.isinf(value) else _significant(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return _significant(float(value))


def interval(value: float | None, low: float | None, high: float | None, kind: Kind = "share") -> str:
    """`value` and its 95% interval in brackets, "0.542% (0.498-0.590%)", "x10.2 (8.10-12.9)",
    "x5.00 (at least 1.20)" for an interval open to the top, "at least x1.20" for an infinite ratio;
    the value alone where there is no interval."""
    shown = number(value, kind)
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return shown
    if value is not None and math.isinf(value):  # a rate against a reference of none: only a bound
        return f"at least {number(low, kind)}"
    bare = [number(x, kind).removeprefix("x").removesuffix("%") for x in (low, high)]
    if math.isinf(high):
        return f"{shown} (at least {bare[0]})"
    unit = "%" if kind == "share" else ""
    return f"{shown} ({bare[0]}-{bare[1]}{unit})"


def _significant(x: float, digits: int = 3) -> str:
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:,.{decimals}f}"


def _share_of(k: int, n: int) -> str:
    """The share `k` of `n` with its Wilson interval."""
    return interval(k / n if n else None, *m.share_interval(k, n)) if n else "-"


# ----------------------------------------------------------------------------------------------
# helpers


def _period(man: Manifest) -> str:
    """The run's first and last dates."""
    return f"{man.calendar.iso(0)} to {man.calendar.iso(man.days - 1)}"


def _figure(fig: go.Figure, *, title: str, height: int = 380, **layout: Any) -> str:
    """A plotly figure that fills its card at any width, under an HTML title that wraps on a phone."""
    fig.update_layout(height=height, autosize=True, template="plotly_white",
                      margin={"l": 56, "r": 16, "t": 16, "b": 48}, legend={"orientation": "h", "y": -0.22},
                      hoverlabel={"namelength": -1}, **layout)
    # An id from the (unique) title instead of plotly's random one: the same run gives the same bytes.
    div_id = "plot-" + hashlib.sha1(title.encode()).hexdigest()[:12]
    plot = fig.to_html(full_html=False, include_plotlyjs=False, config=CONFIG, div_id=div_id,
                       default_width="100%", default_height=f"{height}px")
    return f'<p class="figure-title"><strong>{html.escape(title)}</strong></p>{plot}'


def distinct_colours(n: int) -> list[str]:
    """`n` colours a reader can tell apart: the report's series colours while they last, beyond that
    hues evenly round the wheel, neighbours alternating in lightness."""
    if n <= len(SERIES):
        return SERIES[:n]
    out = []
    for i in range(n):
        r, g, b = colorsys.hls_to_rgb(i / n, 0.36 if i % 2 else 0.56, 0.8)
        out.append(f"#{round(255 * r):02x}{round(255 * g):02x}{round(255 * b):02x}")
    return out


def _table(frame: pl.DataFrame, *, caption: str = "", flagged: str | None = None) -> str:
    """A table in a box of its own that scrolls sideways when it is wider than the screen; headers and
    number formats from COLUMNS."""
    shown = [c for c in frame.columns if c != flagged]
    kinds = {c: COLUMNS[c][1] if c in COLUMNS else _kind(frame.schema[c]) for c in shown}
    head = "".join(f"<th{_align(kinds[c])}>{html.escape(_header(c))}</th>" for c in shown)
    rows = []
    for row in frame.iter_rows(named=True):
        cls = ' class="flagged"' if flagged and row[flagged] else ""
        rows.append(f"<tr{cls}>{''.join(_cell(row[c], kinds[c]) for c in shown)}</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _header(column: str) -> str:
    return COLUMNS[column][0] if column in COLUMNS else column.replace("_", " ")


def _kind(dtype: pl.DataType) -> Kind:
    return "count" if dtype.is_integer() else "number" if dtype.is_float() else "text"


def _align(kind: Kind) -> str:
    return "" if kind == "text" else ' class="num"'


def _cell(value: Any, kind: Kind) -> str:
    align = _align(kind)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"<td{align}>{number(value, kind)}</td>"
    return f"<td{align}>{html.escape('-' if value is None else str(value))}</td>"


def _downgrades(run: _Run) -> list[str]:
    """How often wrongful events moved someone down a class (runs written before it was counted: nothing)."""
    if "wrongful_downgrades" not in run.daily.collect_schema().names():
        return []
    down, bottom = run.daily.select(pl.col("wrongful_downgrades", "wrongful_into_bottom").sum()).collect().row(0)
    return [f"Day by day, events they did not commit moved citizens down a class {down:,} times, {bottom:,} of "
            "them into the bottom class."]


def _against(groups: pl.DataFrame, count: str, ratio: str, verb: str) -> list[str]:
    """How innocents of each group but the reference (the first) fared against it, as a sentence."""
    if groups.height < 2:
        return []
    reference = groups["group"][0]
    rows = groups.select("group", count, ratio, f"{ratio}_low", f"{ratio}_high").rows()
    if rows[0][1] == 0:
        others = [f"{k:,} in '{g}'" for g, k, *_ in rows[1:] if k]
        return [f"No innocent of the reference group '{reference}' was {verb}, so no ratio to it can be given"
                + (f" ({', '.join(others)} were)." if others else ", nor was anyone in another group.")]
    parts = [f"{interval(r, lo, hi, 'ratio')} in '{g}'" for g, _, r, lo, hi in rows[1:]]
    return [f"Against the reference group '{reference}', innocents were {verb} {', '.join(parts)} as often."]


def _colours(run: _Run) -> dict[str, str]:
    out: dict[str, str] = {}
    for policy in run.policies.values():
        for i, c in enumerate(policy.classes):
            out.setdefault(c.name, c.colour or PALETTE[min(i, len(PALETTE) - 1)])
    return out


def _final(run: _Run) -> pl.DataFrame:
    """Each class at the end: citizens, share of the scored, and the share's interval."""
    shares = m.class_shares(run.daily)
    final = shares.filter(pl.col("day") == shares["day"].max())
    return m.with_share_intervals(final.with_columns(scored=pl.col("citizens").sum()), "citizens", "scored",
                                  "share")


def _share_in(final: pl.DataFrame, classes: list[str]) -> str:
    """The end share of `classes` with its interval."""
    k = int(final.filter(pl.col("class").cast(pl.String).is_in(classes))["citizens"].sum())
    return _share_of(k, int(final["citizens"].sum()))


def _bottom(run: _Run) -> list[str]:
    return sorted({p.class_names[-1] for p in run.policies.values()})


def _lowest(run: _Run) -> str:
    """The worst class that holds anyone at the end."""
    final = _final(run).filter(pl.col("citizens") > 0)
    return str(final["class"][-1]) if final.height else (run.classes or ["-"])[-1]


def _top(run: _Run) -> list[str]:
    return sorted({p.class_names[0] for p in run.policies.values()})


def _penalised_kinds(run: _Run) -> list[str]:
    kinds = {r.kind for p in run.policies.values() for r in p.rules if r.points < 0}
    return [k for k in KIND_NAMES if k in kinds]


def _events_note(run: _Run) -> _Note:
    mode = run.manifest.events
    if run.events is None or mode == "none":
        return _Note("caveat", "No event table in this run (recorded with --events none or absent): everything here "
                     "comes from the daily metrics and the final state of every citizen; plots of single events "
                     "and the lives of single citizens are left out.")
    if mode.startswith("sample:"):
        return _Note("caveat", f"Events were recorded as a {mode.removeprefix('sample:')} sample "
                     f"({run.manifest.events_written:,} rows): plots of single events show that sample.")
    return _Note("info", f"All {run.manifest.events_written:,} events were recorded.")


def _bars_with_intervals(frame: pl.DataFrame, x: str, k: str, n: str, *, colour: str | list[str], name: str = "",
                         what: str = "") -> go.Bar:
    """Bars of the share `k` of `n`, with Wilson error bars, each labelled with its value."""
    frame = m.with_share_intervals(frame.with_columns((pl.col(k) / pl.col(n)).alias("_share")), k, n, "_share")
    share = frame["_share"].fill_nan(None).to_list()
    low, high = frame["_share_low"].to_list(), frame["_share_high"].to_list()
    return go.Bar(
        x=frame[x].cast(pl.String), y=share, name=name, marker_color=colour,
        error_y={"type": "data", "symmetric": False, "color": "#374151", "thickness": 1,
                 "array": [None if s is None else h - s for s, h in zip(share, high, strict=True)],
                 "arrayminus": [None if s is None else s - lo for s, lo in zip(share, low, strict=True)]},
        text=[number(s, "share") for s in share], textposition="outside", cliponaxis=False,
        customdata=[[interval(s, lo, h), f"{a:,} of {b:,}"] for s, lo, h, a, b in
                    zip(share, low, high, frame[k], frame[n], strict=True)],
        hovertemplate=f"%{{x}}{what}: %{{customdata[0]}}<br>%{{customdata[1]}}<extra>{html.escape(name)}</extra>")


# ----------------------------------------------------------------------------------------------
# sections


def _overview(run: _Run) -> _Section:
    man = run.manifest
    shares = m.class_shares(run.daily)
    colours = _colours(run)
    fig = go.Figure()
    for klass in run.classes:
        part = shares.filter(pl.col("class") == klass)
        # A log axis keeps the small classes in sight beside the big one; an empty class has no point on it.
        fig.add_trace(go.Scatter(x=run.dates(part["day"]), y=part["share"].replace(0.0, None), name=klass,
                                 mode="lines", line={"width": 2, "color": colours.get(klass)},
                                 hovertemplate=f"%{{x|%Y-%m-%d}}: %{{y:{SHARE_D3}}} in {klass}<extra></extra>"))
    final = _final(run)
    bars = go.Figure(_bars_with_intervals(final, "class", "citizens", "scored", what=" at the end",
                                          colour=[colours.get(str(c), "#9ca3af") for c in final["class"]]))
    low = _lowest(run)
    facts = pl.DataFrame({
        "": ["population", "days", "dates", "seed", "scenario", "commercial score", "events", "runtime",
             "citizen-days per second"],
        "value": [f"{man.population:,}", str(man.days), _period(man), str(man.seed), man.scenario.name,
                  str(man.commercial_policy or "none"), man.events,
                  f"{number(man.timings['total_s'])} s", f"{man.citizen_days_per_s:,}"]})
    regions = pl.DataFrame({"region": list(man.policies),
                            "policy": [p or "unscored" for p in man.policies.values()]})
    return _Section("overview", "Overview", [
        f"{man.population:,} synthetic citizens of the scenario '{man.scenario.title}' were simulated "
        f"for {man.days} days, {_period(man)}, with seed {man.seed} (version {man.socialcredit}).",
        f"At the end, {_share_in(final, _bottom(run))} of the scored citizens are in the bottom class "
        f"({', '.join(_bottom(run))}); the lowest class anyone holds is {low} ({_share_in(final, [low])}). "
        "The charts show how the classes filled day by day (a log scale, so that the small classes show beside "
        "the large one) and the classes at the end.",
    ], figures=[_figure(fig, title="Class shares over time (scored citizens, log scale)", xaxis_title="date",
                        yaxis_title="share", yaxis_type="log", yaxis_tickformat="~%"),
                _figure(bars, title="Class shares at the end (log scale, 95% intervals)", yaxis_type="log",
                        yaxis_tickformat="~%", yaxis_title="share", showlegend=False)],
        tables=[_table(facts, caption="The run"), _table(regions, caption="Policies per region")],
        notes=[_events_note(run), _Note("info", INTERVALS)])


def _rollout(run: _Run) -> _Section | None:
    """The phases of a scenario whose regions join a scheme or change their cameras on dates."""
    calendar = run.manifest.calendar
    days = run.manifest.days
    steps = []
    for region in run.manifest.scenario.regions:
        for change in region.changes:
            day = calendar.day_of(change.date)
            what = []
            if change.policy:
                what.append(f"joins {change.policy}")
            if change.coverage:
                what.append("cameras: " + ", ".join(f"{p} {v:g}" for p, v in change.coverage.model_dump().items()))
            steps.append((change.date.isoformat(), day, region.name, "; ".join(what), change.note or ""))
    if not steps:
        return None
    table = pl.DataFrame(steps, schema=["date", "day", "region", "change", "note"], orient="row").sort("day", "region")
    bounds = [0, *sorted({d for _, d, *_ in steps if 0 < d < days}), days]
    classes = [f"class.{c}" for c in run.classes]
    per_day = (run.daily.group_by("day")
               .agg(scored=pl.sum_horizontal(classes).sum(), sightings=pl.col("sightings").sum(),
                    down=pl.col("wrongful_downgrades").sum())
               .sort("day").collect())
    population = run.manifest.population
    phases = []
    for first, last in itertools.pairwise(bounds):
        part = per_day.filter(pl.col("day").is_between(first, last - 1))
        phases.append({"from": calendar.iso(first), "to": calendar.iso(last - 1),
                       "scored share": number(part["scored"].mean() / population, "share"),
                       "sightings per 1,000 citizens a day": number(1000 * part["sightings"].mean() / population),
                       "wrongful moves down a class": number(part["down"].sum(), "count")})
    fig = go.Figure()
    dates = run.dates(per_day["day"])
    fig.add_trace(go.Scatter(x=dates, y=per_day["scored"] / population, name="scored share", mode="lines",
                             hovertemplate=f"%{{x|%Y-%m-%d}}: %{{y:{SHARE_D3}}} scored<extra></extra>"))
    fig.add_trace(go.Scatter(x=dates, y=per_day["sightings"] / population, name="sightings per citizen",
                             mode="lines", yaxis="y2",
                             hovertemplate="%{x|%Y-%m-%d}: %{y:.3r} sightings per citizen<extra></extra>"))
    for day in bounds[1:-1]:
        fig.add_vline(x=calendar.iso(day), line_dash="dot", line_color="#6b7280")
    return _Section("rollout", "Roll-out: the phases", [
        f"The scenario changes on {len(bounds) - 2} date(s): regions join a scheme, cameras are added. "
        "The table lists each change; the chart shows the share of citizens scored and the camera sightings "
        "per citizen day by day, a dotted line at each change; the second table sums up each phase."],
        figures=[_figure(fig, title="Scored share and camera sightings over time", xaxis_title="date",
                         yaxis_title="scored share", yaxis_tickformat=".0%",
                         yaxis2={"title": "sightings per citizen", "overlaying": "y", "side": "right"})],
        tables=[_table(table, caption="Changes by date"), _table(pl.DataFrame(phases), caption="Phases")])


def _sweep(folder: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    """A sweep folder's settings (sweep.json) and outcomes (outcomes.parquet)."""
    try:
        settings = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
        outcomes = pl.read_parquet(folder / "outcomes.parquet")
    except (OSError, ValueError) as exc:
        raise ReportError(f"--sweep {folder}: not a sweep folder ({exc})") from None
    return settings, outcomes


def _sensitivity(grid: tuple[dict[str, Any], pl.DataFrame] | None) -> _Section | None:
    """How the top class, and the bots in it, move with the settings a sweep varied."""
    if grid is None:
        return None
    settings, outcomes = grid
    keys = list(settings["grid"])
    table = (outcomes.group_by(keys, maintain_order=True)
             .agg(runs=pl.len(),
                  top=pl.col("top_share").mean(), top_lo=pl.col("top_share").min(), top_hi=pl.col("top_share").max(),
                  bots=pl.col("top_bot_share").mean(), volunteers=pl.col("top_volunteer_share").mean(),
                  bots_deployed=pl.col("bots_deployed").mean()))
    rows = pl.DataFrame([{
        **{k: str(r[k]) for k in keys}, "runs": r["runs"],  # settings as they were given
        "top-class share (seeds' range)": f"{number(r['top'], 'share')} ({number(r['top_lo'], 'share')} to "
                                          f"{number(r['top_hi'], 'share')})",
        "bot owners among them": "nobody at the top" if r["bots"] is None else number(r["bots"], "share"),
        "volunteers among them": "nobody at the top" if r["volunteers"] is None else number(r["volunteers"], "share"),
        "bots deployed": r["bots_deployed"]} for r in table.iter_rows(named=True)])
    return _Section("sensitivity", "Sensitivity: the top class and its bots", [
        f"A sweep of {outcomes.height} runs ({settings['population']:,} citizens x {settings['days']} days of "
        f"{settings['scenario']}, seeds {', '.join(map(str, settings['seeds']))}) varied {', '.join(keys)}. "
        "For each setting: the share of the scored citizens in their policy's top class at the end (mean, and "
        "the range across seeds), how many of them own a bot that collects the newspaper reward, and how many "
        "are dedicated volunteers, who earn the top class by weekly shifts (the honest route). Where the share "
        "falls to nothing without gaming, within these days the top class is reached only by the bots."],
        tables=[_table(rows, caption="Top class by setting")])


def _distribution(run: _Run) -> _Section:
    hist = m.score_histogram(run.citizens)
    fig = go.Figure()
    overall = hist.group_by("score_bin").agg(pl.col("citizens").sum()).sort("score_bin")
    bins = "score %{x} to %{customdata}: %{y:,} citizens"
    fig.add_trace(go.Bar(x=overall["score_bin"], y=overall["citizens"], name="all regions", marker_color="#9ca3af",
                         customdata=overall["score_bin"] + 9, hovertemplate=bins + "<extra>all regions</extra>"))
    regions = hist["region"].unique().sort()
    if len(regions) > 1:
        for region, colour in zip(regions, distinct_colours(len(regions)), strict=True):
            # Every bin, empty ones as gaps: a log axis has no zero, and a line must not bridge them.
            part = overall.select("score_bin").join(hist.filter(pl.col("region") == region), on="score_bin",
                                                    how="left")
            fig.add_trace(go.Scatter(x=part["score_bin"], y=part["citizens"], name=str(region), mode="lines+markers",
                                     marker={"size": 3}, line={"color": colour, "width": 1.5},
                                     customdata=part["score_bin"] + 9,
                                     hovertemplate=bins + f"<extra>{html.escape(str(region))}</extra>"))
    policies = sorted({p.name: p for p in run.policies.values()}.values(), key=lambda p: p.name)
    for i, policy in enumerate(policies):
        style = {"color": "#374151", "dash": DASHES[i % len(DASHES)]}
        for c in policy.classes:
            if c.min is not None:
                # Labelled on the line only where one policy draws them: two policies' labels collide.
                label = {"annotation_text": c.name, "annotation_position": "top", "annotation_textangle": -90,
                         "annotation_font_size": 11} if len(policies) == 1 else {}
                fig.add_vline(x=c.min, line_dash=style["dash"], line_color=style["color"], line_width=1, **label)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=style, name=f"{policy.name} class thresholds",
                                 hoverinfo="skip"))
    thresholds = pl.DataFrame([{"policy": p.name, **{c.name: f"from {c.min:,}" for c in p.classes[:-1]},
                                p.classes[-1].name: f"under {p.classes[-2].min:,}" if len(p.classes) > 1 else "all"}
                               for p in policies])
    scores = run.citizens.select(pl.col("score").median().alias("median"), pl.col("score").min().alias("min"),
                                 pl.col("score").max().alias("max")).collect()
    return _Section("distribution", "Score distribution at the end", [
        f"Final state scores in bins of 10 points, overall and per region (a log scale, so that the few at either "
        f"end show); the lines mark the class thresholds of the policies in the run (the table gives them). Median "
        f"{scores['median'].item()}, range {scores['min'].item()} to {scores['max'].item()}.",
        "Citizens of unscored regions have no state score and are left out.",
    ], figures=[_figure(fig, title="Final scores", height=440, xaxis_title="score",
                        yaxis_title="citizens (log scale)", yaxis_type="log", bargap=0.05)],
        tables=[_table(thresholds.fill_null("-"), caption="Class thresholds (score) of each policy")])


def _reasons(run: _Run) -> _Section:
    text = [
        "Why citizens sit in the bottom class: for each deduction rule, the citizens there who were scored under "
        "it, weighted by the rule's points, as a share of all such weight in their demographic group.",
        "A citizen counts once per rule they were scored under (the run keeps which kinds scored each citizen, "
        "not how often), so frequent small deductions are under-weighted.",
    ]
    notes = []
    depth = max((len(p.classes) for p in run.policies.values()), default=1)
    for from_bottom in range(depth):
        reasons = m.d_reasons(run.citizens, run.policies, by="group", from_bottom=from_bottom)
        if not reasons.is_empty():
            break
        names = sorted({p.class_names[-1 - from_bottom] for p in run.policies.values()
                        if len(p.classes) > from_bottom})
        notes.append(_Note("info", f"No citizen is in class {'/'.join(names)} at the end of this run"
                           + ("; the next class up is shown instead." if from_bottom + 1 < depth else ".")))
    if reasons.is_empty():
        return _Section("reasons", "Who falls into D and why", text, notes=notes)
    klass = "/".join(sorted({p.class_names[-1 - from_bottom] for p in run.policies.values()}))
    # Ties broken by rule id, so that the same run always gives the same bytes.
    top = (reasons.group_by("rule").agg(pl.col("weight").sum())
           .sort("weight", "rule", descending=[True, False]).head(10)["rule"])
    shown = reasons.filter(pl.col("rule").is_in(top.to_list()))
    fig = go.Figure()
    groups = shown["group"].unique().sort()
    for group, colour in zip(groups, distinct_colours(len(groups)), strict=True):
        part = shown.filter(pl.col("group") == group)
        fig.add_trace(go.Bar(y=part["rule"], x=part["share"], name=str(group), orientation="h", marker_color=colour,
                             customdata=part["citizens"],
                             hovertemplate=f"%{{y}}: %{{x:{SHARE_D3}}} of the group's deduction weight "
                                           f"(%{{customdata:,}} citizens)<extra>{html.escape(str(group))}</extra>"))
    first = reasons.group_by("rule").agg(pl.col("weight").sum(), pl.col("reason").min()).sort(
        "weight", "rule", descending=[True, False]).row(0, named=True)
    text.insert(1, f"The heaviest reason for class {klass}: '{first['rule']}' ({first['reason']}).")
    return _Section("reasons", "Who falls into D and why", text, figures=[_figure(
        fig, title=f"Top reasons for class {klass}, weighted by points, per group", height=440, barmode="group",
        xaxis_title="share of the group's deduction weight", xaxis_tickformat=".0%",
        yaxis={"categoryorder": "array", "categoryarray": list(reversed(top))})],
        tables=[_table(reasons.select("group", "rule", "citizens", "weight", "share").head(30),
                       caption=f"Class {klass} citizens scored under each rule (first 30 rows)")], notes=notes)


def _consequences(run: _Run) -> _Section:
    daily = m.consequences_daily(run.daily)
    # Weekly means, so that a last, short week does not look like a drop.
    weekly = daily.group_by(week=pl.col("day") // 7).agg(pl.exclude("day").mean()).sort("week")
    fig = go.Figure()
    shown = [(col, label) for col, label in m.CONSEQUENCES.items() if col in weekly.columns]
    for (col, label), colour in zip(shown, distinct_colours(len(shown)), strict=True):
        fig.add_trace(go.Scatter(x=run.dates(weekly["week"] * 7), y=weekly[col].replace(0.0, None), name=label,
                                 mode="lines+markers",
                                 line={"color": colour},
                                 hovertemplate=f"week of %{{x|%Y-%m-%d}}: %{{y:,.3r}} {label} a day<extra></extra>"))
    holders = m.holders_daily(run.daily)
    fig2 = go.Figure()
    columns = [c for c in holders.columns if c != "day"]
    for col, colour in zip(columns, distinct_colours(len(columns)), strict=True):
        kind, name = col.split(".", 1)
        fig2.add_trace(go.Scatter(x=run.dates(holders["day"]), y=holders[col].replace(0, None),
                                  name=f"{name} ({kind})", mode="lines",
                                  line={"color": colour, "dash": "solid" if kind == "benefit" else "dash"},
                                  hovertemplate=f"%{{x|%Y-%m-%d}}: %{{y:,}} citizens hold {name}<extra></extra>"))
    totals = daily.select(pl.exclude("day").sum()).row(0, named=True)
    return _Section("consequences", "Rewards and sanctions over time", [
        "What the classes did to lives, week by week: loans priced or refused, flights and trains blocked or "
        "discounted, stops at subway gates, jobs lost, children's admissions helped or hurt by a parent's class.",
        f"Over the run: {totals.get('jobs_lost', 0):,} jobs lost, {totals.get('flights_blocked', 0):,} flights "
        f"and {totals.get('trains_blocked', 0):,} train tickets blocked, {totals.get('gate_stops', 0):,} gate stops, "
        f"{totals.get('loans_discounted', 0):,} cheaper loans.",
    ], figures=[_figure(fig, title="Consequences per day (weekly means, log scale)", xaxis_title="week starting",
                        yaxis_title="per day", yaxis_type="log"),
                _figure(fig2, title="Citizens holding each benefit (solid) and sanction (dashed), log scale",
                        xaxis_title="date", yaxis_title="citizens", yaxis_type="log")],
        tables=[_table(_consequence_rules(run), caption="What each benefit and sanction does (the policies' effects)")])


def _consequence_rules(run: _Run) -> pl.DataFrame:
    """Every policy's benefits and sanctions as the engine compiles them: the simulator applied these."""
    rows = []
    for policy in run.distinct_policies:
        names = policy.class_names
        for c in CompiledConsequences.of(policy).items:
            covers = names[: c.level + 1] if c.benefit else names[c.level:]
            rows.append({"policy": policy.name, "consequence": c.name, "kind": "benefit" if c.benefit else "sanction",
                         "classes": ", ".join(covers), "effect": c.effect,
                         "parameters": ", ".join(f"{k} {v}" for k, v in c.params.model_dump().items()) or "-",
                         "held days": c.held_days})
    return pl.DataFrame(rows, schema=["policy", "consequence", "kind", "classes", "effect", "parameters", "held days"])


def _wrongful(run: _Run) -> _Section:
    groups = m.wrongful_by_group(run.citizens, run.policies)
    scored = pl.col("region").cast(pl.String).is_in(list(run.policies))
    kinds = m.wrongful_by_kind(run.daily.filter(scored))
    unscored = m.wrongful_by_kind(run.daily.filter(~scored))["wrongful"].sum()
    fig = go.Figure([
        _bars_with_intervals(groups, "group", "innocents_hit", "citizens", colour="#f59e0b",
                             name="innocents who lost points"),
        _bars_with_intervals(groups, "group", "pushed_down", "citizens", colour="#dc2626",
                             name="pushed into a lower class")])
    shown = kinds.filter(pl.col("wrongful") > 0)
    total_w, total_o = int(kinds["wrongful"].sum()), int(kinds["observed"].sum())
    text = [
        f"In scored regions, {total_w:,} of {total_o:,} observed events ({_share_of(total_w, total_o)}) were "
        f"attributed to someone who did not do it (camera false matches). {groups['innocents_hit'].sum():,} innocent "
        f"citizens lost {groups['points_lost'].sum():,} points; {groups['pushed_down'].sum():,} sit in a lower class "
        "only because of it.",
        *_downgrades(run),
        *_against(groups, "innocents_hit", "hit_rate_ratio", "hit"),
        *_against(groups, "pushed_down", "pushed_rate_ratio", "pushed down"),
    ]
    figures = [_figure(fig, title="Wrongful penalties per demographic group (share of the group, 95% intervals)",
                       barmode="group", yaxis_tickformat="~%", yaxis_rangemode="tozero")]
    if not shown.is_empty():
        figures.append(_figure(go.Figure(_bars_with_intervals(shown, "kind", "wrongful", "observed",
                                                              colour="#dc2626", what=" pinned on an innocent")),
                               title="Share of observed events pinned on an innocent, per kind (log scale)",
                               yaxis_type="log", yaxis_tickformat="~%"))
    notes = []
    if unscored:
        notes.append(_Note("info", f"{unscored:,} more events were pinned on innocents in unscored regions, where "
                           "they cost no points."))
    if run.events is not None:
        conf = m.camera_confidence(run.events)
        if not conf.is_empty():
            fig3 = go.Figure()
            for wrongful, colour in ((False, "#2563eb"), (True, "#dc2626")):
                part = conf.filter(pl.col("wrongful") == wrongful)
                name = f"{'wrongful (an innocent)' if wrongful else 'rightful'}: {part['events'].sum():,} events"
                fig3.add_trace(go.Bar(x=part["confidence"], y=part["share"], marker_color=colour, opacity=0.7,
                                      name=name, customdata=part["events"],
                                      hovertemplate=f"confidence %{{x}}: %{{y:{SHARE_D3}}} (%{{customdata:,}} "
                                                    f"events)<extra>{name}</extra>"))
            figures.append(_figure(fig3, title="Camera events by match confidence (share of each)",
                                   barmode="overlay", xaxis_title="match confidence", yaxis_tickformat="~%"))
        seen = m.misidentified_by_group(run.events, run.citizens)
        if seen["wrongful"].sum() == 0:
            notes.append(_no_misidentification(run, total_w + unscored))
        else:
            bar = _bars_with_intervals(seen, "group", "wrongful", "events", colour="#7c3aed", what=" misidentified")
            bar.update(text=["reference" if i == 0 else interval(r, lo, hi, "ratio") for i, (r, lo, hi) in
                             enumerate(seen.select("ratio", "ratio_low", "ratio_high").rows())])
            figures.append(_figure(go.Figure(bar), yaxis_tickformat="~%", yaxis_rangemode="tozero",
                                   title="Misidentification rate by group of the person really seen "
                                         "(labels: the ratio to the reference group)"))
            text.append("By whose face the camera saw, false matches follow the sensor model's error differential "
                        "(ratios to the reference group on the bars); the innocent who pays is a look-alike of "
                        "the same group.")
    else:
        notes.append(_Note("caveat", "Without an event table the confidence of wrongful camera matches and the error "
                           "rate by the group of the person really seen cannot be shown."))
    table = pl.DataFrame([{
        "group": str(r["group"]), "citizens": r["citizens"], "innocents_hit": r["innocents_hit"],
        "hit_rate": interval(r["hit_rate"], r["hit_rate_low"], r["hit_rate_high"]),
        "hit_rate_ratio": "reference" if i == 0 else interval(
            r["hit_rate_ratio"], r["hit_rate_ratio_low"], r["hit_rate_ratio_high"], "ratio"),
        "points_lost": r["points_lost"], "points_per_1000": r["points_per_1000"], "pushed_down": r["pushed_down"],
        "pushed_rate": interval(r["pushed_rate"], r["pushed_rate_low"], r["pushed_rate_high"]),
        "pushed_rate_ratio": "reference" if i == 0 else interval(
            r["pushed_rate_ratio"], r["pushed_rate_ratio_low"], r["pushed_rate_ratio_high"], "ratio"),
    } for i, r in enumerate(groups.iter_rows(named=True))])
    offers = _offers(run)
    return _Section("wrongful", "Wrongful penalties", text, figures=figures,
                    tables=[_table(table, caption="Per demographic group (ratios to the first group, 95% intervals)")],
                    notes=notes, parts=[offers] if offers is not None else [])


def _offers(run: _Run) -> _Section | None:
    """The in-store records of the commercial profiles and the offers they fed, with how many came from a
    look-alike's record (runs written before offers were counted: nothing)."""
    columns = ["instore_records", "instore_wrongful", "offers_made", "offers_taken", "offers_wrongful",
               "offers_wrongful_taken"]
    if not set(columns) <= set(run.daily.collect_schema().names()):
        return None
    records, records_w, made, taken, made_w, taken_w = (
        int(x) for x in run.daily.select(pl.col(columns).sum()).collect().row(0))
    title = "The commercial profile and its offers"
    if not records:
        return _Section("offers", title, [
            "No in-store camera recorded a platform customer in this run, so the commercial profiles fed no offers."])
    man = run.manifest

    def scaled(count: int) -> str:
        """A count of the run, scaled to the people it stands for."""
        return number(count * man.people_per_citizen, "count")

    text = [
        f"The e-commerce group's in-store cameras recorded {records:,} clothes that platform customers stopped at "
        f"or tried on (about {scaled(records)} for the {man.represents:,} people the run stands for), each into "
        f"the commercial profile of whoever the face match named; {records_w:,} of them, "
        f"{_share_of(records_w, records)}, went into a look-alike's profile.",
        f"The profiles fed {made:,} tailored offers online (about {scaled(made)} for the people the run stands "
        f"for), and {taken:,} were taken: {_share_of(taken - taken_w, made - made_w)} of those built on the "
        f"customer's own record, {_share_of(taken_w, made_w)} of those built on a look-alike's.",
    ]
    figures = []
    if made:
        text.append(f"{_share_of(made_w, made)} of the offers were built on someone else's behaviour: a "
                    "look-alike's in-store record.")
        origin = pl.DataFrame({"record": ["own record", "a look-alike's record"],
                               "taken": [taken - taken_w, taken_w], "offers": [made - made_w, made_w]})
        figures.append(_figure(go.Figure(_bars_with_intervals(origin, "record", "taken", "offers",
                                                              colour=["#2563eb", "#dc2626"], what=" taken")),
                               title="Offers taken, by whose in-store record fed them (95% intervals)",
                               yaxis_tickformat="~%", yaxis_rangemode="tozero", showlegend=False))
    return _Section("offers", title, text, figures=figures)


def _no_misidentification(run: _Run, wrongful_in_run: int) -> _Note:
    """Why the events show no misidentified face: none happened, or the sample missed them."""
    mode = run.manifest.events
    if mode.startswith("sample:") and wrongful_in_run:
        return _Note("caveat", f"The {mode.removeprefix('sample:')} sample of events holds none of the run's "
                     f"wrongful attributions ({wrongful_in_run:,}: a sample misses rare events), so the error rate by "
                     "the group of the person really seen cannot be shown; record all events (--events all) to see it.")
    return _Note("info", "No camera match in this run named the wrong person, so there is no error rate by the group "
                 "of the person really seen to show.")


def _behaviour(run: _Run) -> _Section:
    kinds = _penalised_kinds(run)
    figures = []
    text = ["How citizens adapt: acts they were penalised for become rarer (deterrence), complaints fall "
            "(self-censorship), and savvy citizens let a bot collect rewards (gaming)."]
    if kinds:
        det = m.deterrence(run.daily, kinds)
        figures.append(_figure(go.Figure(go.Bar(
            x=det["kind"], y=det["change"], marker_color=[
                "#dc2626" if k == KIND_NAMES[K_COMPLAINT] else "#2563eb" for k in det["kind"]],
            text=[_change(c) for c in det["change"]], textposition="outside", cliponaxis=False,
            customdata=[[number(a), number(b)] for a, b in zip(det["first_per_day"], det["last_per_day"], strict=True)],
            hovertemplate="%{x}: %{text} (%{customdata[0]} a day at first, %{customdata[1]} at the end)"
                          "<extra></extra>")),
            title="Deterrence: change in true acts per day, last 4 weeks vs. first 2", yaxis_tickformat="~%"))
    weekly = m.complaints_weekly(run.daily)
    figures.append(_figure(go.Figure(go.Scatter(
        x=run.dates(weekly["week"] * 7), y=weekly["index"], mode="lines+markers", line={"color": "#dc2626"},
        hovertemplate="week of %{x|%Y-%m-%d}: %{y:.3r} of the first weeks' complaints<extra></extra>")),
        title="Self-censorship: complaints per day (1.0 = the first two weeks)",
        xaxis_title="week starting", yaxis_title="index"))
    top = _top(run)
    bots = m.bots_among_top(run.citizens, top).row(0, named=True)
    everyone = run.citizens.filter(pl.col("class").is_not_null()).select(
        k=pl.col("bot").sum(), n=pl.len()).collect().row(0, named=True)
    figures.append(_figure(go.Figure(_bars_with_intervals(
        pl.DataFrame({"who": [f"in {'/'.join(top)}", "all scored citizens"],
                      "bots": [bots["top_bots"], everyone["k"]], "citizens": [bots["top_citizens"], everyone["n"]]}),
        "who", "bots", "citizens", colour=["#16a34a", "#9ca3af"], what=" run a bot")),
        title="Gaming: share of bot users (95% intervals)", yaxis_tickformat="~%", showlegend=False))
    text.append(f"Complaints now run at {number(weekly['index'][-1])} of their level in the first weeks. "
                + _bots_sentence(bots, top))
    return _Section("behaviour", "Behaviour change", text, figures=figures)


def _change(change: float | None) -> str:
    """A relative change, signed: "+12.5%", "-3.20%"."""
    return "-" if change is None or change != change else ("+" if change > 0 else "") + number(change, "share")


def _bots_sentence(bots: dict, top: list[str]) -> str:
    """Bot users' share of the top class against everyone's, with intervals; or that nobody got there."""
    if not bots["top_citizens"]:
        return (f"Nobody reached the top class ({'/'.join(top)}) by the end, so it holds no bot users; they are "
                f"{number(bots['population_share'], 'share')} of everyone.")
    # The scored population is the whole of it, not a sample: the ratio's interval is the top share's over it.
    spread = [x / bots["population_share"] if bots["population_share"] else math.nan
              for x in (bots["top_share_low"], bots["top_share_high"])]
    return (f"Bot users are {interval(bots['top_share'], bots['top_share_low'], bots['top_share_high'])} of the "
            f"top class ({bots['top_citizens']:,} citizens) against {number(bots['population_share'], 'share')} of "
            f"everyone ({interval(bots['ratio'], *spread, 'ratio')}).")


def _lives(run: _Run) -> _Section:
    title = "Lives"
    text = ["A few of the synthetic citizens, each picked from this run by a stated rule, and what the scheme did "
            "to them: their score day by day, replayed by the scoring engine from their own events, the events and "
            "consequences that moved it, and the policy's reasons (its reason codes)."]
    mode = run.manifest.events
    if run.events is None or mode == "none":
        return _Section("lives", title, text, notes=[_Note("caveat", (
            "This run kept no table of events (simulated with --events none), and a life is made of its events: "
            "no citizen's story can be replayed. Simulate with --events all to see them."))])
    if not run.all_events:
        return _Section("lives", title, text, notes=[_Note("caveat", (
            f"This run kept only a {mode.removeprefix('sample:')} sample of its events: a life replayed from a "
            "sample would miss most of what happened to it, so none is shown. Simulate with --events all to "
            "see them."))])
    if not run.policies:
        return _Section("lives", title, text, notes=[_Note("info", "No region of this run is scored: nobody has "
                                                           "a score to follow.")])
    chosen = choose_lives(run.citizens, run.events, run.policies)
    ids = [c for _, c in chosen if c is not None]
    people = run.citizens.filter(pl.col("citizen_id").is_in(ids)).collect()
    events = run.events.filter(pl.col("citizen_id").is_in(ids)).collect()
    how = pl.DataFrame({"life": [r.title for r, _ in chosen], "chosen as": [r.rule for r, _ in chosen],
                        "citizen": [c or "nobody fits" for _, c in chosen]})
    parts = []
    for role, citizen_id in chosen:
        if citizen_id is None:
            parts.append(_Section(f"life-{role.id}", role.title, [role.nobody]))
            continue
        citizen = people.filter(pl.col("citizen_id") == citizen_id).row(0, named=True)
        life = replay_life(role, citizen, run.policies[str(citizen["region"])],
                           events.filter(pl.col("citizen_id") == citizen_id), days=run.manifest.days)
        parts.append(_life(run, life))
    return _Section("lives", title, text, tables=[_table(how, caption="How each life was chosen (ties: the "
                                                          "smallest citizen id; nobody is chosen twice)")],
                    parts=parts)


def _life(run: _Run, life: Life) -> _Section:
    """One citizen's story: who they are, their score over time with the events that moved it, what it cost."""
    c, policy, scores, events = life.citizen, life.policy, life.scores, life.events
    last = run.manifest.days - 1
    lowest = scores.sort("score", "day").row(0, named=True)
    highest = scores.sort("score", "day", descending=[True, False]).row(0, named=True)
    counted = events.filter(pl.col("status").is_in(["counted", "expired"]))
    traits = [f"{c['age']} years old at the end", "a man" if c["male"] else "a woman",
              "urban" if c["urban"] else "rural", f"income decile {c['income_decile']} (0 = poorest)",
              f"demographic group '{c['group']}'", f"region '{c['region']}', scored by {policy.name}"]
    traits += ["runs a bot that visits the party newspaper's site"] * bool(c["bot"])
    traits += ["volunteers every week"] * bool(c["volunteer"])
    text = [f"Chosen as {life.role.rule}.",
            f"{c['citizen_id']}: " + ", ".join(traits) + ".",
            f"Scored from {run.date(scores['day'][0])} at {scores['score'][0]:,} ({scores['class'][0]}); on "
            f"{run.date(last)}, at the end of the run, {scores['score'][-1]:,} ({scores['class'][-1]}), after "
            f"{events.height:,} events of which {counted.height:,} counted. Lowest {lowest['score']:,} on "
            f"{run.date(lowest['day'])}, highest {highest['score']:,} on {run.date(highest['day'])}."]
    wrongful = events.filter(pl.col("wrongful"))
    if wrongful.height:
        seen = sorted(set(wrongful["actor_id"].drop_nulls()))
        text.append(f"{wrongful.height:,} of these events were done by someone else and pinned on them by a camera's "
                    f"false match ({', '.join(seen[:5])}{' and others' if len(seen) > 5 else ''} were the people "
                    f"really seen); they moved the score by {number(int(wrongful['points'].sum()), 'points')} points.")
    # Consequences that came and went together are named together.
    held = life.consequences.group_by("kind", "first_day", "last_day", maintain_order=True).agg(pl.col("consequence"))
    text.append("What the classes brought: " + "; ".join(
        f"{', '.join(r['consequence'])} ({r['kind']}{'s' if len(r['consequence']) > 1 else ''}) from "
        f"{run.date(r['first_day'])} to " + ("the end of the run" if r["last_day"] == last else run.date(r["last_day"]))
        for r in held.iter_rows(named=True)) + "." if held.height else
        "No benefit or sanction of the policy reached them.")
    tables = [_table(life.factors, caption="Reason codes: the policy's rules behind the score at the end")]
    turns = _turning_points(run, life)
    if turns.height:
        tables.append(_table(turns, caption="Every change of class, with the events of that day"))
    return _Section(f"life-{life.role.id}", f"{life.role.title}: {c['citizen_id']}", text,
                    figures=[_life_figure(run, life)], tables=tables)


def _turning_points(run: _Run, life: Life) -> pl.DataFrame:
    """Each day the class changed: the date, from and to, the score, and what happened that day."""
    rows = []
    scores = life.scores
    for before, now in itertools.pairwise(scores.iter_rows(named=True)):
        if before["class"] == now["class"]:
            continue
        that_day = life.events.filter(pl.col("day") == now["day"])
        what = "; ".join(f"{k} {number(p, 'points')}" + (" (false match)" if w else "")
                         + ("" if st == "counted" else f" ({st})")
                         for k, p, w, st in that_day.select("kind", "points", "wrongful", "status").rows())
        what = what or "points of earlier events expired"
        rows.append((run.date(now["day"]), f"{before['class']} to {now['class']}", now["score"], what))
    return pl.DataFrame(rows, schema={"date": pl.String, "class": pl.String, "score": pl.Int64,
                                      "events that day": pl.String}, orient="row")


def _life_figure(run: _Run, life: Life) -> str:
    """The score as a step line over the run's dates, the events as markers on it, the class thresholds."""
    last = run.manifest.days - 1
    scores = life.scores
    steps = pl.concat([scores, scores.tail(1).with_columns(day=pl.lit(last, pl.Int64))]) \
        if scores["day"][-1] < last else scores
    fig = go.Figure(go.Scatter(x=run.dates(steps["day"]), y=steps["score"], mode="lines", name="score",
                               line={"shape": "hv", "color": "#1f2937", "width": 2},
                               customdata=steps["class"],
                               hovertemplate="%{x|%Y-%m-%d}: score %{y:,} (%{customdata})<extra></extra>"))
    # Each event sits on the score at the end of its day.
    at = life.events.with_columns(pl.col("day").cast(pl.Int64)).join_asof(scores.select("day", "score"), on="day",
                                                                           strategy="backward")
    kinds = (("false match (someone else's act)", pl.col("wrongful"), "#dc2626", "x"),
             ("raised the score", ~pl.col("wrongful") & (pl.col("points") > 0), "#16a34a", "triangle-up"),
             ("lowered the score", ~pl.col("wrongful") & (pl.col("points") < 0), "#2563eb", "triangle-down"),
             ("did not count", ~pl.col("wrongful") & (pl.col("points") == 0), "#9ca3af", "circle-open"))
    for name, which, colour, symbol in kinds:
        part = at.filter(which)
        if part.is_empty():
            continue
        fig.add_trace(go.Scatter(
            x=run.dates(part["day"]), y=part["score"], mode="markers", name=name,
            marker={"color": colour, "symbol": symbol, "size": 8},
            customdata=[[k, s or "-", number(conf), number(p, "points"), st, reason or "no rule"] for k, s, conf, p, st,
                        reason in part.select("kind", "source", "confidence", "points", "status", "reason").rows()],
            hovertemplate="%{x|%Y-%m-%d}: %{customdata[0]} reported by %{customdata[1]} (confidence "
                          "%{customdata[2]})<br>%{customdata[3]} points, %{customdata[4]}<br>%{customdata[5]}"
                          f"<extra>{name}</extra>"))
    # The score's own range, so that a few points show; the thresholds within it are drawn.
    pad = max(20, (scores["score"].max() - scores["score"].min()) // 10)
    low, high = scores["score"].min() - pad, scores["score"].max() + pad
    for klass in [k for k in life.policy.classes[:-1] if low <= k.min <= high]:
        fig.add_hline(y=klass.min, line_dash="dot", line_color="#9ca3af", line_width=1,
                      annotation_text=f"{klass.name} from {klass.min:,}", annotation_position="top left",
                      annotation_font_size=10, annotation_font_color="#6b7280")
    return _figure(fig, title=f"{life.role.title}: the score of {life.citizen['citizen_id']} over time",
                   height=360, xaxis_title="date", yaxis_title="score", yaxis_range=[low, high])


def _classes_by(run: _Run, frame: pl.DataFrame, column: str, title: str, label: str) -> str:
    """Each class's share of every value of `column`, a line per class on a log scale (the small classes
    stay in sight), its 95% interval on hover."""
    colours = _colours(run)
    frame = m.with_share_intervals(frame.with_columns(total=pl.col("citizens").sum().over(column)),
                                   "citizens", "total", "share")
    order = [str(v) for v in frame[column].unique().sort()]
    fig = go.Figure()
    for klass in run.classes:
        part = frame.filter(pl.col("class") == klass)
        fig.add_trace(go.Scatter(
            x=part[column].cast(pl.String), y=part["share"], name=klass, mode="lines+markers",
            line={"color": colours.get(klass)},
            customdata=[[interval(s, lo, hi), f"{k:,} of {n:,}"] for s, lo, hi, k, n in part.select(
                "share", "share_low", "share_high", "citizens", "total").rows()],
            hovertemplate=f"{label} %{{x}}: %{{customdata[0]}} in {klass}<br>%{{customdata[1]}}<extra></extra>"))
    return _figure(fig, title=title, yaxis_type="log", yaxis_tickformat="~%", yaxis_title="share (log scale)",
                   xaxis={"categoryorder": "array", "categoryarray": order, "type": "category", "title": label})


def _inequality(run: _Run) -> _Section:
    people = m.with_age_band(run.citizens).with_columns(
        area=pl.when(pl.col("urban")).then(pl.lit("urban")).otherwise(pl.lit("rural")))
    income = m.class_by(people, "income_decile")
    figures = [_classes_by(run, income, "income_decile", "Class by income decile (0 = poorest)", "income decile"),
               _classes_by(run, m.class_by(people, "age_band"), "age_band", "Class by age", "age"),
               _classes_by(run, m.class_by(people, "area"), "area", "Class: urban and rural", "area")]
    low = _lowest(run)
    in_decile = income.group_by("income_decile").agg(
        k=pl.col("citizens").filter(pl.col("class") == low).sum(), n=pl.col("citizens").sum())

    def share_in(decile: int) -> str:
        row = in_decile.filter(pl.col("income_decile") == decile)
        return _share_of(int(row["k"].sum()), int(row["n"].sum()))

    text = [f"In the poorest income decile {share_in(0)} are in class {low} (the lowest class anyone holds at "
            f"the end), in the richest {share_in(9)}. "
            "Income shapes the acts that are scored (overdue bills, lawsuits, organic food), and job losses in D "
            "lower income further. The charts show each class's share of every group on a log scale, so that the "
            "small classes show beside the large one."]
    notes = []
    ages = m.applicant_ages(run.manifest.days, run.manifest.scenario.consequences.admission_day)
    if ages:
        order = {c: i for i, c in enumerate(run.classes)}
        adm = (m.admission_by_parent_class(run.citizens, ages).filter(pl.col("parent_class").is_not_null())
               .sort(pl.col("parent_class").replace_strict(order, default=len(order))))
        bar = _bars_with_intervals(adm, "parent_class", "admitted", "applicants", what=" admitted",
                                   colour=[_colours(run).get(c, "#9ca3af") for c in adm["parent_class"]])
        bar.update(text=[f"{a:,} of {n:,}" for a, n in zip(adm["admitted"], adm["applicants"], strict=True)])
        figures.append(_figure(go.Figure(bar), yaxis_tickformat="~%", yaxis_rangemode="tozero",
                               title="Children's university admission by parent's class (95% intervals)"))
        text.append("Admission rate of those who applied at 18, by their parent's class at the end of the run "
                    "(the class on admission day may differ); the bars say how many of how many.")
    else:
        notes.append(_Note("info", f"No admission round fell within these {run.manifest.days} days (admission day "
                           f"{run.manifest.scenario.consequences.admission_day}), so parents' class against "
                           "children's admission cannot be shown."))
    return _Section("inequality", "Inequality", text, figures=figures, notes=notes)


def _audit(run: _Run) -> _Section:
    tables, counts = [], []
    for policy in run.distinct_policies:
        audit = audit_policy(policy)
        items = audit.items.with_columns(flags=pl.col("flags").list.join(", "),
                                         flagged=pl.col("flags").list.len() > 0)
        tables.append(_table(items, caption=f"Audit of policy '{policy.name}'", flagged="flagged"))
        counts.append((policy.name, audit.flag_counts))
    fig = go.Figure()
    for (name, flag_counts), colour in zip(counts, distinct_colours(len(counts)), strict=True):
        fig.add_trace(go.Bar(x=list(flag_counts), y=list(flag_counts.values()), name=name, marker_color=colour,
                             text=list(flag_counts.values()), textposition="outside", cliponaxis=False,
                             hovertemplate=f"%{{x}}: %{{y:,}} items of {html.escape(name)}<extra></extra>"))
    legend = pl.DataFrame({"flag": list(FLAGS), "meaning": list(FLAGS.values())})
    return _Section("audit", "Policy audit", [
        "Every rule and consequence of every policy in the run, flagged where a regulator would question it "
        "(the same table as `socialcredit audit`).",
        "Flagged rows are shaded.",
    ], figures=[_figure(fig, title="Flagged items per policy", barmode="group", yaxis_title="items")],
        tables=[_table(legend, caption="Flags"), *tables])


def _summary(run: _Run) -> dict[str, tuple[float, Kind]]:
    """The measures two runs are compared by, each with how it is shown."""
    final = _final(run)
    kinds = m.wrongful_by_kind(run.daily.filter(pl.col("region").cast(pl.String).is_in(list(run.policies))))
    groups = m.wrongful_by_group(run.citizens, run.policies)
    bots = m.bots_among_top(run.citizens, _top(run)).row(0, named=True)
    totals = m.consequences_daily(run.daily).select(pl.exclude("day").sum()).row(0, named=True)
    scored = max(int(groups["citizens"].sum()), 1)
    return {
        "share in the top class": (final.filter(pl.col("class").cast(pl.String).is_in(_top(run)))["share"].sum(),
                                   "share"),
        "share in the bottom class": (final.filter(
            pl.col("class").cast(pl.String).is_in(_bottom(run)))["share"].sum(), "share"),
        "wrongful share of observed events": (kinds["wrongful"].sum() / max(kinds["observed"].sum(), 1), "share"),
        "innocents who lost points per 1,000": (1000 * groups["innocents_hit"].sum() / scored, "number"),
        "pushed down by false matches per 1,000": (1000 * groups["pushed_down"].sum() / scored, "number"),
        "bot users' share of the top class": (bots["top_share"] or 0.0, "share"),
        "complaints vs. first weeks": (m.complaints_weekly(run.daily)["index"][-1], "number"),
        **{label: (float(totals.get(col, 0)), "count") for col, label in m.CONSEQUENCES.items()},
    }


def _difference(d: float, kind: Kind) -> str:
    """A signed difference: shares in percentage points, other measures in their own format."""
    sign = "+" if d > 0 else ""
    return f"{sign}{number(100 * d)} points" if kind == "share" else sign + number(d, kind)


def _compare(run: _Run, other: _Run | None) -> _Section:
    title = "Policies side by side"
    if other is None:
        return _Section("compare", title, [
            "Run the report with --compare OTHER_RUN_DIR to set two runs of the same population and seed side by "
            "side (e.g. the same scenario under taz-2018 and under accountable)."])
    a, b = _summary(run), _summary(other)
    table = pl.DataFrame({"measure": list(a), run.label: [number(v, k) for v, k in a.values()],
                          other.label: [number(v, k) for v, k in b.values()],
                          "difference": [_difference(b[key][0] - a[key][0], a[key][1]) for key in a]})
    colours = distinct_colours(2)
    fig = go.Figure([_bars_with_intervals(_final(r), "class", "citizens", "scored", colour=colour, name=r.label,
                                          what=" at the end") for r, colour in zip((run, other), colours, strict=True)])
    fig2 = go.Figure()
    for r, colour in zip((run, other), colours, strict=True):
        shares = m.class_shares(r.daily).filter(pl.col("class").cast(pl.String).is_in(_bottom(r)))
        per_day = shares.group_by("day").agg(pl.col("share").sum()).sort("day")
        fig2.add_trace(go.Scatter(x=r.dates(per_day["day"]), y=per_day["share"], name=r.label, mode="lines",
                                  line={"color": colour},
                                  hovertemplate=f"%{{x|%Y-%m-%d}}: %{{y:{SHARE_D3}}} in the bottom class"
                                                f"<extra>{html.escape(r.label)}</extra>"))
    notes = []
    for key in ("population", "seed", "days"):
        mine, theirs = getattr(run.manifest, key), getattr(other.manifest, key)
        if mine != theirs:
            notes.append(_Note("caveat", f"The runs differ in {key} ({mine} vs. {theirs}): differences "
                               "are not only the policies'."))
    pushed = "pushed down by false matches per 1,000"
    return _Section("compare", title, [
        f"This run ({run.label}) beside {other.path.name} ({other.label}): the same measures, and the difference "
        "(second minus first).",
        f"Bottom class at the end: {_share_in(_final(run), _bottom(run))} vs. "
        f"{_share_in(_final(other), _bottom(other))}; pushed down by false matches: {number(a[pushed][0])} vs. "
        f"{number(b[pushed][0])} per 1,000.",
    ], figures=[_figure(fig, title="Class shares at the end in both runs (log scale, 95% intervals)", barmode="group",
                        yaxis_type="log", yaxis_tickformat="~%"),
                _figure(fig2, title="Share in the bottom class over time", xaxis_title="date",
                        yaxis_tickformat="~%", yaxis_rangemode="tozero")],
        tables=[_table(table, caption="Key measures")], notes=notes)


def _record(run: _Run) -> _Section:
    comparison = compare_run(run.path, load_targets())
    counted = [r for r in comparison.rows if r.status != "not covered"]
    within = sum(r.status == "within" for r in counted)
    return _Section("record", "How this run compares with the published record", [
        f"The run beside the published figures of '{comparison.targets.title}' (the same table as "
        "`socialcredit validate --run`). Counts are scaled from the sample to the "
        f"{comparison.targets.represents:,} people the figures describe: each simulated citizen stands for "
        f"{comparison.scale:,.0f} of them; the 95% interval is the sample's (exact Poisson limits of the count).",
        f"{within} of {len(counted)} targets the run covers are within their tolerance (a factor: 1.5 for a "
        "figure the source states, 2 for a derived or weak one). \"Not modelled\" marks a figure the model "
        "cannot produce yet; \"not covered\" one outside the run's dates.",
    ], tables=[_table(comparison.frame().with_columns(flagged=pl.col("status") != "within"),
                      caption="Targets (docs/sources.md names each source); rows not within their tolerance are shaded",
                      flagged="flagged")])


def _method(run: _Run) -> _Section:
    scenario = run.manifest.scenario.model_dump(mode="json", by_alias=True)
    sources = _sources(scenario["name"])
    rows = [(section, key, json.dumps(value), sources.get((section, key), "default of the simulator"))
            for section in ("population", "sensors", "behaviour", "consequences")
            for key, value in scenario.get(section, {}).items() if key not in ("groups", "rates")]
    rows += [("population", f"group {g['name']}", f"share {g['share']}, false-match x{g['fmr_multiplier']}",
              sources.get(("population.groups", "fmr_multiplier"), ""))
             for g in scenario["population"].get("groups", [])]
    params = pl.DataFrame(rows, schema={"section": pl.String, "parameter": pl.String, "value": pl.String,
                                        "source": pl.String}, orient="row")
    return _Section("method", "Method", [
        "Simulated: a synthetic population (census 2020 shares of age, sex and urban residence by default), "
        "behaviour by kind with daily rates, sensors that observe acts (face-recognition cameras at streets, malls "
        "and subways; platforms; agencies) and attribute them, sometimes to the wrong person, the policies' scoring "
        "engine, and consequences that feed back (deterrence, conformity, self-censorship, bots, job loss).",
        f"Defaults come from the scenario '{scenario['name']}'; its TOML file names the source next to every value: "
        "the taz report 2018, Rongcheng's published measures, the 7th national census 2020, NIST FRVT error rates, "
        "or ASSUMPTION where no source exists. The values used in this run are listed below with that note "
        "(read from the preset; a value changed with --set keeps the preset's note).",
        "Boundary: every citizen is synthetic. Face recognition is a sensor model with measured error rates; no image "
        "of a real person is processed and no real speech is classified.",
    ], tables=[_table(params, caption="Parameters of this run")])


def _sources(name: str) -> dict[tuple[str, str], str]:
    """(section, key) -> the comment beside the value in the scenario preset (empty for a scenario file)."""
    if name not in list_scenarios():
        return {}
    text = resources.files(SCENARIOS).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    out: dict[tuple[str, str], str] = {}
    section = ""
    for line in text.splitlines():
        if header := re.match(r"^\[+([\w.-]+)\]+", line):
            section = header.group(1)
        elif item := re.match(r"^([\w-]+)\s*=.*?#\s*(.+)$", line):
            out.setdefault((section, item.group(1)), item.group(2).strip())
    return out
