"""The HTML report of a run: eleven sections of plots and short text (a twelfth, the roll-out, for a
scenario whose regions change on dates), one self-contained file."""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape
from plotly.offline import get_plotlyjs

from socialcredit.analysis import _metrics as m
from socialcredit.analysis._audit import FLAGS, audit_policy
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
CONFIG = {"displaylogo": False, "responsive": True}


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

    @property
    def daily(self) -> pl.LazyFrame:
        return self._run.scan("daily")

    @property
    def citizens(self) -> pl.LazyFrame:
        return self._run.scan("citizens")

    @property
    def events(self) -> pl.LazyFrame | None:
        return self._run.scan("events")

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


@dataclass
class _Section:
    id: str
    title: str
    text: list[str]
    figures: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_report(run_dir: str | Path, *, out: str | Path | None = None,
                 compare: str | Path | None = None, sweep: str | Path | None = None) -> Path:
    """Write the HTML report of the run in `run_dir` (optionally beside `compare`, and with the
    sensitivity table of the sweep folder `sweep`) and return its path."""
    run = _Run(Path(run_dir))
    other = _Run(Path(compare)) if compare is not None else None
    grid = _sweep(Path(sweep)) if sweep is not None else None
    sections = [_overview(run), _rollout(run), _distribution(run), _reasons(run), _consequences(run),
                _wrongful(run), _behaviour(run), _inequality(run), _audit(run), _compare(run, other),
                _sensitivity(grid), _record(run), _method(run)]
    sections = [s for s in sections if s is not None]
    env = Environment(loader=PackageLoader("socialcredit.analysis", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    man = run.manifest
    page = env.get_template("report.html.j2").render(
        title=f"Run report: {man.scenario.title}",
        subtitle=(f"{man.population:,} synthetic citizens standing for {man.represents:,} people "
                  f"({man.people_per_citizen:,.1f} each), {man.days} days from {_period(man)}, "
                  f"seed {man.seed}, policies: {run.label.split(' / ', 1)[1]}"),
        sections=sections, plotlyjs=get_plotlyjs())
    target = Path(out) if out is not None else run.path / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


# ----------------------------------------------------------------------------------------------
# helpers


def _period(man: Manifest) -> str:
    """The run's first and last dates."""
    return f"{man.calendar.iso(0)} to {man.calendar.iso(man.days - 1)}"

def _figure(fig: go.Figure, *, title: str, height: int = 380, **layout: Any) -> str:
    fig.update_layout(title=title, height=height, template="plotly_white",
                      margin={"l": 60, "r": 20, "t": 50, "b": 50}, legend={"orientation": "h", "y": -0.2},
                      **layout)
    # An id from the (unique) title instead of plotly's random one: the same run gives the same bytes.
    div_id = "plot-" + hashlib.sha1(title.encode()).hexdigest()[:12]
    return fig.to_html(full_html=False, include_plotlyjs=False, config=CONFIG, div_id=div_id)


def _table(frame: pl.DataFrame, *, caption: str = "", flagged: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns if c != flagged)
    rows = []
    for row in frame.iter_rows(named=True):
        cls = ' class="flagged"' if flagged and row[flagged] else ""
        cells = "".join(_cell(v) for c, v in row.items() if c != flagged)
        rows.append(f"<tr{cls}>{cells}</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        shown = "-" if value != value else f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
        return f'<td class="num">{shown}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value:,}</td>'
    return f"<td>{html.escape('-' if value is None else str(value))}</td>"


def _downgrades(run: _Run) -> list[str]:
    """How often wrongful events moved someone down a class (runs written before it was counted: nothing)."""
    if "wrongful_downgrades" not in run.daily.collect_schema().names():
        return []
    down, bottom = run.daily.select(pl.col("wrongful_downgrades", "wrongful_into_bottom").sum()).collect().row(0)
    return [f"Day by day, events they did not commit moved citizens down a class {down:,} times, {bottom:,} of "
            "them into the bottom class."]


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.{digits}f}%"


def _ratios(groups: pl.DataFrame, column: str) -> str:
    """'x0.8 in ten-fold, x1.5 in hundred-fold' for every group but the reference (the first)."""
    parts = [f"{'n/a' if r is None or r != r else f'x{r:.2f}'} in '{g}'"
             for g, r in zip(groups["group"][1:], groups[column][1:], strict=True)]
    return ", ".join(parts) or "n/a"


def _colours(run: _Run) -> dict[str, str]:
    out: dict[str, str] = {}
    for policy in run.policies.values():
        for i, c in enumerate(policy.classes):
            out.setdefault(c.name, c.colour or PALETTE[min(i, len(PALETTE) - 1)])
    return out


def _final(run: _Run) -> pl.DataFrame:
    shares = m.class_shares(run.daily)
    return shares.filter(pl.col("day") == shares["day"].max())


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


def _events_note(run: _Run) -> str:
    mode = run.manifest.events
    if run.events is None or mode == "none":
        return ("No event table in this run (recorded with --events none or absent): everything here comes "
                "from the daily metrics and the final state of every citizen; plots of single events are left out.")
    if mode.startswith("sample:"):
        return (f"Events were recorded as a {mode.removeprefix('sample:')} sample "
                f"({run.manifest.events_written:,} rows): plots of single events show that sample.")
    return f"All {run.manifest.events_written:,} events were recorded."


# ----------------------------------------------------------------------------------------------
# sections


def _overview(run: _Run) -> _Section:
    man = run.manifest
    shares = m.class_shares(run.daily)
    colours = _colours(run)
    fig = go.Figure()
    for klass in run.classes:
        part = shares.filter(pl.col("class") == klass)
        fig.add_trace(go.Scatter(x=run.dates(part["day"]), y=part["share"], name=klass, stackgroup="classes",
                                 line={"width": 0.5, "color": colours.get(klass)}))
    final = _final(run)
    d_share = final.filter(pl.col("class").cast(pl.String).is_in(_bottom(run)))["share"].sum()
    low = _lowest(run)
    low_share = final.filter(pl.col("class").cast(pl.String) == low)["share"].sum()
    facts = pl.DataFrame({
        "": ["population", "days", "dates", "seed", "scenario", "commercial score", "events", "runtime",
             "citizen-days per second"],
        "value": [f"{man.population:,}", str(man.days), _period(man), str(man.seed), man.scenario.name,
                  str(man.commercial_policy or "none"), man.events,
                  f"{man.timings['total_s']:.1f} s", f"{man.citizen_days_per_s:,}"]})
    regions = pl.DataFrame({"region": list(man.policies),
                            "policy": [p or "unscored" for p in man.policies.values()]})
    return _Section("overview", "Overview", [
        f"{man.population:,} synthetic citizens of the scenario '{man.scenario.title}' were simulated "
        f"for {man.days} days, {_period(man)}, with seed {man.seed} (version {man.socialcredit}).",
        f"At the end, {_pct(d_share)} of the scored citizens are in the bottom class ({', '.join(_bottom(run))}); "
        f"the lowest class anyone holds is {low} ({_pct(low_share, 2)}). The chart shows how the classes filled "
        "day by day.",
    ], figures=[_figure(fig, title="Class shares over time (scored citizens)",
                        xaxis_title="date", yaxis_title="share", yaxis_tickformat=".0%")],
        tables=[_table(facts, caption="The run"), _table(regions, caption="Policies per region")],
        notes=[_events_note(run)])


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
                       "scored share": _pct(part["scored"].mean() / population),
                       "sightings per 1,000 citizens a day": f"{1000 * part['sightings'].mean() / population:.1f}",
                       "wrongful moves down a class": f"{int(part['down'].sum()):,}"})
    fig = go.Figure()
    dates = run.dates(per_day["day"])
    fig.add_trace(go.Scatter(x=dates, y=per_day["scored"] / population, name="scored share", mode="lines"))
    fig.add_trace(go.Scatter(x=dates, y=per_day["sightings"] / population, name="sightings per citizen",
                             mode="lines", yaxis="y2"))
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
        **{k: r[k] for k in keys}, "runs": r["runs"],
        "top-class share (seeds' range)": f"{_pct(r['top'], 2)} ({_pct(r['top_lo'], 2)}-{_pct(r['top_hi'], 2)})",
        "bot owners among them": "nobody at the top" if r["bots"] is None else _pct(r["bots"], 0),
        "volunteers among them": "nobody at the top" if r["volunteers"] is None else _pct(r["volunteers"], 0),
        "bots deployed": round(r["bots_deployed"], 1)} for r in table.iter_rows(named=True)])
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
    fig.add_trace(go.Bar(x=overall["score_bin"], y=overall["citizens"], name="all regions",
                         marker_color="#9ca3af"))
    regions = hist["region"].unique().sort()
    if len(regions) > 1:
        for i, region in enumerate(regions):
            part = hist.filter(pl.col("region") == region)
            fig.add_trace(go.Scatter(x=part["score_bin"], y=part["citizens"], name=str(region), mode="lines",
                                     line={"color": SERIES[i % len(SERIES)]}))
    marks = sorted({(c.min, c.name) for p in run.policies.values() for c in p.classes if c.min is not None})
    for low, name in marks:
        fig.add_vline(x=low, line_dash="dot", line_color="#374151",
                      annotation_text=f"{name} \u2265 {low}", annotation_position="top")
    scores = run.citizens.select(pl.col("score").median().alias("median"), pl.col("score").min().alias("min"),
                                 pl.col("score").max().alias("max")).collect()
    return _Section("distribution", "Score distribution at the end", [
        f"Final state scores in bins of 10 points, overall and per region; dotted lines mark the class thresholds "
        f"of the policies in the run. Median {scores['median'].item()}, range {scores['min'].item()} to "
        f"{scores['max'].item()}.",
        "Citizens of unscored regions have no state score and are left out.",
    ], figures=[_figure(fig, title="Final scores", height=420, xaxis_title="score",
                        yaxis_title="citizens", bargap=0.05)])


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
        notes.append(f"No citizen is in class {'/'.join(names)} at the end of this run"
                     + ("; the next class up is shown instead." if from_bottom + 1 < depth else "."))
    if reasons.is_empty():
        return _Section("reasons", "Who falls into D and why", text, notes=notes)
    klass = "/".join(sorted({p.class_names[-1 - from_bottom] for p in run.policies.values()}))
    # Ties broken by rule id, so that the same run always gives the same bytes.
    top = (reasons.group_by("rule").agg(pl.col("weight").sum())
           .sort("weight", "rule", descending=[True, False]).head(10)["rule"])
    shown = reasons.filter(pl.col("rule").is_in(top.to_list()))
    fig = go.Figure()
    for i, group in enumerate(shown["group"].unique().sort()):
        part = shown.filter(pl.col("group") == group)
        fig.add_trace(go.Bar(y=part["rule"], x=part["share"], name=str(group), orientation="h",
                             marker_color=SERIES[i % len(SERIES)]))
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
    for i, (col, label) in enumerate(m.CONSEQUENCES.items()):
        if col in weekly.columns:
            fig.add_trace(go.Scatter(x=run.dates(weekly["week"] * 7), y=weekly[col], name=label, mode="lines+markers",
                                     line={"color": SERIES[i % len(SERIES)]}))
    holders = m.holders_daily(run.daily)
    fig2 = go.Figure()
    for i, col in enumerate(c for c in holders.columns if c != "day"):
        kind, name = col.split(".", 1)
        fig2.add_trace(go.Scatter(x=run.dates(holders["day"]), y=holders[col], name=f"{name} ({kind})", mode="lines",
                                  line={"color": SERIES[i % len(SERIES)], "dash": "solid" if kind == "benefit"
                                        else "dash"}))
    totals = daily.select(pl.exclude("day").sum()).row(0, named=True)
    return _Section("consequences", "Rewards and sanctions over time", [
        "What the classes did to lives, week by week: loans priced or refused, flights and trains blocked or "
        "discounted, stops at subway gates, jobs lost, children's admissions helped or hurt by a parent's class.",
        f"Over the run: {totals.get('jobs_lost', 0):,} jobs lost, {totals.get('flights_blocked', 0):,} flights "
        f"and {totals.get('trains_blocked', 0):,} train tickets blocked, {totals.get('gate_stops', 0):,} gate stops, "
        f"{totals.get('loans_discounted', 0):,} cheaper loans.",
    ], figures=[_figure(fig, title="Consequences per day (weekly means)", xaxis_title="week starting",
                        yaxis_title="per day"),
                _figure(fig2, title="Citizens holding each benefit (solid) and sanction (dashed)",
                        xaxis_title="date", yaxis_title="citizens")],
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
    fig = go.Figure()
    fig.add_trace(go.Bar(x=groups["group"].cast(pl.String), y=groups["hit_rate"], name="innocents who lost points",
                         marker_color="#f59e0b"))
    fig.add_trace(go.Bar(x=groups["group"].cast(pl.String), y=groups["pushed_rate"],
                         name="pushed into a lower class", marker_color="#dc2626"))
    shown = kinds.filter(pl.col("wrongful") > 0)
    fig2 = go.Figure(go.Bar(x=shown["kind"], y=shown["rate"], marker_color="#dc2626",
                            text=[f"{w:,} of {o:,}" for w, o in zip(shown["wrongful"], shown["observed"],
                                                                    strict=True)]))
    total_w, total_o = kinds["wrongful"].sum(), kinds["observed"].sum()
    text = [
        f"In scored regions, {total_w:,} of {total_o:,} observed events ({_pct(total_w / max(total_o, 1), 3)}) were "
        f"attributed to someone who did not do it (camera false matches). {groups['innocents_hit'].sum():,} innocent "
        f"citizens lost {groups['points_lost'].sum():,} points; {groups['pushed_down'].sum():,} sit in a lower class "
        "only because of it.",
        *_downgrades(run),
        f"Against the reference group '{groups['group'][0]}', innocents were hit "
        f"{_ratios(groups, 'hit_rate_ratio')} as often, and pushed down {_ratios(groups, 'pushed_rate_ratio')}.",
    ]
    figures = [_figure(fig, title="Wrongful penalties per demographic group (share of the group)", barmode="group",
                       yaxis_tickformat=".2%", yaxis_rangemode="tozero")]
    if not shown.is_empty():
        figures.append(_figure(fig2, title="Share of observed events pinned on an innocent, per kind",
                               yaxis_tickformat=".3%"))
    notes = []
    if unscored:
        notes.append(f"{unscored:,} more events were pinned on innocents in unscored regions, where they cost "
                     "no points.")
    if run.events is not None:
        conf = m.camera_confidence(run.events)
        if not conf.is_empty():
            fig3 = go.Figure()
            for wrongful, colour in ((False, "#2563eb"), (True, "#dc2626")):
                part = conf.filter(pl.col("wrongful") == wrongful)
                fig3.add_trace(go.Bar(x=part["confidence"], y=part["share"], marker_color=colour, opacity=0.7,
                                      name=f"{'wrongful (an innocent)' if wrongful else 'rightful'}: "
                                           f"{part['events'].sum():,} events"))
            figures.append(_figure(fig3, title="Camera events by match confidence (share of each)",
                                   barmode="overlay", xaxis_title="match confidence", yaxis_tickformat=".0%"))
        seen = m.misidentified_by_group(run.events, run.citizens)
        if seen["wrongful"].sum() == 0:
            notes.append("The recorded events hold no wrongful camera match (a sample misses rare ones), so the "
                         "error rate by the group of the person really seen cannot be shown.")
        else:
            figures.append(_figure(go.Figure(go.Bar(
                x=seen["group"].cast(pl.String), y=seen["rate"], marker_color="#7c3aed",
                text=[f"x{r:.1f}" if r == r and r is not None else "" for r in seen["ratio"]])),
                title="Misidentification rate by group of the person really seen", yaxis_tickformat=".2%"))
            text.append("By whose face the camera saw, false matches follow the sensor model's error differential "
                        "(ratios to the reference group on the bars); the innocent who pays is a look-alike of "
                        "the same group.")
    else:
        notes.append("Without an event table the confidence of wrongful camera matches cannot be shown.")
    table = groups.select("group", "citizens", "innocents_hit", "hit_rate", "hit_rate_ratio", "points_lost",
                          "points_per_1000", "pushed_down", "pushed_rate", "pushed_rate_ratio")
    return _Section("wrongful", "Wrongful penalties", text, figures=figures,
                    tables=[_table(table, caption="Per demographic group (ratios to the first group)")],
                    notes=notes)


def _behaviour(run: _Run) -> _Section:
    kinds = _penalised_kinds(run)
    figures = []
    text = ["How citizens adapt: acts they were penalised for become rarer (deterrence), complaints fall "
            "(self-censorship), and savvy citizens let a bot collect rewards (gaming)."]
    if kinds:
        det = m.deterrence(run.daily, kinds)
        figures.append(_figure(go.Figure(go.Bar(x=det["kind"], y=det["change"], marker_color=[
            "#dc2626" if k == KIND_NAMES[K_COMPLAINT] else "#2563eb" for k in det["kind"]])),
            title="Deterrence: change in true acts per day, last 4 weeks vs. first 2", yaxis_tickformat=".0%"))
    weekly = m.complaints_weekly(run.daily)
    figures.append(_figure(go.Figure(go.Scatter(x=run.dates(weekly["week"] * 7), y=weekly["index"],
                                                mode="lines+markers", line={"color": "#dc2626"})),
                           title="Self-censorship: complaints per day (1.0 = the first two weeks)",
                           xaxis_title="week starting", yaxis_title="index"))
    bots = m.bots_among_top(run.citizens, _top(run)).row(0, named=True)
    figures.append(_figure(go.Figure(go.Bar(
        x=[f"in {'/'.join(_top(run))}", "all scored citizens"],
        y=[bots["top_share"] or 0.0, bots["population_share"] or 0.0], marker_color=["#16a34a", "#9ca3af"])),
        title="Gaming: share of bot users", yaxis_tickformat=".1%"))
    last = weekly["index"][-1]
    text.append(f"Complaints now run at {last:.2f} of their level in the first weeks. Bot users are "
                f"{_pct(bots['top_share'])} of the top class against {_pct(bots['population_share'])} of "
                "everyone" + (f" ({bots['ratio']:.1f}x)." if bots["ratio"] is not None else "."))
    return _Section("behaviour", "Behaviour change", text, figures=figures)


def _stacked(run: _Run, frame: pl.DataFrame, column: str, title: str) -> str:
    colours = _colours(run)
    fig = go.Figure()
    for klass in run.classes:
        part = frame.filter(pl.col("class") == klass)
        fig.add_trace(go.Bar(x=part[column].cast(pl.String), y=part["share"], name=klass,
                             marker_color=colours.get(klass)))
    order = [str(v) for v in frame[column].unique().sort()]
    return _figure(fig, title=title, barmode="stack", yaxis_tickformat=".0%",
                   xaxis={"categoryorder": "array", "categoryarray": order, "type": "category"})


def _inequality(run: _Run) -> _Section:
    people = m.with_age_band(run.citizens).with_columns(
        area=pl.when(pl.col("urban")).then(pl.lit("urban")).otherwise(pl.lit("rural")))
    income = m.class_by(people, "income_decile")
    figures = [_stacked(run, income, "income_decile", "Class by income decile (0 = poorest)"),
               _stacked(run, m.class_by(people, "age_band"), "age_band", "Class by age"),
               _stacked(run, m.class_by(people, "area"), "area", "Class: urban and rural")]
    low = _lowest(run)
    d_by = income.filter(pl.col("class") == low).group_by("income_decile").agg(pl.col("share").sum())
    poorest = d_by.filter(pl.col("income_decile") == 0)["share"].sum()
    richest = d_by.filter(pl.col("income_decile") == 9)["share"].sum()
    text = [f"In the poorest income decile {_pct(poorest, 2)} are in class {low} (the lowest class anyone holds at "
            f"the end), in the richest {_pct(richest, 2)}. "
            "Income shapes the acts that are scored (overdue bills, lawsuits, organic food), and job losses in D "
            "lower income further."]
    notes = []
    ages = m.applicant_ages(run.manifest.days, run.manifest.scenario.consequences.admission_day)
    if ages:
        order = {c: i for i, c in enumerate(run.classes)}
        adm = (m.admission_by_parent_class(run.citizens, ages).filter(pl.col("parent_class").is_not_null())
               .sort(pl.col("parent_class").replace_strict(order, default=len(order))))
        figures.append(_figure(go.Figure(go.Bar(
            x=adm["parent_class"], y=adm["rate"], marker_color=[_colours(run).get(c, "#9ca3af")
                                                                for c in adm["parent_class"]],
            text=[f"{a:,} of {n:,}" for a, n in zip(adm["admitted"], adm["applicants"], strict=True)])),
            title="Children's university admission by parent's class", yaxis_tickformat=".0%"))
        text.append("Admission rate of those who applied at 18, by their parent's class at the end of the run "
                    "(the class on admission day may differ).")
    else:
        notes.append(f"No admission round fell within these {run.manifest.days} days (admission day "
                     f"{run.manifest.scenario.consequences.admission_day}): parents' class vs. children's "
                     "admission cannot be shown.")
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
    for i, (name, flag_counts) in enumerate(counts):
        fig.add_trace(go.Bar(x=list(flag_counts), y=list(flag_counts.values()), name=name,
                             marker_color=SERIES[i % len(SERIES)]))
    legend = pl.DataFrame({"flag": list(FLAGS), "meaning": list(FLAGS.values())})
    return _Section("audit", "Policy audit", [
        "Every rule and consequence of every policy in the run, flagged where a regulator would question it "
        "(the same table as `socialcredit audit`).",
        "Flagged rows are shaded.",
    ], figures=[_figure(fig, title="Flagged items per policy", barmode="group", yaxis_title="items")],
        tables=[_table(legend, caption="Flags"), *tables])


def _summary(run: _Run) -> dict[str, float]:
    final = _final(run)
    kinds = m.wrongful_by_kind(run.daily.filter(pl.col("region").cast(pl.String).is_in(list(run.policies))))
    groups = m.wrongful_by_group(run.citizens, run.policies)
    bots = m.bots_among_top(run.citizens, _top(run)).row(0, named=True)
    totals = m.consequences_daily(run.daily).select(pl.exclude("day").sum()).row(0, named=True)
    scored = max(int(groups["citizens"].sum()), 1)
    return {
        "share in the top class": final.filter(pl.col("class").cast(pl.String).is_in(_top(run)))["share"].sum(),
        "share in the bottom class": final.filter(
            pl.col("class").cast(pl.String).is_in(_bottom(run)))["share"].sum(),
        "wrongful share of observed events": kinds["wrongful"].sum() / max(kinds["observed"].sum(), 1),
        "innocents who lost points per 1,000": 1000 * groups["innocents_hit"].sum() / scored,
        "pushed down by false matches per 1,000": 1000 * groups["pushed_down"].sum() / scored,
        "bot users' share of the top class": bots["top_share"] or 0.0,
        "complaints vs. first weeks": m.complaints_weekly(run.daily)["index"][-1],
        **{label: float(totals.get(col, 0)) for col, label in m.CONSEQUENCES.items()},
    }


def _compare(run: _Run, other: _Run | None) -> _Section:
    title = "Policies side by side"
    if other is None:
        return _Section("compare", title, [
            "Run the report with --compare OTHER_RUN_DIR to set two runs of the same population and seed side by "
            "side (e.g. the same scenario under taz-2018 and under accountable)."])
    a, b = _summary(run), _summary(other)
    table = pl.DataFrame({"measure": list(a), run.label: list(a.values()), other.label: list(b.values()),
                          "difference": [b[k] - a[k] for k in a]})
    fig = go.Figure()
    for i, r in enumerate((run, other)):
        final = _final(r)
        fig.add_trace(go.Bar(x=final["class"].cast(pl.String), y=final["share"], name=r.label,
                             marker_color=SERIES[i]))
    fig2 = go.Figure()
    for i, r in enumerate((run, other)):
        shares = m.class_shares(r.daily).filter(pl.col("class").cast(pl.String).is_in(_bottom(r)))
        per_day = shares.group_by("day").agg(pl.col("share").sum()).sort("day")
        fig2.add_trace(go.Scatter(x=r.dates(per_day["day"]), y=per_day["share"], name=r.label, mode="lines",
                                  line={"color": SERIES[i]}))
    notes = []
    for key in ("population", "seed", "days"):
        mine, theirs = getattr(run.manifest, key), getattr(other.manifest, key)
        if mine != theirs:
            notes.append(f"The runs differ in {key} ({mine} vs. {theirs}): differences "
                         "are not only the policies'.")
    return _Section("compare", title, [
        f"This run ({run.label}) beside {other.path.name} ({other.label}): the same measures, and the difference "
        "(second minus first).",
        f"Bottom class at the end: {_pct(a['share in the bottom class'])} vs. {_pct(b['share in the bottom class'])}; "
        f"pushed down by false matches: {a['pushed down by false matches per 1,000']:.2f} vs. "
        f"{b['pushed down by false matches per 1,000']:.2f} per 1,000.",
    ], figures=[_figure(fig, title="Class shares at the end", barmode="group", yaxis_tickformat=".0%"),
                _figure(fig2, title="Share in the bottom class over time", xaxis_title="date",
                        yaxis_tickformat=".1%", yaxis_rangemode="tozero")],
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
            for key, value in scenario.get(section, {}).items() if key not in ("groups", "effects", "rates")]
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
