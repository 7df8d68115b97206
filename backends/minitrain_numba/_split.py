"""A kernel call's batch split over threads: one part per BLAS thread, each running its GEMMs on one BLAS thread.

A recurrent kernel runs one small GEMM per time step. With OpenBLAS on several threads, every one of them wakes
and joins its threads (two joins per step; on a busy core a wait for each). Split instead: the batch rows in
``k`` parts, each part a ``nogil`` kernel call on its own Python thread, with OpenBLAS at one thread meanwhile, so
that a call joins once. ``parts`` says how many parts a call's work is worth, ``run`` runs them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

#: Multiply-adds from which a part is worth its thread (below: one call on the caller's thread).
SPLIT_MIN_MACS = 1 << 22

_lock = threading.Lock()
_state: dict[str, Any] = {}


def _blas() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process (found once)."""
    if "blas" not in _state:
        try:
            from threadpoolctl import ThreadpoolController

            _state["blas"] = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
        except Exception:  # no threadpoolctl, or a library it cannot drive: the threads stay as they are
            _state["blas"] = []
    return _state["blas"]


def blas_threads() -> int:
    """The threads NumPy's BLAS runs on now (the machine's cores when unknown)."""
    counts = [int(lib.num_threads) for lib in _blas()]
    return max(counts) if counts else os.cpu_count() or 1


def parts(n: int, macs: int) -> int:
    """How many parts a call over ``n`` batch rows with ``macs`` multiply-adds is split into: at most one per BLAS
    thread and per row, and at least ``SPLIT_MIN_MACS`` per part."""
    return max(1, min(blas_threads(), n, macs // SPLIT_MIN_MACS))


def _pool(workers: int) -> ThreadPoolExecutor:
    pool = _state.get("pool")
    if pool is None or pool._max_workers < workers:
        pool = _state["pool"] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minitrain-split")
    return pool


def run(fn: Callable[[int, int], Any], n: int, k: int) -> list[Any]:
    """``[fn(b0, b1) for each part]`` over ``k`` contiguous parts of ``range(n)``, the first on this thread and the
    others on worker threads, with the BLAS libraries at one thread each until all are done."""
    bounds = [n * i // k for i in range(k + 1)]
    spans = [(bounds[i], bounds[i + 1]) for i in range(k) if bounds[i] < bounds[i + 1]]
    if len(spans) == 1:
        return [fn(*spans[0])]
    with _lock:  # one split at a time: its BLAS setting is process-wide
        libs = _blas()
        before = [int(lib.num_threads) for lib in libs]
        for lib in libs:
            lib.set_num_threads(1)
        futures = []
        try:
            futures = [_pool(len(spans) - 1).submit(fn, *span) for span in spans[1:]]
            first = fn(*spans[0])
            return [first, *(f.result() for f in futures)]
        finally:
            wait(futures)  # every part has finished, even when one raised, before the BLAS threads come back
            for lib, count in zip(libs, before, strict=True):
                lib.set_num_threads(count)
