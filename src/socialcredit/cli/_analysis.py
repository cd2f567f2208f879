"""The `report`, `validate` and `calibrate` commands: thin adapters over the analysis package."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from socialcredit.cli._common import ScenarioOption, SettingsOption, WorkersOption, command, err, fail, out

if TYPE_CHECKING:
    from socialcredit.analysis import Comparison

TargetsOption = Annotated[Path | None, typer.Option(
    "--targets", help="Targets file (TOML; default: the shipped targets-2018.toml).")]
PopulationOption = Annotated[int, typer.Option("--population", "-n", help="Citizens per run.")]
DaysOption = Annotated[int, typer.Option("--days", "-d", help="Days per run.")]
SeedOption = Annotated[int, typer.Option("--seed", "-s", help="Seed of every random stream.")]


def print_comparison(comparison: Comparison, console: Console, run: str) -> None:
    """The validate table, in the terminal (`run` says which run it is); reasons below it."""
    style = {"within": "green", "outside": "red", "not modelled": "red", "not covered": "dim"}
    table = Table(title=f"{comparison.targets.title}\n{run} ({comparison.period[0]} to "
                        f"{comparison.period[1]}, {comparison.scale:,.0f} people per citizen)")
    rows, notes = [], []
    for row in comparison.rows:
        t = row.target
        if row.status in ("not modelled", "not covered"):
            notes.append(f"{t.name}: {row.status}: {row.why}")
        simulated = "-" if row.simulated is None else (
            f"{_short(row.simulated)}\n({_short(row.low)}-{_short(row.high)})")
        rows.append((t.name + ("*" if t.derived else ""), _short(t.published), simulated,
                     "-" if row.ratio is None else f"{row.ratio:.3g}", f"x{t.tolerance:g}",
                     f"[{style[row.status]}]{row.status}[/]"))
    # The numbers keep their width; on a narrow terminal the target's name folds.
    table.add_column("target", overflow="fold")
    for i, header in enumerate(("published", "simulated\n(95% interval)", "ratio", "tol.", "status"), 1):
        width = max(len(line) for r in rows for line in re.sub(r"\[/?\w*\]", "", r[i]).split("\n"))
        table.add_column(header, justify="left" if header == "status" else "right", no_wrap=True,
                         min_width=max(width, 4))
    for r in rows:
        table.add_row(*r)
    console.print(table)
    console.print("* derived from published counts (see the targets file's notes)", highlight=False)
    for note in notes:
        console.print(note, highlight=False, soft_wrap=True)
    verdict = "every target within its tolerance" if comparison.passed else "some targets outside"
    console.print(f"[bold]{verdict}[/]")


def _short(x: float | None) -> str:
    """A number in few characters: 13.0M, 564k, 4,209, 0.0131."""
    if x is None:
        return "-"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e5, "k")):
        if abs(x) >= size:
            return f"{x / size:.3g}{suffix}" if suffix != "k" else f"{x / 1e3:.0f}k"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def register(app: typer.Typer) -> None:
    """Add `report`, `validate` and `calibrate` to the `socialcredit` command line."""

    @command(app, "report")
    def report_command(
        run_dir: Annotated[Path, typer.Argument(help="Run folder written by `socialcredit simulate`.")],
        compare: Annotated[Path | None, typer.Option(
            "--compare", help="A second run folder (same population and seed) to set beside it.")] = None,
        out_file: Annotated[Path | None, typer.Option(
            "--out", "-o", help="HTML file to write (default: RUN_DIR/report.html).")] = None,
        sweep: Annotated[Path | None, typer.Option(
            "--sweep", help="A `socialcredit sweep` folder: its table of the top class by setting.")] = None,
    ) -> None:
        """Write a self-contained HTML report of a run (opens offline) and print its path."""
        from socialcredit.analysis import write_report

        path = write_report(run_dir, out=out_file, compare=compare, sweep=sweep)
        out.print(str(path), highlight=False, soft_wrap=True)

    @command(app, "validate")
    def validate_command(
        scenario: ScenarioOption = "pilot-regions-2018",
        population: PopulationOption = 100_000,
        days: DaysOption = 365,
        seed: SeedOption = 1,
        targets_file: TargetsOption = None,
        run_dir: Annotated[Path | None, typer.Option(
            "--run", help="Compare this run folder instead of simulating one.")] = None,
        settings: SettingsOption = None,
        workers: WorkersOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
    ) -> None:
        """Run a scenario (or read --run) and set it beside the published record; exit 1 when any
        target is outside its tolerance."""
        from socialcredit.analysis import compare_run, load_targets
        from socialcredit.simulation import parse_overrides, simulate

        targets = load_targets(targets_file)
        if run_dir is not None:
            comparison = compare_run(run_dir, targets)
        else:
            with tempfile.TemporaryDirectory(prefix="sc-validate-") as tmp:
                with err.status(f"simulating {population:,} citizens x {days} days of {scenario}"):
                    simulate(population=population, days=days, seed=seed,
                             out=os.path.join(tmp, "run"), scenario=scenario, workers=workers,
                             overrides=parse_overrides(settings or []))
                comparison = compare_run(os.path.join(tmp, "run"), targets)
        if as_json:
            typer.echo(comparison.as_json())
        else:
            print_comparison(comparison, out, f"run {run_dir}" if run_dir is not None else
                             f"{scenario}, {population:,} citizens x {days} days, seed {seed}")
        raise typer.Exit(0 if comparison.passed else 1)

    @command(app, "calibrate")
    def calibrate_command(
        free_items: Annotated[list[str], typer.Option(
            "--free", help="A parameter to fit and its range: section.field=LO:HI (repeatable).")],
        out_file: Annotated[Path, typer.Option("--out", "-o", help="Calibrated scenario TOML to write.")],
        targets_file: TargetsOption = None,
        scenario: ScenarioOption = "pilot-regions-2018",
        population: PopulationOption = 100_000,
        days: DaysOption = 365,
        seed: SeedOption = 1,
        budget: Annotated[int, typer.Option("--budget", help="Most runs to try.")] = 40,
        workers: WorkersOption = None,
    ) -> None:
        """Fit free scenario parameters to the targets and write a calibrated scenario file."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from socialcredit.analysis import calibrate, load_targets, parse_free
        from socialcredit.analysis._calibrate import calibrated_scenario

        if out_file.exists():
            raise fail(f"--out {out_file}: exists (calibrate does not overwrite)")
        targets = load_targets(targets_file)
        free = parse_free(free_items)
        columns = (TextColumn("[bold]calibrating"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("runs, best objective {task.fields[best]}"), TimeElapsedColumn())
        with Progress(*columns, console=err) as progress:
            task = progress.add_task("fit", total=budget, best="-")
            fit = calibrate(scenario=scenario, targets=targets, free=free, population=population,
                            days=days, seed=seed, budget=budget, workers=workers,
                            on_try=lambda n, best: progress.update(task, completed=n, best=f"{best:.4g}"))
        text = calibrated_scenario(fit, scenario=scenario, out=out_file, population=population,
                                   days=days, seed=seed, targets_file=str(targets_file or "targets-2018.toml"))
        out_file.parent.mkdir(parents=True, exist_ok=True)
        partial = out_file.with_name(f".{out_file.name}.partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(out_file)
        for name, value in fit.values.items():
            out.print(f"{name} = {value:.6g}", highlight=False)
        out.print(f"objective {fit.objective_start:.4g} -> {fit.objective_best:.4g} in {fit.tries} runs "
                  f"-> {out_file}", highlight=False, soft_wrap=True)
        print_comparison(fit.best, out, f"best run, {population:,} citizens x {days} days, seed {seed}")
