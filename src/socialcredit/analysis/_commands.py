"""The `report` command: a thin adapter over `write_report()`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from socialcredit.analysis._report import ReportError, write_report

out = Console()
err = Console(stderr=True)


def register_report_command(app: typer.Typer) -> None:
    """Add `report` to the `socialcredit` command line."""

    @app.command("report")
    def report_command(
        run_dir: Annotated[Path, typer.Argument(help="Run folder written by `socialcredit simulate`.")],
        compare: Annotated[Path | None, typer.Option(
            "--compare", help="A second run folder (same population and seed) to set beside it.")] = None,
        out_file: Annotated[Path | None, typer.Option(
            "--out", "-o", help="HTML file to write (default: RUN_DIR/report.html).")] = None,
    ) -> None:
        """Write a self-contained HTML report of a run (opens offline) and print its path."""
        try:
            path = write_report(run_dir, out=out_file, compare=compare)
        except ReportError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        out.print(str(path), highlight=False, soft_wrap=True)
