"""Dedicated volunteers, the honest route to the top class (fixed seeds, tolerances of 4 standard errors).

A share `behaviour.volunteer_share` of everyone is drawn once as dedicated volunteers; while of the
volunteering kind's ages they do a shift at `behaviour.volunteer_rate` a day, on top of the
occasional volunteering their civic trait gives them (base rate times a factor of mean 1). The
community committees see 90% of shifts (simulation/_kinds.py).
"""

import math

import polars as pl
import pytest

from socialcredit.simulation import simulate
from socialcredit.simulation._kinds import KINDS

SHARE = 0.02  # twice the default, so that 20,000 citizens hold ~400 volunteers
KIND = next(k for k in KINDS if k[0] == "civic.volunteering")
BASE, (MIN_AGE, MAX_AGE), SEEN = KIND[3], KIND[2], KIND[6][0][1]
# No bots, no conformity (a rewarded act would grow 20% more frequent once scored).
CALM = {"behaviour.gaming": 0.0, "behaviour.conformity": 0.0}


@pytest.fixture(scope="module")
def volunteer_run(tmp_path_factory):
    """A year under rongcheng (AAA from 1050), every event written."""
    return simulate(population=20_000, days=365, seed=21, policy="rongcheng", events="all",
                    out=tmp_path_factory.mktemp("volunteers") / "run",
                    overrides={**CALM, "behaviour.volunteer_share": SHARE})


def test_a_share_of_everyone_volunteers(volunteer_run):
    citizens = volunteer_run.citizens
    n = citizens.height
    assert abs(citizens["volunteer"].sum() - n * SHARE) < 4 * math.sqrt(n * SHARE * (1 - SHARE))


def test_volunteers_do_a_shift_at_their_rate_and_others_at_the_civic_rate(volunteer_run):
    # No birthday in a 365-day run: a citizen's age is the same every day.
    citizens = volunteer_run.citizens.filter(pl.col("age").is_between(MIN_AGE, MAX_AGE))
    seen = (volunteer_run.events.filter(pl.col("kind") == "civic.volunteering")
            .group_by("actor_id").len().rename({"actor_id": "citizen_id", "len": "shifts"}))
    per = citizens.join(seen, on="citizen_id", how="left").group_by("volunteer").agg(
        pl.col("shifts").fill_null(0).sum(), pl.len().alias("n"))
    for volunteer, observed, n in per.iter_rows():
        rate = BASE + (1 / 7 if volunteer else 0.0)
        expected = SEEN * rate * 365 * n
        assert abs(observed - expected) < 4 * math.sqrt(expected), (volunteer, observed, expected)


def test_without_bots_the_top_class_is_reached_by_volunteers(volunteer_run, tmp_path):
    scored = volunteer_run.citizens.filter(pl.col("class").is_not_null())
    top = scored.filter(pl.col("class") == "AAA")
    # A year of weekly shifts at +3 (about 140 points) lifts a volunteer from 1000 over 1050; no one
    # else has an honest way up that far in a year (two heroic acts would do, and are that rare).
    assert top.height > 0 and top["volunteer"].all()
    assert top.height / scored["volunteer"].sum() > 0.8
    alone = simulate(population=20_000, days=365, seed=21, policy="rongcheng", out=tmp_path / "none",
                     overrides={**CALM, "behaviour.volunteer_share": 0.0})
    assert not alone.citizens["volunteer"].any()
    assert alone.citizens.filter(pl.col("class") == "AAA").height == 0
