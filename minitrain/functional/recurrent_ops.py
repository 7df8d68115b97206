"""Differentiable recurrent ops: one LSTM or GRU layer over a whole sequence, as one autograd node.

The input projection of every time step is one GEMM; the backend's layer kernel (``lstm_sequence`` /
``gru_sequence``) then runs the recurrence: per step one GEMM with the recurrent weights and the step's gates
(the reference calls ``lstm_step`` / ``gru_step``; Numba runs the whole sequence in one compiled call). The
backward kernel runs backpropagation through time and returns the gate gradients of every step and the bias
gradients; every weight gradient is then one GEMM over all steps.

The node's value packs the hidden states of every step with the final state (``[h_0, h_1 .. h_T, c_T]``
for the LSTM); the returned tensors are views into it.
"""

from __future__ import annotations

import sys
from typing import Any

from ..autograd import Tensor

_make = Tensor._make


def _refs(pool: dict, key: Any) -> int:
    """References to ``pool[key]`` as ``_buffer`` counts them."""
    a = pool.get(key)
    return sys.getrefcount(a)


#: What ``_refs`` counts for an array that only the pool refers to (measured: interpreters count differently).
_ALONE = _refs({0: object()}, 0)
#: Arrays a workspace keeps at most; when one more is needed it starts again empty.
_MAX_KEPT = 16


def _buffer(ws: dict | None, be: Any, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """An uninitialized array: the one kept in ``ws`` for ``name``, shape and dtype if nothing else refers to it
    any more, else a new one, kept there (no workspace: a new one)."""
    if ws is None:
        return be.xp.empty(shape, dtype=dtype)
    key = (name, be.name, be.device, tuple(shape), str(dtype))
    if key in ws and _refs(ws, key) <= _ALONE:
        return ws[key]
    if len(ws) >= _MAX_KEPT:
        ws.clear()
    ws[key] = a = be.xp.empty(shape, dtype=dtype)
    return a


def lstm(
    x: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    *,
    batch_first: bool = False,
    workspace: dict | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer over a sequence, with PyTorch's equations and gate order (i, f, g, o).

    Parameters
    ----------
    x : Tensor of shape (seq_len, batch, input_size), or (batch, seq_len, input_size) if ``batch_first``
    h0, c0 : Tensor of shape (batch, hidden_size), or None for zeros
        Initial hidden and cell states.
    weight_ih : Tensor of shape (4 * hidden_size, input_size)
    weight_hh : Tensor of shape (4 * hidden_size, hidden_size)
    bias_ih, bias_hh : Tensor of shape (4 * hidden_size,), optional
    batch_first : bool, default=False
        Whether ``x`` and ``output`` have the batch on axis 0.
    workspace : dict, optional
        Arrays of earlier calls to reuse (see ``gru``); ``nn.LSTM`` passes one of its own per layer.

    Returns
    -------
    output : Tensor of shape (seq_len, batch, hidden_size), or (batch, seq_len, hidden_size)
        The hidden state of every step.
    h_n, c_n : Tensor of shape (batch, hidden_size)
        The final hidden and cell states.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor(np.ones((5, 2, 3)))
    >>> w_ih, w_hh = mt.tensor(np.full((16, 3), 0.1)), mt.tensor(np.full((16, 4), 0.1))
    >>> output, h_n, c_n = F.lstm(x, None, None, w_ih, w_hh)
    >>> output.shape, h_n.shape, c_n.shape
    ((5, 2, 4), (2, 4), (2, 4))
    """
    be, (T, B, _, H), x2 = _prepare("lstm", 4, x, (h0, c0), weight_ih, weight_hh, (bias_ih, bias_hh), batch_first)
    ws, whh, dt = workspace, weight_hh.data, x2.dtype
    given = [b.data for b in (bias_ih, bias_hh) if b is not None]
    bias = given[0] + given[1] if len(given) == 2 else given[0] if given else None  # both add to every gate
    G = be.gemm(x2, weight_ih.data, trans_b=True, out=_buffer(ws, be, "gates", (T * B, 4 * H), dt))
    P = _buffer(ws, be, "states", (T + 2, B, H), dt)  # h_0, h_1 .. h_T, c_T
    c0d, C = None if c0 is None else c0.data, _buffer(ws, be, "cells", (T, B, H), dt)
    h0d = None if h0 is None else h0.data
    _, C, G = be.lstm_sequence(G.reshape(T, B, 4 * H), whh, bias, h0d, c0d, out=P[: T + 1], out_c=C)
    P[T + 1] = C[T - 1]

    def bw(gP: Any) -> tuple[Any, ...]:
        need_h0, weights = h0 is not None and h0.requires_grad, (weight_ih, weight_hh)
        dG = _buffer(ws, be, "grad_gates", G.shape, dt)
        dG, db, dh, grad_c = be.lstm_sequence_backward(
            gP[1 : T + 1], gP[T + 1], G, whh, c0d, C, out=dG, need_h0=need_h0
        )
        grads = _weight_grads(be, x, x2, P[:T], (dG, dG), weights, (bias_ih, bias_hh), (db, db), batch_first, ws)
        return _order(grads, (h0, dh), (c0, grad_c))

    parents = _parents(x, (h0, c0), weight_ih, weight_hh, (bias_ih, bias_hh))
    packed = _make(P, be, parents, bw)
    output = _part(packed, slice(1, T + 1), batch_first, ws)
    return output, _part(packed, T, False, ws), _part(packed, T + 1, False, ws)


def gru(
    x: Tensor,
    h0: Tensor | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    *,
    batch_first: bool = False,
    workspace: dict | None = None,
) -> tuple[Tensor, Tensor]:
    """One GRU layer over a sequence, with PyTorch's equations and gate order (r, z, n).

    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` and ``h' = (1 - z) * n + z * h``.

    Parameters
    ----------
    x : Tensor of shape (seq_len, batch, input_size), or (batch, seq_len, input_size) if ``batch_first``
    h0 : Tensor of shape (batch, hidden_size), or None for zeros
    weight_ih : Tensor of shape (3 * hidden_size, input_size)
    weight_hh : Tensor of shape (3 * hidden_size, hidden_size)
    bias_ih, bias_hh : Tensor of shape (3 * hidden_size,), optional
    batch_first : bool, default=False
        Whether ``x`` and ``output`` have the batch on axis 0.
    workspace : dict, optional
        Arrays of earlier calls to reuse: the op keeps its large arrays (projections, states, gradients) there and
        takes one back once nothing else refers to it (its graph and its outputs are gone), so a training loop
        allocates, and the OS maps and zeroes, no new memory per step. ``nn.GRU`` passes one of its own per layer.

    Returns
    -------
    output : Tensor of shape (seq_len, batch, hidden_size), or (batch, seq_len, hidden_size)
    h_n : Tensor of shape (batch, hidden_size)

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor(np.ones((2, 5, 3)))
    >>> w_ih, w_hh = mt.tensor(np.full((12, 3), 0.1)), mt.tensor(np.full((12, 4), 0.1))
    >>> output, h_n = F.gru(x, None, w_ih, w_hh, batch_first=True)
    >>> output.shape, h_n.shape
    ((2, 5, 4), (2, 4))
    """
    be, (T, B, _, H), x2 = _prepare("gru", 3, x, (h0,), weight_ih, weight_hh, (bias_ih, bias_hh), batch_first)
    ws, whh, dt = workspace, weight_hh.data, x2.dtype
    GI = be.gemm(x2, weight_ih.data, trans_b=True, out=_buffer(ws, be, "gates", (T * B, 3 * H), dt))
    P = _buffer(ws, be, "states", (T + 1, B, H), dt)  # h_0, h_1 .. h_T
    b_ih, b_hh = (None if b is None else b.data for b in (bias_ih, bias_hh))
    h0d, GHN = None if h0 is None else h0.data, _buffer(ws, be, "gh_n", (T, B, H), dt)
    _, GI, GHN = be.gru_sequence(GI.reshape(T, B, 3 * H), whh, b_ih, b_hh, h0d, out=P, out_gh_n=GHN)

    def bw(gP: Any) -> tuple[Any, ...]:
        need_h0, weights = h0 is not None and h0.requires_grad, (weight_ih, weight_hh)
        outs = {"out": _buffer(ws, be, "grad_gates", GI.shape, dt), "out_gh": _buffer(ws, be, "grad_gh", GI.shape, dt)}
        dGI, dGH, db_ih, db_hh, dh = be.gru_sequence_backward(gP[1:], GI, GHN, whh, P, **outs, need_h0=need_h0)
        biases, bias_grads = (bias_ih, bias_hh), (db_ih, db_hh)
        grads = _weight_grads(be, x, x2, P[:T], (dGI, dGH), weights, biases, bias_grads, batch_first, ws)
        return _order(grads, (h0, dh))

    packed = _make(P, be, _parents(x, (h0,), weight_ih, weight_hh, (bias_ih, bias_hh)), bw)
    return _part(packed, slice(1, T + 1), batch_first, ws), _part(packed, T, False, ws)


# ---------------------------------------------------------------------- helpers
def _prepare(
    op: str, gates: int, x: Tensor, states: tuple, w_ih: Tensor, w_hh: Tensor, biases: tuple, batch_first: bool
) -> tuple[Any, tuple[int, int, int, int], Any]:
    """Check shapes and dtypes; return the backend, (T, B, I, H) and the time-major input as (T * B, I)."""
    layout = "(batch, seq_len, input_size)" if batch_first else "(seq_len, batch, input_size)"
    if x.ndim != 3:
        raise ValueError(f"{op}: input must have 3 dimensions {layout}, got shape {x.shape}")
    if (
        w_ih.ndim != 2
        or w_hh.ndim != 2
        or w_ih.shape[0] % gates
        or w_hh.shape != (w_ih.shape[0], w_ih.shape[0] // gates)
    ):
        raise ValueError(
            f"{op}: weight_ih must have shape ({gates} * hidden_size, input_size) and weight_hh "
            f"({gates} * hidden_size, hidden_size), got {w_ih.shape} and {w_hh.shape}"
        )
    H, input_size = w_ih.shape[0] // gates, w_ih.shape[1]
    xd = x.data.transpose(1, 0, 2) if batch_first else x.data
    T, B, features = xd.shape
    if features != input_size:
        raise ValueError(
            f"{op}: input has {features} features (last axis of {x.shape}), but weight_ih expects {input_size}"
        )
    if T < 1:
        raise ValueError(f"{op}: the sequence is empty (seq_len 0 in input of shape {x.shape})")
    for name, t, shape in (
        *((f"bias_{k}", b, (gates * H,)) for k, b in zip(("ih", "hh"), biases)),
        *((f"initial state {k}", s, (B, H)) for k, s in enumerate(states)),
    ):
        if t is not None and t.shape != shape:
            raise ValueError(f"{op}: {name} has shape {t.shape}, expected {shape}")
    dtypes = {str(t.dtype) for t in (x, w_ih, w_hh, *biases, *states) if t is not None}
    if len(dtypes) > 1:
        raise ValueError(f"{op}: input, weights and states must share one dtype, got {sorted(dtypes)}")
    return x.backend, (T, B, features, H), xd.reshape(T * B, features)


def _parents(x: Tensor, states: tuple, w_ih: Tensor, w_hh: Tensor, biases: tuple) -> tuple[Tensor, ...]:
    return tuple(t for t in (x, *states, w_ih, w_hh, *biases) if t is not None)


def _order(grads: tuple, *states: tuple[Tensor | None, Any]) -> tuple[Any, ...]:
    """Gradients in the order of ``_parents``: x, the given states, then weights and biases."""
    gx, rest = grads[0], grads[1:]
    return (gx, *(g for s, g in states if s is not None), *rest)


def _weight_grads(
    be: Any,
    x: Tensor,
    x2: Any,
    h_prev: Any,
    dG: tuple,
    weights: tuple,
    biases: tuple,
    bias_grads: tuple,
    batch_first: bool,
    ws: dict | None,
) -> tuple[Any, ...]:
    """Gradients of x (time-major), weights and present biases from the gate gradients (T, B, G*H) of every step
    on the input side and the hidden side (one GEMM each) and the biases' gradients the kernel summed."""
    rows, (w_ih, w_hh) = x2.shape[0], weights
    d_ih, d_hh = (d.reshape(rows, d.shape[-1]) for d in dG)
    gx = None
    if x.requires_grad:
        gx = be.gemm(d_ih, w_ih.data, out=_buffer(ws, be, "grad_input", x2.shape, x2.dtype))
        gx = gx.reshape(h_prev.shape[0], h_prev.shape[1], x2.shape[1])
        gx = gx.transpose(1, 0, 2) if batch_first else gx
    out = [gx, _into_grad(be, w_ih, d_ih, x2), _into_grad(be, w_hh, d_hh, h_prev.reshape(rows, h_prev.shape[-1]))]
    for k, (b, g) in enumerate(zip(biases, bias_grads)):
        if b is not None:
            out.append(_into_grad(be, b, g if k == 0 or bias_grads[0] is not g else g.copy(), None))
    return tuple(out)


def _into_grad(be: Any, p: Tensor, d: Any, other: Any) -> Any:
    """``d.T @ other`` (or ``d`` itself, a summed bias gradient, when other is None) for ``p``: written straight
    into a zeroed parameter gradient when possible (then None is returned), else a new array."""
    if not p.requires_grad:
        return None
    pg = p.grad if getattr(p, "_grad_zero", False) else None
    if pg is None or pg.dtype != d.dtype or not pg.flags.c_contiguous:
        return d if other is None else be.gemm(d, other, trans_a=True)
    if other is None:
        pg[...] = d
    else:
        be.gemm(d, other, trans_a=True, out=pg)
    p._grad_zero = False
    return None


def _part(packed: Tensor, index: Any, batch_first: bool, ws: dict | None) -> Tensor:
    """A view into the packed states (swapped to batch-first if asked); its gradient is scattered back."""
    be, shape, dtype = packed.backend, packed.shape, packed.dtype
    data = packed.data[index]

    def bw(g: Any) -> tuple[Any]:
        full = _buffer(ws, be, "grad_states", shape, dtype)
        full.fill(0)
        view = full[index]
        (view.swapaxes(0, 1) if batch_first else view)[...] = g
        return (full,)

    return _make(data.swapaxes(0, 1) if batch_first else data, packed.backend, (packed,), bw)
