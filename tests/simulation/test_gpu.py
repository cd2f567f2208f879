"""`--device cuda`: the GPU port gives the CPU's tables; without a GPU it says so and writes nothing.

No GPU here: the port runs under numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, which must be set
before numba is imported, hence a subprocess). That proves the port's logic and data flow (the
arguments, each thread's slices, launches, OVERFLOW retries, the metrics sum, the events read
back), not CUDA code generation, GPU floating point or speed; those tests run where a GPU is.
"""

import json
import os
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from socialcredit.simulation import simulate

ARGS = {"population": 200, "days": 6, "seed": 11, "events": "all",
        "overrides": {"block_size": 64,  # 4 blocks, the last one short (8 citizens)
                      "behaviour.rates.traffic.red_light": 0.05,
                      "behaviour.rates.online.pornography": 0.05,
                      "behaviour.rates.online.party_newspaper_visit": 0.05,
                      "sensors.fmr": 0.01, "sensors.gallery_exponent": 0.0,
                      "region.0.coverage.street": 1.0}}

SIMULATED = textwrap.dedent("""
    import json, sys
    from socialcredit.simulation import _gpu, simulate

    args, out, tiny = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "tiny"
    stats = {"launches": 0, "threads": 0, "overflows": 0}
    launch = _gpu._launch

    def counted(*a, **k):
        n_ev, scratch = launch(*a, **k)
        stats["launches"] += 1
        stats["threads"] += len(n_ev)
        stats["overflows"] += int((n_ev == _gpu.OVERFLOW).sum())
        return n_ev, scratch

    _gpu._launch = counted
    if tiny:  # every buffer far too small: blocks overflow and are retried with more room
        _gpu._first_room = lambda size, days, events: {"expiry": 4, "queue": 2, "events": 2}
    run = simulate(out=out, device="cuda", **args)
    stats["device"] = run.manifest.device
    print(json.dumps(stats))
""")


def _simulated(tmp_path, name: str, tiny: bool = False, env: dict | None = None):
    script = tmp_path / "simulated.py"
    script.write_text(SIMULATED, encoding="utf-8")
    environ = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1",
               "SOCIALCREDIT_GPU_BLOCKS_PER_LAUNCH": "3", **(env or {})}
    out = tmp_path / name
    done = subprocess.run([sys.executable, str(script), json.dumps(ARGS), str(out),
                           "tiny" if tiny else "room"], capture_output=True, text=True,
                          env=environ, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    return simulate(out=tmp_path_factory.mktemp("gpu") / "cpu", device="cpu", **ARGS)


def _assert_same_tables(cpu_run, out):
    for name in ("citizens", "daily", "events"):
        assert pl.read_parquet(out / f"{name}.parquet").equals(getattr(cpu_run, name)), name
    for name in ("citizens.parquet", "daily.parquet"):
        assert (out / name).read_bytes() == (cpu_run.path / name).read_bytes(), name
    assert json.loads((out / "manifest.json").read_text())["device"] == "cuda"


def test_cuda_port_gives_the_cpu_tables_under_the_simulator(cpu_run, tmp_path):
    out, stats = _simulated(tmp_path, "cuda")
    # 3 full blocks of 64 in one launch (3 per launch), the short last block in its own.
    assert stats == {"launches": 2, "threads": 4, "overflows": 0, "device": "cuda"}
    assert cpu_run.events.height > 0 and cpu_run.citizens.height == 200
    _assert_same_tables(cpu_run, out)


def test_blocks_that_run_out_of_room_are_retried_to_the_same_tables(cpu_run, tmp_path):
    out, stats = _simulated(tmp_path, "retried", tiny=True)
    assert stats["overflows"] > 0 and stats["launches"] > 2
    assert stats["threads"] == 4 + stats["overflows"]  # each retry reruns only its own block
    _assert_same_tables(cpu_run, out)


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", reason="simulator on")
def test_cuda_without_a_gpu_fails_clearly_and_writes_nothing(tmp_path):
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a CUDA GPU is present here")
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    cli = [sys.executable, "-c", "from socialcredit.cli import app; app()"]
    done = subprocess.run([*cli, "simulate", "-n", "100",
                           "-d", "2", "-s", "1", "--out", str(out), "--device", "cuda"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1
    assert "no CUDA GPU is available on this machine" in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []


# `make test-gpu` (the GPU job) sets this: there a GPU test that cannot run fails instead of skipping.
REQUIRED = os.environ.get("SOCIALCREDIT_REQUIRE_GPU") == "1"


def _gpu_extra_missing() -> str | None:
    """Why the optional 'gpu' extra is not installed, or None (then every other problem is an error)."""
    try:
        import numba_cuda  # noqa: F401
    except ImportError:
        return "the optional 'gpu' extra (numba-cuda) is not installed: make test-gpu installs it"
    return None


def _cannot_run(problem: str | None) -> None:
    """Skip for a missing optional extra or GPU in `make test`; fail in the GPU job."""
    if problem is None:
        return
    if REQUIRED:
        pytest.fail(f"the GPU job cannot run this test: {problem}", pytrace=False)
    pytest.skip(problem)


def test_cuda_port_gives_the_cpu_tables_on_a_gpu(cpu_run, tmp_path):
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("numba's CUDA simulator is on: this test needs the real device")
    from socialcredit.simulation._gpu import gpu_problem

    _cannot_run(_gpu_extra_missing() or gpu_problem())
    run = simulate(out=tmp_path / "cuda", device="cuda", **ARGS)
    _assert_same_tables(cpu_run, run.path)


PTX = textwrap.dedent("""
    import types, numba
    import numba.cuda.dispatcher as dispatcher
    # No driver here: device functions ask the current device for its compute capability.
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
    import numpy as np
    from numba import cuda
    from socialcredit.simulation import _gpu
    from socialcredit.simulation._kinds import N_METRICS
    from socialcredit.simulation._plan import make_plan
    from socialcredit.simulation._scenario import load_scenario
    from socialcredit.simulation._shard import EventsMode, _first_room, new_scratch, new_state

    plan = make_plan(load_scenario("pilot-regions-2018", overrides={"block_size": 64}),
                     population=300, days=3, seed=1)
    events = EventsMode(1, 1.0)
    st, scratch = new_state(64), new_scratch(plan, 64, _first_room(64, 3, events))
    kernel, leaves = _gpu._thread_kernel(_gpu._shared_args(plan, events), len(st), len(scratch))
    r, ty = len(plan.scenario.regions), numba.typeof
    sig = ([ty(np.zeros(2, np.int64))] * 2 + [ty(np.zeros((2, r + 1), np.int64)),
           ty(np.zeros(2, np.int64)), ty(np.zeros((2, 3, r, N_METRICS), np.int32))]
           + [ty(a) for a in st] + [ty(np.zeros((2, *s.shape), s.dtype)) for s in scratch]
           + [ty(v) for v in leaves])
    with _gpu._exact_float():
        ptx, _ = cuda.compile_ptx(kernel.py_func, tuple(sig), cc=(9, 0), fastmath=False)
    assert ".entry" in ptx
    print("ok", len(ptx))
""")


def test_kernel_compiles_to_ptx_without_a_gpu(tmp_path):
    _cannot_run(_gpu_extra_missing())
    from numba.cuda.cudadrv import nvvm

    # The extra is installed: its compiler library must load (an error here is a real failure).
    assert nvvm.is_available(), "the 'gpu' extra is installed but libNVVM cannot be loaded"
    script = tmp_path / "ptx.py"
    script.write_text(PTX, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          timeout=900)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-4000:]
