"""The GPU port: the same fused kernel (`kernel.run_block`), one CUDA thread per block of citizens.

There is one kernel source. numba compiles an `@njit` function for the CUDA target when CUDA code
calls it (numba.cuda's typing context turns the CPU dispatcher into a device function built from
the same Python source), so the thread body below just calls `run_block` as `_shard.simulate_blocks`
does, with the same arguments: the plan's arrays, `new_state`, `new_scratch`. Each thread takes its
own slices: its citizens of the shard's state, and row `t` of a [blocks, ...] stack of every
metrics and scratch array. A block that runs out of room (OVERFLOW) starts again with twice the
room, like on the CPU, with exactly the same sequence of rooms, so results do not depend on it.

Floating point: the kernel is compiled with fastmath off and with FMA contraction off (NVVM
contracts a*b+c by default; the CPU build never does), so its arithmetic is IEEE like the CPU's.
The geometric jumps use the kernel's own logarithm and rates inverted on the host, so they are
the same on every device. The math library is libdevice's, not the C library's: `math.exp`,
`math.log` and `math.cos` (gate stops) may differ from the CPU's in the last bit on some inputs,
which would change a draw only when a value lies that close to a threshold.
"""

from __future__ import annotations

import importlib
import inspect
import os
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numba
import numpy as np
from numba import config, cuda
from numba.core.dispatcher import Dispatcher
from numba.core.extending import _Intrinsic

from socialcredit.simulation import kernel
from socialcredit.simulation._kinds import N_METRICS
from socialcredit.simulation._plan import Plan
from socialcredit.simulation._shard import EventsMode, _first_room, new_scratch, new_state
from socialcredit.simulation.kernel import OVERFLOW, Scratch, run_block

# A shard's blocks run in as few launches as the GPU's memory allows (a year of one block of 32,768
# citizens needs ~20 MB of scratch); _run.GPU_CHUNK_BLOCKS sets the shard size for the GPU.
THREADS_PER_BLOCK = 32  # one warp per CUDA block: the threads are few and long, spread them out
MEMORY_SHARE = 0.7  # of the free GPU memory, for one launch's scratch and metrics
SCRATCH_EVENTS, SCRATCH_CONFIDENCE = Scratch._fields.index("ev"), Scratch._fields.index("ev_conf")
# Tests set this to force several launches (and retries) on a handful of blocks.
BLOCKS_PER_LAUNCH_ENV = "SOCIALCREDIT_GPU_BLOCKS_PER_LAUNCH"

# run_block's Python function (run_block itself where NUMBA_DISABLE_JIT=1 left it plain).
_SOURCE = getattr(run_block, "py_func", run_block)
# run_block's parameters that differ per thread; every other one is taken from the plan by name.
_PER_THREAD = ("block", "region_lo", "st", "metrics", "scratch")


def simulator() -> bool:
    """True when numba's CUDA simulator stands in for a GPU (NUMBA_ENABLE_CUDASIM=1)."""
    return bool(config.ENABLE_CUDASIM)


def gpu_problem() -> str | None:
    """Why this machine cannot run the GPU port, or None when it can."""
    if simulator():
        return None
    try:
        if not cuda.is_available():
            return "no CUDA GPU is available on this machine"
    except Exception:  # noqa: BLE001 (any failure to load CUDA means: no GPU here)
        return "no CUDA GPU is available on this machine"
    if getattr(cuda, "implementation", "") != "NVIDIA" and _version(numba.__version__) >= (0, 66):
        return ("numba's built-in CUDA target cannot compile the kernel (two-argument max()/min() "
                "fail since numba 0.66, numba issue 10753); install the 'gpu' extra (numba-cuda)")
    try:
        from numba.cuda.cudadrv import nvvm

        if not nvvm.is_available():
            return ("a CUDA GPU is present but libNVVM (the CUDA toolkit's compiler) was not found; "
                    "install the toolkit or pip's nvidia-cuda-nvcc-cu12 and set CUDA_HOME")
    except Exception as exc:  # noqa: BLE001
        return f"CUDA is present but unusable here: {exc}"
    return None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def _shared_args(plan: Plan, events: EventsMode) -> dict[str, object]:
    """The values every thread passes to run_block, by parameter name (as simulate_blocks does)."""
    fp = plan.arrays["fp"]._replace(sample=events.fraction)
    values: dict[str, object] = {"seed": plan.seed, "D": plan.days, "fp": fp, "record": events.mode}
    for name in inspect.signature(_SOURCE).parameters:
        if name in values or name in _PER_THREAD:
            continue
        if name not in plan.arrays:
            raise RuntimeError(f"GPU port: run_block takes '{name}', which the plan does not have; "
                               "teach _gpu._shared_args where it comes from")
        values[name] = plan.arrays[name]
    return values


def _flatten(value: object, leaves: list) -> str:
    """Add the arrays and scalars of a (nested) tuple to `leaves`; the expression that rebuilds it
    (a layout of the kernel by its constructor, so that the kernel reads its fields by name)."""
    if isinstance(value, tuple):
        inner = "".join(_flatten(v, leaves) + ", " for v in value)
        layout = type(value).__name__
        return f"kernel.{layout}({inner})" if getattr(kernel, layout, None) is type(value) else f"({inner})"
    leaves.append(value)
    return f"a{len(leaves) - 1}"


_KERNELS: dict[str, object] = {}
_KERNELS_LOCK = threading.Lock()


def _thread_kernel(shared: dict[str, object], n_state: int, n_scratch: int):
    """The CUDA kernel: thread t runs run_block on block blocks[t] with its own slices.

    Only this launcher is generated (numba kernels take flat arguments, and the tuples' lengths
    are whatever the kernel's layouts make them); the simulation itself is run_block's source.
    """
    leaves: list = []
    exprs = {name: _flatten(value, leaves) for name, value in shared.items()}
    exprs["block"] = "blocks[t]"
    exprs["region_lo"] = "layouts[t]"
    exprs["st"] = "kernel.State(" + "".join(f"s{i}[o:z], " for i in range(n_state)) + ")"
    exprs["metrics"] = "metrics[t]"
    exprs["scratch"] = "kernel.Scratch(" + "".join(f"c{i}[t], " for i in range(n_scratch)) + ")"
    call = ", ".join(exprs[name] for name in inspect.signature(_SOURCE).parameters)
    params = ", ".join(["blocks", "offsets", "layouts", "n_ev", "metrics",
                        *(f"s{i}" for i in range(n_state)), *(f"c{i}" for i in range(n_scratch)),
                        *(f"a{i}" for i in range(len(leaves)))])
    source = (f"def simulate_thread({params}):\n"
              f"    t = cuda.grid(1)\n"
              f"    if t < blocks.shape[0]:\n"
              f"        o = offsets[t]\n"
              f"        z = o + layouts[t, layouts.shape[1] - 1]\n"
              f"        n_ev[t] = run_block({call})\n")
    with _KERNELS_LOCK:
        if source not in _KERNELS:
            namespace = {"cuda": cuda, "kernel": kernel,
                         "run_block": _on_simulator if simulator() else _device_twin(run_block, {})}
            exec(compile(source, "<socialcredit.simulation._gpu>", "exec"), namespace)  # noqa: S102
            _KERNELS[source] = cuda.jit(fastmath=False)(namespace["simulate_thread"])
    return _KERNELS[source], leaves


def _cuda_counterpart(value):
    """numba-cuda's own copy of a numba.core intrinsic (it cannot type numba.core's), or None."""
    if not isinstance(value, _Intrinsic):
        return None
    module = getattr(value._defn, "__module__", "") or ""
    if not module.startswith("numba.") or module.startswith("numba.cuda."):
        return None
    try:
        twin = importlib.import_module("numba.cuda." + module.removeprefix("numba."))
    except ImportError:
        return None
    return getattr(twin, value._name, None)


def _device_twin(fn, memo: dict):
    """`fn` (an @njit dispatcher) rebuilt from the same code with its globals rebound for CUDA.

    CUDA code may call @njit functions: numba.cuda compiles them from their Python source. What it
    cannot take are numba.core intrinsics (numba-cuda has its own copies, e.g. leading_zeros); so
    each function the kernel reaches is rebuilt from its own code object with a copy of its module
    globals in which the helpers it calls are rebuilt likewise and such intrinsics are swapped for
    numba-cuda's. The code is the kernel's, byte for byte; only the names it looks up change.
    """
    py = getattr(fn, "py_func", fn)
    if py in memo:
        return memo[py]
    names: set[str] = set()
    stack = [py.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    rebound = dict(py.__globals__)
    twin = types.FunctionType(py.__code__, rebound, py.__name__, py.__defaults__, py.__closure__)
    options = {k: v for k, v in getattr(fn, "targetoptions", {}).items()
               if k not in ("cache", "nopython")}
    memo[py] = disp = numba.njit(**options)(twin)
    for name in names & rebound.keys():
        value = rebound[name]
        if isinstance(value, Dispatcher):
            rebound[name] = _device_twin(value, memo)
        elif (counterpart := _cuda_counterpart(value)) is not None:
            rebound[name] = counterpart
    return disp


def _host(value):
    """The numpy array behind a simulator array (tuples element by element); others unchanged."""
    if isinstance(value, tuple):
        items = [_host(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    item = getattr(value, "_item", None)  # FakeWithinKernelCUDAArray -> FakeCUDAArray -> ndarray
    return item._ary if item is not None else value


def _on_simulator(*args):
    """run_block as a simulated thread calls it: the CPU build on that thread's own slices.

    The simulator runs kernels as Python; numba's CPU dispatcher cannot take its array stand-ins,
    so they are unwrapped to the numpy views they are (same memory: writes land in the launch's
    state, metrics and scratch). What this checks is the port's data flow, not CUDA code generation.
    """
    return run_block(*(_host(a) for a in args))


@contextmanager
def _exact_float() -> Iterator[None]:
    """Compile with NVVM's FMA contraction off, like the CPU build (numba has no switch for it)."""
    if simulator():
        yield
        return
    from numba.cuda.cudadrv import nvvm

    original = nvvm.compile_ir

    def compile_ir(llvmir, **opts):
        opts.setdefault("fma", False)
        return original(llvmir, **opts)

    with _KERNELS_LOCK:
        nvvm.compile_ir = compile_ir
        try:
            yield
        finally:
            nvvm.compile_ir = original


# Small helper kernels (grid-stride loops) for filling and summing on the device.
@cuda.jit
def _fill(dst, value):
    i = cuda.grid(1)
    while i < dst.shape[0]:
        dst[i] = value
        i += cuda.gridsize(1)


@cuda.jit
def _repeat(dst, src):
    """dst[b, j] = src[j] for every row b: one fresh scratch array per thread."""
    m = src.shape[0]
    i = cuda.grid(1)
    while i < dst.shape[0] * m:
        dst[i // m, i % m] = src[i % m]
        i += cuda.gridsize(1)


@cuda.jit
def _add_finished(total, parts, n_ev):
    """total += the metrics of every thread whose block finished (not OVERFLOW)."""
    i = cuda.grid(1)
    while i < total.shape[0]:
        s = 0
        for b in range(parts.shape[0]):
            if n_ev[b] != OVERFLOW:
                s += parts[b, i]
        total[i] += s
        i += cuda.gridsize(1)


def _grid(n: int) -> tuple[int, int]:
    if simulator():
        return 1, 4  # the simulator runs every thread in Python: few threads, long loops
    return max(1, min(-(-n // 256), 8192)), 256


def _zero(arr) -> None:
    if arr.size:
        _fill[_grid(arr.size)](arr, 0)


def _stacked(template: np.ndarray, rows: int):
    """A device array [rows, *template.shape], every row a copy of `template`."""
    dev = cuda.device_array((rows, *template.shape), template.dtype)
    if template.size:
        _repeat[_grid(rows * template.size)](dev.reshape(rows, template.size),
                                             cuda.to_device(template.reshape(template.size)))
    return dev


def _blocks_per_launch(per_block: int) -> int:
    forced = os.environ.get(BLOCKS_PER_LAUNCH_ENV)
    if forced:
        return max(1, int(forced))
    if simulator():
        return 1 << 30
    free, _ = cuda.current_context().get_memory_info()
    return max(1, int(free * MEMORY_SHARE) // max(per_block, 1))


def simulate_blocks(plan: Plan, first: int, last: int, events: EventsMode, threads: int,
                    on_block: Callable[[int], None] | None = None):
    """Simulate blocks first..last-1 on the GPU; the same return value as _shard.simulate_blocks."""
    del threads  # one CUDA thread per block
    bs = plan.block_size
    start = first * bs
    n = min(last * bs, plan.population) - start
    days = plan.days
    n_regions = len(plan.scenario.regions)
    shared = _shared_args(plan, events)
    st = new_state(n)
    st_dev = [cuda.to_device(arr) for arr in st]
    shared_leaves: list | None = None
    total = cuda.to_device(np.zeros(days * n_regions * N_METRICS, np.int64))
    layouts = {b: plan.block_layout(b) for b in range(first, last)}
    room = {b: _first_room(int(layouts[b][-1]), days, events) for b in range(first, last)}
    recorded = {}
    pending = list(range(first, last))
    while pending:
        # Blocks of one size with one room share a launch (scratch shapes exactly as on the CPU).
        groups: dict[tuple, list[int]] = {}
        for b in pending:
            groups.setdefault((int(layouts[b][-1]), tuple(sorted(room[b].items()))), []).append(b)
        pending = []
        for (size, _), members in groups.items():
            template = new_scratch(plan, size, room[members[0]])
            per_block = sum(s.nbytes for s in template) + days * n_regions * N_METRICS * 4
            step = _blocks_per_launch(per_block)
            for i in range(0, len(members), step):
                batch = members[i: i + step]
                kernel, leaves = _thread_kernel(shared, len(st), len(template))
                if shared_leaves is None:
                    shared_leaves = [cuda.to_device(v) if isinstance(v, np.ndarray) else v
                                     for v in leaves]
                n_ev, scratch = _launch(kernel, shared_leaves, plan, batch, layouts, start,
                                        st_dev, template, total)
                for j, b in enumerate(batch):
                    if n_ev[j] == OVERFLOW:
                        # Start the block again, deterministically, with twice the room.
                        room[b] = {name: 2 * value for name, value in room[b].items()}
                        pending.append(b)
                        off = b * bs - start
                        for arr in st_dev:
                            _zero(arr[off: off + size])
                        continue
                    if n_ev[j] > 0:
                        ev = scratch[SCRATCH_EVENTS][j].copy_to_host()
                        conf = scratch[SCRATCH_CONFIDENCE][j].copy_to_host()
                        recorded[b] = (b, ev[:, :n_ev[j]].copy(), conf[:n_ev[j]].copy())
                    if on_block is not None:
                        on_block(size)
                del scratch
    for dev, host in zip(st_dev, st, strict=True):
        dev.copy_to_host(host)
    metrics = total.copy_to_host().reshape(days, n_regions, N_METRICS)
    return st, metrics, [recorded[b] for b in sorted(recorded)]


def _launch(kernel, shared_leaves, plan: Plan, batch: list[int], layouts, start: int, st_dev,
            template, total) -> tuple[np.ndarray, list]:
    """Run `batch` (one thread per block); add finished blocks' metrics to `total`.

    Returns the events each thread recorded (OVERFLOW when its block ran out of room) and the
    launch's scratch stacks (events are read back from them).
    """
    rows = len(batch)
    n_cells = plan.days * len(plan.scenario.regions) * N_METRICS
    blocks = np.array(batch, np.int64)
    offsets = blocks * plan.block_size - start
    lay = np.stack([layouts[b] for b in batch]).astype(np.int64)
    scratch = [_stacked(s, rows) for s in template]
    metrics = cuda.device_array((rows, n_cells), np.int32)
    _zero(metrics.reshape(rows * n_cells))
    n_ev = cuda.to_device(np.zeros(rows, np.int64))
    grid = -(-rows // THREADS_PER_BLOCK)
    with _exact_float():
        kernel[grid, THREADS_PER_BLOCK](
            cuda.to_device(blocks), cuda.to_device(offsets), cuda.to_device(lay), n_ev,
            metrics.reshape(rows, plan.days, len(plan.scenario.regions), N_METRICS),
            *st_dev, *scratch, *shared_leaves)
    _add_finished[_grid(n_cells)](total, metrics, n_ev)
    return n_ev.copy_to_host(), scratch
