"""Bad arguments or files: a clear error naming the field, and nothing written."""

import pytest

from socialcredit.simulation import SimulationError, load_scenario, simulate


def _refused(tmp_path, match, **kwargs):
    args = {"population": 100, "days": 2, "seed": 1, "out": tmp_path / "run"}
    args.update(kwargs)
    with pytest.raises(SimulationError, match=match):
        simulate(**args)
    assert list(tmp_path.iterdir()) == [p for p in tmp_path.iterdir() if p.name.endswith(".toml")]


def test_bad_sizes_and_options_are_refused(tmp_path):
    _refused(tmp_path, "--population", population=0)
    _refused(tmp_path, "--days", days=0)
    _refused(tmp_path, "--seed", seed=-1)
    _refused(tmp_path, "--events", events="some")
    _refused(tmp_path, "--events", events="sample:1.5")
    _refused(tmp_path, "--device", device="tpu")
    _refused(tmp_path, "--workers", workers=0)
    _refused(tmp_path, "not both", workers=2, scheduler="tcp://127.0.0.1:1")


def test_cuda_without_a_gpu_says_so(tmp_path):
    _refused(tmp_path, "--device cuda", device="cuda")


def test_bad_scenario_files_name_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ntitle = "x"\n[[region]]\nname = "a"\nshare = 0.5\n', encoding="utf-8")
    _refused(tmp_path, "shares must add up to 1", scenario=str(bad))
    bad.write_text('name = "x"\ntitle = "x"\n[[region]]\nname = "a"\nshare = 1.0\npolicy = "nope"\n',
                   encoding="utf-8")
    _refused(tmp_path, r"region\[0\]\.policy", scenario=str(bad))
    bad.write_text('name = "x"\ntitle = "x"\n[[region]]\nname = "a"\nshare = 1.0\ncoverage = '
                   '{ street = 2.0, mall = 0.1, subway = 0.1 }\n', encoding="utf-8")
    _refused(tmp_path, r"region\[0\]\.coverage\.street", scenario=str(bad))
    bad.write_text("name = [", encoding="utf-8")
    _refused(tmp_path, "TOML syntax error", scenario=str(bad))
    _refused(tmp_path, "no scenario preset or file", scenario="atlantis")
    _refused(tmp_path, "no such file", scenario=str(tmp_path / "missing.toml"))


def test_bad_overrides_name_the_field(tmp_path):
    _refused(tmp_path, "behaviour.deterrence", overrides={"behaviour.deterrence": 2.0})
    _refused(tmp_path, "unknown kind", overrides={"behaviour.rates.traffic.flying": 0.1})
    _refused(tmp_path, "sensors.colour", overrides={"sensors.colour": 1})
    _refused(tmp_path, "policy", policy="nope")


def test_an_existing_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SimulationError, match="not an empty folder"):
        simulate(population=100, days=2, seed=1, out=out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_presets_load():
    assert load_scenario("one-town").regions[0].policy == "taz-2018"
    pilots = load_scenario("pilot-regions-2018")
    assert len(pilots.regions) == 13
    assert {r.policy for r in pilots.regions} == {"rongcheng", "taz-2018", None}
    assert pilots.commercial_policy == "sesame"
