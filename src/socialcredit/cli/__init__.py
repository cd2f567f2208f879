"""The `socialcredit` command line: thin commands over the core packages.

Each command imports what it uses when it runs, so `socialcredit --help` and `policy show` start
without loading the simulator's kernel, the service or the report.
"""

import typer

from socialcredit.cli import _analysis, _demo, _policy, _service, _simulation

app = typer.Typer(help="Run, score, explain and audit a social credit system.", no_args_is_help=True,
                  add_completion=False)
for commands in (_policy, _service, _simulation, _demo, _analysis):
    commands.register(app)

__all__ = ["app"]
