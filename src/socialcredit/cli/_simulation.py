"""The `simulate` and `sweep` commands: thin adapters over `simulate()` and `sweep()`."""

from __future__ import annotations

import atexit
import gc
import time
from pathlib import Path
from typing import Annotated

import typer

from socialcredit.cli._common import ScenarioOption, SettingsOption, WorkersOption, command, err, out
from socialcredit.errors import SocialCreditError

PolicyOption = Annotated[str | None, typer.Option(
    "--policy", help="Apply this policy (preset or TOML file) in every region.")]
SchedulerOption = Annotated[str | None, typer.Option(
    "--scheduler",
    help="Run on an existing Dask cluster (scheduler address); --out must be on a file system "
         "every worker can write to.")]
EventsOption = Annotated[str, typer.Option(
    "--events", help="Events to write: all, none or sample:F (a fraction).")]


def start_worker_server(workers: int) -> None:
    """Start the server that local Dask workers fork from (simulation._forkserver) before this
    command imports the simulator: its own imports and the kernel's load run beside these. Each
    worker gets its share of the cores."""
    from multiprocessing import forkserver

    from socialcredit.simulation._forkserver import available, default_threads, server_settings

    if available():
        with server_settings(max(1, default_threads() // workers)):
            forkserver.ensure_running()


def register(app: typer.Typer) -> None:
    """Add `simulate` and `sweep` to the `socialcredit` command line."""

    @command(app, "simulate")
    def simulate_command(
        population: Annotated[int, typer.Option("--population", "-n", help="Number of citizens.")],
        days: Annotated[int, typer.Option("--days", "-d", help="Number of days.")],
        seed: Annotated[int, typer.Option("--seed", "-s", help="Seed of every random stream.")],
        out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create.")],
        scenario: ScenarioOption = "one-town",
        policy: PolicyOption = None,
        workers: WorkersOption = None,
        scheduler: SchedulerOption = None,
        device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
        events: EventsOption = "none",
        citizens: Annotated[str, typer.Option(
            "--citizens", help="Citizens to write: all, none or sample:F (a fraction).")] = "all",
        settings: SettingsOption = None,
        chunk_blocks: Annotated[int | None, typer.Option(
            "--chunk-blocks", help="Blocks per shard (memory per shard; results do not change).")] = None,
        resume: Annotated[bool, typer.Option(
            "--resume", help="Continue an interrupted run of the same arguments and --out from its "
                             "last finished shard.")] = False,
    ) -> None:
        """Simulate a population day by day and write a run folder (Parquet tables, manifest)."""
        # The interpreter's last collections at exit would scan every object the simulator's
        # imports made (numba's above all): ~0.4 s. Frozen, they are skipped.
        atexit.register(gc.freeze)
        if workers is not None and scheduler is None:
            start_worker_server(workers)
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from socialcredit.simulation import parse_overrides, simulate

        columns = (TextColumn("[bold]simulating"), BarColumn(),
                   TextColumn("day {task.fields[day]:.1f}/{task.fields[days]}"),
                   TextColumn("{task.fields[rate]} citizen-days/s"), TimeElapsedColumn(),
                   TextColumn("left"), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=False) as progress:
            task = progress.add_task("run", total=max(population * days, 1), day=0.0, days=days,
                                     rate="-")
            resumed: int | None = None
            started = time.perf_counter()

            def update(done: int, total: int) -> None:
                nonlocal resumed, started
                if resumed is None:  # the first call: what a resumed run had already done
                    resumed, started = done, time.perf_counter()
                    # A fresh start, so the resumed shards do not count as speed in the ETA.
                    progress.reset(task, total=max(total, 1), completed=done,
                                   day=done / max(population, 1), days=days, rate="-")
                    return
                rate = (done - resumed) / max(time.perf_counter() - started, 1e-9)
                progress.update(task, completed=done, day=done / max(population, 1),
                                rate=f"{rate:,.0f}")

            try:
                run = simulate(population=population, days=days, seed=seed, out=out_dir,
                               scenario=scenario, policy=policy, workers=workers,
                               scheduler=scheduler, device=device, events=events,
                               chunk_blocks=chunk_blocks, overrides=parse_overrides(settings or []),
                               citizens=citizens, resume=resume, on_progress=update)
            except SocialCreditError:
                progress.update(task, visible=False)  # an error, not an empty bar, is the last word
                raise
        m = run.manifest
        out.print(f"simulated {population:,} citizens x {days} days ({m.calendar.iso(0)} to "
                  f"{m.calendar.iso(days - 1)}) in {m.timings['simulate_s']:.2f} s "
                  f"({m.citizen_days_per_s:,} citizen-days/s) -> {out_dir}")

    @command(app, "sweep")
    def sweep_command(
        out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the runs and outcomes.")],
        settings: Annotated[list[str], typer.Option(
            "--set", help="A grid axis: section.field=v1,v2,... (repeatable).")],
        seeds: Annotated[str, typer.Option("--seeds", help="Seeds, e.g. 1-5 or 1,2,7.")] = "1",
        scenario: ScenarioOption = "one-town",
        policy: PolicyOption = None,
        population: Annotated[int, typer.Option("--population", "-n", help="Citizens per run.")] = 10_000,
        days: Annotated[int, typer.Option("--days", "-d", help="Days per run.")] = 365,
        workers: WorkersOption = None,
        scheduler: SchedulerOption = None,
        events: EventsOption = "none",
    ) -> None:
        """Run a grid of scenario settings x seeds; write one outcomes table beside the runs."""
        from socialcredit.simulation import sweep
        from socialcredit.simulation._sweep import parse_grid, parse_seeds

        outcomes = sweep(scenario=scenario, grid=parse_grid(settings), seeds=parse_seeds(seeds),
                         out=out_dir, population=population, days=days, policy=policy,
                         workers=workers, scheduler=scheduler, events=events)
        out.print(f"{outcomes.height} runs -> {out_dir / 'outcomes.parquet'}")
