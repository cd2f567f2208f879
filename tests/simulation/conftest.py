import pytest

from socialcredit.simulation import simulate

# Offences common enough that caps, expiry, class caps and false matches all happen in a short run.
BUSY = {
    "behaviour.rates.traffic.red_light": 0.05,
    "behaviour.rates.traffic.drunk_driving": 0.002,
    "behaviour.rates.public.littering": 0.03,
    "behaviour.rates.online.pornography": 0.05,
    "behaviour.rates.online.party_newspaper_visit": 0.05,
    "sensors.fmr": 0.01,
    "sensors.gallery_exponent": 0.0,
    "region.0.coverage.street": 1.0,
}


@pytest.fixture(scope="session")
def busy():
    return dict(BUSY)


@pytest.fixture(scope="session")
def busy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "busy"
    return simulate(population=6000, days=40, seed=7, out=out, events="all", overrides=BUSY)
