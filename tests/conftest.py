import os

import polars as pl
import pytest
from hypothesis import HealthCheck, settings

from socialcredit.events import validate_events
from socialcredit.policy import parse_policy

# Hypothesis: `ci` (the default, what `make test` runs) is derandomised, so a run is reproducible
# and a failure shows again on the next run; `explore` draws fresh examples, more of them.
settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=1000, deadline=None, print_blob=True)
# `make mutate` runs the tests once per mutant: the same derandomised examples, fewer of them.
settings.register_profile("mutate", parent=settings.get_profile("ci"), max_examples=40)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Tests that need a real PostgreSQL or a real browser carry a marker (from the fixture they use),
# so that leaving them out is an explicit choice (`-m "not browser"`), never a silent skip.
_MARKED_FIXTURES = {"pg_url": "postgresql", "browser": "browser", "page": "browser"}


def pytest_configure(config):
    config.addinivalue_line("markers", "postgresql: needs the PostgreSQL server on 127.0.0.1:5432")
    config.addinivalue_line("markers", "browser: needs Debian's Chromium at /usr/bin/chromium")


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, marker in _MARKED_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


SMALL_POLICY = """
name = "small"
title = "A small policy that exercises every clause"
start = 1000
min = 900
max = 1100

[[class]]
name = "A"
min = 1050

[[class]]
name = "B"
min = 950

[[class]]
name = "C"

[[rule]]
id = "capped"
kind = "k.capped"
points = -10
reason = "capped and expiring"
max_per_day = 2
expires_after_days = 3

[[rule]]
id = "camera"
kind = "k.camera"
points = -30
reason = "seen by a camera"
sources = ["camera", "police"]
min_confidence = 0.9

[[rule]]
id = "reward"
kind = "k.reward"
points = 40
reason = "rewarded"
max_per_day = 1

[[rule]]
id = "drunk"
kind = "k.drunk"
points = -1
reason = "class held at C"
class_at_most = "C"
expires_after_days = 4
"""


@pytest.fixture
def small_policy():
    return parse_policy(SMALL_POLICY, source="small")


def events(rows: list[dict]) -> pl.DataFrame:
    """A validated event table from a few dicts (missing optional columns are null)."""
    return validate_events(pl.DataFrame(rows, schema_overrides={"day": pl.Int32}))


CHROMIUM = "/usr/bin/chromium"
# Flags for a headless Chromium on a machine with no network beyond loopback.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by playwright (never a downloaded browser).

    The browser is part of the suite, not an option: a missing Chromium fails the test
    (`make services` installs it; deselect with `-m "not browser"` on purpose).
    """
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make services does)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    """A fresh page whose JavaScript errors and console errors are collected in `page.errors`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and page.errors.append(msg.text))
    yield page
    context.close()


# -- Runs made by the program --------------------------------------------------------------------
# The service, web and CLI tests read runs that `socialcredit.simulation.simulate` wrote and that
# the real `socialcredit db load RUN --db URL` loaded, never hand-written run folders: a fixture
# the program never produces lets a test pass while the real path is broken. The runs are small
# (4,000 citizens x 45 days, every event recorded: about 1.1-1.4 x 10^4 events, a second or two to
# simulate and to load) and made once per session; the overrides make happen what a default town
# of this size rarely shows: camera sightings (red lights), false matches (a small reference
# gallery), daily caps (rongcheng's red-light cap) and class D (court defaults).
RUN_SIZE = {"population": 4000, "days": 45, "seed": 2018}
RUN_OVERRIDES = {"behaviour.rates.traffic.red_light": 0.1, "sensors.fmr": 0.05,
                 "sensors.reference_gallery": 10000, "behaviour.rates.court.judgment_default": 0.003}
# rongcheng deducts 100 points for a court default (taz-2018: 450): more of them to reach D.
RUN_POLICY_OVERRIDES = {"rongcheng": {"behaviour.rates.court.judgment_default": 0.03}}


class LoadedRun:
    """A simulated run and a database that `socialcredit db load` filled from it (a template: tests
    that write take a `copy`)."""

    def __init__(self, run, db_url: str, output: str):
        self.run = run
        self.path = run.path
        self.db_url = db_url
        self.load_output = output
        self.citizens = run.citizens
        self.events = run.events

    @property
    def day(self) -> int:
        """The service day after the load: the last day with an event."""
        return int(self.events["day"].max())

    def copy(self, folder) -> str:
        """A private copy of the loaded database in `folder`; returns its URL."""
        import shutil
        from pathlib import Path

        template = Path(self.db_url.removeprefix("sqlite:///"))
        for f in template.parent.glob(template.name + "*"):
            shutil.copy2(f, Path(folder) / f.name)
        return f"sqlite:///{Path(folder) / template.name}"

    def citizen(self, **where) -> dict:
        """The row of citizens.parquet of the citizen with the most camera events among those that
        match `where` (column=value), ties broken by id: a rule, not a name."""
        cams = (self.events.filter(pl.col("source") == "camera").group_by("citizen_id")
                .agg(cameras=pl.len()))
        rows = self.citizens.join(cams, on="citizen_id", how="left").with_columns(pl.col("cameras").fill_null(0))
        for column, value in where.items():
            rows = rows.filter(pl.col(column) == value)
        assert rows.height, f"the run has no citizen with {where}"
        return rows.sort(["cameras", "citizen_id"], descending=[True, False]).row(0, named=True)

    def events_of(self, citizen_id: str) -> pl.DataFrame:
        return self.events.filter(pl.col("citizen_id") == citizen_id).sort("day", "event_id")


# `make mutate` runs the service's tests once per mutant, each time in a fresh process; it points
# this at a folder of its own so that the runs (the simulator is not mutated) are simulated once.
RUN_CACHE = os.environ.get("SOCIALCREDIT_TEST_RUN_CACHE")


def simulate_run(folder, policy: str, **extra):
    """One small run under `policy` (a preset name or a TOML path) with the suite's overrides."""
    from socialcredit.simulation import Run, simulate

    overrides = {**RUN_OVERRIDES, **RUN_POLICY_OVERRIDES.get(policy, {}), **extra.pop("overrides", {})}
    args = {**RUN_SIZE, **extra, "policy": policy, "events": "all", "overrides": overrides}
    if RUN_CACHE:
        import hashlib
        import json
        import shutil
        from pathlib import Path

        text = Path(policy).read_text(encoding="utf-8") if str(policy).endswith(".toml") else policy
        key = hashlib.sha256(json.dumps([args, text], sort_keys=True, default=str).encode()).hexdigest()[:16]
        cached = Path(RUN_CACHE) / key
        if not (cached / "manifest.json").is_file():
            simulate(**args, out=Path(RUN_CACHE) / f".{key}-{os.getpid()}").path.rename(cached)
        shutil.copytree(cached, folder)
        return Run.open(folder)
    return simulate(**args, out=folder)


def db_load(run_dir, db_url: str, *args: str) -> str:
    """`socialcredit db load RUN --db URL [args]`, as a user runs it; returns its output."""
    from typer.testing import CliRunner

    from socialcredit.cli import app

    result = CliRunner().invoke(app, ["db", "load", str(run_dir), "--db", db_url, *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def simulated_runs(tmp_path_factory):
    """`simulated_runs(policy)`: the suite's run under a preset or TOML policy, simulated once."""
    made = {}

    def get(policy: str = "taz-2018"):
        if policy not in made:
            folder = tmp_path_factory.mktemp("run-" + "".join(c if c.isalnum() else "-" for c in policy)[-40:])
            made[policy] = simulate_run(folder / "run", policy)
        return made[policy]

    return get


@pytest.fixture(scope="session")
def loaded_runs(simulated_runs, tmp_path_factory):
    """`loaded_runs(policy)`: that run loaded into SQLite by `socialcredit db load` (no --policy:
    the command takes the run's policy from its manifest), once per session."""
    made = {}

    def get(policy: str = "taz-2018") -> LoadedRun:
        if policy not in made:
            run = simulated_runs(policy)
            url = f"sqlite:///{tmp_path_factory.mktemp('loaded')}/run.db"
            made[policy] = LoadedRun(run, url, db_load(run.path, url))
        return made[policy]

    return get
