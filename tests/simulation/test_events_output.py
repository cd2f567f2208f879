"""The events table is streamed while blocks run: texts as before, names dictionary-coded, no half files."""

import numpy as np
import polars as pl
import pytest

import socialcredit.simulation._shard as shard
from socialcredit.simulation import simulate
from socialcredit.simulation._run import partial_folder
from socialcredit.simulation._shard import EVENT_COLUMNS


def test_events_read_back_as_the_text_columns_of_the_event_table(busy_run):
    path = busy_run.path / "events.parquet"
    assert pl.read_parquet_schema(path) == pl.Schema(EVENT_COLUMNS)
    assert busy_run.events.height == busy_run.manifest.events_written > 1000
    assert busy_run.events.null_count()["event_id"].item() == 0
    ids = busy_run.events["event_id"]
    assert ids.str.len_bytes().unique().to_list() == [21] and ids.is_unique().all()
    assert busy_run.events["citizen_id"].str.contains(r"^c\d{10}$").all()


def test_fast_ids_are_the_zero_padded_texts(busy, tmp_path, monkeypatch):
    args = {"population": 3000, "days": 12, "seed": 3, "events": "all", "overrides": busy}
    fast = simulate(out=tmp_path / "fast", **args)
    monkeypatch.setattr(shard, "_ids", shard._ids_wide)  # polars' zfill: the reference
    plain = simulate(out=tmp_path / "plain", **args)
    assert fast.events.height > 100 and fast.events.equals(plain.events)


@pytest.mark.parametrize("day, seq, block, citizen", [
    (0, 0, 0, 0), (99_999, 9_999_999, 999_999, 9_999_999_999),  # the widest the fixed widths hold
    (100_000, 5, 3, 7), (4, 10_000_000, 3, 7), (4, 5, 1_000_000, 7), (4, 5, 3, 10_000_000_000),  # wider
])
def test_ids_of_any_size_are_written_as_zfill_writes_them(day, seq, block, citizen):
    offset = max(citizen - 1, 0)  # the largest index in the block: offset + 1
    ev = np.zeros((7, 3), np.int64)
    ev[0], ev[1], ev[3], ev[4] = [0, day, 1], [seq, 0, 2], [1, 0, 1], [0, 1, 1]
    fast, wide = shard._ids(block, offset, ev), shard._ids_wide(block, offset, ev)
    for a, b in zip(fast, wide, strict=True):
        assert a.dtype == pl.String and a.to_list() == b.to_list()


def test_a_shard_that_fails_while_writing_leaves_no_part_and_resumes(tmp_path, monkeypatch):
    args = {"population": 8000, "days": 10, "seed": 2, "events": "all", "chunk_blocks": 2,
            "overrides": {"block_size": 1024}}
    whole = simulate(out=tmp_path / "whole", **args)
    real = shard.events_batch
    calls = []

    def failing(plan, block, *rest):
        calls.append(block)
        if block == 5:
            raise RuntimeError("disk full")
        return real(plan, block, *rest)

    monkeypatch.setattr(shard, "events_batch", failing)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="disk full"):
        simulate(out=out, **args)
    parts = partial_folder(out) / "parts"
    names = sorted(p.name for p in parts.iterdir())
    # (Arrow IPC parts: the run has several shards, merged into its Parquet files at the end.)
    assert names == ["citizens-000000.arrow", "citizens-000001.arrow", "events-000000.arrow",
                     "events-000001.arrow", "shard-000000.npz", "shard-000001.npz"]  # no .tmp
    monkeypatch.setattr(shard, "events_batch", real)
    resumed = simulate(out=out, resume=True, **args)
    assert resumed.manifest.resumed_shards == 2
    for table in ("citizens", "events", "daily"):
        assert getattr(resumed, table).equals(getattr(whole, table)), table
    assert (resumed.path / "events.parquet").read_bytes() == (whole.path / "events.parquet").read_bytes()


def test_blocks_run_only_a_few_ahead_of_the_writer(monkeypatch):
    from socialcredit.simulation import load_scenario
    from socialcredit.simulation._plan import make_plan

    plan = make_plan(load_scenario("one-town", overrides={"block_size": 1024}), population=20 * 1024,
                     days=3, seed=1)
    started = []
    _, blocks = shard.blocks_in_order(plan, 0, plan.n_blocks, shard.EventsMode(0), 2,
                                      lambda block, *_: started.append(block) or block)
    for block, *_ in blocks:
        assert len(started) <= block + 1 + 3  # the block handed over, and at most threads + 1 more
    assert sorted(started) == list(range(20))


def test_citizen_ids_are_the_zero_padded_texts_with_nulls_where_there_is_none():
    index = np.array([0, 5, 10**10 - 1, 7, 10**10])
    valid = np.array([True, False, True, True, True])
    expected = pl.select(shard.citizen_ids(pl.lit(pl.Series(index)))).to_series().set(pl.Series(~valid), None)
    assert shard.citizen_texts(index, valid).to_list() == expected.to_list()  # the last is wider: zfill's
    assert shard.citizen_texts(index[:4], valid[:4]).to_list() == expected[:4].to_list()  # the fast path
