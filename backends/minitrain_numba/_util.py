"""Helpers of the Numba backend's kernel wrappers: the lazy kernel loader, dtype checks, flat views, constants."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

_modules: dict[str, ModuleType] = {}


def _load(name: str) -> ModuleType:
    """This package's kernel module ``name`` (imported, with numba, on first use)."""
    mod = _modules.get(name)
    if mod is None:
        mod = _modules[name] = importlib.import_module(f"{__package__}.{name}")
    return mod


_FLOATS = {np.dtype(t): np.dtype(t) for t in (np.float32, np.float64)}  # the dtypes kernels are compiled for


def _dtype(*arrays: Any) -> np.dtype | None:
    """The common float32/float64 dtype of NumPy arrays (None entries skipped), else None."""
    dt = None
    for a in arrays:
        if a is None:
            continue
        if type(a) is not np.ndarray:
            return None
        if dt is None:
            dt = a.dtype
        elif a.dtype != dt:
            return None
    return _FLOATS.get(dt)


def _order(a: np.ndarray) -> str:
    """'F' for an array contiguous only in Fortran order, else 'C' (the order its flat view walks)."""
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def _flat_in(a: np.ndarray, order: str) -> np.ndarray:
    """A flat view of ``a`` in ``order`` (a copy if it is not contiguous that way)."""
    return a.ravel(order)


def _flat_out(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype, order: str) -> tuple[Any, Any, bool]:
    """``(result, flat, temporary)``: ``out`` (or a new array) and a writable flat view, or a temporary one."""
    if out is None:
        out = np.empty(shape, dtype, order=order)
    if (out.flags.c_contiguous and order == "C") or (out.flags.f_contiguous and order == "F"):
        return out, out.ravel(order), False
    return out, np.empty(out.size, dtype), True


def _finish(result: np.ndarray, flat: np.ndarray, temporary: bool, order: str) -> np.ndarray:
    """Copy ``flat`` into ``result`` when it was a temporary; return ``result``."""
    if temporary:
        result[...] = flat.reshape(result.shape, order=order)
    return result


_CONSTANTS: dict[tuple[int, str, float], np.ndarray] = {}


def _constant(n: int, dtype: np.dtype, fill: float) -> np.ndarray:
    """A cached (n,) vector filled with ``fill``, for kernels to read (never handed out)."""
    key = (n, dtype.char, fill)
    vec = _CONSTANTS.get(key)
    if vec is None:
        if len(_CONSTANTS) > 256:
            _CONSTANTS.clear()
        vec = _CONSTANTS[key] = np.full(n, fill, dtype)
    return vec


def _vector(v: Any, n: int, dtype: np.dtype, fill: float) -> np.ndarray | None:
    """A contiguous (n,) vector of ``dtype`` from ``v`` (``fill`` where v is None); None if v has another shape."""
    if v is None:
        return _constant(n, dtype, fill)
    if type(v) is not np.ndarray or v.shape != (n,):
        return None
    return np.ascontiguousarray(v, dtype=dtype)
