"""The Numba backend's extension ``mlp_loss_grad``: a dense stack's training batch in one compiled call.

The MLP estimators' reference step runs a batch as a dozen kernel calls (gather, ``affine_act`` per layer, the
output loss, then ``bias_act_backward`` and two GEMMs per layer), each paying Python's call and argument checks.
Here one njit call (``_mlp_kernels``) gathers the rows, runs every GEMM through NumPy's own BLAS (``_blas``: the
same OpenBLAS and thread pool as ``np.matmul``) and every elementwise pass between them. Arguments are checked
once per set of arrays: the workspace remembers the last set, so a training loop that passes the same parameter
arrays at every step pays the checks once.

Returns ``NotImplemented`` (the estimators' reference step runs) for: BLAS other than NumPy's bundled OpenBLAS,
arrays that are not NumPy float32 / float64 arrays of one dtype (weights all row-major or all column-major, the
batch row-major), missing biases, hidden layers with different activations (or alphas) or one other than
identity, relu, leaky_relu, sigmoid and tanh, an output layer with an activation, the 'exp' output, and an
empty batch. A kernel is compiled per hidden activation and output loss, when first used. The arguments are
those of ``minitrain.estimators._mlp_step.reference_loss_grad``.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import is_
from types import ModuleType
from typing import Any

import numpy as np

from minitrain.backend.base import canonical_activation

from ._util import _FLOATS, _load

_OUTPUTS = ("softmax", "logistic", "identity")
_NO_ROWS = np.empty(0, np.int64)


def _mk() -> ModuleType:
    """The MLP kernels (imported, with numba, on first use)."""
    return _load("_mlp_kernels")


def _same_layout(arrays: Sequence[Any], dt: np.dtype) -> bool:
    """Whether every array is a NumPy array of ``dt``, all C-contiguous or all F-contiguous (one compiled type)."""
    if not all(type(a) is np.ndarray and a.dtype == dt for a in arrays):
        return False
    return all(a.flags.c_contiguous for a in arrays) or all(a.flags.f_contiguous for a in arrays)


def mlp_loss_grad(
    be: Any, x: Any, target: Any, weights: Sequence[Any], biases: Sequence[Any], activations: Sequence[str],
    output: str, *, rows: Any = None, sample_weight: Any = None, weight_sum: float | None = None,
    alphas: Sequence[float] | None = None, weight_grads: Sequence[Any], bias_grads: Sequence[Any],
    workspace: dict | None = None,
) -> Any:  # fmt: skip
    """Loss of a stack of dense layers on one batch as a float, its gradients written into ``weight_grads`` /
    ``bias_grads``; ``NotImplemented`` where the compiled kernel does not apply (see the module docstring)."""
    ws = {} if workspace is None else workspace
    arrays = (x, target, sample_weight, *weights, *biases, *weight_grads, *bias_grads)
    options = (tuple(activations), output, alphas if alphas is None else tuple(alphas))
    last = ws.get("numba")  # (arrays, options, plan) of the previous call
    if last is None or len(last[0]) != len(arrays) or not all(map(is_, last[0], arrays)) or last[1] != options:
        plan = _plan(
            x, target, weights, biases, activations, output, sample_weight, alphas, weight_grads, bias_grads, ws
        )
        last = ws["numba"] = (arrays, options, plan)
    plan, gather = last[2], rows is not None
    n = (rows.shape[0] if gather else x.shape[0]) if plan is not None and (not gather or _rows_ok(rows)) else 0
    if n == 0:  # unsupported arguments, an empty batch
        return NotImplemented
    if weight_sum is None:
        sw = plan["sw"]
        weight_sum = float(n) if sample_weight is None else float((sw[rows] if gather else sw).sum())
    bufs = plan["buffers"]
    if bufs[1][0].shape[0] < n or (gather and bufs[0].shape[0] < n):
        bufs = plan["buffers"] = _buffers(ws, plan, n, x.shape[1], gather)
    call = (x, target, plan["sw"], rows if gather else _NO_ROWS, n, gather, *plan["params"], *bufs)
    loss, bad = plan["kernel"](*call, float(weight_sum))
    if bad:
        raise IndexError(f"{bad} row or class index(es) out of bounds in mlp_loss_grad")
    return float(loss)


def _plan(
    x: Any, target: Any, weights: Sequence[Any], biases: Sequence[Any], activations: Sequence[str], output: str,
    sample_weight: Any, alphas: Any, weight_grads: Sequence[Any], bias_grads: Sequence[Any], workspace: dict,
) -> dict | None:  # fmt: skip
    """The compiled call's fixed arguments for this set of arrays, or None when the reference must run."""
    if output not in _OUTPUTS or type(x) is not np.ndarray or x.ndim != 2 or not x.flags.c_contiguous:
        return None
    dt = _FLOATS.get(x.dtype)
    n_layers = len(weights)
    if dt is None or n_layers == 0 or not (len(biases) == len(weight_grads) == len(bias_grads) == n_layers):
        return None
    k = _mk()
    codes = [k.CODES.get(canonical_activation(a), -1) for a in activations]
    alphas = [0.01] * n_layers if alphas is None else [float(a) for a in alphas]
    hidden = codes[0] if n_layers > 1 else k.IDENTITY
    if not k.AVAILABLE or len(codes) != n_layers or codes[-1] != k.IDENTITY or hidden not in k.SUPPORTED:
        return None
    if any(c != hidden for c in codes[:-1]) or len(set(alphas[:-1])) > 1:  # one hidden activation and alpha
        return None
    if any(b is None for b in biases) or not all(_same_layout(group, dt) for group in (weights, weight_grads)):
        return None
    if not _same_layout(biases, dt) or not _same_layout(bias_grads, dt):
        return None
    width = x.shape[1]
    for w, b, gw, gb in zip(weights, biases, weight_grads, bias_grads):
        if w.ndim != 2 or w.shape[1] != width or gw.shape != w.shape or not b.shape == gb.shape == (w.shape[0],):
            return None
        width = w.shape[0]
    if output == "softmax" and type(target) is np.ndarray and target.ndim == 1 and target.dtype == np.int64:
        kind = k.INDEX
    elif type(target) is np.ndarray and target.ndim == 2 and target.dtype == dt and target.flags.c_contiguous:
        kind = {"softmax": k.SOFTMAX, "logistic": k.LOGISTIC, "identity": k.SQUARED}[output]
        if target.shape[1] != width:
            return None
    else:
        return None
    if sample_weight is None:
        sw = np.empty(0, dt)
    elif type(sample_weight) is np.ndarray and sample_weight.ndim == 1 and sample_weight.dtype == dt:
        sw = np.ascontiguousarray(sample_weight)
        if sw is not sample_weight:
            return None  # a copy per step would cost more than the reference's gather
    else:
        return None
    ws, wt = _row_major(weights)
    gws, gt = _row_major(weight_grads)
    params = (ws, wt, tuple(biases), gws, gt, tuple(bias_grads), alphas[0])
    plan = {"params": params, "sw": sw, "dt": dt, "kernel": k.kernel(hidden, kind)}
    plan["buffers"] = _buffers(workspace, plan, 1, x.shape[1], False)
    return plan


def _row_major(arrays: Sequence[np.ndarray]) -> tuple[tuple[np.ndarray, ...], bool]:
    """The arrays as row-major ones (their transposes if they are all column-major), and whether transposed."""
    if all(a.flags.c_contiguous for a in arrays):
        return tuple(arrays), False
    return tuple(a.T for a in arrays), True


def _rows_ok(rows: Any) -> bool:
    return type(rows) is np.ndarray and rows.ndim == 1 and rows.dtype == np.int64 and rows.flags.c_contiguous


def _buffers(ws: dict, plan: dict, n: int, width: int, gather: bool) -> tuple[Any, ...]:
    """``(xb, outs, deltas, glast)`` with at least ``n`` rows (``xb``: when gathering), kept in the workspace: one
    set, sized for the longest batch."""
    weights = plan["params"][0]
    if plan["params"][1]:  # given transposed
        weights = tuple(w.T for w in weights)
    key = ("numba", plan["dt"], width, tuple(w.shape for w in weights))
    bufs = ws.get(key)
    if bufs is None or bufs[1][0].shape[0] < n or (gather and bufs[0].shape[0] < n):  # one bigger set
        dt = plan["dt"]
        rows = max(n, 0 if bufs is None else bufs[1][0].shape[0])
        xb = np.empty((rows if gather else 0, width), dt) if bufs is None or gather else bufs[0]
        outs = tuple(np.empty((rows, w.shape[0]), dt) for w in weights)
        deltas = tuple(np.empty((rows, w.shape[1]), dt) for w in weights[1:]) or (np.empty((0, 0), dt),)
        bufs = ws[key] = (xb, outs, deltas, np.empty((rows, weights[-1].shape[0]), dt))
    return bufs
