"""How the Numba kernels are compiled and which variant runs: the threading policy in one place.

Every kernel is written once, with ``prange``, and compiled lazily in two variants:

* serial: ``njit(error_model="numpy")``. The numpy error model drops the division-by-zero branch, so LLVM
  vectorizes the loop, and a call launches no thread.
* parallel: ``njit(parallel=True, error_model="numpy")``, for calls whose work is at least ``PARALLEL_MIN``
  elements, with Numba's thread count (``numba.set_num_threads`` / ``NUMBA_NUM_THREADS``). Without the numpy
  error model a loop that divides (RMSprop) is not vectorized.

Why small work runs serial: in a training step the kernels run between OpenBLAS GEMMs, which own the cores, and
the OpenMP layer's workers spin after a region (its default wait policy) while the BLAS threads run. The serial
variant launches no thread at all; it is also fork-safe (the GNU OpenMP layer kills a forked child that runs a
parallel region) and thread-safe (the workqueue layer aborts on concurrent use).

Large work gains a little from more threads if the workers sleep between regions, so the parallel variant runs
there, and Numba's threading layer is started with ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a policy (the
variable is set only while the layer loads). The parallel variant is not used in a forked child of a process
that launched it, nor on the workqueue layer. The layer itself is Numba's choice (tbb, else omp, else workqueue)
or the user's ``NUMBA_THREADING_LAYER``. The threshold keeps a small CNN's activation kernels (1.6M elements per
conv output) serial; ``docs/performance.md`` has the measurements behind these choices.

Compiled code is kept on disk (``_cache``: in ``NUMBA_CACHE_DIR`` if set, else in a per-user cache directory,
never beside the installed sources); a cache from another Numba version or of changed sources is recompiled by
Numba, and where no cache location is writable a kernel compiles in memory instead of failing.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import Any

import numba

from . import _cache

#: Elements of work from which a call runs the ``parallel=True`` variant (env ``MINITRAIN_NUMBA_PARALLEL_MIN``).
PARALLEL_MIN = int(os.environ.get("MINITRAIN_NUMBA_PARALLEL_MIN", 1 << 22))
#: Fused multiply-add only: it changes results by float rounding, never by more.
FASTMATH = frozenset({"contract"})

_state = {"launched_pid": 0, "parallel_ok": True}


def _parallel_allowed() -> bool:
    """Whether the parallel variant may run here (threads available, not a forked child, a safe layer)."""
    if not _state["parallel_ok"] or numba.config.NUMBA_NUM_THREADS < 2:
        return False
    pid = _state["launched_pid"]
    return pid == 0 or pid == os.getpid()


def _start_threading_layer() -> None:
    """Start Numba's threads with OpenMP's passive wait policy, unless the user chose a policy."""
    if "OMP_WAIT_POLICY" in os.environ:
        numba.get_num_threads()  # starts the layer
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read once, when the OpenMP runtime loads
    try:
        numba.get_num_threads()
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)


def _after_first_launch() -> None:
    _state["launched_pid"] = os.getpid()
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region ran (e.g. NUMBA_DISABLE_JIT)
        layer = "none"
    if layer == "workqueue":
        _state["parallel_ok"] = False


def _variant(fn: Callable[..., Any], suffix: str) -> Callable[..., Any]:
    """A copy of ``fn`` with its own qualified name, so each variant has its own on-disk cache files."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    return copy


def _njit(fn: Callable[..., Any], **options: Any) -> Any:
    """``numba.njit(**options)(fn)``, its compiled code cached on disk where a location is writable (``_cache``)."""
    return _cache.njit(fn, **options)


class Kernel:
    """A kernel in its serial and parallel variants, each compiled on first use (per dtype and layout).

    Call it as ``kernel(work, *args)``: ``work`` (elements touched) picks the variant.
    """

    __slots__ = ("_parallel", "_serial", "fastmath", "py_func")

    def __init__(self, py_func: Callable[..., Any], fastmath: Any = FASTMATH) -> None:
        self.py_func = py_func
        self.fastmath = set(fastmath) if fastmath else False
        self._serial: Any = None
        self._parallel: Any = None

    @property
    def serial(self) -> Any:
        """The serial dispatcher (vectorized loops, no thread launch)."""
        if self._serial is None:
            self._serial = _njit(_variant(self.py_func, "__serial"), error_model="numpy", fastmath=self.fastmath)
        return self._serial

    @property
    def parallel(self) -> Any:
        """The ``parallel=True`` dispatcher."""
        if self._parallel is None:
            if not _state["launched_pid"]:
                _start_threading_layer()
            variant = _variant(self.py_func, "__parallel_np")  # a new name: caches of the python error model go unused
            self._parallel = _njit(variant, parallel=True, error_model="numpy", fastmath=self.fastmath)
        return self._parallel

    def __call__(self, work: int, *args: Any) -> Any:
        if work < PARALLEL_MIN or not _parallel_allowed():
            serial = self._serial
            return (serial if serial is not None else self.serial)(*args)
        result = self.parallel(*args)
        if _state["launched_pid"] != os.getpid():
            _after_first_launch()
        return result


def kernel(fn: Callable[..., Any] | None = None, *, fastmath: Any = FASTMATH) -> Any:
    """Decorator: wrap ``fn`` (written with ``prange``) as a lazily compiled ``Kernel``."""
    if fn is None:
        return lambda f: Kernel(f, fastmath)
    return Kernel(fn, fastmath)
