"""The `demo` command: the whole system in one command (what `make run` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from socialcredit.cli._common import command, fail


def register(app: typer.Typer) -> None:
    """Add `demo` to the `socialcredit` command line."""
    command(app, "demo")(demo_command)


def demo_command(
    population: Annotated[int, typer.Option("--population", "-n", min=1, help="Citizens of the town.")] = 100_000,
    days: Annotated[int, typer.Option("--days", "-d", min=1, help="Days to simulate.")] = 365,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Seed of the simulation and the live feed.")] = 2018,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8000,
    live: Annotated[bool, typer.Option("--live", help="Keep sending simulated events to the service.")] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the run and the database.")] = Path("runs/demo"),
    scenario: Annotated[str, typer.Option(help="Scenario preset or TOML file.")] = "one-town",
    policy: Annotated[str | None, typer.Option(
        help="Score every region with this policy (e.g. accountable, which allows appeals).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start a new demo database (new keys, no earlier "
                                                       "look-ups or appeals) even if one holds this run.")] = False,
) -> None:
    """Simulate a town, load it, print demo keys and URLs, and serve the pages until Ctrl-C."""
    from socialcredit.demo import run_demo

    try:
        run_demo(population=population, days=days, seed=seed, port=port, live=live, out=out, scenario=scenario,
                 policy=policy, fresh=fresh)
    except OSError as exc:  # the port is taken, the folder cannot be written
        raise fail(str(exc)) from None
