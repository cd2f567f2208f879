"""The service's CLI commands: keys create and revoke, db load, help texts."""

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from socialcredit.cli import app
from socialcredit.engine import score_ledger
from socialcredit.events import read_events
from socialcredit.service import Database, Service, authenticate

runner = CliRunner()


@pytest.mark.parametrize("command", [["serve"], ["db", "load"], ["keys", "create"], ["keys", "revoke"]])
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "--db" in result.output


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(tmp_path):
    url = f"sqlite:///{tmp_path}/k.db"
    result = runner.invoke(app, ["keys", "create", "--role", "agency", "--name", "police",
                                 "--source", "camera", "--source", "courts", "--db", url])
    assert result.exit_code == 0, result.output
    secret = result.output.strip()
    db = Database.open(url)
    assert not db.execute("SELECT 1 FROM api_keys WHERE hash = ?", (secret,))
    key = authenticate(db, secret)
    assert (key.name, key.role, key.sources) == ("police", "agency", ("camera", "courts"))
    result = runner.invoke(app, ["keys", "revoke", "police", "--db", url])
    assert result.exit_code == 0
    with pytest.raises(Exception, match="revoked"):
        authenticate(db, secret)
    db.close()


@pytest.mark.parametrize(("args", "words"), [
    (["--role", "citizen", "--name", "x"], "bound to one citizen"),
    (["--role", "agency", "--name", "x"], "--source"),
    (["--role", "bank", "--name", "x", "--source", "camera"], "take no --source"),
    (["--role", "king", "--name", "x"], "unknown role"),
])
def test_keys_create_refuses_bad_bindings(tmp_path, args, words):
    result = runner.invoke(app, ["keys", "create", *args, "--db", f"sqlite:///{tmp_path}/k.db"])
    assert result.exit_code == 1 and words in result.output


def test_db_load_reads_a_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pl.DataFrame({"citizen_id": ["a", "b", "c"], "age": [30.0, 41.0, 67.0], "region": ["x", "y", "x"]}
                 ).write_parquet(run / "citizens.parquet")
    pl.DataFrame({"event_id": ["1", "2", "3"], "citizen_id": ["a", "a", "b"],
                  "kind": ["traffic.red_light", "civic.heroic_act", "traffic.red_light"],
                  "day": pl.Series([3, 5, 9], dtype=pl.Int32), "source": ["camera", "community", "camera"],
                  "source_ref": ["cam-x-subway-1", None, "cam-y-mall-2"], "confidence": [0.9, None, 0.4],
                  "true_actor": ["a", "a", "c"]}).write_parquet(run / "events.parquet")
    (run / "manifest.json").write_text(json.dumps({"policy": "rongcheng", "seed": 1}))
    url = f"sqlite:///{tmp_path}/load.db"
    result = runner.invoke(app, ["db", "load", str(run), "--db", url])
    assert result.exit_code == 0, result.output
    assert "3 citizens and 3 events" in result.output
    service = Service.open(url)
    assert service.policy.name == "rongcheng" and service.day == 9
    scores = dict(service.db.execute("SELECT citizen_id, score FROM scores"))
    expected = score_ledger(service.policy, read_events(run / "events.parquet"), as_of=9).scores
    assert scores == dict(expected.select("citizen_id", "score").iter_rows())
    assert scores["a"] == 1000 - 5 + 30
    assert service._status("c") == (1000, "A", 2)  # loaded, no events: the start
    attributes = json.loads(service.db.execute("SELECT attributes FROM citizens WHERE citizen_id = 'b'")[0][0])
    assert attributes == {"age": 41.0, "region": "y"}
    service.close()
    again = runner.invoke(app, ["db", "load", str(run), "--db", url])
    assert again.exit_code == 0
    assert Database.open(url).execute("SELECT COUNT(*) FROM events")[0][0] == 3


def test_db_load_refuses_bad_events_by_row(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pl.DataFrame({"event_id": ["1", "1"], "citizen_id": ["a", "a"], "kind": ["k", "k"], "day": [1, 2]}
                 ).write_parquet(run / "events.parquet")
    result = runner.invoke(app, ["db", "load", str(run), "--db", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 1 and "duplicate event_id '1' at rows 1, 2" in result.output


def test_a_database_keeps_its_policy(tmp_path):
    url = f"sqlite:///{tmp_path}/p.db"
    Service.open(url, "taz-2018").close()
    result = runner.invoke(app, ["serve", "--db", url, "--policy", "sesame"])
    assert result.exit_code == 1 and "policy 'taz-2018'" in result.output
