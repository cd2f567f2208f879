"""The server local Dask workers fork from (multiprocessing's forkserver): it imports the simulator
and loads its kernel once, and each worker forks from it in a fraction of a second instead of
importing and loading them again. Standard library only: the command line starts the server
through this module before it imports the simulator itself, so that both run side by side."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager

WORKER_PRELOAD = ("distributed", "socialcredit.simulation._shard")  # what the server imports
PRELOAD_KERNEL = "SOCIALCREDIT_PRELOAD_KERNEL"  # set (1): importing _shard loads the kernel (load_kernel)


def default_threads() -> int:
    """Threads this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def available() -> bool:
    """Whether this platform has a forkserver."""
    return "forkserver" in multiprocessing.get_all_start_methods()


@contextmanager
def server_settings(threads: int) -> Iterator[None]:
    """While it lasts, a forkserver that starts preloads WORKER_PRELOAD with the kernel loaded, and
    its polars (which reads POLARS_MAX_THREADS as it is imported) runs `threads` threads in each
    worker. A variable the caller set already is left as it is. (No effect on a server running
    already.)"""
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(WORKER_PRELOAD))
    server_env = {PRELOAD_KERNEL: "1", "POLARS_MAX_THREADS": str(threads)}
    kept = {name: os.environ.get(name) for name in server_env}
    os.environ.update({name: value for name, value in server_env.items() if kept[name] is None})
    try:
        yield
    finally:
        for name, value in kept.items():
            if value is None:
                os.environ.pop(name, None)
