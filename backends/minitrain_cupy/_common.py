"""Helpers the CuPy backend's parts share: the lazily imported ``cupy`` module and argument checks."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def cp() -> ModuleType:
    """The ``cupy`` module, imported on first use (importing the backend's package stays cheap)."""
    import cupy

    return cupy


def ok(*arrays: Any) -> np.dtype | None:
    """The common float32/float64 dtype of C-contiguous CuPy arrays (None entries skipped), else None."""
    ndarray = cp().ndarray
    dt = None
    for a in arrays:
        if a is None:
            continue
        if not isinstance(a, ndarray) or not a.flags.c_contiguous:
            return None
        if dt is None:
            dt = a.dtype
        elif a.dtype != dt:
            return None
    return dt if dt is not None and dt in (np.float32, np.float64) else None


def same_shape(shape: tuple[int, ...], *arrays: Any) -> bool:
    """Whether every array given (None entries skipped) has ``shape``."""
    return all(a is None or a.shape == shape for a in arrays)
