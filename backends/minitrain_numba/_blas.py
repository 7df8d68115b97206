"""NumPy's own BLAS, called from compiled code: ``gemm`` for njit functions (imported with numba, on first use).

A GEMM inside an njit function usually goes to SciPy's BLAS (numba's ``np.dot``), a second OpenBLAS whose
idle threads spin against NumPy's: each library's GEMMs ran slower right after the other's ran (figures in
docs/performance.md). So kernels here call the OpenBLAS that NumPy's wheel bundles
(``scipy-openblas64``: 64-bit integers, ``scipy_cblas_sgemm64_`` / ``scipy_cblas_dgemm64_``), the very functions
``np.matmul`` calls, with one thread pool for both. ``register()`` finds that library through threadpoolctl,
checks both functions against ``np.matmul`` and registers them with LLVM under stable names
(``minitrain_cblas_sgemm`` / ``_dgemm``), which compiled (and cached) code refers to. Where NumPy uses another
BLAS (MKL, Accelerate, a 32-bit-integer OpenBLAS) ``register()`` returns False and callers keep the NumPy path.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import llvmlite.binding as ll
import numpy as np
from numba import njit, types
from numba.extending import overload

from ._jit import _njit

_SYMBOLS = {"s": "minitrain_cblas_sgemm", "d": "minitrain_cblas_dgemm"}
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
_state: dict[str, bool] = {}


def _numpy_openblas() -> str | None:
    """The path of the OpenBLAS bundled with NumPy's wheel (``numpy.libs`` / ``numpy/.dylibs``), if loaded."""
    from threadpoolctl import threadpool_info

    for lib in threadpool_info():
        path = Path(lib.get("filepath") or "")
        if lib.get("internal_api") == "openblas" and any(p.startswith("numpy") for p in path.parts[-3:-1]):
            return str(path)
    return None


def _checked(fn: ctypes._CFuncPtr, dtype: type) -> bool:
    """Whether ``fn`` computes ``a @ b.T`` row-major with 64-bit integer arguments, as ``np.matmul`` does."""
    ct = ctypes.c_float if dtype is np.float32 else ctypes.c_double
    i64, ptr = ctypes.c_int64, ctypes.POINTER(ct)
    fn.restype = None
    fn.argtypes = [ctypes.c_int] * 3 + [i64] * 3 + [ct, ptr, i64, ptr, i64, ct, ptr, i64]
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    b = np.arange(12, dtype=dtype).reshape(4, 3) - 5
    c = np.full((2, 4), 7, dtype)
    p = lambda x: x.ctypes.data_as(ptr)  # noqa: E731
    fn(ROW_MAJOR, NO_TRANS, TRANS, 2, 4, 3, 1.0, p(a), 3, p(b), 3, 0.0, p(c), 4)
    return bool(np.array_equal(c, np.matmul(a, b.T)))


def register() -> bool:
    """Register NumPy's ``sgemm`` / ``dgemm`` for compiled code, once; False when they are not usable."""
    if "ok" not in _state:
        ok = False
        try:
            path = _numpy_openblas()
            if path is not None:
                lib = ctypes.CDLL(path)
                found = {k: getattr(lib, f"scipy_cblas_{k}gemm64_", None) for k in _SYMBOLS}
                if all(fn is not None for fn in found.values()):
                    ok = _checked(found["s"], np.float32) and _checked(found["d"], np.float64)
                    for kind, fn in found.items() if ok else ():
                        ll.add_symbol(_SYMBOLS[kind], ctypes.cast(fn, ctypes.c_void_p).value)
        except (OSError, ImportError, AttributeError, ValueError):
            ok = False
        _state["ok"] = ok
    return _state["ok"]


def _cblas(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    raise NotImplementedError("called outside compiled code")


@overload(_cblas)
def _cblas_typed(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    dt = c.dtype
    ptr, i32, i64 = types.CPointer(dt), types.int32, types.int64
    name = _SYMBOLS["s" if dt == types.float32 else "d"]
    fn = types.ExternalFunction(name, types.void(i32, i32, i32, i64, i64, i64, dt, ptr, i64, ptr, i64, dt, ptr, i64))

    def impl(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        fn(order, ta, tb, m, n, k, alpha, a.ctypes, lda, b.ctypes, ldb, beta, c.ctypes, ldc)

    return impl


@njit(inline="always")
def _layout(x: np.ndarray) -> tuple[bool, int]:
    """Whether 2-D ``x`` is stored transposed (column-major), and its leading dimension."""
    isz = x.itemsize
    if x.shape[1] <= 1 or x.strides[1] == isz:
        return False, max(x.strides[0] // isz, x.shape[1], 1)
    return True, max(x.strides[1] // isz, x.shape[0], 1)


def _gemm(a: np.ndarray, ta: bool, b: np.ndarray, tb: bool, c: np.ndarray, alpha: float, beta: float) -> None:
    """``c = alpha * op(a) @ op(b) + beta * c``; each 2-D view has a unit stride in one of its dimensions."""
    if _layout(c)[0]:  # a column-major c: compute its transpose, row-major
        a, ta, b, tb = b, not tb, a, not ta
        cc = c.T
    else:
        cc = c
    m, n = cc.shape
    k = a.shape[0] if ta else a.shape[1]
    if m == 0 or n == 0:
        return
    af, lda = _layout(a)
    bf, ldb = _layout(b)
    ldc = _layout(cc)[1]
    t = c.dtype.type
    op_a = np.int32(TRANS if ta != af else NO_TRANS)
    op_b = np.int32(TRANS if tb != bf else NO_TRANS)
    _cblas(np.int32(ROW_MAJOR), op_a, op_b, m, n, k, t(alpha), a, lda, b, ldb, t(beta), cc, ldc)


gemm = _njit(_gemm)  # cached on disk where a cache location is writable (``_jit``)
