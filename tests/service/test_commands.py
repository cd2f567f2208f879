"""The service's CLI commands: keys create and revoke, db load, help texts."""

import json
import re
import shutil
from importlib.resources import files
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from socialcredit.cli import app
from socialcredit.engine import score_ledger
from socialcredit.events import validate_events
from socialcredit.policy import load_policy, parse_policy
from socialcredit.service import Database, Service, authenticate
from socialcredit.service._errors import Invalid
from socialcredit.simulation import Run
from tests.conftest import db_load, simulate_run

runner = CliRunner()


@pytest.mark.parametrize("command", [["serve"], ["db", "load"], ["keys", "create"], ["keys", "revoke"]])
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "--db" in result.output


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(tmp_path):
    url = f"sqlite:///{tmp_path}/k.db"
    result = runner.invoke(app, ["keys", "create", "--role", "agency", "--name", "police",
                                 "--source", "camera", "--source", "courts", "--db", url, "--create"])
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
    result = runner.invoke(app, ["keys", "create", *args, "--db", f"sqlite:///{tmp_path}/k.db", "--create"])
    assert result.exit_code == 1 and words in result.output


def scores_of(url: str) -> pl.DataFrame:
    db = Database.open(url)
    try:
        return db.frame("SELECT citizen_id, score, class FROM scores", (),
                        {"citizen_id": pl.String, "score": pl.Int64, "class": pl.String}).sort("citizen_id")
    finally:
        db.close()


def the_run_says(run) -> pl.DataFrame:
    """The scored citizens' scores and classes (a policy with a min_age scores no minor)."""
    return run.citizens.filter(pl.col("score").is_not_null()).select("citizen_id", "score", "class").sort("citizen_id")


@pytest.mark.parametrize("policy", ["taz-2018", "rongcheng"])
def test_db_load_scores_a_real_run_under_the_policy_it_was_simulated_with(loaded_runs, tmp_path, policy):
    """`socialcredit simulate --policy P` then `socialcredit db load RUN`: the database holds P and
    every citizen's score and class are those of the run's citizens.parquet (the same engine)."""
    loaded = loaded_runs(policy)
    run = loaded.run
    assert run.manifest.policies == {"town": policy}
    url = f"sqlite:///{tmp_path}/loaded.db"  # loaded here, not copied: `make mutate` maps db load to this test
    output = db_load(run.path, url)
    assert f"loaded {run.citizens.height:,} citizens and {run.events.height:,} events" in output
    assert f"(policy '{policy}', the run's own)" in output
    service = Service.open(url)
    try:
        assert service.policy.name == policy and service.day == loaded.day == run.manifest.days - 1
        citizen = loaded.citizen(**{"class": "D"} if policy == "taz-2018" else {})
        attributes = json.loads(service.db.execute("SELECT attributes FROM citizens WHERE citizen_id = ?",
                                                   (citizen["citizen_id"],))[0][0])
        row = run.citizens.filter(pl.col("citizen_id") == citizen["citizen_id"]).row(0, named=True)
        assert attributes == {k: v for k, v in row.items() if k != "citizen_id"}
        profile = service.db.execute("SELECT age_estimate, sightings, by_place FROM camera_profiles "
                                     "WHERE citizen_id = ?", (citizen["citizen_id"],))[0]
        assert (profile[0], profile[1]) == (row["profile_age"], row["sightings"])
        assert json.loads(profile[2]) == {p: row[f"moves_{p}"] for p in ("street", "mall", "subway")}
    finally:
        service.close()
    assert scores_of(url).equals(the_run_says(run))
    again = runner.invoke(app, ["db", "load", str(run.path), "--db", url])  # loading twice changes nothing
    assert again.exit_code == 0, again.output
    assert Database.open(url).execute("SELECT COUNT(*) FROM events")[0][0] == run.events.height
    assert scores_of(url).equals(the_run_says(run))


def stored_profiles(url: str) -> pl.DataFrame:
    db = Database.open(url)
    try:
        return db.frame("SELECT citizen_id, age_estimate, age_uncertainty, sightings, by_place FROM camera_profiles",
                        (), {"citizen_id": pl.String, "age_estimate": pl.Float64, "age_uncertainty": pl.Float64,
                             "sightings": pl.Int64, "by_place": pl.String}).sort("citizen_id")
    finally:
        db.close()


def test_db_load_stores_every_citizen_and_the_data_centres_camera_profile_of_each(loaded_runs, tmp_path):
    """The whole tables, citizen by citizen: attributes are the row of citizens.parquet; the profile
    holds the simulated estimate (`profile_age`, none if never seen), its standard error from the
    run's age noise (noise / sqrt(6 n) after n sightings), the sightings and their places."""
    run = loaded_runs("taz-2018").run
    url = f"sqlite:///{tmp_path}/loaded.db"
    db_load(run.path, url)
    noise = run.manifest.scenario.sensors.age_noise_years
    db = Database.open(url)
    attributes = dict(db.execute("SELECT citizen_id, attributes FROM citizens"))
    db.close()
    rows = {row["citizen_id"]: row for row in run.citizens.iter_rows(named=True)}
    assert attributes.keys() == rows.keys()
    assert all(json.loads(attributes[c]) == {k: v for k, v in row.items() if k != "citizen_id"}
               for c, row in rows.items())
    profiles = stored_profiles(url)
    assert profiles["citizen_id"].to_list() == sorted(rows)
    places = sorted(c.removeprefix("moves_") for c in run.citizens.columns if c.startswith("moves_"))
    assert places == ["mall", "street", "subway"]
    seen = 0
    for profile in profiles.iter_rows(named=True):
        row = rows[profile["citizen_id"]]
        n = row["sightings"]
        assert profile["sightings"] == n
        assert json.loads(profile["by_place"]) == {p: row[f"moves_{p}"] for p in places}
        if n == 0:
            assert profile["age_estimate"] is None and profile["age_uncertainty"] is None
        else:
            seen += 1
            assert profile["age_estimate"] == row["profile_age"] is not None
            assert profile["age_uncertainty"] == round(noise / (6 * n) ** 0.5, 2)
    assert 0 < seen < profiles.height


def test_without_a_manifest_a_profiles_uncertainty_is_unknown(loaded_runs, tmp_path):
    run = loaded_runs("taz-2018").run
    folder = tmp_path / "citizens-only"
    folder.mkdir()
    run.citizens.write_parquet(folder / "citizens.parquet")
    url = f"sqlite:///{tmp_path}/profiles.db"
    service = Service.open(url)
    try:
        assert service.ledger.load_run(folder) == {"citizens": run.citizens.height, "events": 0}
    finally:
        service.close()
    profiles = stored_profiles(url)
    assert profiles.height == run.citizens.height and profiles["age_uncertainty"].null_count() == profiles.height
    assert profiles["age_estimate"].null_count() == (run.citizens["sightings"] == 0).sum()


@pytest.mark.parametrize(("manifest", "named"), [
    ("not json", "manifest.json: the file: Invalid JSON"),
    ({"scenario": {}}, "manifest.json: socialcredit: Field required"),
    ("age noise three", "manifest.json: scenario.sensors.age_noise_years: Input should be a valid number")])
def test_a_run_whose_manifest_cannot_be_read_is_refused_and_nothing_loaded(loaded_runs, tmp_path, manifest, named):
    run = loaded_runs("taz-2018").run
    folder = tmp_path / "broken"
    folder.mkdir()
    run.citizens.write_parquet(folder / "citizens.parquet")
    if manifest == "age noise three":
        kept = json.loads((run.path / "manifest.json").read_text())
        kept["scenario"]["sensors"]["age_noise_years"] = "three"
        manifest = kept
    (folder / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    url = f"sqlite:///{tmp_path}/broken.db"
    service = Service.open(url, "taz-2018")
    try:
        with pytest.raises(Invalid, match=re.escape(named)) as refused:
            service.ledger.load_run(folder)
        assert refused.value.field == "manifest"
        assert service.db.execute("SELECT COUNT(*) FROM citizens")[0][0] == 0
    finally:
        service.close()


def test_db_load_of_events_alone_loads_no_citizens_and_moves_the_day(loaded_runs, tmp_path):
    run = loaded_runs("taz-2018").run
    folder = tmp_path / "events-only"
    folder.mkdir()
    run.events.write_parquet(folder / "events.parquet")
    service = Service.open(f"sqlite:///{tmp_path}/events.db", "taz-2018")
    try:
        assert service.ledger.load_run(folder) == {"citizens": 0, "events": run.events.height}
        assert service.day == int(run.events["day"].max())
        assert service.db.execute("SELECT COUNT(*) FROM citizens")[0][0] == 0
    finally:
        service.close()


def test_db_load_names_the_file_row_and_field_of_bad_input_and_stores_nothing(loaded_runs, tmp_path):
    run = loaded_runs("taz-2018").run
    folder = tmp_path / "bad"
    folder.mkdir()
    events = run.events.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(-3).otherwise(pl.col("day"))
                                     .alias("day"))
    events.write_parquet(folder / "events.parquet")
    service = Service.open(f"sqlite:///{tmp_path}/bad.db", "taz-2018")
    try:
        with pytest.raises(Invalid) as refused:
            service.ledger.load_run(folder)
        assert str(folder / "events.parquet") in str(refused.value)
        assert (refused.value.row, refused.value.field) == (5, "day")
        run.citizens.drop("citizen_id").write_parquet(folder / "citizens.parquet")
        (folder / "events.parquet").unlink()
        with pytest.raises(Invalid, match=f"{folder / 'citizens.parquet'}: missing column citizen_id") as refused:
            service.ledger.load_run(folder)
        assert refused.value.field == "citizen_id"
        assert service.db.execute("SELECT COUNT(*) FROM events")[0][0] == 0
        assert service.db.execute("SELECT COUNT(*) FROM citizens")[0][0] == 0
    finally:
        service.close()


def test_citizens_with_no_attributes_are_stored_with_none_and_start_scored(tmp_path):
    folder = tmp_path / "bare"
    folder.mkdir()
    pl.DataFrame({"citizen_id": ["p1", "p2"]}).write_parquet(folder / "citizens.parquet")
    service = Service.open(f"sqlite:///{tmp_path}/bare.db", "taz-2018")
    try:
        assert service.ledger.load_run(folder) == {"citizens": 2, "events": 0}
        assert service.db.execute("SELECT citizen_id, attributes FROM citizens ORDER BY citizen_id") == [
            ("p1", "{}"), ("p2", "{}")]
        start = (service.policy.start, service.policy.class_names[service.ledger.start_class])
        assert service.db.execute("SELECT score, class FROM scores") == [start, start]
        assert service.db.execute("SELECT COUNT(*) FROM camera_profiles")[0][0] == 0
    finally:
        service.close()


def test_db_load_refuses_a_folder_without_a_run(tmp_path):
    service = Service.open(f"sqlite:///{tmp_path}/empty.db")
    try:
        with pytest.raises(Exception, match="neither citizens.parquet nor events.parquet found"):
            service.ledger.load_run(tmp_path)
        assert service.db.execute("SELECT COUNT(*) FROM citizens")[0][0] == 0
    finally:
        service.close()


@pytest.mark.parametrize("policy", ["taz-2018", "rongcheng", "accountable"])
def test_the_suites_runs_hold_what_the_service_tests_need(simulated_runs, policy):
    """Cameras, false matches, class D and daily caps happen in the runs the service tests load."""
    run = simulated_runs(policy)
    cameras = run.events.filter(pl.col("source") == "camera")
    assert cameras.height > 1000 and cameras["wrongful"].sum() > 50
    assert set(cameras["source_ref"]) == {"street", "mall", "subway"}
    assert run.events.height < 100_000  # small enough to load in a second
    if policy != "accountable":
        assert run.citizens.filter(pl.col("class") == "D").height > 50
    statuses = score_ledger(load_policy(policy), validate_events(run.events.select(
        "event_id", "citizen_id", "kind", "day", "source", "source_ref", "confidence"))).decisions["status"]
    if policy == "rongcheng":
        assert (statuses == "cap").sum() > 0


def test_db_load_refuses_a_database_of_another_policy(loaded_runs, tmp_path):
    url = loaded_runs("rongcheng").copy(tmp_path)
    result = runner.invoke(app, ["db", "load", str(loaded_runs("taz-2018").path), "--db", url])
    assert result.exit_code == 1
    assert "holds scores under policy 'rongcheng', not 'taz-2018'" in result.output


def policy_file(folder: Path, name: str = "town-scheme") -> Path:
    """rongcheng under another name, as a TOML file of the user's."""
    text = (files("socialcredit.policy") / "presets" / "rongcheng.toml").read_text(encoding="utf-8")
    path = folder / "policies" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace('name = "rongcheng"', f'name = "{name}"', 1), encoding="utf-8")
    return path


def test_db_load_reads_the_runs_own_copy_of_its_policy_file(tmp_path, monkeypatch):
    """A run keeps a copy of each policy it used: with the policy file gone and the run moved
    elsewhere, db load scores it under that policy, and the database serves without --policy."""
    project = tmp_path / "project"
    policy_file(project)
    monkeypatch.chdir(project)  # as a user runs `socialcredit simulate --policy policies/town-scheme.toml`
    run = simulate_run(Path("runs/town"), "policies/town-scheme.toml", population=1000, days=20)
    assert run.manifest.policies == {"town": "town-scheme"}
    original = project / "policies" / "town-scheme.toml"
    assert (project / "runs" / "town" / "policies" / "town-scheme.toml").read_text() == original.read_text()
    policy = parse_policy(original.read_text())
    original.unlink()
    moved = tmp_path / "elsewhere" / "town"
    shutil.move(project / "runs" / "town", moved)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/load.db"
    result = runner.invoke(app, ["db", "load", str(moved), "--db", url])
    assert result.exit_code == 0, result.output
    assert "(policy 'town-scheme', the run's own)" in result.output
    assert Service.open(url).policy == policy  # kept by the database: no --policy, no file
    assert scores_of(url).equals(the_run_says(Run.open(moved)))
    (moved / "policies" / "town-scheme.toml").unlink()
    result = runner.invoke(app, ["db", "load", str(moved), "--db", f"sqlite:///{tmp_path}/gone.db"])
    assert result.exit_code == 1 and "holds no copy of its policy 'town-scheme'" in result.output


def test_db_load_asks_which_policy_when_the_run_has_several(tmp_path):
    run = simulate_run(tmp_path / "run", None, scenario="pilot-regions-2018", population=2000, days=3)
    scored = {p for p in run.manifest.policies.values() if p}
    assert scored == {"rongcheng", "taz-2018"}
    url = f"sqlite:///{tmp_path}/several.db"
    result = runner.invoke(app, ["db", "load", str(run.path), "--db", url])
    assert result.exit_code == 1
    assert "scores its regions with 2 policies" in result.output and "pass --policy" in result.output
    assert "rongcheng" in result.output and "taz-2018" in result.output
    assert not Database.open(url).execute("SELECT 1 FROM events")  # nothing loaded
    result = runner.invoke(app, ["db", "load", str(run.path), "--db", url, "--policy", "rongcheng"])
    assert result.exit_code == 0, result.output
    assert Service.open(url).policy.name == "rongcheng"


def test_db_load_refuses_bad_events_by_row(tmp_path):
    # Malformed input, which the simulator never writes: a hand-made events.parquet.
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


@pytest.mark.parametrize("policy", ["taz-2018", "rongcheng"])
def test_db_load_stores_the_class_history_the_engine_replays_and_remembers_the_run(loaded_runs, tmp_path, policy):
    """The class history db load stores is exactly the engine's replay of the run's events (with
    the register of births: a citizen enters the classes the day they come of age, and their
    events before do not count), plus the entry of those who came of age without an event; and the
    database remembers the run folder, for the dashboard."""
    from socialcredit.engine import BIRTHS_SCHEMA, class_history

    run = loaded_runs(policy).run
    url = f"sqlite:///{tmp_path}/history.db"
    db_load(run.path, url)
    service = Service.open(url)
    try:
        stored = service.db.frame("SELECT citizen_id, day, class_idx FROM class_history", (),
                                  {"citizen_id": pl.String, "day": pl.Int64, "class_idx": pl.Int32})
        assert service.loaded_run == run.path.resolve()
    finally:
        service.close()
    births = run.citizens.select(BIRTHS_SCHEMA.keys()).cast(BIRTHS_SCHEMA)
    day = run.manifest.days - 1
    replayed = class_history(load_policy(policy), validate_events(run.events), as_of=day, births=births)
    start = service.ledger.start_class
    min_age = load_policy(policy).min_age
    quiet = (births.filter(~pl.col("citizen_id").is_in(run.events["citizen_id"].implode()))
             .with_columns(day=pl.col("birth_day") + 365 * min_age)
             .filter((pl.col("day") > 0) & (pl.col("day") <= day))
             .select("citizen_id", "day", class_idx=pl.lit(start, pl.Int32)))
    expected = pl.concat([replayed, quiet]).sort("citizen_id", "day", "class_idx")
    assert stored.sort("citizen_id", "day", "class_idx").equals(expected)
    if policy == "rongcheng":  # citizens came of age within the run, some with events before
        assert quiet.height + replayed.filter(pl.col("day") > 0).height > 0
    empty = Service.open(f"sqlite:///{tmp_path}/empty.db")
    try:
        assert empty.loaded_run is None
    finally:
        empty.close()
