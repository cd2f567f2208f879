"""The command line, invoked as a user would, then the files it wrote inspected."""

import polars as pl
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from socialcredit.cli import app
from tests.conftest import SMALL_POLICY

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def ledger(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,citizen_id,kind,day,source,source_ref,confidence\n"
        "e1,c1,k.camera,0,camera,cam-3,0.95\n"
        "e2,c1,k.reward,1,,,\n"
        "e3,c2,k.drunk,1,police,,\n"
        "e4,c2,k.other,1,,,\n"
    )
    return path


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL_POLICY)
    return path


def test_policy_list_shows_every_preset():
    result = invoke("policy", "list")
    assert result.exit_code == 0
    for name in ("taz-2018", "rongcheng", "sesame", "accountable"):
        assert name in result.output


def test_policy_show_prints_classes_and_rules():
    result = invoke("policy", "show", "taz-2018")
    assert result.exit_code == 0
    assert "AAA" in result.output and "traffic.red_light" in result.output and "Access grants" in result.output


def test_policy_check_ok_and_invalid(tmp_path, policy_file):
    assert invoke("policy", "check", policy_file).exit_code == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL_POLICY.replace("points = 40", 'points = "forty"'))
    result = invoke("policy", "check", bad)
    assert result.exit_code == 1
    assert "rule[2].points" in result.output
    bad.write_text(SMALL_POLICY.replace('id = "reward"', "id = reward"))
    result = invoke("policy", "check", bad)
    assert result.exit_code == 1 and "line" in result.output


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_score_writes_one_row_per_citizen(tmp_path, ledger, policy_file, suffix):
    out = tmp_path / f"scores{suffix}"
    result = invoke("score", "--policy", policy_file, "--events", ledger, "--out", out)
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(out) if suffix == ".csv" else pl.read_parquet(out)
    assert frame.select("citizen_id", "score", "class").rows() == [("c1", 1010, "B"), ("c2", 999, "C")]
    assert "k.other (1)" in result.output and "--strict" in result.output


def test_score_strict_bad_rows_and_duplicates_write_nothing(tmp_path, ledger, policy_file):
    out = tmp_path / "scores.csv"
    result = invoke("score", "--policy", policy_file, "--events", ledger, "--out", out, "--strict")
    assert result.exit_code == 1 and "k.other" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text(ledger.read_text() + "e5,c3,k.reward,soon,,,\n")
    result = invoke("score", "--policy", policy_file, "--events", bad, "--out", out)
    assert result.exit_code == 1 and "row 5, column day" in result.output
    bad.write_text(ledger.read_text() + "e1,c3,k.reward,2,,,\n")
    result = invoke("score", "--policy", policy_file, "--events", bad, "--out", out)
    assert result.exit_code == 1 and "duplicate event_id 'e1'" in result.output
    assert not out.exists()
    assert list(tmp_path.glob(".scores*")) == []


def test_score_as_of(tmp_path, ledger, policy_file):
    out = tmp_path / "s.csv"
    assert invoke("score", "-p", policy_file, "-e", ledger, "-o", out, "--as-of", "0").exit_code == 0
    assert pl.read_csv(out).rows() == [("c1", 970, "B"), ("c2", 1000, "B")]


def test_explain_lists_factors_and_events_with_provenance(ledger, policy_file):
    result = invoke("explain", "--policy", policy_file, "--events", ledger, "--citizen", "c1")
    assert result.exit_code == 0, result.output
    assert "score 1010" in result.output and "Key factors" in result.output
    assert "seen by a camera" in result.output and "cam-3" in result.output and "0.950" in result.output
    result = invoke("explain", "--policy", policy_file, "--events", ledger, "--citizen", "c2")
    assert "held at C" in result.output and "'drunk'" in result.output


def test_explain_unknown_citizen(ledger, policy_file):
    result = invoke("explain", "--policy", policy_file, "--events", ledger, "--citizen", "nobody")
    assert result.exit_code == 1 and "nobody" in result.output


def test_unknown_policy_names_the_presets(ledger, tmp_path):
    result = invoke("score", "-p", "nonesuch", "-e", ledger, "-o", tmp_path / "o.csv")
    assert result.exit_code == 1 and "taz-2018" in result.output


def test_every_command_has_help_text():
    def walk(cmd, path=()):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, (*path, name))

    for path, cmd in walk(get_command(app)):
        assert cmd.help, f"command {' '.join(path)} has no help"
        assert invoke(*path, "--help").exit_code == 0
