"""A scenario file that starts from another: `extends`, its own values on top, then `[set]`."""

import pytest

from socialcredit.simulation import SimulationError
from socialcredit.simulation._scenario import load_scenario


def test_a_file_extends_a_preset_and_sets_values_by_path(tmp_path):
    path = tmp_path / "fitted.toml"
    path.write_text('extends = "pilot-regions-2018"\nname = "fitted"\n[sensors]\nfmr = 0.004\n'
                    '[set]\n"consequences.flight" = 0.003\n"behaviour.rates.court.judgment_default" = 0.0001\n'
                    '"region.0.urban" = 0.5\n')
    base, fitted = load_scenario("pilot-regions-2018"), load_scenario(path)
    assert fitted.name == "fitted" and fitted.title == base.title
    assert fitted.sensors.fmr == 0.004 and fitted.sensors.fnmr == base.sensors.fnmr  # tables merge
    assert fitted.consequences.flight == 0.003
    assert fitted.behaviour.rates == {"court.judgment_default": 0.0001}
    assert fitted.regions[0].urban == 0.5 and fitted.regions[1:] == base.regions[1:]


def test_a_file_extends_a_file_beside_it(tmp_path):
    (tmp_path / "base.toml").write_text('extends = "one-town"\nname = "base"\n[consequences]\ntrain = 0.002\n')
    (tmp_path / "child.toml").write_text('extends = "base.toml"\nname = "child"\n')
    child = load_scenario(tmp_path / "child.toml")
    assert child.name == "child" and child.consequences.train == 0.002
    assert child.regions == load_scenario("one-town").regions


@pytest.mark.parametrize(("text", "message"), [
    ('extends = "no-such-scenario"\n', "no scenario preset or file named 'no-such-scenario'"),
    ("extends = 3\n", "extends: must be a scenario name or file"),
    ('extends = "one-town"\nset = 1\n', "set: must be a table"),
    ('extends = "one-town"\n[set]\n"sensors.nope" = 1\n', "sensors.nope"),
    ('extends = "loop.toml"\n', "extends itself"),
])
def test_a_bad_extension_is_refused_naming_it(tmp_path, text, message):
    path = tmp_path / "loop.toml"
    path.write_text(text)
    with pytest.raises(SimulationError, match=message):
        load_scenario(path)


def test_a_scenario_starts_on_a_date():
    assert str(load_scenario("pilot-regions-2018").start_date) == "2018-01-01"
    assert str(load_scenario("one-town", overrides={"start_date": "2019-06-01"}).start_date) == "2019-06-01"
