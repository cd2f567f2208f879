"""The command line, invoked as a user would, then the files it wrote inspected."""

import subprocess
import sys

import polars as pl
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from socialcredit.cli import app
from socialcredit.policy import load_policy
from tests.conftest import SMALL_POLICY

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def handmade_ledger(tmp_path):
    """A hand-written ledger for SMALL_POLICY: one event per clause (camera threshold, a reward,
    a class cap, an unknown kind), precise cases no simulated run is made to hold."""
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
def test_score_writes_one_row_per_citizen(tmp_path, handmade_ledger, policy_file, suffix):
    out = tmp_path / f"scores{suffix}"
    result = invoke("score", "--policy", policy_file, "--events", handmade_ledger, "--out", out)
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(out) if suffix == ".csv" else pl.read_parquet(out)
    assert frame.select("citizen_id", "score", "class").rows() == [("c1", 1010, "B"), ("c2", 999, "C")]
    assert "k.other (1)" in result.output and "--strict" in result.output


def test_score_strict_bad_rows_and_duplicates_write_nothing(tmp_path, handmade_ledger, policy_file):
    out = tmp_path / "scores.csv"
    result = invoke("score", "--policy", policy_file, "--events", handmade_ledger, "--out", out, "--strict")
    assert result.exit_code == 1 and "k.other" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text(handmade_ledger.read_text() + "e5,c3,k.reward,soon,,,\n")
    result = invoke("score", "--policy", policy_file, "--events", bad, "--out", out)
    assert result.exit_code == 1 and "row 5, column day" in result.output
    bad.write_text(handmade_ledger.read_text() + "e1,c3,k.reward,2,,,\n")
    result = invoke("score", "--policy", policy_file, "--events", bad, "--out", out)
    assert result.exit_code == 1 and "duplicate event_id 'e1'" in result.output
    assert not out.exists()
    assert list(tmp_path.glob(".scores*")) == []


def test_score_as_of(tmp_path, handmade_ledger, policy_file):
    out = tmp_path / "s.csv"
    assert invoke("score", "-p", policy_file, "-e", handmade_ledger, "-o", out, "--as-of", "0").exit_code == 0
    assert pl.read_csv(out).rows() == [("c1", 970, "B"), ("c2", 1000, "B")]


def test_explain_lists_factors_and_events_with_provenance(handmade_ledger, policy_file):
    result = invoke("explain", "--policy", policy_file, "--events", handmade_ledger, "--citizen", "c1")
    assert result.exit_code == 0, result.output
    assert "score 1010" in result.output and "Key factors" in result.output
    assert "seen by a camera" in result.output and "cam-3" in result.output and "0.950" in result.output
    result = invoke("explain", "--policy", policy_file, "--events", handmade_ledger, "--citizen", "c2")
    assert "held at C" in result.output and "'drunk'" in result.output


def test_explain_unknown_citizen(handmade_ledger, policy_file):
    result = invoke("explain", "--policy", policy_file, "--events", handmade_ledger, "--citizen", "nobody")
    assert result.exit_code == 1 and "nobody" in result.output


def test_unknown_policy_names_the_presets(handmade_ledger, tmp_path):
    result = invoke("score", "-p", "nonesuch", "-e", handmade_ledger, "-o", tmp_path / "o.csv")
    assert result.exit_code == 1 and "taz-2018" in result.output


def test_every_command_has_help_text():
    def walk(cmd, path=()):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, (*path, name))

    for path, cmd in walk(get_command(app)):
        assert cmd.help, f"command {' '.join(path)} has no help"
        assert invoke(*path, "--help").exit_code == 0


# The hand-written ledger above exercises every clause of a small policy; a simulated run is what
# users score: its events.parquet carries the simulator's extra columns (actor_id, wrongful, ...)
# and kinds only the commercial score counts.


def test_score_of_a_simulated_run_is_its_citizens_scores(simulated_runs, tmp_path):
    run = simulated_runs("taz-2018")
    out = tmp_path / "scores.parquet"
    result = invoke("score", "--policy", "taz-2018", "--events", run.path / "events.parquet", "--out", out)
    assert result.exit_code == 0, result.output
    got = pl.read_parquet(out).select("citizen_id", "score", pl.col("class").cast(pl.String)).sort("citizen_id")
    expected = (run.citizens.join(run.events.select("citizen_id").unique(), on="citizen_id")
                .select("citizen_id", "score", "class").sort("citizen_id"))
    assert got.equals(expected)
    rules = {r.kind for r in load_policy("taz-2018").rules}
    unscored = run.events.filter(~pl.col("kind").is_in(list(rules))).group_by("kind").len().sort(
        ["len", "kind"], descending=[True, False])
    assert unscored.height  # the commercial score's kinds
    said = " ".join(result.output.split())  # the warning wraps at the console's width
    assert f"{unscored['len'].sum():,} events of kinds no rule scores" in said
    for kind, n in unscored.head(10).iter_rows():
        assert f"{kind} ({n:,})" in said


def test_explain_a_simulated_citizen_lists_their_camera_events(simulated_runs):
    run = simulated_runs("taz-2018")
    cams = run.events.filter(pl.col("source") == "camera").group_by("citizen_id").len()
    citizen = (run.citizens.filter(pl.col("class") == "D").join(cams, on="citizen_id")
               .sort(["len", "citizen_id"], descending=[True, False]).row(0, named=True))
    mine = run.events.filter(pl.col("citizen_id") == citizen["citizen_id"]).sort("day", "event_id")
    result = invoke("explain", "--policy", "taz-2018", "--events", run.path / "events.parquet",
                    "--citizen", citizen["citizen_id"], "--limit", "0")
    assert result.exit_code == 0, result.output
    # As of the ledger's last day (the run's), as the simulator scored it.
    last = run.events["day"].max()
    assert f"as of day {last} ({run.calendar.iso(last)}): score {citizen['score']}, class D" in result.output
    for e in mine.filter(pl.col("source") == "camera").iter_rows(named=True):
        line = next(line for line in result.output.splitlines() if e["event_id"] in line)
        assert e["kind"] in line and e["source_ref"] in line and f"{e['confidence']:.3f}" in line
        assert line.split()[1] == run.calendar.iso(e["day"])  # the date column, after the table's border


def test_score_and_explain_with_the_register_of_a_min_age_policy(simulated_runs, tmp_path):
    run = simulated_runs("rongcheng")  # min_age 18: the run's minors have no score
    citizens = run.path / "citizens.parquet"
    out = tmp_path / "scores.parquet"
    result = invoke("score", "--policy", "rongcheng", "--events", run.path / "events.parquet", "--out", out,
                    "--citizens", citizens)
    assert result.exit_code == 0, result.output
    got = pl.read_parquet(out).select("citizen_id", "score", pl.col("class").cast(pl.String)).sort("citizen_id")
    expected = (run.citizens.filter(pl.col("score").is_not_null())
                .join(run.events.select("citizen_id").unique(), on="citizen_id")
                .select("citizen_id", "score", "class").sort("citizen_id"))
    assert got.equals(expected)
    assert "underage" in result.output
    minor = (run.citizens.filter(pl.col("age") < 18).join(run.events.group_by("citizen_id").len(), on="citizen_id")
             .sort(["len", "citizen_id"], descending=[True, False]).row(0, named=True))
    result = invoke("explain", "--policy", "rongcheng", "--events", run.path / "events.parquet",
                    "--citizen", minor["citizen_id"], "--citizens", citizens)
    assert result.exit_code == 0, result.output
    assert "not scored (under the policy's minimum age, 18)" in " ".join(result.output.split())
    # Without the register the CLI cannot know anyone's age: everyone is scored.
    result = invoke("score", "--policy", "rongcheng", "--events", run.path / "events.parquet", "--out", out)
    assert pl.read_parquet(out).height > got.height


def test_a_register_without_birth_days_is_refused_by_name(tmp_path, handmade_ledger, policy_file):
    register = tmp_path / "people.csv"
    register.write_text("citizen_id,age\nc1,17\n")
    out = tmp_path / "s.csv"
    result = invoke("score", "--policy", policy_file, "--events", handmade_ledger, "--out", out, "--citizens", register)
    assert result.exit_code == 1 and "missing column(s) birth_day" in result.output and not out.exists()
    register.write_text("citizen_id,birth_day\nc1,soon\n")
    result = invoke("score", "--policy", policy_file, "--events", handmade_ledger, "--out", out, "--citizens", register)
    assert result.exit_code == 1 and "birth_day must hold whole numbers" in result.output and not out.exists()


@pytest.mark.parametrize("args", [["--help"], ["policy", "show", "taz-2018"], ["policy", "check", "x.toml"]])
def test_light_commands_start_without_the_kernel_the_service_or_the_report(args):
    """`--help` and `policy show` import only what they use: not numba's kernel, FastAPI, scipy or plotly."""
    heavy = ["numba", "fastapi", "uvicorn", "scipy", "plotly", "socialcredit.simulation.kernel",
             "socialcredit.service._service", "socialcredit.analysis._report"]
    code = ("import sys\nfrom socialcredit.cli import app\n"
            f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {heavy!r} if m in sys.modules], file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr[-2000:]
