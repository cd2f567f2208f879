"""A killed or failed `simulate` resumes from its last finished shard, to the same tables."""

import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

import socialcredit.simulation._run as run_module
from socialcredit.cli import app
from socialcredit.simulation import simulate
from socialcredit.simulation._run import partial_folder
from socialcredit.simulation._scenario import SimulationError

ARGS = {"population": 20_000, "days": 30, "seed": 11, "events": "sample:0.3", "chunk_blocks": 1,
        "overrides": {"block_size": 4096}}  # 5 shards
SHARDS = 5
RUN_SHARD = run_module.run_shard


class ShardFailure(Exception):
    pass


def _count_shards(monkeypatch, fail_after: int | None = None) -> list[int]:
    """Record the shards simulate runs (their indices); fail the one after `fail_after` of them."""
    ran: list[int] = []

    def counted(plan, index, *args, **kwargs):
        if fail_after is not None and len(ran) == fail_after:
            raise ShardFailure(f"shard {index}")
        ran.append(index)
        return RUN_SHARD(plan, index, *args, **kwargs)

    monkeypatch.setattr(run_module, "run_shard", counted)
    return ran


def _assert_same_tables(a, b):
    for table in ("daily", "citizens", "events"):
        assert getattr(a, table).equals(getattr(b, table)), table


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return simulate(out=tmp_path_factory.mktemp("resume") / "whole", **ARGS)


def test_a_failed_run_resumes_from_its_last_finished_shard(uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _count_shards(monkeypatch, fail_after=2)
    with pytest.raises(ShardFailure):
        simulate(out=out, **ARGS)
    assert not out.exists() and partial_folder(out).is_dir()

    ran = _count_shards(monkeypatch)
    with pytest.raises(SimulationError, match="pass --resume"):
        simulate(out=out, **ARGS)
    resumed = simulate(out=out, resume=True, **ARGS)
    assert ran == [2, 3, 4]
    assert resumed.manifest.resumed_shards == 2 and resumed.manifest.shards == SHARDS
    _assert_same_tables(uninterrupted, resumed)
    assert resumed.manifest.events_written == uninterrupted.manifest.events_written
    assert not partial_folder(out).exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in uninterrupted.path.iterdir())


def test_a_resume_with_other_arguments_is_refused_naming_them(tmp_path, monkeypatch):
    out = tmp_path / "run"
    _count_shards(monkeypatch, fail_after=1)
    with pytest.raises(ShardFailure):
        simulate(out=out, **ARGS)
    other = {**ARGS, "seed": 12, "overrides": {**ARGS["overrides"], "behaviour.deterrence": 0.4}}
    with pytest.raises(SimulationError, match="other arguments") as refused:
        simulate(out=out, resume=True, **other)
    assert "seed: 11 then, 12 now" in str(refused.value)
    assert "scenario.behaviour.deterrence" in str(refused.value)
    with pytest.raises(SimulationError, match="chunk_blocks: 1 then, 2 now"):
        simulate(out=out, resume=True, **{**ARGS, "chunk_blocks": 2})
    assert partial_folder(out).is_dir()  # a refusal keeps the interrupted run's work


def test_resume_without_an_interrupted_run_starts_afresh(uninterrupted, tmp_path):
    run = simulate(out=tmp_path / "run", resume=True, **ARGS)
    assert run.manifest.resumed_shards == 0
    _assert_same_tables(uninterrupted, run)


STOPPED_AFTER_ONE_SHARD = """
import sys, time
import socialcredit.simulation._run as run_module
from socialcredit.simulation import simulate
real = run_module.run_shard

def first_then_hang(plan, index, *args, **kwargs):
    if index > 0:
        time.sleep(3600)  # until the test kills this process
    return real(plan, index, *args, **kwargs)

run_module.run_shard = first_then_hang
simulate(out=sys.argv[1], population=20_000, days=30, seed=11, events="sample:0.3", chunk_blocks=1,
         overrides={"block_size": 4096})
"""


def test_a_killed_run_resumes_through_the_cli(uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first_record = partial_folder(out) / "parts" / "shard-000000.npz"
    process = subprocess.Popen([sys.executable, "-c", STOPPED_AFTER_ONE_SHARD, str(out)])
    try:
        while not first_record.exists():
            assert process.poll() is None, "the run ended before its first shard was written"
            time.sleep(0.05)
        # While it lives, another run into the same --out is refused, and touches nothing.
        with pytest.raises(SimulationError, match="another simulate is writing"):
            simulate(out=out, resume=True, **ARGS)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()

    ran = _count_shards(monkeypatch)
    result = CliRunner().invoke(app, ["simulate", "-n", "20000", "-d", "30", "-s", "11",
                                      "--out", str(out), "--events", "sample:0.3",
                                      "--chunk-blocks", "1", "--set", "block_size=4096", "--resume"])
    assert result.exit_code == 0, result.output
    assert ran == [1, 2, 3, 4]
    from socialcredit.simulation import Run

    _assert_same_tables(uninterrupted, Run.open(out))


def test_a_citizens_sample_is_the_same_whatever_the_shards(uninterrupted, tmp_path):
    whole = {**ARGS, "chunk_blocks": None}
    sample = simulate(out=tmp_path / "sample", citizens="sample:0.25", **whole)
    sharded = simulate(out=tmp_path / "sharded", citizens="sample:0.25", **ARGS)
    assert sample.citizens.equals(sharded.citizens) and sample.manifest.citizens == "sample:0.25"
    assert 4000 < sample.citizens.height < 6000
    kept = uninterrupted.citizens.filter(uninterrupted.citizens["citizen_id"].is_in(
        sample.citizens["citizen_id"].implode()))
    assert sample.citizens.equals(kept)
    for table in ("daily", "events"):
        assert getattr(sample, table).equals(getattr(uninterrupted, table))
    none = simulate(out=tmp_path / "none", citizens="none", **ARGS)
    assert none.citizens.height == 0 and none.citizens.schema == uninterrupted.citizens.schema
    with pytest.raises(SimulationError, match="--citizens must be"):
        simulate(out=tmp_path / "bad", citizens="sample:2", **ARGS)
