"""`policy list/show/check`, `score`, `explain` and `audit`: the engine and the policies on files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column, Table

from socialcredit.analysis._audit import FLAGS
from socialcredit.cli._common import StartDateOption, command, err, fail, iso_date, out

if TYPE_CHECKING:
    import polars as pl

    from socialcredit.events import Calendar
    from socialcredit.policy import Policy

PolicyOption = Annotated[str, typer.Option("--policy", "-p", help="Preset name or policy TOML file.")]
EventsOption = Annotated[Path, typer.Option("--events", "-e", help="Events: .csv, .parquet or .ndjson.")]
AsOfOption = Annotated[int | None, typer.Option("--as-of", min=0,
                                                 help="Score as of this day (default: the largest day).")]
CitizensOption = Annotated[Path | None, typer.Option(
    "--citizens", help="Citizens' birth days (citizen_id, birth_day: .csv or .parquet, e.g. a run's "
                       "citizens.parquet), for a policy with a min_age.")]


def register(app: typer.Typer) -> None:
    """Add `policy`, `score`, `audit` and `explain` to the command line."""
    policy_app = typer.Typer(help="List, show and check scoring policies.", no_args_is_help=True)
    command(policy_app, "list")(policy_list)
    command(policy_app, "show")(policy_show)
    command(policy_app, "check")(policy_check)
    command(app, "score")(score)
    command(app, "audit")(audit_command)
    command(app, "explain")(explain_command)
    app.add_typer(policy_app, name="policy")


def _load(name_or_file: str) -> Policy:
    from socialcredit.policy import load_policy

    return load_policy(name_or_file)


def _calendar(start_date: str | None) -> Calendar:
    from socialcredit.events import Calendar

    return Calendar() if start_date is None else Calendar(iso_date(start_date, "--start-date"))


def _events(path: Path, calendar: Calendar) -> pl.DataFrame:
    from socialcredit.events import read_events

    return read_events(path, calendar=calendar)


def _births(path: Path | None) -> pl.DataFrame | None:
    """Read the register of births (for a policy's min_age) named by `--citizens`."""
    import polars as pl

    from socialcredit.engine import BIRTHS_SCHEMA

    if path is None:
        return None
    try:
        table = pl.read_parquet(path) if path.suffix.lower() == ".parquet" else pl.read_csv(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise fail(f"--citizens {path}: {exc}") from None
    missing = [c for c in BIRTHS_SCHEMA if c not in table.columns]
    if missing:
        raise fail(f"--citizens {path}: missing column(s) {', '.join(missing)}")
    try:
        return table.select(BIRTHS_SCHEMA.keys()).cast(BIRTHS_SCHEMA, strict=True)
    except pl.exceptions.PolarsError:
        raise fail(f"--citizens {path}: column birth_day must hold whole numbers (days)") from None


def policy_list() -> None:
    """List the presets shipped with socialcredit."""
    from socialcredit.policy import list_presets, load_policy

    table = Table("name", "title", "start", "range", "classes", "rules")
    for name in list_presets():
        p = load_policy(name)
        table.add_row(name, p.title, str(p.start), f"{p.min}-{p.max}", " ".join(p.class_names),
                      str(len(p.rules)))
    out.print(table)


def policy_show(name_or_file: Annotated[str, typer.Argument(help="Preset name or TOML file.")]) -> None:
    """Show a policy: classes, rules, consequences and access grants."""
    p = _load(name_or_file)
    out.print(f"[bold]{p.name}[/]: {p.title}")
    if p.description:
        out.print(p.description.strip(), highlight=False)
    out.print(f"start {p.start}, score kept within [{p.min}, {p.max}], appeals: {'yes' if p.appeals else 'no'}")
    classes = Table("class", "from score", title="Rating classes (top to bottom)")
    for c in p.classes:
        classes.add_row(c.name, "-" if c.min is None else str(c.min))
    out.print(classes)
    rules = Table(Column("id", no_wrap=True), Column("kind", no_wrap=True), "points", "sources",
                  "conditions", Column("reason", ratio=1), title="Rules")
    for r in p.rules:
        conditions = [f"confidence >= {r.min_confidence:g}" if r.min_confidence else "",
                      f"at most {r.max_per_day}/day" if r.max_per_day else "",
                      f"expires after {r.expires_after_days} d" if r.expires_after_days else "never expires",
                      f"class at most {r.class_at_most}" if r.class_at_most else ""]
        rules.add_row(r.id, r.kind, f"{r.points:+d}", ", ".join(r.sources or ["any"]),
                      "; ".join(c for c in conditions if c), r.reason)
    out.print(rules)
    for title, items in (("Benefits", p.benefits), ("Sanctions", p.sanctions)):
        if items:
            t = Table("name", "class", "effect", "parameters", "held days", "context", title=title)
            for b in items:
                params = ", ".join(f"{k}={v}" for k, v in b.params.model_dump().items())
                t.add_row(b.name, b.class_, b.effect, params, str(b.held_days), b.context)
            out.print(t)
    if p.grants:
        g = Table("role", "may see", "purpose required", title="Access grants")
        for grant in p.grants:
            g.add_row(grant.role, ", ".join(grant.fields), "yes" if grant.purpose_required else "no")
        out.print(g)


def policy_check(file: Annotated[Path, typer.Argument(help="Policy TOML file.")]) -> None:
    """Validate a policy file; exit non-zero and name the field when it is invalid."""
    p = _load(str(file))
    out.print(f"[green]ok[/]: {file} is a valid policy '{p.name}' with {len(p.rules)} rules "
              f"and {len(p.classes)} classes")


def score(
    policy: PolicyOption,
    events: EventsOption,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Output .csv or .parquet.")],
    as_of: AsOfOption = None,
    strict: Annotated[bool, typer.Option(help="Unknown event kinds are an error.")] = False,
    citizens: CitizensOption = None,
    start_date: StartDateOption = None,
) -> None:
    """Score a file of events: one row per citizen with score and class."""
    from socialcredit.engine import STATUS_NAMES, score_ledger

    if out_file.suffix.lower() not in (".csv", ".parquet"):
        raise fail(f"--out must end in .csv or .parquet, not '{out_file.suffix}'", 2)
    compiled_policy = _load(policy)
    calendar = _calendar(start_date)
    table = _events(events, calendar)
    result = score_ledger(compiled_policy, table, as_of=as_of, strict=strict, births=_births(citizens))
    _write_atomically(result.scores, out_file)
    counts = result.status_counts()
    out.print(f"scored {table.height:,} events of {result.scores.height:,} citizens "
              f"with '{compiled_policy.name}' as of day {result.as_of} ({calendar.iso(result.as_of)}) -> {out_file}")
    out.print("events: " + ", ".join(f"{counts[s]:,} {s}" for s in STATUS_NAMES if counts[s]))
    if result.unknown_kinds.height:
        kinds = ", ".join(f"{k} ({n:,})" for k, n in result.unknown_kinds.head(10).iter_rows())
        err.print(f"[yellow]warning:[/] {counts['unknown_kind']:,} events of kinds no rule scores: "
                  f"{kinds}; use --strict to refuse them", highlight=False)
    preview = Table("citizen_id", "score", "class",
                    title=f"Scores (first {min(20, result.scores.height)} of {result.scores.height:,})")
    for cid, value, klass in result.scores.head(20).iter_rows():
        preview.add_row(cid, str(value), klass)
    out.print(preview)
    classes = result.scores["class"].value_counts().sort("class")
    t = Table("class", "citizens", "share", title="Rating classes")
    for name, n in classes.iter_rows():
        t.add_row(name, f"{n:,}", f"{n / result.scores.height:.1%}")
    out.print(t)


def _write_atomically(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        if path.suffix.lower() == ".csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def audit_command(
    name_or_file: Annotated[str, typer.Argument(help="Preset name or policy TOML file.")],
    fail_on: Annotated[list[str] | None, typer.Option(
        "--fail-on", help=f"Exit 1 when this flag is found (repeatable): {', '.join(FLAGS)}.")] = None,
) -> None:
    """Audit a policy: flag sanctions out of context, speech rules, gameable rewards and more."""
    from socialcredit.analysis._audit import audit_policy

    unknown = [f for f in fail_on or [] if f not in FLAGS]
    if unknown:
        raise fail(f"unknown flag(s) {', '.join(unknown)} for --fail-on (flags: {', '.join(FLAGS)})", 2)
    result = audit_policy(_load(name_or_file))
    table = Table("item", Column("name", no_wrap=True), "context", "detail", "flags",
                  title=f"Audit of policy '{result.policy}'")
    for item, name, context, detail, flags in result.items.iter_rows():
        table.add_row(item, name, context, detail, ", ".join(flags) or "-",
                      style="yellow" if flags else None)
    out.print(table)
    summary = Table("flag", "items", "meaning", title="Flags")
    for flag, count in result.flag_counts.items():
        summary.add_row(flag, str(count), FLAGS[flag], style="bold red" if count else None)
    out.print(summary)
    failed = [f for f in fail_on or [] if result.has(f)]
    if failed:
        raise fail(f"policy '{result.policy}' has flag(s) {', '.join(failed)}")


def explain_command(
    policy: PolicyOption,
    events: EventsOption,
    citizen: Annotated[str, typer.Option("--citizen", "-c", help="Citizen id.")],
    as_of: AsOfOption = None,
    limit: Annotated[int, typer.Option(min=0, help="Show at most this many of the latest events (0: all).")] = 20,
    citizens: CitizensOption = None,
    start_date: StartDateOption = None,
) -> None:
    """Explain one citizen's score: the key factors, then the events with their points."""
    from socialcredit.engine import explain

    calendar = _calendar(start_date)
    ledger = _events(events, calendar)
    p = _load(policy)
    try:
        e = explain(p, ledger, citizen, as_of=as_of, births=_births(citizens))
    except KeyError as exc:
        raise fail(exc.args[0]) from None
    if e.score is None:
        out.print(f"citizen [bold]{e.citizen_id}[/] as of day {e.as_of} ({calendar.iso(e.as_of)}): "
                  "not scored "
                  f"(under the policy's minimum age, {p.min_age})")
    else:
        out.print(f"citizen [bold]{e.citizen_id}[/] as of day {e.as_of} ({calendar.iso(e.as_of)}): score {e.score}, "
                  f"class [bold]{e.class_name}[/]")
    if e.capped_by:
        out.print(f"class held at {e.class_name} (score alone gives {e.score_class}) by rule '{e.capped_by}'")
    factors = Table("", "rule", "reason", "effect", "points", "events", title="Key factors")
    for i, f in enumerate(e.factors.iter_rows(named=True), start=1):
        factors.add_row(str(i), f["rule"], f["reason"], f["effect"], f"{f['points']:+d}", str(f["events"]))
    out.print(factors)
    shown = e.events.tail(limit) if limit else e.events
    title = "Events" if shown.height == e.events.height else (
        f"Latest {shown.height} of {e.events.height} events (--limit 0 shows all)")
    listing = Table("date", "event", "kind", "rule", "points", "status", "source", "ref", "confidence",
                    title=title)
    for r in shown.iter_rows(named=True):
        listing.add_row(calendar.iso(r["day"]), r["event_id"], r["kind"], r["rule"] or "-",
                        f"{r['points']:+d}", r["status"], r["source"] or "-", r["source_ref"] or "-",
                        "-" if r["confidence"] is None else f"{r['confidence']:.3f}")
    out.print(listing)
