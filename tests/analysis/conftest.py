import pytest

from socialcredit.simulation import simulate

# Small but busy: enough camera false matches, bots and an admission round in 60 days to fill every section.
BUSY = {
    "behaviour.rates.traffic.red_light": 0.05,
    "behaviour.rates.public.littering": 0.03,
    "behaviour.rates.online.party_newspaper_visit": 0.05,
    "behaviour.rates.social.complaint": 0.03,
    "behaviour.gaming": 1.0,
    "sensors.fmr": 0.01,
    "sensors.gallery_exponent": 0.0,
    "region.0.coverage.street": 1.0,
    "consequences.admission_day": 30,
}


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """The same 20,000 citizens and seed for 60 days under taz-2018 (all events) and accountable (none)."""
    base = tmp_path_factory.mktemp("report-runs")
    taz = simulate(population=20_000, days=60, seed=3, out=base / "taz", events="all", overrides=BUSY)
    accountable = simulate(population=20_000, days=60, seed=3, out=base / "accountable", events="none",
                           overrides=BUSY, policy="accountable")
    return taz.path, accountable.path
