"""Differentiable ops of sequence models: ``embedding`` (gather / scatter-add), ``layer_norm`` (fused), and
``scaled_dot_product_attention`` (built from matmul over a masked softmax node)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ..autograd import Tensor
from .layer_ops import dropout
from .shape_ops import transpose
from .tensor_ops import matmul, mul

_make = Tensor._make


# ---------------------------------------------------------------------- embedding
def embedding(
    input: Any,
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
) -> Tensor:
    """Look up rows of ``weight``: one node, whose backward scatter-adds into the rows that were read.

    Parameters
    ----------
    input : array_like or Tensor of integers, any shape
        Row indices in ``[0, num_embeddings)``.
    weight : Tensor of shape (num_embeddings, embedding_dim)
    padding_idx : int, optional
        The row of this index gets no gradient (negative counts from the end).
    max_norm : float, optional
        Rows read whose ``norm_type``-norm exceeds ``max_norm`` are first rescaled to that norm, in place
        (outside the graph), as PyTorch does.
    norm_type : float, default=2.0
    scale_grad_by_freq : bool, default=False
        Divide each row's gradient by how often its index occurs in ``input``.

    Returns
    -------
    Tensor of shape (*input.shape, embedding_dim)

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> w = mt.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    >>> out = F.embedding(np.array([[0, 2], [2, 2]]), w, padding_idx=0)
    >>> out.shape
    (2, 2, 2)
    >>> F.sum(out).backward()
    >>> w.grad
    array([[0., 0.],
           [0., 0.],
           [3., 3.]])
    """
    be, xp = weight.backend, weight.backend.xp
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must have shape (num_embeddings, embedding_dim), got {weight.shape}")
    num, dim = weight.shape
    if isinstance(input, Tensor):
        idx = input.data if input.backend is be else be.asarray(input.numpy())
    else:
        idx = be.asarray(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    bad = None
    if xp is not np:  # on a device nothing is read back: an index out of range gives a row of NaN instead
        bad = ((idx < 0) | (idx >= num)).reshape(-1)
        idx = xp.where(bad.reshape(idx.shape), 0, idx)
    elif idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num):
        wrong = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
        raise IndexError(f"embedding: index {wrong} is out of range for {num} embeddings (valid: 0 to {num - 1})")
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"embedding: padding_idx must be within [-{num}, {num}), got {padding_idx}")
        padding_idx = int(padding_idx) % num
    if max_norm is not None and idx.size:
        rows = xp.unique(idx)
        norms = xp.linalg.norm(weight.data[rows], ord=norm_type, axis=1)
        scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(weight.dtype)
        weight.data[rows] *= scale[:, None]
    flat = idx.reshape(-1)
    out = weight.data[flat]
    if bad is not None:
        out = xp.where(bad[:, None], xp.asarray(xp.nan, dtype=out.dtype), out)
    out = out.reshape((*idx.shape, dim))

    def bw(g: Any) -> tuple[Any]:
        g2 = g.reshape(-1, dim)
        if scale_grad_by_freq:
            g2 = g2 / xp.bincount(flat, minlength=num)[flat][:, None].astype(g2.dtype)
        if padding_idx is not None:
            g2 = xp.where((flat == padding_idx)[:, None], xp.zeros((), dtype=g2.dtype), g2)
        target = weight.grad if getattr(weight, "_grad_zero", False) else None
        if target is None or target.dtype != g2.dtype:
            target = xp.zeros(weight.shape, dtype=g2.dtype)
            xp.add.at(target, flat, g2)
            return (target,)
        xp.add.at(target, flat, g2)  # straight into the zeroed (flat) gradient
        weight._grad_zero = False
        return (None,)

    return _make(out, be, (weight,), bw)


# ---------------------------------------------------------------------- layer_norm
def _shape(normalized_shape: Any) -> tuple[int, ...]:
    if isinstance(normalized_shape, numbers.Integral):
        return (int(normalized_shape),)
    return tuple(int(n) for n in normalized_shape)


def layer_norm(
    x: Tensor, normalized_shape: Any, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Layer normalization over the trailing ``normalized_shape`` axes, as one node.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance, statistics taken per sample
    over the last ``len(normalized_shape)`` axes.

    Parameters
    ----------
    x : Tensor of shape (*, *normalized_shape)
    normalized_shape : int or tuple of int
    weight, bias : Tensor of shape normalized_shape, optional
    eps : float, default=1e-5

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> y = F.layer_norm(mt.tensor(np.array([[1.0, 2.0, 3.0]])), 3)
    >>> np.round(y.numpy(), 4)
    array([[-1.2247,  0.    ,  1.2247]])
    """
    shape = _shape(normalized_shape)
    k = len(shape)
    if not k or x.ndim < k or x.shape[x.ndim - k :] != shape:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end with normalized_shape {shape}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != shape:
            raise ValueError(f"layer_norm: {name} must have shape {shape}, got {p.shape}")
    xp, xd = x.backend.xp, x.data
    axes = tuple(range(x.ndim - k, x.ndim))
    lead = tuple(range(x.ndim - k))
    xc = xd - xd.mean(axis=axes, keepdims=True)
    rstd = 1.0 / xp.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
    xhat = xc * rstd
    wd = None if weight is None else weight.data
    y = xhat if wd is None else xhat * wd
    if bias is not None:
        y = y + bias.data
    parents = tuple(t for t in (x, weight, bias) if t is not None)

    def bw(g: Any) -> tuple[Any, ...]:
        out = []
        if x.requires_grad:
            d = g if wd is None else g * wd
            out.append(rstd * (d - d.mean(axis=axes, keepdims=True) - xhat * (d * xhat).mean(axis=axes, keepdims=True)))
        else:
            out.append(None)
        if weight is not None:
            out.append((g * xhat).sum(axis=lead) if weight.requires_grad else None)
        if bias is not None:
            out.append(g.sum(axis=lead) if bias.requires_grad else None)
        return tuple(out)

    return _make(y, x.backend, parents, bw)


# ---------------------------------------------------------------------- attention
def masked_softmax(x: Tensor, mask: Any = None) -> Tensor:
    """Softmax over the last axis of ``x + mask`` (``mask`` a constant array, e.g. 0 / -inf), as one node.

    A row whose entries are all -inf gets zero weights (not NaN), as PyTorch's ``scaled_dot_product_attention``
    gives for a query that may attend to no key.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.masked_softmax(mt.tensor(np.zeros((2, 2))), np.array([[0.0, -np.inf], [-np.inf, -np.inf]])).numpy()
    array([[1., 0.],
           [0., 0.]])
    """
    xp = x.backend.xp
    s = x.data if mask is None else x.data + x.backend.asarray(mask, dtype=x.dtype)
    top = s.max(axis=-1, keepdims=True)
    e = xp.exp(s - xp.where(xp.isneginf(top), xp.zeros((), dtype=s.dtype), top))
    total = e.sum(axis=-1, keepdims=True)
    y = e / xp.where(total == 0, xp.ones((), dtype=s.dtype), total)
    return _make(y, x.backend, (x,), lambda g: (y * (g - (g * y).sum(axis=-1, keepdims=True)),))


def additive_mask(mask: Any, like: Tensor) -> Any:
    """A boolean mask (True: masked out) as 0 / -inf, a float one as is, in ``like``'s backend and dtype."""
    be = like.backend
    m = mask.data if isinstance(mask, Tensor) else be.asarray(mask)
    if m.dtype == bool:
        return be.xp.where(m, -math.inf, 0.0).astype(like.dtype)
    if m.dtype.kind != "f":
        raise TypeError(f"attention masks must be boolean or floating-point, got dtype {m.dtype}")
    return m.astype(like.dtype, copy=False)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Any = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    generator: Any = None,
) -> tuple[Tensor, Tensor]:
    """``softmax(q k^T * scale + mask) v`` over the last two axes; returns the output and the weights (after
    dropout). ``mask`` is additive (see :func:`additive_mask`) and broadcasts to (..., L, S)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    perm = (*range(k.ndim - 2), k.ndim - 1, k.ndim - 2)
    weights = masked_softmax(matmul(mul(q, scale), transpose(k, perm)), mask)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, True, generator=generator)
    return matmul(weights, v), weights


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    generator: Any = None,
) -> Tensor:
    """Attention with PyTorch's ``scaled_dot_product_attention`` semantics.

    Parameters
    ----------
    query : Tensor of shape (..., L, E)
    key : Tensor of shape (..., S, E)
    value : Tensor of shape (..., S, Ev)
    attn_mask : array_like or Tensor, optional
        Broadcasts to (..., L, S). Boolean: True where a query *may* attend (PyTorch's convention here, the
        opposite of ``MultiheadAttention``'s); float: added to the scores.
    dropout_p : float, default=0.0
        Dropout on the attention weights (always applied when > 0, as in PyTorch).
    is_causal : bool, default=False
        Mask out keys after each query (``attn_mask`` must then be None).
    scale : float, optional
        Defaults to ``1 / sqrt(E)``.
    generator : optional
        A generator of the backend for the dropout masks; by default one from the current stream.

    Returns
    -------
    Tensor of shape (..., L, Ev)
        A query that may attend to no key gets zeros.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> q = mt.tensor(np.ones((2, 4, 3)))
    >>> F.scaled_dot_product_attention(q, q, q, is_causal=True).shape
    (2, 4, 3)
    """
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
    be = query.backend
    mask = None
    if is_causal:
        L, S = query.shape[-2], key.shape[-2]
        mask = additive_mask(be.xp.triu(be.xp.ones((L, S), dtype=bool), 1), query)
    elif attn_mask is not None:
        m = attn_mask.data if isinstance(attn_mask, Tensor) else be.asarray(attn_mask)
        mask = additive_mask(~m if m.dtype == bool else m, query)
    return attention(query, key, value, mask, dropout_p, scale, generator)[0]
