"""The service agrees with the simulation it loaded, citizen by citizen.

A 20,000 x 180 run is loaded with `socialcredit db load` (no --policy: the run's own copy). For every
citizen the service's score, class, benefits and sanctions with their since-days equal what
citizens.parquet says (score, class, band_since, and the consequences the engine's compiled
consequences put in force on the last day), and the last day's holders of each consequence in
daily.parquet are the citizens the service says hold it.
"""

from importlib import resources

import polars as pl
import pytest

from socialcredit.engine import CompiledConsequences
from socialcredit.service import Service
from socialcredit.simulation import simulate
from tests.conftest import db_load

DAYS = 180


def _policy_file(folder, name: str, held: int):
    """A preset whose held days fit the run: its 180-day benefits held for `held` days instead."""
    text = resources.files("socialcredit.policy.presets").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    assert "held_days = 180" in text or name == "rongcheng"
    path = folder / f"{name}-short.toml"
    path.write_text(text.replace(f'name = "{name}"', f'name = "{name}-short"', 1)
                    .replace("held_days = 180", f"held_days = {held}"), encoding="utf-8")
    return path


@pytest.mark.parametrize("preset", ["taz-2018", "rongcheng"])
def test_every_citizen_of_a_loaded_run_is_what_the_run_says(tmp_path, preset):
    run = simulate(population=20_000, days=DAYS, seed=7, out=tmp_path / "run", events="all",
                   policy=str(_policy_file(tmp_path, preset, 30)),
                   overrides={"behaviour.gaming": 1.0, "behaviour.savvy_share": 0.3,
                              "behaviour.rates.online.pornography": 0.05})
    url = f"sqlite:///{tmp_path}/agree.db"
    db_load(run.path, url)
    service = Service.open(url)  # the policy the database keeps
    try:
        rules = CompiledConsequences.of(service.policy)
        assert service.policy.name == f"{preset}-short" and service.day == DAYS - 1
        citizens = run.citizens.filter(pl.col("score").is_not_null())
        holders: dict[str, int] = {}
        seen_since = set()
        for c in citizens.iter_rows(named=True):
            score, klass, idx = service._status(c["citizen_id"])
            assert (score, klass) == (c["score"], c["class"]), c["citizen_id"]
            benefits, sanctions = service.consequences(c["citizen_id"], idx)
            expected = [] if c["band_since"] is None else rules.in_force(idx, c["band_since"], DAYS - 1)
            got = [(x["name"], x["since_day"]) for x in [*benefits, *sanctions]]
            assert got == [(x.name, c["band_since"]) for x in expected], c["citizen_id"]
            for name, _ in got:
                holders[name] = holders.get(name, 0) + 1
            effects = {x["effect"] for x in [*benefits, *sanctions]}
            assert c["gate_flagged"] == ("gate_stop" in effects)
            assert (c["insurance"] == "better") == ("insurance_tier" in effects)
            discounted = any(x["effect"] == "loan_price" for x in benefits)
            assert c["loan_price"] == ("refused" if "loan_refusal" in effects else
                                       "discounted" if discounted else "standard")
            if expected and c["band_since"] > 0:
                seen_since.add(c["band_since"])
        last = run.daily.filter(pl.col("day") == DAYS - 1)
        for item in rules.items:
            column = f"{'benefit' if item.benefit else 'sanction'}.{item.name}"
            assert holders.get(item.name, 0) == int(last[column].sum()), column
        assert len(seen_since) > 10  # citizens entered their bands on many different days of the run
        assert sum(holders.values()) > 100
    finally:
        service.close()
