"""Tailored offers: every in-store record of a commercial profile makes an online offer to the
profile's owner, taken at the rate of their own interest, or rarely when a look-alike's face put
the record there; the offers draw from a stream of their own and change nothing else."""

import math

import polars as pl
import pytest

from socialcredit.analysis._metrics import share_interval
from socialcredit.simulation import load_scenario, simulate
from socialcredit.simulation._kinds import COUNTERS
from socialcredit.simulation._scenario import SimulationError

OFFERS = ["offers_made", "offers_taken", "offers_wrongful", "offers_wrongful_taken"]
# Many mall sightings of platform members, and false matches common enough (gallery_exponent 0: the
# reference group's rate is `fmr`, x10 and x100 for the other groups) to count look-alikes' records.
BUSY_MALLS = {"sensors.passive_sightings": 0.5, "sensors.instore_clothes": 1.0, "sensors.rural_coverage": 1.0,
              "region.0.coverage.mall": 1.0, "sensors.fmr": 0.02, "sensors.gallery_exponent": 0.0}
ARGS = {"population": 20_000, "days": 30, "seed": 9}


def _run(path, **overrides):
    return simulate(out=path, **ARGS, events="all", overrides={**BUSY_MALLS, **overrides})


def _sums(run) -> dict[str, int]:
    return run.daily.select(pl.col("instore_records", "instore_wrongful", *OFFERS).sum()).row(0, named=True)


@pytest.fixture(scope="module")
def offers_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("offers") / "run")


def test_the_offers_are_daily_counters():
    assert COUNTERS[-4:] == tuple(OFFERS)
    sensors = load_scenario("one-town").sensors
    assert (sensors.offer_rate, sensors.offer_take, sensors.offer_take_mismatch) == (1.0, 0.03, 0.003)


def test_every_in_store_record_makes_one_offer_at_rate_one(offers_run):
    daily = offers_run.daily
    s = _sums(offers_run)
    assert s["instore_records"] > 20_000 and s["instore_wrongful"] > 500, s
    # Row by row (day and region): the record and its offer are counted together.
    assert (daily["offers_made"] == daily["instore_records"]).all()
    assert (daily["offers_wrongful"] == daily["instore_wrongful"]).all()
    assert (daily["offers_taken"] <= daily["offers_made"]).all()
    assert (daily["offers_wrongful_taken"] <= daily["offers_wrongful"]).all()
    assert (daily["offers_wrongful_taken"] <= daily["offers_taken"]).all()
    assert 0 < s["offers_taken"] < s["offers_made"]


def test_offers_from_ones_own_record_are_taken_at_their_rate_and_far_more_often(offers_run):
    """Offers from a record of one's own are taken at offer_take (0.03), from a look-alike's at
    offer_take_mismatch (0.003): each count within 4 SE, sqrt(n p (1 - p)), of n p, and the two
    shares' Wilson intervals apart."""
    s = _sums(offers_run)
    own_n = s["offers_made"] - s["offers_wrongful"]
    own_k = s["offers_taken"] - s["offers_wrongful_taken"]
    wrong_n, wrong_k = s["offers_wrongful"], s["offers_wrongful_taken"]
    for k, n, p in ((own_k, own_n, 0.03), (wrong_k, wrong_n, 0.003)):
        assert abs(k - n * p) < 4 * math.sqrt(n * p * (1 - p)), (k, n, p)
    assert share_interval(wrong_k, wrong_n)[1] < share_interval(own_k, own_n)[0], s


def test_offers_change_nothing_else(offers_run, tmp_path):
    """No offers at all (offer_rate 0): the same events, citizens and every other daily column,
    since the offers draw from a stream of their own."""
    none = _run(tmp_path / "none", **{"sensors.offer_rate": 0.0})
    assert _sums(none)["offers_made"] == 0 and _sums(none)["offers_taken"] == 0
    assert _sums(none)["instore_records"] == _sums(offers_run)["instore_records"] > 0
    assert none.events.equals(offers_run.events)
    assert none.citizens.equals(offers_run.citizens)
    assert none.daily.drop(OFFERS).equals(offers_run.daily.drop(OFFERS))


def test_offer_rate_and_take_rates_are_used(offers_run, tmp_path):
    """At offer_rate 0.5 about half the records make an offer (within 4 SE); at take rates of 1
    every offer is taken, and the offers made are the same ones (the take draw is its own)."""
    half = _sums(_run(tmp_path / "half", **{"sensors.offer_rate": 0.5}))
    n = half["instore_records"]
    assert abs(half["offers_made"] - n / 2) < 4 * math.sqrt(n / 4), half
    assert half["offers_wrongful"] < half["instore_wrongful"]
    taken = _sums(_run(tmp_path / "all", **{"sensors.offer_take": 1.0, "sensors.offer_take_mismatch": 1.0}))
    assert taken["offers_taken"] == taken["offers_made"] == _sums(offers_run)["offers_made"]
    assert taken["offers_wrongful_taken"] == taken["offers_wrongful"] > 0


def test_offers_are_the_same_whatever_the_chunk_size(tmp_path):
    args = {**ARGS, "population": 9000, "overrides": {**BUSY_MALLS, "block_size": 1024}}
    whole = simulate(out=tmp_path / "whole", **args)
    sharded = simulate(out=tmp_path / "sharded", **args, chunk_blocks=2)
    assert sharded.manifest.shards > 1
    assert whole.daily.select(OFFERS).sum().row(0)[0] > 0
    assert whole.daily.equals(sharded.daily)


@pytest.mark.parametrize("field", ["offer_rate", "offer_take", "offer_take_mismatch"])
def test_a_rate_outside_zero_to_one_is_refused(field):
    with pytest.raises(SimulationError, match=field):
        load_scenario("one-town", overrides={f"sensors.{field}": 1.5})
