"""Differentiable recurrent ops: one LSTM or GRU layer over a whole sequence, as one autograd node.

The input projection of every time step is one GEMM; each step then runs one GEMM with the recurrent
weights and one step kernel (``lstm_step`` / ``gru_step``). The backward runs backpropagation through time
with the step-backward kernels and gets every weight gradient from one GEMM over all steps.

The node's value packs the hidden states of every step with the final state (``[h_0, h_1 .. h_T, c_T]``
for the LSTM); the returned tensors are views into it.
"""

from __future__ import annotations

from typing import Any

from ..autograd import Tensor

_make = Tensor._make


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
    xp, wih, whh = be.xp, weight_ih.data, weight_hh.data
    G = _input_gates(be, x2, wih, bias_ih, bias_hh).reshape(T, B, 4 * H)  # becomes the activated gates
    P = xp.empty((T + 2, B, H), dtype=x2.dtype)  # h_0, h_1 .. h_T, c_T
    C = xp.empty((T, B, H), dtype=x2.dtype)  # c_1 .. c_T
    P[0] = 0 if h0 is None else h0.data
    c_init = xp.zeros((B, H), dtype=x2.dtype) if c0 is None else c0.data
    rec = xp.empty((B, 4 * H), dtype=x2.dtype)
    for t in range(T):
        g = G[t]
        g += be.gemm(P[t], whh, trans_b=True, out=rec)
        acts = be.lstm_step(g, C[t - 1] if t else c_init, out=P[t + 1], out_c=C[t])[2]
        if acts is not g:
            g[...] = acts
    P[T + 1] = C[T - 1]

    def bw(gP: Any) -> tuple[Any, ...]:
        dG = xp.empty_like(G)  # G stays intact, so a retained graph can run backward again
        grad_h, grad_c, dh = gP[T], gP[T + 1], None
        for t in range(T - 1, -1, -1):
            if dh is not None:
                grad_h = xp.add(gP[t + 1], dh, out=dh)
            grad_c = be.lstm_step_backward(grad_h, grad_c, G[t], C[t - 1] if t else c_init, C[t], out=dG[t])[1]
            if t or (h0 is not None and h0.requires_grad):
                dh = be.gemm(dG[t], whh, out=xp.empty((B, H), dtype=dG.dtype) if dh is None else dh)
        grads = _weight_grads(be, x, x2, P[:T], dG, weight_ih, weight_hh, (bias_ih, bias_hh), batch_first)
        return _order(grads, (h0, dh), (c0, grad_c))

    parents = _parents(x, (h0, c0), weight_ih, weight_hh, (bias_ih, bias_hh))
    packed = _make(P, be, parents, bw)
    return _part(packed, slice(1, T + 1), batch_first), _part(packed, T), _part(packed, T + 1)


def gru(
    x: Tensor,
    h0: Tensor | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    *,
    batch_first: bool = False,
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
    xp, wih, whh = be.xp, weight_ih.data, weight_hh.data
    GI = _input_gates(be, x2, wih, bias_ih, None).reshape(T, B, 3 * H)  # becomes the activated gates
    GH = xp.empty((T, B, 3 * H), dtype=x2.dtype)  # h W_hh^T + b_hh of every step
    P = xp.empty((T + 1, B, H), dtype=x2.dtype)  # h_0, h_1 .. h_T
    P[0] = 0 if h0 is None else h0.data
    for t in range(T):
        gh = be.gemm(P[t], whh, trans_b=True, out=GH[t])
        if bias_hh is not None:
            gh += bias_hh.data
        gi = GI[t]
        acts = be.gru_step(gi, gh, P[t], out=P[t + 1])[1]
        if acts is not gi:
            gi[...] = acts

    def bw(gP: Any) -> tuple[Any, ...]:
        dGI, dGH = xp.empty_like(GI), xp.empty_like(GH)
        grad_h, dh = gP[T], None
        for t in range(T - 1, -1, -1):
            if dh is not None:
                grad_h = xp.add(gP[t + 1], dh, out=dh)
            direct = be.gru_step_backward(grad_h, GI[t], GH[t], P[t], out=dGI[t], out_gh=dGH[t])[2]
            if not t and (h0 is None or not h0.requires_grad):
                break
            dh = be.gemm(dGH[t], whh, out=xp.empty((B, H), dtype=dGH.dtype) if dh is None else dh)
            dh += direct
        grads = _weight_grads(be, x, x2, P[:T], (dGI, dGH), weight_ih, weight_hh, (bias_ih, bias_hh), batch_first)
        return _order(grads, (h0, dh))

    packed = _make(P, be, _parents(x, (h0,), weight_ih, weight_hh, (bias_ih, bias_hh)), bw)
    return _part(packed, slice(1, T + 1), batch_first), _part(packed, T)


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


def _input_gates(be: Any, x2: Any, w_ih: Any, bias_ih: Tensor | None, bias_hh: Tensor | None) -> Any:
    """``x2 @ w_ih.T`` plus the biases, for every time step at once."""
    g = be.gemm(x2, w_ih, trans_b=True)
    for b in (bias_ih, bias_hh):
        if b is not None:
            g += b.data
    return g


def _parents(x: Tensor, states: tuple, w_ih: Tensor, w_hh: Tensor, biases: tuple) -> tuple[Tensor, ...]:
    return tuple(t for t in (x, *states, w_ih, w_hh, *biases) if t is not None)


def _order(grads: tuple, *states: tuple[Tensor | None, Any]) -> tuple[Any, ...]:
    """Gradients in the order of ``_parents``: x, the given states, then weights and biases."""
    gx, rest = grads[0], grads[1:]
    return (gx, *(g for s, g in states if s is not None), *rest)


def _weight_grads(
    be: Any, x: Tensor, x2: Any, h_prev: Any, dG: Any, w_ih: Tensor, w_hh: Tensor, biases: tuple, batch_first: bool
) -> tuple[Any, ...]:
    """Gradients of x, weights and present biases from the gate gradients of every step (one GEMM each).

    ``dG`` is one array (T, B, G*H) for both weights (LSTM) or a pair (input side, hidden side) (GRU).
    """
    d_ih, d_hh = dG if isinstance(dG, tuple) else (dG, dG)
    rows = x2.shape[0]
    d_ih, d_hh = d_ih.reshape(rows, d_ih.shape[-1]), d_hh.reshape(rows, d_hh.shape[-1])
    gx = None
    if x.requires_grad:
        gx = be.gemm(d_ih, w_ih.data).reshape(h_prev.shape[0], h_prev.shape[1], x2.shape[1])
        gx = gx.transpose(1, 0, 2) if batch_first else gx
    out = [gx, _into_grad(be, w_ih, d_ih, x2), _into_grad(be, w_hh, d_hh, h_prev.reshape(rows, h_prev.shape[-1]))]
    for b, d in zip(biases, (d_ih, d_hh)):
        if b is not None:
            out.append(_into_grad(be, b, d, None))
    return tuple(out)


def _into_grad(be: Any, p: Tensor, d: Any, other: Any) -> Any:
    """``d.T @ other`` (or ``d.sum(0)`` when other is None) for ``p``: written straight into a zeroed
    parameter gradient when possible (then None is returned), else a new array."""
    if not p.requires_grad:
        return None
    pg = p.grad if getattr(p, "_grad_zero", False) else None
    if pg is None or pg.dtype != d.dtype or not pg.flags.c_contiguous:
        return d.sum(axis=0) if other is None else be.gemm(d, other, trans_a=True)
    if other is None:
        d.sum(axis=0, out=pg)
    else:
        be.gemm(d, other, trans_a=True, out=pg)
    p._grad_zero = False
    return None


def _part(packed: Tensor, index: Any, batch_first: bool = False) -> Tensor:
    """A view into the packed states (swapped to batch-first if asked); its gradient is scattered back."""
    xp, shape, dtype = packed.backend.xp, packed.shape, packed.dtype
    data = packed.data[index]

    def bw(g: Any) -> tuple[Any]:
        full = xp.zeros(shape, dtype=dtype)
        view = full[index]
        (view.swapaxes(0, 1) if batch_first else view)[...] = g
        return (full,)

    return _make(data.swapaxes(0, 1) if batch_first else data, packed.backend, (packed,), bw)
