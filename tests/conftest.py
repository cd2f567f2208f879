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
