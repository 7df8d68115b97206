"""Arrays in, arrays out: estimators given CuPy arrays return CuPy arrays (scikit-learn's Array API convention).

The public methods of every estimator (``fit``, ``partial_fit``, ``predict``, ``predict_proba``, ...) run on host
arrays: CuPy arguments are copied to the host once, explicitly, on the way in (scikit-learn's validation reads
them there; the training set then goes to the estimator's backend in one copy and is batched there), and a
numeric array result goes back to the device of the input. NumPy in gives NumPy out, and nothing of this runs
when cupy was never imported.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from types import FunctionType, ModuleType
from typing import Any

import numpy as np

#: The methods whose array arguments and results follow the input's array library.
ARRAY_METHODS = (
    "fit", "partial_fit", "predict", "predict_proba", "predict_log_proba", "decision_function", "score", "transform",
)  # fmt: skip


def device_module(x: Any) -> ModuleType | None:
    """``cupy`` when ``x`` is a CuPy array, else None (without importing cupy)."""
    if type(x) is np.ndarray:
        return None
    cp = sys.modules.get("cupy")
    return cp if cp is not None and isinstance(x, cp.ndarray) else None


def follow_input_arrays(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` on host copies of its CuPy arguments, its numeric array result returned on their device."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        xp = None

        def host(value: Any) -> Any:
            nonlocal xp
            module = device_module(value)
            if module is None:
                return value
            xp = module
            return module.asnumpy(value)

        args = tuple(host(a) for a in args)
        kwargs = {k: host(v) for k, v in kwargs.items()}
        result = method(self, *args, **kwargs)
        if xp is not None and isinstance(result, np.ndarray) and result.dtype.kind in "biuf":
            return xp.asarray(result)
        return result

    wrapper.__minitrain_arrays__ = True  # type: ignore[attr-defined]
    return wrapper


def wrap_array_methods(cls: type) -> None:
    """Wrap the :data:`ARRAY_METHODS` of ``cls``, its own and inherited ones (scikit-learn's ``score``), once each;
    a method behind ``sklearn.utils.available_if`` keeps its descriptor, which gets the wrapped function."""
    for name in ARRAY_METHODS:
        raw = inspect.getattr_static(cls, name, None)
        if isinstance(raw, FunctionType) and not getattr(raw, "__minitrain_arrays__", False):
            setattr(cls, name, follow_input_arrays(raw))
        elif isinstance(getattr(raw, "fn", None), FunctionType) and not getattr(raw.fn, "__minitrain_arrays__", False):
            raw.fn = follow_input_arrays(raw.fn)
