"""Simulator throughput: the one-town scenario, 1,000,000 citizens x 365 days on this machine.

Printed beside numpy's raw uniform-random rate measured in the same run (target: the simulator's
citizen-days per second at least 3x numpy's uniforms per second), and for issue #14:
- events written per second by `simulate --events all` (a child process, its peak memory too;
  targets >= 3 M events/s, <= 2 GiB), beside the same pipeline writing integer ids and name codes
  instead of the event table's texts (the integer-id writer's ceiling), measured in the same run;
- simulate() end to end over the kernel's time (target <= 1.25x), in this process (warm) and as
  the `socialcredit simulate` command (a fresh process: imports and the kernel's cache load too);
- item 7: the command in one process against `--workers 1` and `--workers 2` (local Dask clusters
  of processes), alternated in the same run: wall and process-tree CPU, speed-ups, same bytes
  (`--workers-only` runs just that).
`--nation SECONDS` also starts the 1.41-billion-citizen run of the pilot-regions-2018 scenario in
a child process, watches its memory and progress for that long, stops it, and extrapolates.
Run with `python benchmarks/bench_simulate.py [--population N --days D --events-population N
--nation 120]`.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba as nb
import numpy as np
import polars as pl

from socialcredit.simulation import load_scenario, simulate
from socialcredit.simulation._forkserver import default_threads
from socialcredit.simulation._hash import mix, stream_key
from socialcredit.simulation._kinds import BYTES_PER_CITIZEN
from socialcredit.simulation._plan import make_plan
from socialcredit.simulation._run import partial_folder
from socialcredit.simulation._shard import (
    ROW_GROUP_ROWS,
    EventsMode,
    ParquetStream,
    blocks_in_order,
    simulate_blocks,
)
from socialcredit.simulation.kernel import RECORD_ALL

NATION = 1_410_000_000


def numpy_uniform_rates(repeat: int = 3) -> tuple[float, float]:
    """Uniform doubles per second from numpy's default generator (best of `repeat`): into a
    reused buffer (the raw rate), and as a fresh 100-million array (allocation included)."""
    rng = np.random.default_rng(0)
    buffer = np.empty(10_000_000)
    raw = fresh = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        rng.random(out=buffer)
        raw = min(raw, time.perf_counter() - t0)
        t0 = time.perf_counter()
        rng.random(100_000_000)
        fresh = min(fresh, time.perf_counter() - t0)
    return len(buffer) / raw, 100_000_000 / fresh


@nb.njit(parallel=True, cache=True)
def _bare(n: int, days: int, score: np.ndarray, klass: np.ndarray) -> None:
    # The reference: 9 behaviours a day per citizen from one counter-based hash (7 bits
    # each, a 1-in-128 chance), score and class written once per day; nothing else.
    for b in nb.prange((n + 32767) // 32768):
        for t in range(days):
            key = stream_key(1, b, t, 0)
            for i in range(b * 32768, min(n, (b + 1) * 32768)):
                h = mix(key + np.uint64(i) * np.uint64(0x9E3779B97F4A7C15))
                s = score[i]
                for k in range(9):
                    if (h >> np.uint64(7 * k)) & np.uint64(127) == 0:
                        s += 5 - 2 * k
                score[i] = s
                klass[i] = 0 if s >= 1300 else 2 if s >= 1000 else 3 if s >= 850 else 4 if s >= 600 else 5


def bare_kernel_seconds(population: int, days: int) -> float:
    """Seconds of the reference bare kernel on `population` x `days`."""
    score = np.full(population, 1000, np.int32)
    klass = np.zeros(population, np.int8)
    _bare(1000, 2, score, klass)
    t0 = time.perf_counter()
    _bare(population, days, score, klass)
    return time.perf_counter() - t0


def kernel_rate(population: int, days: int, seed: int, repeat: int) -> tuple[float, float, float]:
    """Citizen-days per second of the fused kernel alone (best of `repeat`), its seconds, and the
    median of its CPU seconds (all threads)."""
    plan = make_plan(load_scenario("one-town"), population=population, days=days, seed=seed)
    best, cpu = float("inf"), []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        simulate_blocks(plan, 0, plan.n_blocks, EventsMode(0), default_threads())
        best = min(best, time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return population * days / best, best, sorted(cpu)[len(cpu) // 2]


def events_run(population: int, days: int, seed: int, events: str, workers: int | None = None,
               keep: Path | None = None) -> dict:
    """`socialcredit simulate` in a fresh process: wall seconds, peak resident memory, manifest;
    the CPU seconds of the command alone and of its whole process tree (Dask's workers too, forked
    by a server the command does not wait for: this process adopts and reaps them as a subreaper).
    `keep`: move the run's tables there."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        script = Path(sys.executable).with_name("socialcredit")  # the installed command
        program = ([str(script)] if script.is_file()
                   else [sys.executable, "-c", "from socialcredit.cli import app; app()"])
        command = [*program, "simulate", "-n", str(population), "-d", str(days), "-s", str(seed), "-o", str(out),
                   "--events", events, *(["--workers", str(workers)] if workers else [])]
        _become_subreaper()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        while True:  # the orphans it left (the workers' server and its workers), once they exit
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({child.returncode})")
        from socialcredit.simulation import Run

        m = Run.open(out).manifest
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for table in ("citizens", "daily", "events"):
                (out / f"{table}.parquet").rename(keep / f"{table}.parquet")
        return {"wall": wall, "peak": usage.ru_maxrss * 1024, "events": m.events_written,
                "simulate_s": m.timings["simulate_s"], "cpu": usage.ru_utime + usage.ru_stime,
                "tree_cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
                "cluster_s": m.timings.get("cluster_s", 0.0), "write_s": m.timings["write_s"],
                "shards": m.shards}


def _become_subreaper() -> None:
    """Adopt this process's orphaned descendants (Linux prctl PR_SET_CHILD_SUBREAPER), so that
    their CPU time counts in its children's usage once reaped."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def workers_comparison(population: int, days: int, seed: int, repeat: int, events: str = "none") -> None:
    """One process against `--workers 1` and `--workers 2` (local Dask clusters of processes), each
    a fresh `socialcredit simulate`, alternated `repeat` times: medians of wall and process-tree CPU
    seconds, the speed-ups, and whether the tables are the same bytes."""
    variants: list[int | None] = [None, 1, 2]
    seen: dict[int | None, list[dict]] = {v: [] for v in variants}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            for v in variants:
                keep = Path(tmp) / str(v) if i == 0 else None
                seen[v].append(events_run(population, days, seed, events, workers=v, keep=keep))
                loads.append(os.getloadavg()[0])
        same = all((Path(tmp) / str(v) / f"{t}.parquet").read_bytes()
                   == (Path(tmp) / "None" / f"{t}.parquet").read_bytes()
                   for v in (1, 2) for t in ("citizens", "daily", "events"))

    def median(v: int | None, key: str) -> float:
        values = sorted(r[key] for r in seen[v])
        return values[len(values) // 2]

    print(f"one process vs Dask workers: `socialcredit simulate` -n {population:,} -d {days} --events {events} "
          f"on {default_threads()} cores, medians of {repeat} alternated runs (load average "
          f"{min(loads):.1f} to {max(loads):.1f})")
    base = median(None, "wall")
    for v in variants:
        name = "one process" if v is None else f"--workers {v}"
        start = f"; cluster start {median(v, 'cluster_s'):.2f} s" if v else ""
        print(f"  {name:12s} wall {median(v, 'wall'):6.2f} s (speed-up {base / median(v, 'wall'):.2f}x), "
              f"process tree CPU {median(v, 'tree_cpu'):6.2f} s, {seen[v][0]['shards']} shard(s), "
              f"merge {median(v, 'write_s'):.2f} s{start}")
    print(f"  tables byte-identical to one process's: {'yes' if same else 'NO'}")


INTEGER_EVENTS = {"day": pl.Int32, "block": pl.Int64, "seq": pl.Int64, "citizen": pl.Int64, "kind": pl.UInt8,
                  "source": pl.UInt8, "place": pl.Int8, "confidence": pl.Float64, "actor": pl.Int64,
                  "flags": pl.UInt8}


def integer_writer_rate(population: int, days: int, seed: int) -> tuple[float, int, float]:
    """The ceiling: the shard's pipeline (kernel, a frame per block on its thread, one streaming
    Parquet writer) with the events as the kernel's integers (ids, codes) instead of the table's
    texts. Events per second, events, seconds."""
    plan = make_plan(load_scenario("one-town"), population=population, days=days, seed=seed)

    def frame(block, first_citizen, views, ev, conf):
        offset = block * plan.block_size
        return pl.DataFrame({"day": ev[0], "block": np.full(ev.shape[1], block), "seq": ev[1],
                             "citizen": offset + ev[4], "kind": ev[2], "source": ev[5] // 8,
                             "place": ev[5] % 8 - 1, "confidence": conf, "actor": offset + ev[3],
                             "flags": ev[6]}, schema=INTEGER_EVENTS)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        stream = ParquetStream(Path(tmp) / "events.parquet", INTEGER_EVENTS, {})
        _, blocks = blocks_in_order(plan, 0, plan.n_blocks, EventsMode(RECORD_ALL, 1.0), default_threads(), frame)
        for *_, batch in blocks:
            stream.write(batch)
        stream.close()
        seconds = time.perf_counter() - t0
    return stream.rows / seconds, stream.rows, seconds


def nation_probe(seconds: float, days: int) -> None:
    """Start the 1.41-billion run, sample its memory and progress, stop it, extrapolate."""
    out = Path(tempfile.mkdtemp(prefix="sc-nation-")) / "run"
    code = ("from socialcredit.simulation import simulate; "
            f"simulate(population={NATION}, days={days}, seed=1, out={str(out)!r}, "
            "scenario='pilot-regions-2018')")
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    parts = partial_folder(out) / "parts"
    peak, t0, samples = 0, time.perf_counter(), []
    try:
        while time.perf_counter() - t0 < seconds and child.poll() is None:
            time.sleep(1.0)
            peak = max(peak, _tree_rss(child.pid))
            done = len(list(parts.glob("shard-*.npz"))) if parts.exists() else 0
            samples.append((time.perf_counter() - t0, done))
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait()
        subprocess.run(["rm", "-rf", str(out.parent)], check=False)
    shard_citizens = 64 * 32768
    n_shards = -(-NATION // shard_citizens)
    print(f"nation: {NATION:,} citizens x {days} days, scenario pilot-regions-2018")
    print(f"  peak resident memory of the run: {peak / 2**30:.2f} GiB (machine limit 24 GiB)")
    finished = [(t, d) for t, d in samples if d > 0]
    if len(finished) >= 2 and finished[-1][1] > finished[0][1]:
        (t_a, d_a), (t_b, d_b) = finished[0], finished[-1]
        per_shard = (t_b - t_a) / (d_b - d_a)
        print(f"  {d_b} of {n_shards} shards written in {samples[-1][0]:.0f} s; "
              f"{per_shard:.1f} s per shard of {shard_citizens:,} citizens "
              f"-> the whole run takes about {per_shard * n_shards / 3600:.1f} h on this machine")
    else:
        print(f"  {samples[-1][1] if samples else 0} shards written in {seconds:.0f} s "
              "(too few to extrapolate: give --nation more seconds)")


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and its children (Linux /proc)."""
    total = 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            pids += [int(p) for p in fh.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--events-population", type=int, default=None,
                        help="citizens of the --events all runs (default: --population)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nation", type=float, default=0.0,
                        help="seconds to watch the 1.41-billion run (0: skip)")
    parser.add_argument("--nation-days", type=int, default=365)
    parser.add_argument("--workers-only", action="store_true",
                        help="only compare one process with --workers 1 and 2")
    parser.add_argument("--workers-events", default="none", help="--events of that comparison")
    args = parser.parse_args()
    if args.workers_only:
        workers_comparison(args.population, args.days, args.seed, args.repeat, args.workers_events)
        return
    ev_population = args.events_population or args.population
    # The commands first: a child's peak memory counts from its parent's size when it started.
    command = events_run(args.population, args.days, args.seed, "none")
    written = events_run(ev_population, args.days, args.seed, "all")

    with tempfile.TemporaryDirectory() as tmp:  # compile (or load the cache) outside the timings
        simulate(population=50_000, days=3, seed=args.seed, out=Path(tmp) / "warm", events="all")
        numpy_raw, numpy_fresh = numpy_uniform_rates()
        rate, seconds, kernel_cpu = kernel_rate(args.population, args.days, args.seed, args.repeat)
        bare = bare_kernel_seconds(args.population, args.days)
        walls, cpus = [], []
        for i in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            run = simulate(population=args.population, days=args.days, seed=args.seed,
                           out=Path(tmp) / f"run{i}")
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        wall, cpu = sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2]
        m = run.manifest
    ceiling, ceiling_events, ceiling_s = integer_writer_rate(ev_population, args.days, args.seed)
    cd = args.population * args.days
    print(f"one-town {args.population:,} citizens x {args.days} days on {default_threads()} cores "
          f"(load average {os.getloadavg()[0]:.1f})")
    print(f"  numpy uniforms, reused buffer:   {numpy_raw / 1e6:9.1f} M/s (same run)")
    print(f"  numpy uniforms, fresh 1e8 array: {numpy_fresh / 1e6:9.1f} M/s (same run)")
    print(f"  kernel:                          {rate / 1e6:9.1f} M citizen-days/s ({seconds:.2f} s; "
          f"{rate / numpy_raw:.2f}x / {rate / numpy_fresh:.2f}x numpy's uniforms/s)")
    print(f"    issue #3's target: about 250 M citizen-days/s (1M x 365 in about 1.5 s): "
          f"{'met' if rate >= 250e6 else 'missed'}; a numpy model draws one uniform per behaviour, "
          f"9 per citizen-day: {numpy_raw / 9 / 1e6:.1f} M citizen-days/s, "
          f"the kernel {rate / (numpy_raw / 9):.1f}x that")
    print(f"  bare 9-behaviour kernel:         {cd / bare / 1e6:9.1f} M citizen-days/s ({bare:.2f} s; "
          f"the full model takes {seconds / bare:.1f}x as long, target <= 3x)")
    print(f"  simulate() end to end:           {cd / wall / 1e6:9.1f} M citizen-days/s "
          f"({wall:.2f} s incl. writing {args.population:,} citizens; median of {len(walls)})")
    print(f"    end to end / kernel: {wall / seconds:.2f}x in this process, {command['wall'] / seconds:.2f}x "
          f"as `socialcredit simulate` ({command['wall']:.2f} s with start-up; peak "
          f"{command['peak'] / 2**30:.2f} GiB); issue #14's target <= 1.25x")
    print(f"      in CPU seconds (a loaded machine's fairer measure): kernel {kernel_cpu:.2f} s, simulate() "
          f"{cpu:.2f} s ({cpu / kernel_cpu:.2f}x), the command {command['cpu']:.2f} s "
          f"({command['cpu'] / kernel_cpu:.2f}x)")
    print(f"  state per citizen:               {BYTES_PER_CITIZEN} bytes "
          f"(peak RSS {m.memory.peak_rss_bytes / 2**20:.0f} MiB)")
    rate_all = written["events"] / written["simulate_s"]
    print(f"  --events all, {ev_population:,} x {args.days} (`socialcredit simulate`): "
          f"{written['events']:,} events in {written['simulate_s']:.2f} s = {rate_all / 1e6:.2f} M events/s "
          f"({rate_all / 3e6:.2f}x of issue #14's 3 M/s; {written['wall']:.2f} s with start-up, "
          f"{written['cpu']:.1f} s of CPU); peak {written['peak'] / 2**30:.2f} GiB (target <= 2 GiB)")
    print(f"    integer-id writer's ceiling (same pipeline, ids and names as integers): "
          f"{ceiling / 1e6:.2f} M events/s ({ceiling_events:,} events in {ceiling_s:.2f} s); "
          f"the table's texts run at {rate_all / ceiling:.2f}x of it; row groups of {ROW_GROUP_ROWS:,} rows")
    workers_comparison(args.population, args.days, args.seed, args.repeat, args.workers_events)
    if args.nation > 0:
        nation_probe(args.nation, args.nation_days)


if __name__ == "__main__":
    main()
