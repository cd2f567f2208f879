"""What every command shares: the consoles, the error exit, the options they have in common."""

from __future__ import annotations

import datetime as dt
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from socialcredit.errors import SocialCreditError

# Pipes and CI logs get a wide fixed width instead of Rich's 80 columns, so tables stay readable.
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

ScenarioOption = Annotated[str, typer.Option("--scenario", help="Scenario preset or TOML file.")]
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", help="Run on a local Dask cluster with this many worker processes.")]
SettingsOption = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a scenario value: section.field=value (repeatable).")]
DbOption = Annotated[str, typer.Option("--db", help="Database URL: a SQLite file or postgresql://...")]
OutFolder = Annotated[Path, typer.Option("--out", "-o", help="Run folder to create.")]
StartDateOption = Annotated[str | None, typer.Option(
    "--start-date", help="The date of day 0 (ISO, e.g. 2018-01-01): events given by date are counted "
                         "from it and days are shown as dates. Default: 2018-01-01.")]


def iso_date(value: str, option: str) -> dt.date:
    """An ISO date given on the command line, or a usage error naming the option."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise fail(f"{option}: expected an ISO date such as 2018-01-01, got '{value}'", 2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error and return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def command(group: typer.Typer, name: str) -> Callable[[Callable], Callable]:
    """Register a function as the command `name` of `group`. The one place the command line meets
    the error tree: a SocialCreditError is printed with its message and the command exits 1."""

    def register(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except SocialCreditError as exc:
                raise fail(str(exc)) from None

        group.command(name)(run)
        return func

    return register
