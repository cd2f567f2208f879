import inspect
import resource
from pathlib import Path

import numpy as np
import polars as pl

import socialcredit
import socialcredit.simulation as simulation
from socialcredit import load_policy
from socialcredit.simulation import Run, load_scenario, simulate
from socialcredit.simulation._kinds import STATE_FIELDS


def test_public_api_is_small_and_sorted():
    assert simulation.__all__ == sorted(simulation.__all__)
    for name in simulation.__all__:
        assert getattr(simulation, name).__doc__
    assert socialcredit.simulate is simulation.simulate
    assert socialcredit.Run is simulation.Run


def test_a_run_folder_reads_back_as_the_run_it_records(busy_run):
    """busy_run: 6000 citizens, 40 days, seed 7, one region, events all."""
    again = Run.open(busy_run.path)
    for table in ("daily", "citizens", "events"):
        assert getattr(again, table).equals(pl.read_parquet(busy_run.path / f"{table}.parquet"))
    manifest = again.manifest
    assert (manifest.population, manifest.days, manifest.seed) == (6000, 40, 7)
    assert manifest.events == "all" and manifest.events_written == again.events.height
    # One row per day and region, every day once.
    assert again.daily.select("day", "region").rows() == [(d, "town") for d in range(40)]
    # Citizens numbered 0..N-1 in order, each once; events within the run's days.
    assert again.citizens["citizen_id"].to_list() == [f"c{i:010d}" for i in range(6000)]
    assert again.events["day"].min() >= 0 and again.events["day"].max() == 39
    # Every event names a citizen of the run, as its target and as its true actor.
    ids = again.citizens["citizen_id"].implode()
    assert again.events["citizen_id"].is_in(ids).all() and again.events["actor_id"].is_in(ids).all()


def test_state_per_citizen_is_the_bytes_the_manifest_states(busy_run, tmp_path, monkeypatch):
    memory = busy_run.manifest.memory
    # The manifest's figure is the sum of its own field types (numpy's sizes), at most 32 bytes.
    fields = memory.state_fields
    assert list(fields) == [name for name, _ in STATE_FIELDS]
    per_citizen = sum(np.dtype(dtype).itemsize for dtype in fields.values())
    assert memory.state_bytes_per_citizen == per_citizen <= 32
    assert memory.shard_state_bytes == per_citizen * 6000  # one shard holds everyone
    # The peak is this process's (the run ran here): above what numpy, polars and numba take to
    # load, and no more than the process has ever held.
    assert 50 * 2**20 < memory.peak_rss_bytes <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # The arrays the kernel gets for a block are exactly those fields, that many bytes a citizen.
    import socialcredit.simulation._shard as shard

    seen = []
    real = shard.run_block

    def spy(*args):
        st = inspect.signature(real.py_func).bind(*args).arguments["st"]
        seen.append(([a.dtype.name for a in st], sum(a.nbytes for a in st), len(st[0])))
        return real(*args)

    monkeypatch.setattr(shard, "run_block", spy)
    simulate(population=3000, days=2, seed=1, out=tmp_path / "spy", overrides={"block_size": 1024})
    assert sorted(n for _, _, n in seen) == [952, 1024, 1024]
    for dtypes, nbytes, n in seen:
        assert dtypes == list(fields.values()) and nbytes == per_citizen * n


def test_citizens_table_has_the_documented_types_and_ranges(busy_run):
    c = busy_run.citizens
    days = busy_run.manifest.days
    scenario = load_scenario("one-town")
    taz, sesame = load_policy("taz-2018"), load_policy("sesame")
    assert c["citizen_id"].str.contains(r"^c\d{10}$").all()
    assert c["age"].dtype == pl.UInt8 and c["age"].max() <= 89  # 0-89 at the start, < 1 year run
    assert set(c["region"].cast(pl.String)) == {r.name for r in scenario.regions}
    assert set(c["group"].cast(pl.String)) == {g.name for g in scenario.population.groups}
    assert c["income_decile"].is_between(0, 9).all()
    for column in ("male", "urban", "platform_member", "employed", "blacklisted", "bot", "admitted",
                   "flight_ban", "gate_flagged"):
        assert c[column].dtype == pl.Boolean, column
        assert 0 < c[column].sum() < c.height or column in ("admitted", "blacklisted"), column
    assert c["score"].is_between(taz.min, taz.max).all() and c["score"].null_count() == 0
    assert set(c["class"]) <= set(taz.class_names) and len(set(c["class"])) >= 3
    # The commercial score exists exactly for platform members.
    assert (c["commercial_score"].is_not_null() == c["platform_member"]).all()
    assert (c["commercial_class"].is_not_null() == c["platform_member"]).all()
    members = c.filter(pl.col("platform_member"))
    assert members["commercial_score"].is_between(sesame.min, sesame.max).all()
    assert set(members["commercial_class"]) <= set(sesame.class_names)
    for column in ("class", "commercial_class", "insurance", "loan_price"):  # written as Enum, read as text
        assert c[column].dtype == pl.String, column
    assert set(c["insurance"]) <= {"standard", "better"}
    assert set(c["loan_price"]) <= {"standard", "discounted", "refused"}
    # Days under consequences fit in the run; wrongful points are deductions here (taz-2018
    # deducts for every camera-seen kind).
    assert (c["sanction_days"] <= days).all() and (c["benefit_days"] <= days).all()
    assert (c["wrongful_points"] <= 0).all() and (c["wrongful_points"] < 0).any()
    # A profile exists exactly for those a camera has seen; five bits per place for the moves.
    seen = c["sightings"] > 0
    assert (c["profile_age"].is_not_null() == seen).all()
    assert (c["profile_age_error"].is_not_null() == seen).all()
    assert (c["profile_age"].cast(pl.Int64) - c["age"].cast(pl.Int64) == c["profile_age_error"]).fill_null(True).all()
    for place in ("street", "mall", "subway"):
        assert c[f"moves_{place}"].max() <= 31
    assert c["scored_kinds"].max() < 2**24


def test_camera_profile_age_estimate_settles(busy_run):
    c = busy_run.citizens.filter(pl.col("sightings") > 0)
    once = c.filter(pl.col("sightings") == 1)["profile_age_error"].abs().mean()
    often = c.filter(pl.col("sightings") >= 8)["profile_age_error"].abs().mean()
    assert often < once


def test_a_seed_is_its_results(busy, tmp_path):
    """The same seed gives the same bytes; another seed other citizens and other events."""
    args = {"population": 3000, "days": 10, "events": "all", "overrides": busy}
    a = simulate(out=tmp_path / "a", seed=21, **args)
    b = simulate(out=tmp_path / "b", seed=21, **args)
    c = simulate(out=tmp_path / "c", seed=22, **args)
    for name in ("citizens.parquet", "daily.parquet", "events.parquet"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name
    assert a.manifest.seed == 21 and c.manifest.seed == 22
    assert not a.citizens["age"].equals(c.citizens["age"])
    assert not a.events["citizen_id"].equals(c.events["citizen_id"])


def test_the_kernels_cache_is_dropped_when_a_kernel_source_changed(monkeypatch, tmp_path):
    """numba checks a cached function against its own file only; run_block inlines the other
    kernel modules, so a change to any of them must drop the cache (here: a copy of the package)."""
    import shutil

    from socialcredit.simulation import kernel

    folder = tmp_path / "kernel"
    shutil.copytree(Path(kernel.__file__).parent, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "__pycache__").mkdir()
    monkeypatch.setattr(kernel, "__file__", str(folder / "__init__.py"))
    kernel._drop_stale_cache()
    stamp = (folder / "__pycache__" / "kernel-sources.sha256").read_text()
    compiled = folder / "__pycache__" / "_day.run_block-27.py311.nbi"
    compiled.write_bytes(b"compiled")
    kernel._drop_stale_cache()
    assert compiled.exists()  # nothing changed: the cache stays
    (folder / "_acts.py").write_text((folder / "_acts.py").read_text() + "\n# an edit\n")
    kernel._drop_stale_cache()
    assert not compiled.exists()
    assert (folder / "__pycache__" / "kernel-sources.sha256").read_text() != stamp
