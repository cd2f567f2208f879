"""`calibrate`: a free parameter fitted to a target a known setting produces; bad input refused."""

import polars as pl
import pytest
from typer.testing import CliRunner

from socialcredit.analysis import CalibrationError, calibrate, compare_run, parse_free
from socialcredit.analysis._calibrate import calibrated_scenario
from socialcredit.analysis._validate import Targets
from socialcredit.cli import app
from socialcredit.simulation import simulate
from socialcredit.simulation._scenario import load_scenario

RUN = {"population": 10_000, "days": 60, "seed": 4}
# ~2,700 flights in a run: a rate's count differs from its mean by ~1.9% (Poisson), the fit's count
# from the target's by ~2.7%, so a fitted rate within 10% of the true one is 3.7 standard errors.
FIT = 0.10
TRUE_RATE = 0.0045


def _flights_target(published: float) -> Targets:
    return Targets.model_validate({"title": "flights", "represents": 738_600, "target": [{
        "name": "flights", "title": "Flights", "published": published, "unit": "flights a year",
        "year": 2018, "compare": "flow", "measure": "daily.flights", "tolerance": 1.1,
        "source": "docs/sources.md#taz-2018"}]})


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """What one-town's flights come to at a known flight rate: the figure to fit back."""
    run = simulate(**RUN, scenario="one-town", overrides={"consequences.flight": TRUE_RATE},
                   out=tmp_path_factory.mktemp("calibrate") / "truth").path
    flights = pl.read_parquet(run / "daily.parquet")["flights"].sum()
    return _flights_target(flights * 738_600 / RUN["population"] * 365 / RUN["days"])


def test_the_fit_finds_the_rate_that_made_the_target(target):
    tries = []
    fit = calibrate(scenario="one-town", targets=target, free=parse_free(["consequences.flight=0.0005:0.02"]),
                    budget=30, on_try=lambda n, best: tries.append((n, best)), **RUN)
    assert fit.values["consequences.flight"] == pytest.approx(TRUE_RATE, rel=FIT)
    assert fit.objective_best < fit.objective_start
    assert fit.best.rows[0].status == "within" and fit.start.rows[0].status == "outside"
    assert [n for n, _ in tries] == list(range(1, fit.tries + 1)) and fit.tries <= 30
    assert [b for _, b in tries] == sorted((b for _, b in tries), reverse=True)  # the best only improves


def test_the_written_scenario_extends_the_original_and_reproduces_the_fit(target, tmp_path):
    fit = calibrate(scenario="one-town", targets=target, free=parse_free(["consequences.flight=0.0005:0.02"]),
                    budget=30, **RUN)
    path = tmp_path / "calibrated.toml"
    path.write_text(calibrated_scenario(fit, scenario="one-town", targets_file="flights.toml", out=path, **RUN))
    text = path.read_text()
    assert 'extends = "one-town"' in text and "calibrated by `socialcredit calibrate`" in text
    assert "Targets: flights.toml" in text and "consequences.flight = " in text
    scenario = load_scenario(path)
    assert scenario.name == "one-town-calibrated"
    assert scenario.consequences.flight == pytest.approx(fit.values["consequences.flight"], rel=1e-5)
    assert scenario.regions == load_scenario("one-town").regions
    rerun = simulate(**RUN, scenario=path, out=tmp_path / "rerun")
    assert compare_run(rerun.path, target).rows[0].status == "within"


@pytest.mark.parametrize(("item", "message"), [
    ("consequences.flight", "expected section.field=LO:HI"),
    ("consequences.flight=0.1", "expected section.field=LO:HI"),
    ("consequences.flight=a:b", "expected section.field=LO:HI"),
    ("consequences.flight=0.2:0.1", "LO must be below HI"),
])
def test_a_bad_range_is_refused(item, message):
    with pytest.raises(CalibrationError, match=message):
        parse_free([item])


def test_a_parameter_named_twice_or_none_is_refused():
    with pytest.raises(CalibrationError, match="named twice"):
        parse_free(["sensors.fmr=0.001:0.01", "sensors.fmr=0.002:0.02"])
    with pytest.raises(CalibrationError, match="at least one parameter"):
        parse_free([])


@pytest.mark.parametrize(("item", "message"), [
    ("consequences.flights=0.001:0.01", "--free consequences.flights: not a number in scenario one-town"),
    ("consequences.blacklist_bans=0:1", "not a number"),
    ("consequences.flight=0.001:2.0", "consequences.flight: Input should be less than 1"),
])
def test_a_parameter_the_scenario_does_not_have_or_refuses_is_named_before_any_run(item, message, target):
    with pytest.raises(CalibrationError, match=message):
        calibrate(scenario="one-town", targets=target, free=parse_free([item]), budget=5, **RUN)


def test_a_kinds_default_rate_can_be_fitted():
    from socialcredit.simulation._scenario import current_value

    assert current_value(load_scenario("one-town"), "behaviour.rates.court.judgment_default") == 0.00002
    assert current_value(load_scenario("one-town"), "behaviour.rates.no.such_kind") is None


def test_the_command_writes_the_file_and_refuses_to_overwrite_it(target, tmp_path):
    targets = tmp_path / "flights.toml"
    t = target.targets[0]
    targets.write_text(f'title = "flights"\nrepresents = 738600\n[[target]]\nname = "flights"\ntitle = "Flights"\n'
                       f"published = {t.published}\nunit = \"flights a year\"\nyear = 2018\ncompare = \"flow\"\n"
                       'measure = "daily.flights"\ntolerance = 1.1\nsource = "docs/sources.md#taz-2018"\n')
    out = tmp_path / "fitted.toml"
    args = ["calibrate", "--scenario", "one-town", "-n", "10000", "-d", "60", "-s", "4", "--targets", str(targets),
            "--free", "consequences.flight=0.0005:0.02", "--budget", "25", "--out", str(out)]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "consequences.flight = " in result.output and "every target within its tolerance" in result.output
    assert load_scenario(out).consequences.flight == pytest.approx(TRUE_RATE, rel=FIT)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "exists" in again.output


def test_the_command_writes_nothing_on_bad_input(tmp_path):
    out = tmp_path / "fitted.toml"
    result = CliRunner().invoke(app, ["calibrate", "--scenario", "one-town", "--free", "sensors.nope=1:2",
                                      "--out", str(out)])
    assert result.exit_code == 1 and "sensors.nope" in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
