"""What every estimator shares: backend resolution, batched prediction, portable pickles."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.utils import assert_all_finite
from sklearn.utils.validation import column_or_1d, validate_data

from ..autograd import Tensor, no_grad
from ..backend import Backend, get_backend, list_backends

PREDICT_BATCH = 8192


def resolve_backend(backend: Any) -> Backend:
    """The backend an estimator fits on: ``"auto"`` defers to ``use_backend`` / ``MINITRAIN_BACKEND`` / auto."""
    if isinstance(backend, Backend):
        return backend
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a backend name (str) or a Backend, got {type(backend).__name__}")
    return get_backend(None if backend == "auto" else backend)


def resolve_dtype(dtype: Any, X: Any) -> np.dtype:
    """``None`` keeps float32 input float32 and makes anything else float64 (scikit-learn's rule)."""
    if dtype is None:
        return np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating dtype such as 'float32' or 'float64', got {dtype!r}")
    return dt


def validate_xy(est: Any, X: Any, y: Any, reset: bool, **kwargs: Any) -> tuple[Any, Any]:
    """scikit-learn's ``validate_data`` as the MLPs call it: float32/float64 (sparse allowed) X, 1-D y when it
    has one column; ``kwargs`` go to ``validate_data`` (e.g. ``y_numeric=True``)."""
    X, y = validate_data(
        est, X, y, accept_sparse=["csr", "csc"], multi_output=True, dtype=(np.float64, np.float32), reset=reset,
        ensure_all_finite=False, **kwargs,
    )  # fmt: skip
    check_finite(est, X)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    return X, y


def validate_x(est: Any, X: Any) -> Any:
    """scikit-learn's ``validate_data`` of prediction input: float32/float64 (sparse allowed), features as fitted."""
    X = validate_data(
        est, X, accept_sparse=["csr", "csc"], reset=False, dtype=(np.float64, np.float32), ensure_all_finite=False
    )
    check_finite(est, X)
    return X


def check_finite(est: Any, X: Any) -> None:
    """scikit-learn's check that float ``X`` holds no NaN or infinity, with its error messages.

    The fast pass is one BLAS matrix-vector product, ``X @ 1``, whose sum is finite when every entry is (and
    for finite entries, unless it overflows: then the entries are checked one by one). Measured on 2 cores on
    60000 x 784 float32: 7 ms against 13-15 ms for scikit-learn's single-threaded ``X.sum()``, at every
    ``partial_fit`` epoch.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum of finite entries is no error
        if not sp.issparse(X) and X.ndim == 2 and X.size and np.isfinite((X @ np.ones(X.shape[1], X.dtype)).sum()):
            return
        assert_all_finite(X, input_name="X", estimator_name=type(est).__name__)


def forward_numpy(module: Any, X: Any, dtype: np.dtype, batch: int = PREDICT_BATCH) -> np.ndarray:
    """``module(X)`` in eval mode without gradients, in chunks, as a NumPy array."""
    be = module.backend
    was_training = module.training
    module.eval()
    chunks = []
    try:
        with no_grad():
            for start in range(0, X.shape[0], batch):
                part = X[start : start + batch]
                part = part.toarray() if sp.issparse(part) else part
                out = module(Tensor._make(be.asarray(np.asarray(part, dtype=dtype)), be))
                chunks.append(be.to_numpy(out.data))
    finally:
        module.train(was_training)
    if not chunks:
        return np.empty((0,), dtype=dtype)
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


class PortableStateMixin:
    """Pickles hold the fitted module on NumPy (loadable without a GPU); loading moves it back when possible.

    Subclasses name their module attribute ``module_`` and their optimizer ``optimizer_``; the optimizer is
    pickled as its ``state_dict`` and rebuilt (by the subclass) when training resumes.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        state = dict(state)
        module = state.get("module_")
        if module is not None and module.backend.name != "numpy":
            module = copy.deepcopy(module).to("numpy")
        if module is not None:
            state["module_"] = module
        opt = state.get("optimizer_")
        if opt is not None:
            state["optimizer_"] = None
            state["_optimizer_state"] = opt.state_dict()
        state.pop("_trainer", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        module, name = self.__dict__.get("module_"), self.__dict__.get("backend_")
        if module is not None and name and name != module.backend.name:
            info = {i.name: i for i in list_backends()}
            base = name.partition(":")[0]
            if base in info and info[base].available:
                module.to(name)
