"""`simulate`: plan a run, simulate it shard by shard (here, or on a Dask cluster), write the folder."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import resource
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError

from socialcredit.events import Calendar
from socialcredit.policy import Policy, parse_policy
from socialcredit.simulation._forkserver import available as forkserver_available
from socialcredit.simulation._forkserver import default_threads, server_settings
from socialcredit.simulation._kinds import (
    BYTES_PER_CITIZEN,
    COUNTERS,
    KIND_NAMES,
    M_CCLASS,
    M_CCONS,
    M_COUNT,
    M_KIND,
    M_SCLASS,
    M_SCONS,
    STATE_FIELDS,
)
from socialcredit.simulation._plan import Plan, make_plan
from socialcredit.simulation._scenario import Scenario, SimulationError, load_scenario
from socialcredit.simulation._shard import (
    PART_FORMATS,
    EventsMode,
    ParquetStream,
    ShardResult,
    citizens_metadata,
    events_metadata,
    events_schema,
    finished_shard,
    run_shard,
    shard_part,
    write_atomically,
)
from socialcredit.simulation.kernel import RECORD_ALL, RECORD_NONE, RECORD_SAMPLE

DEFAULT_CHUNK_BLOCKS = 64  # a shard of 64 blocks (2 million citizens) holds ~0.3 GB at its peak
GPU_CHUNK_BLOCKS = 1024  # on the GPU a shard's blocks are its threads: more of them (see _gpu.py)
TABLES = ("daily", "citizens", "events")
POLICY_FOLDER = "policies"  # a run folder's copies of the policies it used, <name>.toml


class Memory(BaseModel):
    """What the run's state took: bytes per citizen (its fields' types), per shard, and at the peak."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    state_bytes_per_citizen: int
    state_fields: dict[str, str]
    shard_state_bytes: int
    peak_rss_bytes: int


class Manifest(BaseModel):
    """A run folder's manifest.json: what was simulated, with what, how, and how fast. Written by
    `simulate`; everything that opens a run reads it through this model."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    socialcredit: str  # the version that made the run
    python: str
    scenario: Scenario  # as used, overrides applied
    # Region -> the name of its state policy (None: unscored); each policy's copy is
    # policies/<name>.toml in the run folder.
    policies: dict[str, str | None]
    commercial_policy: str | None
    seed: int
    population: int
    # Each simulated citizen stands for people_per_citizen = represents / population people: counts
    # times it are the represented population's (shares and per-head rates need no scaling).
    represents: int
    people_per_citizen: float
    days: int
    block_size: int
    blocks: int
    chunk_blocks: int
    shards: int
    resumed_shards: int = 0  # shards an interrupted run had finished (see simulate's resume)
    workers: int | None
    scheduler: str | None
    device: str
    events: str  # all, none or sample:F
    citizens: str = "all"  # the citizens citizens.parquet holds: all, none or sample:F
    events_written: int
    # seconds: plan_s, simulate_s, shards_s, write_s, total_s (and cluster_s: a Dask cluster's start)
    timings: dict[str, float]
    citizen_days_per_s: int
    memory: Memory

    @property
    def calendar(self) -> Calendar:
        """The run's days as dates (day 0: the scenario's start date)."""
        return Calendar(self.scenario.start_date)


@dataclass(frozen=True)
class Run:
    """A finished run: its folder, manifest and tables (polars frames, read on first use)."""

    path: Path

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """Open an existing run folder."""
        path = Path(path)
        if not (path / "manifest.json").is_file():
            raise SimulationError(f"{path}: not a run folder (no manifest.json)")
        return cls(path)

    @cached_property
    def manifest(self) -> Manifest:
        """The run's manifest: scenario, policies, seed, version, timings, memory."""
        path = self.path / "manifest.json"
        try:
            return Manifest.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "the file"
            raise SimulationError(f"{path}: {where}: {problem['msg']} (not a manifest this version of "
                                  "socialcredit reads)") from None

    @property
    def calendar(self) -> Calendar:
        """The run's days as dates (day 0: the scenario's start date)."""
        return self.manifest.calendar

    @cached_property
    def policies(self) -> dict[str, Policy]:
        """Every policy the run used (the regions' and the commercial one), by name, from the run's
        own copies: editing or losing the original files changes nothing."""
        names = {*filter(None, self.manifest.policies.values()), self.manifest.commercial_policy}
        return {name: self._policy(name) for name in sorted(filter(None, names))}

    @property
    def region_policies(self) -> dict[str, Policy | None]:
        """Region -> the state policy scoring it (None: unscored)."""
        return {region: None if name is None else self.policies[name]
                for region, name in self.manifest.policies.items()}

    @property
    def commercial_policy(self) -> Policy | None:
        """The commercial score's policy, if the run has one."""
        name = self.manifest.commercial_policy
        return None if name is None else self.policies[name]

    def state_policy(self) -> Policy:
        """The one state policy that scores the run's regions (the service holds one): an error
        naming them when there are several, or none."""
        regions = self.region_policies
        names = sorted({p.name for p in regions.values() if p is not None})
        if not names:
            raise SimulationError(f"{self.path}: no region of the run is scored (every policy is empty); "
                                  "pass --policy")
        if len(names) > 1:
            shown = "; ".join(f"{r}: {p.name}" for r, p in regions.items() if p is not None)
            raise SimulationError(f"run {self.path} scores its regions with {len(names)} policies ({shown}); "
                                  "the service holds one: pass --policy with the one to load it under")
        return self.policies[names[0]]

    def _policy(self, name: str) -> Policy:
        copy = self.path / POLICY_FOLDER / f"{name}.toml"
        if not copy.is_file():
            raise SimulationError(f"{self.path}: the run holds no copy of its policy '{name}' ({copy})")
        return parse_policy(copy.read_text(encoding="utf-8"), source=str(copy))

    def scan(self, table: str) -> pl.LazyFrame | None:
        """One of the run's tables (daily, citizens, events) read lazily; None where the run has
        no such file (a run without events)."""
        path = self.path / f"{table}.parquet"
        return pl.scan_parquet(path) if path.is_file() else None

    @cached_property
    def daily(self) -> pl.DataFrame:
        """Per day and region: classes, events by kind, consequences."""
        return pl.read_parquet(self.path / "daily.parquet")

    @cached_property
    def citizens(self) -> pl.DataFrame:
        """Final state per citizen."""
        return pl.read_parquet(self.path / "citizens.parquet")

    @cached_property
    def events(self) -> pl.DataFrame:
        """Recorded events with provenance and true actor."""
        return pl.read_parquet(self.path / "events.parquet")


def parse_events(value: str) -> EventsMode:
    """`all`, `none` or `sample:F` (0 < F <= 1)."""
    fraction = _share("--events", value)
    if value == "all":
        return EventsMode(RECORD_ALL, 1.0)
    if fraction == 0.0:
        return EventsMode(RECORD_NONE)
    return EventsMode(RECORD_SAMPLE, fraction)


def parse_citizens(value: str) -> float:
    """`all`, `none` or `sample:F` (0 < F <= 1): the fraction of citizens citizens.parquet keeps."""
    return _share("--citizens", value)


def _share(option: str, value: str) -> float:
    """The share that `all` (1), `none` (0) or `sample:F` (0 < F <= 1) keeps; else an error naming `option`."""
    if value in ("all", "none"):
        return 1.0 if value == "all" else 0.0
    if value.startswith("sample:"):
        try:
            fraction = float(value.removeprefix("sample:"))
        except ValueError:
            fraction = -1.0
        if 0.0 < fraction <= 1.0:
            return fraction
    raise SimulationError(f"{option} must be all, none or sample:F with 0 < F <= 1 (got '{value}')")


def check_device(device: str) -> None:
    """Refuse devices this installation cannot run on, saying why."""
    if device == "cpu":
        return
    if device != "cuda":
        raise SimulationError(f"--device must be cpu or cuda (got '{device}')")
    try:
        from numba import cuda

        available = cuda.is_available()
    except Exception:  # noqa: BLE001 (any failure to load CUDA means: no GPU here)
        available = False
    if not available:
        raise SimulationError("--device cuda: no CUDA GPU is available on this machine "
                              "(install the 'gpu' extra on a machine with an NVIDIA GPU)")
    from socialcredit.simulation._gpu import gpu_problem

    if (problem := gpu_problem()) is not None:
        raise SimulationError(f"--device cuda: {problem}")


def simulate(*, population: int, days: int, seed: int, out: str | Path,
             scenario: str | Path = "one-town", policy: str | None = None,
             workers: int | None = None, scheduler: str | None = None, device: str = "cpu",
             events: str = "none", chunk_blocks: int | None = None,
             overrides: dict[str, Any] | None = None, citizens: str = "all", resume: bool = False,
             on_progress: Callable[[int, int], None] | None = None) -> Run:
    """Simulate `population` citizens for `days` days and write a run folder at `out`.

    Shards are written to `.<out name>.partial` beside `out`, which an interrupted run leaves
    behind: `resume=True` continues it from its last finished shard (it must have been started
    with the same arguments); without it, an existing partial folder is refused.
    """
    t0 = time.perf_counter()
    mode = parse_events(events)
    citizens_kept = parse_citizens(citizens)
    check_device(device)
    if workers is not None and workers < 1:
        raise SimulationError(f"--workers must be at least 1 (got {workers})")
    if workers is not None and scheduler is not None:
        raise SimulationError("use either --workers (a local cluster) or --scheduler, not both")
    if chunk_blocks is not None and chunk_blocks < 1:
        raise SimulationError(f"chunk_blocks must be at least 1 (got {chunk_blocks})")
    out = Path(out)
    _check_out(out)
    with _cluster(workers, scheduler) as cluster:  # starts on a thread while the run is planned
        loaded = load_scenario(scenario, overrides=overrides, policy=policy)
        plan = make_plan(loaded, population=population, days=days, seed=seed)
        chunk = chunk_blocks or (DEFAULT_CHUNK_BLOCKS if device == "cpu" else GPU_CHUNK_BLOCKS)
        if chunk_blocks is None and cluster is not None:
            chunk = cluster.chunk_blocks(plan.n_blocks, chunk)
        out.parent.mkdir(parents=True, exist_ok=True)
        with _partial_folder(out) as work:
            _check_out(out)  # again, holding the lock: another process may have just finished it
            parts = work / "parts"
            identity = _identity(plan, events, citizens, device, chunk)
            chunk = _resume_or_start(work, identity, resume, chunk_given=chunk_blocks is not None)
            parts.mkdir(exist_ok=True)
            shards = [(i, b, min(b + chunk, plan.n_blocks))
                      for i, b in enumerate(range(0, plan.n_blocks, chunk))]
            part_format = PART_FORMATS[len(shards) > 1]
            totals = _Totals()
            finished = [i for i, *_ in shards if totals.add(finished_shard(parts, i, part_format))]
            todo = [shard for shard in shards if shard[0] not in finished]
            resumed_days = totals.citizens * plan.days
            if on_progress is not None:
                on_progress(resumed_days, plan.population * plan.days)
            t_plan = time.perf_counter()
            merger = _Merger(plan, parts, work, [i for i, *_ in shards]) if len(shards) > 1 else None
            try:
                for i in finished:
                    if merger is not None:
                        merger.finished(i)
                on_shard = merger.finished if merger is not None else lambda index: None
                if todo and cluster is None:
                    _run_here(plan, todo, mode, parts, on_progress, device, citizens_kept, resumed_days,
                              part_format, on_shard, totals)
                elif todo:
                    _run_on_dask(plan, todo, mode, parts, cluster, on_progress, device, citizens_kept,
                                 resumed_days, part_format, on_shard, totals)
                t_sim = time.perf_counter()
                if cluster is not None:
                    cluster.close_soon()  # its processes exit while the last parts are merged
                if merger is not None:
                    merger.close()
                else:
                    for table in ("citizens", "events"):  # a single shard's parts are the files
                        (parts / shard_part(table, 0)).rename(work / f"{table}.parquet")
            except BaseException:
                if cluster is not None:  # its workers stop before the partial folder is unlocked
                    cluster.close()
                if merger is not None:
                    merger.abort()
                raise
            daily_frame(plan, totals.metrics).write_parquet(work / "daily.parquet")
            n_events = totals.events
            shutil.rmtree(parts)
            t_write = time.perf_counter()
            manifest = _manifest(plan, mode, events, citizens, device, workers, scheduler, chunk,
                                 len(shards), len(finished), n_events, resumed_days,
                                 {"plan_s": t_plan - t0, "simulate_s": t_sim - t_plan,
                                  "shards_s": totals.seconds,
                                  "write_s": t_write - t_sim, "total_s": t_write - t0,
                                  **({"cluster_s": cluster.start_s} if cluster is not None else {})})
            (work / "manifest.json").write_text(manifest.model_dump_json(indent=2, by_alias=True),
                                                encoding="utf-8")
            (work / POLICY_FOLDER).mkdir(exist_ok=True)
            for name, text in plan.policy_texts.items():  # the policies as used: the run reads its own
                (work / POLICY_FOLDER / f"{name}.toml").write_text(text, encoding="utf-8")
            if out.exists():
                out.rmdir()
            (work / IDENTITY_FILE).unlink()
            work.rename(out)
    return Run(out)


IDENTITY_FILE = "identity.json"  # in a partial folder: what is being simulated, to check a resume
LOCK_FILE = "lock"  # in a partial folder: held (flock) by the process writing it


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SimulationError(f"--out {out}: exists and is not an empty folder")


def partial_folder(out: Path) -> Path:
    """Where `simulate` writes the run for `out` until it is finished (a later run resumes it)."""
    return out.parent / f".{out.name}.partial"


@contextmanager
def _partial_folder(out: Path) -> Iterator[Path]:
    """The partial folder, locked for this process: a second run into the same `out` is refused
    while this one lives (the lock dies with its process, so a killed run's folder can be resumed).
    Kept when the run fails: that is what a resume continues."""
    work = partial_folder(out)
    created = not work.exists()
    work.mkdir(exist_ok=True)
    busy = SimulationError(f"--out {out}: another simulate is writing this run ({work}); wait for "
                           "it to finish or stop it")
    try:
        fd = os.open(work / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # the other process has just finished and renamed the folder
        raise busy from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        try:
            if os.stat(work / LOCK_FILE).st_ino != os.fstat(fd).st_ino:
                raise busy  # locked a folder the other process finished meanwhile
        except FileNotFoundError:
            raise busy from None
        try:
            yield work
        except BaseException:
            if created and not any((work / "parts").glob("shard-*.npz")):
                shutil.rmtree(work)  # nothing to resume: leave no trace
            raise
        (out / LOCK_FILE).unlink()  # the folder is `out` now; its lock goes as the fd closes
    finally:
        os.close(fd)


def _identity(plan: Plan, events: str, citizens: str, device: str, chunk: int) -> dict[str, Any]:
    """What makes a run's shards: a resume must match it, field for field."""
    from socialcredit import __version__

    identity = {"socialcredit": __version__, "scenario": plan.scenario.model_dump(mode="json"),
                "policies": plan.policy_texts, "population": plan.population, "days": plan.days,
                "seed": plan.seed, "events": events, "citizens": citizens,
                # The GPU is meant to give the CPU's results but that is unchecked: no mixing.
                "device": device, "chunk_blocks": chunk}
    return json.loads(json.dumps(identity))  # as it reads back from the file


def _resume_or_start(work: Path, identity: dict[str, Any], resume: bool, *, chunk_given: bool) -> int:
    """Record a new run's identity, or check a resumed one's against it; the chunk size to use
    (a resume keeps the interrupted run's own, unless chunk_blocks was given)."""
    path = work / IDENTITY_FILE
    if not path.is_file():
        if any(p.name != LOCK_FILE for p in work.iterdir()):
            raise SimulationError(f"{work}: not a partial run this version can resume (no "
                                  f"{IDENTITY_FILE}); delete it to start over")
        write_atomically(path, lambda file: file.write(json.dumps(identity, indent=2).encode()))
        return identity["chunk_blocks"]
    if not resume:
        raise SimulationError(f"{work}: an interrupted run of this --out is there; pass --resume "
                              "to continue it, or delete that folder to start over")
    saved = json.loads(path.read_text(encoding="utf-8"))
    if not chunk_given:
        identity = {**identity, "chunk_blocks": saved.get("chunk_blocks")}
    differences = _differences(saved, identity)
    if differences:
        shown = "; ".join(f"{where}: {was!r} then, {now!r} now" for where, was, now in differences[:5])
        more = f" (and {len(differences) - 5} more)" if len(differences) > 5 else ""
        raise SimulationError(f"--resume: the interrupted run in {work} was started with other "
                              f"arguments: {shown}{more}; rerun it with its own, or delete that "
                              "folder to start over")
    return identity["chunk_blocks"]


def _differences(was: Any, now: Any, where: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted path, old value, new value) of every leaf that differs between two JSON values."""
    if isinstance(was, dict) and isinstance(now, dict):
        return [d for key in sorted({*was, *now}, key=str)
                for d in _differences(was.get(key), now.get(key), f"{where}.{key}" if where else key)]
    if isinstance(was, list) and isinstance(now, list) and len(was) == len(now):
        return [d for i, (a, b) in enumerate(zip(was, now, strict=True))
                for d in _differences(a, b, f"{where}.{i}")]
    return [] if was == now else [(where, was, now)]


def _run_here(plan: Plan, shards: list, mode: EventsMode, parts: Path,
              on_progress: Callable[[int, int], None] | None, device: str,
              citizens_kept: float, done: int, part_format: str,
              on_shard: Callable[[int], None], totals: _Totals) -> None:
    total = plan.population * plan.days

    def tick(size: int) -> None:
        nonlocal done
        done += size * plan.days
        if on_progress is not None:
            on_progress(done, total)

    threads = default_threads()
    for i, first, last in shards:
        totals.add(run_shard(plan, i, first, last, mode, threads, str(parts), tick, device, citizens_kept,
                             part_format))
        on_shard(i)


def _run_on_dask(plan: Plan, shards: list, mode: EventsMode, parts: Path, cluster: _Cluster,
                 on_progress: Callable[[int, int], None] | None, device: str, citizens_kept: float,
                 done: int, part_format: str, on_shard: Callable[[int], None], totals: _Totals) -> None:
    """The shards as tasks of the cluster: each worker writes its parts into `parts` (a shared
    file system) and hands back only its record (daily metrics and counts). A shard's failure is
    raised once the other shards are done: what they finished counts for a resume."""
    from dask.distributed import as_completed

    client = cluster.client()
    futures = [client.submit(run_shard, plan, i, first, last, mode, cluster.threads(), str(parts),
                             None, device, citizens_kept, part_format, pure=False)
               for i, first, last in shards]
    failure: BaseException | None = None
    try:
        for future in as_completed(futures):
            if future.status != "finished":
                failure = failure or future.exception() or RuntimeError(f"a shard's task was {future.status}")
                continue
            result = future.result()
            totals.add(result)
            on_shard(result.index)
            done += result.citizens * plan.days
            if on_progress is not None:
                on_progress(done, plan.population * plan.days)
    except BaseException:  # interrupted: no shard of this run starts after it
        client.cancel(futures)
        raise
    if failure is not None:
        raise failure


class _Totals:
    """What the finished shards handed back, summed as each finishes (in any order: sums of integers).
    A shard's daily metrics are megabytes: the nation's 673 shards kept until the end held ~4.4 GB."""

    def __init__(self):
        self.metrics: np.ndarray | None = None
        self.citizens = self.events = 0
        self.seconds = 0.0

    def add(self, result: ShardResult | None) -> bool:
        """Count a shard's result (None: a shard not finished, counted as nothing); whether it was one."""
        if result is None:
            return False
        if self.metrics is None:
            self.metrics = result.metrics.copy()
        else:
            self.metrics += result.metrics
        self.citizens += result.citizens
        self.events += result.events
        self.seconds += result.seconds
        return True


class _Cluster:
    """A Dask client made on a thread (a local cluster's processes start, import and load the
    kernel while the caller plans the run), and how a run's shards fit its task slots."""

    def __init__(self, workers: int | None, scheduler: str | None) -> None:
        self.workers, self.scheduler = workers, scheduler
        self._client: Any = None
        self._error: BaseException | None = None
        self._exits = ExitStack()
        self._threads: int | None = None
        self._slots: int | None = None
        if workers is not None:  # a local cluster: the machine's cores shared out between its workers
            self._slots, self._threads = workers, max(1, default_threads() // workers)
        self._closing: threading.Thread | None = None
        self.start_s = 0.0  # how long the cluster took to start (or the client to connect)
        self._starting = threading.Thread(target=self._start, name="dask-start", daemon=True)
        self._starting.start()

    def _start(self) -> None:
        t0 = time.perf_counter()
        try:
            self._client = self._exits.enter_context(dask_client(self.workers, self.scheduler,
                                                                 self._threads))
            self.start_s = time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 (raised on the caller's thread by client())
            self._error = exc

    def client(self) -> Any:
        """The client, once the cluster is up (its start's error, if it failed)."""
        self._starting.join()
        if self._error is not None:
            raise self._error
        return self._client

    def _measure(self) -> None:
        """Task slots and threads per task of a cluster at `scheduler`: on each host, its cores
        shared out between the Dask threads of the workers there."""
        client = self.client()
        workers = client.scheduler_info()["workers"]
        cores = client.run(default_threads)
        slots: dict[str, int] = {}
        host_cores: dict[str, int] = {}
        for address, info in workers.items():
            host = info.get("host") or address
            slots[host] = slots.get(host, 0) + int(info.get("nthreads", 1))
            host_cores[host] = max(host_cores.get(host, 1), int(cores.get(address, 1)))
        self._slots = max(1, sum(slots.values()))
        self._threads = min((max(1, host_cores[h] // n) for h, n in slots.items()), default=1)

    def threads(self) -> int:
        """Threads each shard's blocks run on."""
        if self._threads is None:
            self._measure()
        return self._threads or 1

    def chunk_blocks(self, n_blocks: int, largest: int) -> int:
        """Blocks per shard: one shard for a single slot (nothing to merge), else about four
        shards per slot, each at least a block per thread: a slower worker is caught up, and the
        parts merged while later shards run leave little to merge at the end."""
        if self._slots is None:
            self._measure()
        slots = self._slots or 1
        if slots == 1:
            return largest
        return max(1, min(largest, max(self.threads(), -(-n_blocks // (4 * slots)))))

    def close_soon(self) -> None:
        """Start closing the cluster (on a thread: its processes exit while the caller goes on)."""
        if self._closing is None:
            self._starting.join()
            self._closing = threading.Thread(target=self._exits.close, name="dask-close", daemon=True)
            self._closing.start()

    def close(self) -> None:
        """Close the cluster and wait until it is closed."""
        self.close_soon()
        assert self._closing is not None
        self._closing.join()


@contextmanager
def _cluster(workers: int | None, scheduler: str | None) -> Iterator[_Cluster | None]:
    """A `_Cluster` starting for a run on Dask (None for a run in this process), closed at the end."""
    if workers is None and scheduler is None:
        yield None
        return
    cluster = _Cluster(workers, scheduler)
    try:
        yield cluster
    finally:
        cluster.close()


@contextmanager
def _forked_workers(threads: int) -> Iterator[None]:
    """Local workers forked from the server of `_forkserver` (started by this process's first local
    cluster, or by the command line before its imports), `threads` threads each, instead of each
    spawned afresh to import the simulator and load its kernel again."""
    import dask

    if not forkserver_available():
        yield
        return
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}), server_settings(threads):
        yield


@contextmanager
def dask_client(workers: int | None, scheduler: str | None, threads: int | None = None) -> Iterator:
    """A Dask client: of a local cluster of `workers` processes, or of the cluster at `scheduler`.

    A local worker runs one shard at a time, on `threads` threads (default: the machine's cores
    shared out between the workers); polars' threads in it are capped the same way."""
    from dask.distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        threads = threads or max(1, default_threads() // (workers or 1))
        with _forked_workers(threads):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0",  # any free port: runs may overlap
                                   env={"POLARS_MAX_THREADS": str(threads)})
    try:
        # Not `with Client(...)`: that ties the client to this thread's context, and a run closes
        # it from another thread (see `_Cluster`).
        client = Client(cluster if cluster is not None else scheduler)
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


class _Merger:
    """The run's citizens and events files, written on a thread from the shards' parts (Arrow IPC)
    in shard order, each as soon as it and those before it are finished: while later shards still
    run, not all at the end. The bytes a single shard writes (the same row groups, schema and
    metadata: see ParquetStream)."""

    def __init__(self, plan: Plan, parts: Path, work: Path, indices: list[int]) -> None:
        self._plan, self._parts, self._work, self._indices = plan, parts, work, indices
        self._ready = {i: threading.Event() for i in indices}
        self._stop = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._merge, name="merge-parts", daemon=True)
        self._thread.start()

    def finished(self, index: int) -> None:
        """Shard `index` has written its parts."""
        self._ready[index].set()

    def _merge(self) -> None:
        part = self._parts / shard_part("citizens", self._indices[0], PART_FORMATS[1])
        streams: dict[str, ParquetStream] = {}
        try:
            self._ready[self._indices[0]].wait()
            if self._stop:
                return
            citizens = dict(pl.scan_ipc(part).collect_schema())
            streams["citizens"] = ParquetStream(self._work / "citizens.parquet", citizens,
                                                citizens_metadata(citizens))
            schema = events_schema(self._plan)
            streams["events"] = ParquetStream(self._work / "events.parquet", schema, events_metadata())
            for i in self._indices:
                self._ready[i].wait()
                if self._stop:
                    break
                for table, stream in streams.items():
                    rows = pl.scan_ipc(self._parts / shard_part(table, i, PART_FORMATS[1]))
                    for batch in (rows.cast(schema) if table == "events" else rows).collect_batches():
                        if self._stop:
                            break
                        stream.write(batch)
            if self._stop:
                for stream in streams.values():
                    stream.abort()
                return
            for stream in streams.values():
                stream.close()
        except BaseException as exc:  # noqa: BLE001 (raised on the caller's thread by close())
            self._error = exc
            for stream in streams.values():
                stream.abort()

    def close(self) -> None:
        """Wait until both files are written (every shard must have finished)."""
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop merging and leave no file (the parts stay, for a resume)."""
        self._stop = True
        for ready in self._ready.values():
            ready.set()
        self._thread.join()


def daily_frame(plan: Plan, metrics: np.ndarray) -> pl.DataFrame:
    """Per day and region: class counts, events by kind, consequence holders, counters."""
    days, n_regions, _ = metrics.shape
    flat = metrics.reshape(days * n_regions, -1)
    region_policy = plan.arrays["world"].region_policy
    # Before a region joins its scheme (roll-out), it has no classes: null, as an unscored region.
    rows_policy = np.where(np.arange(days)[:, None] >= plan.arrays["world"].region_from[None, :],
                           region_policy[None, :], -1).ravel()
    cols: dict[str, Any] = {
        "day": np.repeat(np.arange(days, dtype=np.int32), n_regions),
        "region": pl.Series(np.tile(np.arange(n_regions), days), dtype=pl.UInt32).replace_strict(
            dict(enumerate(r.name for r in plan.scenario.regions)),
            return_dtype=pl.Enum([r.name for r in plan.scenario.regions])),
    }
    state = sorted({int(p) for p in region_policy if p >= 0})

    def per_policy(prefix: str, names_of: Callable, slot0: Callable) -> None:
        """Columns by name across the regions' policies (null where a policy lacks one)."""
        names: list[str] = []
        for p in state:
            names += [n for n in names_of(plan.policies[p]) if n not in names]
        for name in names:
            values = np.zeros(len(flat), np.int64)
            valid = np.zeros(len(flat), bool)
            for p in state:
                own = names_of(plan.policies[p])
                if name in own:
                    rows = rows_policy == p
                    values[rows] = flat[rows, slot0(plan.policies[p]) + own.index(name)]
                    valid |= rows
            cols[f"{prefix}{name}"] = pl.Series(values).set(pl.Series(~valid), None)

    per_policy("class.", lambda p: p.class_names, lambda p: M_SCLASS)
    per_policy("benefit.", lambda p: [b.name for b in p.benefits], lambda p: M_SCONS)
    per_policy("sanction.", lambda p: [s.name for s in p.sanctions],
               lambda p: M_SCONS + len(p.benefits))
    if plan.commercial >= 0:
        cp = plan.policies[plan.commercial]
        for c, name in enumerate(cp.class_names):
            cols[f"commercial.class.{name}"] = flat[:, M_CCLASS + c]
        for j, item in enumerate([*cp.benefits, *cp.sanctions]):
            cols[f"commercial.{'benefit' if j < len(cp.benefits) else 'sanction'}.{item.name}"] = \
                flat[:, M_CCONS + j]
    for k, kind in enumerate(KIND_NAMES):
        for j, what in enumerate(("true", "observed", "wrongful", "counted")):
            cols[f"{kind}.{what}"] = flat[:, M_KIND + 4 * k + j]
    for c, name in enumerate(COUNTERS):
        cols[name] = flat[:, M_COUNT + c]
    return pl.DataFrame(cols)


def _manifest(plan: Plan, mode: EventsMode, events: str, citizens: str, device: str,
              workers: int | None, scheduler: str | None, chunk: int, n_shards: int, n_resumed: int, n_events: int,
              resumed_days: int, timings: dict[str, float]) -> Manifest:
    from socialcredit import __version__

    cd = plan.population * plan.days - resumed_days  # simulated by this process
    return Manifest(
        socialcredit=__version__,
        python=platform.python_version(),
        scenario=plan.scenario,
        policies={r.name: None if p < 0 else plan.policies[p].name
                  for r, p in zip(plan.scenario.regions, plan.arrays["world"].region_policy, strict=True)},
        commercial_policy=None if plan.commercial < 0 else plan.policies[plan.commercial].name,
        seed=plan.seed,
        population=plan.population,
        represents=plan.scenario.represents,
        people_per_citizen=plan.scenario.represents / plan.population,
        days=plan.days,
        block_size=plan.block_size,
        blocks=plan.n_blocks,
        chunk_blocks=chunk,
        shards=n_shards,
        resumed_shards=n_resumed,
        workers=workers,
        scheduler=scheduler,
        device=device,
        events=events,
        citizens=citizens,
        events_written=n_events,
        timings={k: round(v, 3) for k, v in timings.items()},
        citizen_days_per_s=round(cd / max(timings["simulate_s"], 1e-9)),
        memory=Memory(
            state_bytes_per_citizen=BYTES_PER_CITIZEN,
            state_fields={name: np.dtype(t).name for name, t in STATE_FIELDS},
            shard_state_bytes=BYTES_PER_CITIZEN * min(plan.population, chunk * plan.block_size),
            peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        ),
    )
