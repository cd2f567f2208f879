import polars as pl
import pytest

from socialcredit.events import validate_events
from socialcredit.policy import parse_policy

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
    """Debian's Chromium driven by playwright (never a downloaded browser)."""
    import os

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
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
