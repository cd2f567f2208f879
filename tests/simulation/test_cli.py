import polars as pl
from typer.testing import CliRunner

from socialcredit.cli import app

runner = CliRunner()


def test_simulate_command_writes_a_run_folder(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["simulate", "--population", "3000", "--days", "5", "--seed", "2",
                                 "--out", str(out), "--events", "sample:0.5"])
    assert result.exit_code == 0, result.output
    assert "citizen-days/s" in result.output
    for name in ("manifest.json", "daily.parquet", "citizens.parquet", "events.parquet"):
        assert (out / name).is_file()
    assert pl.read_parquet(out / "citizens.parquet").height == 3000


def test_simulate_command_reports_bad_arguments_cleanly(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["simulate", "-n", "10", "-d", "2", "-s", "1", "--out", str(out),
                                 "--set", "behaviour.deterrence=5"])
    assert result.exit_code == 1
    assert "behaviour.deterrence" in result.output
    assert not out.exists()
    result = runner.invoke(app, ["simulate", "-n", "10", "-d", "2", "-s", "1", "--out", str(out),
                                 "--device", "cuda"])
    assert result.exit_code == 1 and "no CUDA GPU" in result.output


def test_sweep_writes_one_outcomes_row_per_run(tmp_path):
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", "--set", "behaviour.deterrence=0.1,0.4", "--seeds", "1-2",
                                 "--population", "2000", "--days", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    outcomes = pl.read_parquet(out / "outcomes.parquet")
    assert outcomes.height == 4
    assert outcomes["behaviour.deterrence"].to_list() == [0.1, 0.1, 0.4, 0.4]
    assert outcomes["seed"].to_list() == [1, 2, 1, 2]
    for column in ("share.A", "wrongful_events", "wrongful_points", "sanction_citizen_days"):
        assert column in outcomes.columns
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"run-{i:04d}" for i in range(4)]


def test_sweep_refuses_a_bad_grid_before_running(tmp_path):
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", "--set", "behaviour.deterrence=0.1,9", "--out", str(out)])
    assert result.exit_code == 1 and "behaviour.deterrence" in result.output
    assert not out.exists()


def test_commands_have_help():
    for command in ("simulate", "sweep"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--out" in result.output
