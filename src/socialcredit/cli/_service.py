"""The service's commands: serve, db load, keys create and revoke."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from socialcredit.cli._common import DbOption, StartDateOption, command, fail, iso_date, out
from socialcredit.service._db import DEFAULT_URL

if TYPE_CHECKING:
    from socialcredit.policy import Policy
    from socialcredit.service import Service

PolicyOption = Annotated[str | None, typer.Option(
    "--policy", "-p", help="Preset name or policy TOML file (default: the one the database holds).")]


class Clock(StrEnum):
    """What moves the service day."""

    wall = "wall"
    simulated = "simulated"


def register(app: typer.Typer) -> None:
    """Add serve, db and keys to the `socialcredit` command."""
    command(app, "serve")(serve)
    db_app = typer.Typer(help="Fill the service database.", no_args_is_help=True)
    command(db_app, "load")(db_load)
    app.add_typer(db_app, name="db")
    keys_app = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)
    command(keys_app, "create")(keys_create)
    command(keys_app, "revoke")(keys_revoke)
    app.add_typer(keys_app, name="keys")


def _shown(url: str) -> str:
    """A database URL fit to print: never a password."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def _open(url: str, policy: str | Policy | None, *, wall_clock: bool = False,
          partition: tuple[int, int] | None = None, partitions: int | None = None) -> Service:
    import datetime as dt

    from socialcredit.service import Service

    part, parts = partition or (None, partitions)
    try:
        return Service.open(url, policy, clock=dt.date.today if wall_clock else None, partition=part, partitions=parts)
    except RuntimeError as exc:  # a database that cannot be reached or opened
        raise fail(str(exc)) from None


def _partition(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    found = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not found or not 0 <= int(found[1]) < int(found[2]):
        raise fail(f"--partition {text}: give P/N, the partition this process projects (0 to N-1) of N", 2)
    return int(found[1]), int(found[2])


def serve(
    db: DbOption = DEFAULT_URL,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    policy: PolicyOption = None,
    clock: Annotated[Clock | None, typer.Option(
        help="wall (the default): the service day is today's date, counted from the database's start "
             "date, and moves at midnight; simulated: it moves only with --day and loaded runs.")] = None,
    day: Annotated[int | None, typer.Option(
        min=0, help="A simulated clock: move the service day forward to this day number.")] = None,
    start_date: StartDateOption = None,
    partition: Annotated[str | None, typer.Option(
        help="P/N (PostgreSQL): this process projects partition P of a ledger split by citizen into N "
             "(made so when the database is made), and answers look-ups of every citizen; run one "
             "process per partition, the first one alone until it serves.")] = None,
) -> None:
    """Run the live service (FastAPI on uvicorn); the schema is created on start.

    The database counts days from its start date: the loaded run's (its scenario's start_date),
    or --start-date for a database that holds no event yet, or 2018-01-01.
    """
    import gc
    import sys

    from socialcredit.service import create_app, serve_http

    if day is not None and clock is Clock.wall:
        raise fail("--day sets a simulated clock: leave out --clock wall", 2)
    simulated = clock is Clock.simulated or day is not None
    start = None if start_date is None else iso_date(start_date, "--start-date")
    service = _open(db, policy, wall_clock=not simulated, partition=_partition(partition))
    try:
        if service.ledger.partitioned and partition is None:
            raise fail(f"{_shown(db)} holds a ledger in {service.db.partitions} partitions: serve each with a "
                       f"process of its own, --partition P/{service.db.partitions}", 2)
        if start is not None:
            service.set_start_date(start)
        if day is not None:
            service.set_day(day)
        service.follow_clock()
        shown = _shown(db) + ("" if partition is None else f", partition {partition}")
        out.print(f"serving policy '{service.policy.name}' from {shown}, day {service.day} ({service.date}, "
                  f"{'simulated clock' if simulated else 'wall clock'}; day 0 is {service.calendar.start}), "
                  f"on http://{host}:{port} (OpenAPI at /docs)")
        app = create_app(service)
        # Look-up latency: a full garbage collection walks every object of the process (FastAPI,
        # polars, ...) and stalls every request in flight; freeze what exists now and collect the
        # young generation less often (measured: p99 at 64 clients ~190 ms -> ~70-90 ms).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 1_000)
        # The event loop (reading batch bodies, answering look-ups) gives up the GIL at every socket
        # wait, and the projector's long SQLite writes take it meanwhile: with the default 5 ms
        # switch interval the loop waits up to 5 ms each time it wants it back. 1 ms (measured on
        # 2 cores: bulk ingest acknowledged ~470k -> ~600k events/s, three runs each).
        sys.setswitchinterval(0.001)
        serve_http(app, host, port)
    finally:
        service.close()


def db_load(
    run_dir: Annotated[Path, typer.Argument(help="A simulation run folder.")],
    db: DbOption = DEFAULT_URL,
    policy: PolicyOption = None,
    partitions: Annotated[int | None, typer.Option(
        min=1, help="PostgreSQL: make the database with its ledger split by citizen into N partitions, "
                    "each then served by a process of its own (serve --partition P/N).")] = None,
) -> None:
    """Load a simulation run's citizens and events (the service day moves up to its last day).

    Scored with the run's state policy (its own copy, policies/<name>.toml) unless --policy says
    otherwise; the database keeps it, so `serve` needs no --policy.
    """
    from socialcredit.simulation import Run

    origin = "the run's own" if policy is None else "--policy"
    if policy is None and (run_dir / "manifest.json").is_file():
        policy = Run.open(run_dir).state_policy()
    service = _open(db, policy, partitions=partitions)
    try:
        loaded = service.load_run(run_dir)
        name, day, date = service.policy.name, service.day, service.date
    finally:
        service.close()
    out.print(f"loaded {loaded['citizens']:,} citizens and {loaded['events']:,} events from {run_dir} "
              f"into {_shown(db)} (policy '{name}', {origin}); the service day is {day} ({date}): "
              "`serve --clock simulated` answers as of it, `serve` on the wall clock as of today",
              highlight=False, soft_wrap=True)


def keys_create(
    role: Annotated[str, typer.Option(help="citizen, agency, security, bank, employer, landlord, "
                                           "platform, travel, airline or analyst.")],
    name: Annotated[str, typer.Option(help="A unique name for the key (used to revoke it).")],
    citizen: Annotated[str | None, typer.Option(help="The citizen a citizen key is bound to.")] = None,
    source: Annotated[list[str] | None, typer.Option(help="A source the key may send (repeatable).")] = None,
    db: DbOption = DEFAULT_URL,
    create: Annotated[bool, typer.Option(
        "--create", help="Create the database if it does not exist (else a mistyped --db is refused).")] = False,
    allow_unknown: Annotated[bool, typer.Option(
        "--allow-unknown", help="Bind the key to a --citizen the database has no record or event of yet.")] = False,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from socialcredit.service import Database, create_key
    from socialcredit.service._errors import NotFound

    if not create:
        probe = Database(db)
        try:
            exists = probe.exists()
        finally:
            probe.close()
        if not exists:
            missing = "no such file" if probe.path and not probe.path.is_file() else "no socialcredit schema"
            raise fail(f"{_shown(db)}: no socialcredit database there ({missing}); check --db, "
                       "or add --create to make a new one")
    database = Database.open(db)
    try:
        secret = create_key(database, role=role, name=name, citizen=citizen, sources=source or [],
                            known_citizen=not allow_unknown)
    except NotFound as exc:
        raise fail(f"{exc}; check --citizen, or add --allow-unknown to bind the key all the same") from None
    finally:
        database.close()
    typer.echo(secret)


def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    db: DbOption = DEFAULT_URL,
) -> None:
    """Revoke an API key."""
    from socialcredit.service import Database, revoke_key

    database = Database.open(db)
    try:
        revoke_key(database, name)
    finally:
        database.close()
    out.print(f"revoked key '{name}'")
