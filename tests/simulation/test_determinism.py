"""Same seed, same tables: whatever the workers, the chunk size, or shard-by-shard vs in memory."""

import pytest

from socialcredit.simulation import simulate

SMALL_BLOCKS = {"block_size": 1024}  # many blocks even in a small run


def _tables(run):
    return run.citizens, run.daily, run.events


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "memory"
    return simulate(population=9000, days=20, seed=42, out=out, events="sample:0.2",
                    overrides=SMALL_BLOCKS)


def test_shard_by_shard_equals_in_memory(in_memory, tmp_path):
    sharded = simulate(population=9000, days=20, seed=42, out=tmp_path / "sharded",
                       events="sample:0.2", overrides=SMALL_BLOCKS, chunk_blocks=1)
    assert sharded.manifest.shards == 9 and in_memory.manifest.shards == 1
    for a, b in zip(_tables(in_memory), _tables(sharded), strict=True):
        assert a.equals(b)
    for name in ("citizens.parquet", "daily.parquet", "events.parquet"):
        assert (in_memory.path / name).read_bytes() == (sharded.path / name).read_bytes()


def test_any_chunk_size_gives_the_same_tables(in_memory, tmp_path):
    other = simulate(population=9000, days=20, seed=42, out=tmp_path / "chunk4",
                     events="sample:0.2", overrides=SMALL_BLOCKS, chunk_blocks=4)
    for a, b in zip(_tables(in_memory), _tables(other), strict=True):
        assert a.equals(b)


def test_one_or_two_dask_workers_give_the_same_tables(in_memory, tmp_path):
    one = simulate(population=9000, days=20, seed=42, out=tmp_path / "w1", events="sample:0.2",
                   overrides=SMALL_BLOCKS, chunk_blocks=3, workers=1)
    two = simulate(population=9000, days=20, seed=42, out=tmp_path / "w2", events="sample:0.2",
                   overrides=SMALL_BLOCKS, chunk_blocks=2, workers=2)
    assert two.manifest.workers == 2
    for a, b, c in zip(_tables(in_memory), _tables(one), _tables(two), strict=True):
        assert a.equals(b) and a.equals(c)


def test_another_seed_gives_other_results(in_memory, tmp_path):
    other = simulate(population=9000, days=20, seed=43, out=tmp_path / "s43",
                     events="sample:0.2", overrides=SMALL_BLOCKS)
    assert not other.citizens.equals(in_memory.citizens)


def test_an_existing_cluster_gives_the_same_tables(in_memory, tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        run = simulate(population=9000, days=20, seed=42, out=tmp_path / "sched",
                       events="sample:0.2", overrides=SMALL_BLOCKS, chunk_blocks=5,
                       scheduler=cluster.scheduler_address)
    assert run.manifest.scheduler is not None
    for a, b in zip(_tables(in_memory), _tables(run), strict=True):
        assert a.equals(b)


SHORT = """
name = "short"
title = "Short memory"
start = 1000
min = 0
max = 2000
[[class]]
name = "AAA"
min = 1004
[[class]]
name = "A"
min = 995
[[class]]
name = "D"
[[rule]]
id = "red-light"
kind = "traffic.red_light"
points = -6
reason = "red light"
expires_after_days = 2
[[rule]]
id = "paper"
kind = "online.party_newspaper_visit"
points = 5
reason = "paper"
max_per_day = 1
expires_after_days = 3
[[benefit]]
name = "cheaper-loans"
class = "AAA"
effect = "loan_price"
parameters = { rate_change = -0.005 }
held_days = 2
[[sanction]]
name = "flight-ban"
class = "D"
effect = "flight_ban"
held_days = 1
"""


def test_a_block_that_outgrows_its_buffers_is_rerun_to_the_same_result(tmp_path, monkeypatch):
    import socialcredit.simulation._shard as shard

    policy = tmp_path / "short.toml"
    policy.write_text(SHORT, encoding="utf-8")
    args = {"population": 3000, "days": 15, "seed": 5, "events": "all", "policy": str(policy),
            "overrides": {**SMALL_BLOCKS, "behaviour.rates.traffic.red_light": 0.1,
                          "behaviour.rates.online.party_newspaper_visit": 0.2}}
    roomy = simulate(out=tmp_path / "roomy", **args)
    monkeypatch.setattr(shard, "_first_room", lambda size, days, events: {
        "expiry": 1, "queue": 1, "events": 1})
    cramped = simulate(out=tmp_path / "cramped", **args)
    for a, b in zip(_tables(roomy), _tables(cramped), strict=True):
        assert a.equals(b)
    daily = roomy.daily
    assert daily["benefit.cheaper-loans"].sum() > 0 and daily["sanction.flight-ban"].sum() > 0
