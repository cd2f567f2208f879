"""On a local Dask cluster of processes: the same bytes as in one process, and resumable runs."""

import shutil

import pytest

import socialcredit.simulation._run as run_module
from socialcredit.simulation import simulate
from socialcredit.simulation._run import partial_folder
from socialcredit.simulation._shard import shard_part

TABLES = ("citizens.parquet", "daily.parquet", "events.parquet")
ARGS = {"population": 9000, "days": 20, "seed": 42, "events": "sample:0.2",
        "overrides": {"block_size": 1024}}  # 9 blocks
RUN_SHARD = run_module.run_shard


class ShardFailure(Exception):
    pass


def _same_bytes(a, b) -> None:
    for name in TABLES:
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    return simulate(out=tmp_path_factory.mktemp("dask") / "here", **ARGS)


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_write_the_bytes_of_one_process(one_process, tmp_path, workers):
    run = simulate(out=tmp_path / "dask", workers=workers, **ARGS)
    m = run.manifest
    assert m.workers == workers and m.timings["cluster_s"] > 0
    # One worker: one shard on all its threads; two: about four shards each (9 blocks in 2s).
    assert m.shards == (1 if workers == 1 else 5)
    _same_bytes(one_process, run)


def test_a_failed_run_resumes_on_dask_from_its_finished_shards(one_process, tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = {**ARGS, "chunk_blocks": 2}  # 5 shards
    ran: list[int] = []

    def first_then_fail(plan, index, *rest, **kwargs):
        if ran:
            raise ShardFailure(f"shard {index}")
        ran.append(index)
        return RUN_SHARD(plan, index, *rest, **kwargs)

    monkeypatch.setattr(run_module, "run_shard", first_then_fail)
    with pytest.raises(ShardFailure):
        simulate(out=out, **args)  # in this process: shard 0 finished, then a failure
    monkeypatch.setattr(run_module, "run_shard", RUN_SHARD)
    parts = partial_folder(out) / "parts"
    blocker = parts / shard_part("citizens", 3, "arrow")
    blocker.mkdir()  # shard 3's worker cannot write its part: it fails, the others finish
    with pytest.raises(Exception, match=blocker.name):
        simulate(out=out, workers=2, resume=True, **args)
    assert sorted(p.name for p in parts.glob("shard-*.npz")) == [
        f"shard-{i:06d}.npz" for i in (0, 1, 2, 4)]
    shutil.rmtree(blocker)
    resumed = simulate(out=out, workers=2, resume=True, **args)
    assert resumed.manifest.resumed_shards == 4 and resumed.manifest.shards == 5
    _same_bytes(one_process, resumed)
    assert not partial_folder(out).exists()


def test_the_command_with_workers_writes_the_bytes_of_one_process(one_process, tmp_path):
    from typer.testing import CliRunner

    from socialcredit.cli import app
    from socialcredit.simulation import Run

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["simulate", "-n", "9000", "-d", "20", "-s", "42", "--out", str(out),
                                      "--events", "sample:0.2", "--set", "block_size=1024", "--workers", "2"])
    assert result.exit_code == 0, result.output
    _same_bytes(one_process, Run.open(out))
