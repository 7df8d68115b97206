"""``MultiheadAttention`` and ``TransformerEncoderLayer`` (PyTorch's API, parameter names and equations)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..backend import canonical_activation, get_backend
from ..functional.attention_ops import additive_mask, attention
from ..init import constant_, uniform_, xavier_normal_, xavier_uniform_
from .dropout import Dropout
from .flat import Parameter
from .linear import Linear
from .module import Module
from .norm import LayerNorm


def generate_square_subsequent_mask(sz: int, dtype: str = "float32", backend: Any = None) -> Any:
    """The causal mask of PyTorch's ``Transformer.generate_square_subsequent_mask``: an (sz, sz) float array with
    -inf above the diagonal (a query may not attend to later keys) and 0 elsewhere.

    Examples
    --------
    >>> from minitrain import nn
    >>> nn.generate_square_subsequent_mask(3)
    array([[  0., -inf, -inf],
           [  0.,   0., -inf],
           [  0.,   0.,   0.]], dtype=float32)
    """
    xp = get_backend(backend).xp
    return xp.where(xp.triu(xp.ones((sz, sz), dtype=bool), 1), -math.inf, 0.0).astype(dtype)


def _torch_linear(n_in: int, n_out: int, bias: bool, dtype: str, backend: Any) -> Linear:
    """A ``Linear`` initialised as PyTorch's: weight and bias from U(-1/sqrt(n_in), 1/sqrt(n_in))."""
    bound = 1.0 / math.sqrt(n_in)
    layer = Linear(n_in, n_out, bias=bias, init=lambda t: uniform_(t, -bound, bound), dtype=dtype, backend=backend)
    if bias:
        uniform_(layer.bias, -bound, bound)
    return layer


class MultiheadAttention(Module):
    """Multi-head attention, ``softmax(Q K^T / sqrt(head_dim) + mask) V`` per head, with PyTorch's API.

    Parameters
    ----------
    embed_dim : int
        E, the size of queries and outputs; a multiple of ``num_heads``.
    num_heads : int
    dropout : float, default=0.0
        Dropout on the attention weights, in training (masks from this module's own generator).
    bias : bool, default=True
        Learn ``in_proj_bias`` and ``out_proj.bias`` (zeros at first).
    add_bias_kv : bool, default=False
        Append learned ``bias_k``, ``bias_v`` (shape (1, 1, E)) to the keys and values.
    add_zero_attn : bool, default=False
        Append a zero key and value to every head.
    kdim, vdim : int, optional
        Sizes of keys and values (default E); when either differs from E the projections are separate
        ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight`` instead of ``in_proj_weight``.
    batch_first : bool, default=False
        Inputs and output are (N, L, E) instead of (L, N, E).
    dtype : str, default='float32'
    backend : str or Backend, optional

    Attributes
    ----------
    in_proj_weight : Parameter of shape (3 * E, E), Glorot uniform; in_proj_bias : Parameter of shape (3 * E,)
    out_proj : Linear(E, E), weight from U(-1/sqrt(E), 1/sqrt(E)), bias zeros

    Notes
    -----
    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` takes query (L, N, E), key (S, N, kdim), value (S, N, vdim)
    (or batch first, or unbatched (L, E) ...) and returns ``(attn_output, attn_weights)``: the output (L, N, E)
    and, with ``need_weights``, the weights (after dropout) averaged over heads (N, L, S), or per head (N,
    num_heads, L, S) with ``average_attn_weights=False``; else None. ``key_padding_mask`` (N, S): True (or -inf)
    marks keys to ignore; ``attn_mask`` (L, S) or (N * num_heads, L, S): boolean True masks a pair out, a float
    mask is added to the scores. ``is_causal=True`` without ``attn_mask`` applies the causal mask (PyTorch
    raises there and wants the mask too); with ``attn_mask``, the mask is used. A query that may attend to no key
    gets zero weights (PyTorch's ``need_weights=False`` path; its weights path gives NaN).

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> mha = mt.nn.MultiheadAttention(8, 2, batch_first=True)
    >>> x = np.ones((3, 5, 8), dtype=np.float32)
    >>> out, weights = mha(x, x, x, key_padding_mask=np.array([[False] * 4 + [True]] * 3))
    >>> out.shape, weights.shape, float(weights.numpy()[0, 0, 4])
    ((3, 5, 8), (3, 5, 5), 0.0)
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        dtype: str = "float32",
        backend: Any = None,
    ) -> None:
        super().__init__(backend)
        if embed_dim < 1 or num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be a positive multiple of num_heads "
                             f"({num_heads})")  # fmt: skip
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be a probability in [0, 1], got {dropout}")
        E = self.embed_dim = int(embed_dim)
        self.kdim, self.vdim = int(kdim or E), int(vdim or E)
        self._qkv_same_embed_dim = self.kdim == E and self.vdim == E
        self.num_heads, self.head_dim, self.dropout = int(num_heads), E // num_heads, float(dropout)
        self.batch_first, self.add_zero_attn = bool(batch_first), bool(add_zero_attn)
        be = self._backend

        def param(*shape: int) -> Parameter:
            return Parameter(be.alloc(shape, dtype), backend=be)

        if self._qkv_same_embed_dim:
            self.in_proj_weight = xavier_uniform_(param(3 * E, E))
            self.q_proj_weight = self.k_proj_weight = self.v_proj_weight = None
        else:
            self.in_proj_weight = None
            self.q_proj_weight = xavier_uniform_(param(E, E))
            self.k_proj_weight = xavier_uniform_(param(E, self.kdim))
            self.v_proj_weight = xavier_uniform_(param(E, self.vdim))
        self.in_proj_bias = constant_(param(3 * E), 0.0) if bias else None
        self.out_proj = _torch_linear(E, E, bias, dtype, be)
        if bias:
            constant_(self.out_proj.bias, 0.0)
        self.bias_k = xavier_normal_(param(1, 1, E)) if add_bias_kv else None
        self.bias_v = xavier_normal_(param(1, 1, E)) if add_bias_kv else None
        self.register_generator("generator")

    # ---------------------------------------------------------------- helpers
    def _tensor(self, x: Any) -> Tensor:
        dtype = self.out_proj.weight.dtype
        if not isinstance(x, Tensor):
            return Tensor(x, backend=self._backend, dtype=dtype)
        return x if x.dtype == dtype else F.astype(x, dtype)

    def _project(self, q: Tensor, k: Tensor, v: Tensor, self_attention: bool) -> list[Tensor]:
        E, b = self.embed_dim, self.in_proj_bias
        if self_attention and self.in_proj_weight is not None:
            qkv = F.linear(q, self.in_proj_weight, b)
            return [F.getitem(qkv, (Ellipsis, slice(i * E, (i + 1) * E))) for i in range(3)]
        if self.in_proj_weight is not None:
            weights = [F.getitem(self.in_proj_weight, slice(i * E, (i + 1) * E)) for i in range(3)]
        else:
            weights = [self.q_proj_weight, self.k_proj_weight, self.v_proj_weight]
        biases = [None if b is None else F.getitem(b, slice(i * E, (i + 1) * E)) for i in range(3)]
        return [F.linear(x, w, bb) for x, w, bb in zip((q, k, v), weights, biases)]

    def _mask(self, key_padding_mask: Any, attn_mask: Any, is_causal: bool, like: Tensor, shape: tuple) -> Any:
        """Both masks as one additive array broadcasting to (N, num_heads, L, S), or None."""
        N, L, S = shape
        xp, mask = self._backend.xp, None
        if attn_mask is None and is_causal:
            attn_mask = xp.triu(xp.ones((L, S), dtype=bool), 1)
        if attn_mask is not None:
            m = additive_mask(attn_mask, like)
            if m.shape == (L, S):
                mask = m.reshape(1, 1, L, S)
            elif m.shape == (N * self.num_heads, L, S):
                mask = m.reshape(N, self.num_heads, L, S)
            else:
                raise ValueError(f"MultiheadAttention: attn_mask must have shape {(L, S)} or "
                                 f"{(N * self.num_heads, L, S)}, got {m.shape}")  # fmt: skip
        if key_padding_mask is not None:
            m = additive_mask(key_padding_mask, like)
            if m.shape != (N, S):
                raise ValueError(f"MultiheadAttention: key_padding_mask must have shape {(N, S)}, got {m.shape}")
            m = m.reshape(N, 1, 1, S)
            mask = m if mask is None else mask + m
        return mask

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        query: Any,
        key: Any,
        value: Any,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key`` / ``value``; returns ``(attn_output, attn_weights)``."""
        self_attention = query is key and key is value
        q = self._tensor(query)
        k, v = (q, q) if self_attention else (self._tensor(key), self._tensor(value))
        batched = q.ndim == 3
        for name, t, dim in (("query", q, self.embed_dim), ("key", k, self.kdim), ("value", v, self.vdim)):
            if t.ndim != q.ndim or t.ndim not in (2, 3) or t.shape[-1] != dim:
                raise ValueError(f"MultiheadAttention: {name} must have shape (L, N, {dim}) (or batch first, or "
                                 f"unbatched), got {t.shape} with query {q.shape}")  # fmt: skip
        if not batched:
            q, k, v = (F.reshape(t, (1, *t.shape)) for t in (q, k, v))
            if key_padding_mask is not None:
                key_padding_mask = (key_padding_mask.data if isinstance(key_padding_mask, Tensor) else
                                    self._backend.asarray(key_padding_mask)).reshape(1, -1)  # fmt: skip
        elif not self.batch_first:
            q, k, v = (F.transpose(t, (1, 0, 2)) for t in (q, k, v))
        if k.shape[:2] != v.shape[:2] or k.shape[0] != q.shape[0]:
            raise ValueError(f"MultiheadAttention: key and value must share the batch and length, and the batch of "
                             f"query: got query {q.shape}, key {k.shape}, value {v.shape}")  # fmt: skip
        N, L, E = q.shape
        q, k, v = self._project(q, k, v, self_attention)
        mask = self._mask(key_padding_mask, attn_mask, is_causal, q, (N, L, k.shape[1]))
        xp = self._backend.xp
        if self.bias_k is not None:
            zeros = xp.zeros((N, 1, E), dtype=q.dtype)
            k = F.concatenate([k, F.add(self.bias_k, zeros)], axis=1)
            v = F.concatenate([v, F.add(self.bias_v, zeros)], axis=1)
            mask = None if mask is None else xp.concatenate([mask, xp.zeros((*mask.shape[:3], 1), mask.dtype)], -1)
        H, D = self.num_heads, self.head_dim
        q, k, v = (F.transpose(F.reshape(t, (N, t.shape[1], H, D)), (0, 2, 1, 3)) for t in (q, k, v))
        if self.add_zero_attn:
            zeros = xp.zeros((N, H, 1, D), dtype=q.dtype)
            k, v = F.concatenate([k, zeros], axis=2), F.concatenate([v, zeros], axis=2)
            mask = None if mask is None else xp.concatenate([mask, xp.zeros((*mask.shape[:3], 1), mask.dtype)], -1)
        p = self.dropout if self.training else 0.0
        out, weights = attention(q, k, v, mask, p, generator=self._generators.get("generator"))
        out = self.out_proj(F.reshape(F.transpose(out, (0, 2, 1, 3)), (N, L, E)))
        if not batched:
            out = F.reshape(out, (L, E))
        elif not self.batch_first:
            out = F.transpose(out, (1, 0, 2))
        if not need_weights:
            return out, None
        weights = F.mean(weights, axis=1) if average_attn_weights else weights
        return out, (F.reshape(weights, weights.shape[1:]) if not batched else weights)

    def extra_repr(self) -> str:
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s + (", batch_first=True" if self.batch_first else "")


class TransformerEncoderLayer(Module):
    """One transformer encoder block, self-attention then a feed-forward network, with PyTorch's API.

    Post-norm (default): ``x = norm1(x + dropout1(self_attn(x))); x = norm2(x + dropout2(ff(x)))``; pre-norm
    (``norm_first=True``): ``x = x + dropout1(self_attn(norm1(x))); x = x + dropout2(ff(norm2(x)))``, where
    ``ff(x) = linear2(dropout(activation(linear1(x))))``.

    Parameters
    ----------
    d_model : int
        Size of the input and output features.
    nhead : int
        Attention heads.
    dim_feedforward : int, default=2048
    dropout : float, default=0.1
    activation : str or callable, default='relu'
        'relu', 'gelu' or any other name of ``minitrain.backend.ACTIVATIONS`` (fused into ``linear1``), or a
        function or module taking and returning a Tensor (a module-level function, for ``minitrain.save``).
    layer_norm_eps : float, default=1e-5
    batch_first : bool, default=False
        Input and output (N, S, d_model) instead of (S, N, d_model).
    norm_first : bool, default=False
        Pre-norm instead of post-norm.
    bias : bool, default=True
        Biases in the linear layers, the attention and the layer norms.
    dtype : str, default='float32'
    backend : str or Backend, optional

    Attributes
    ----------
    self_attn : MultiheadAttention
    linear1, linear2 : Linear (PyTorch's init)
    norm1, norm2 : LayerNorm
    dropout, dropout1, dropout2 : Dropout

    Notes
    -----
    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)`` takes src (S, N, d_model) (or
    batch first, or unbatched (S, d_model)) and the masks of ``MultiheadAttention.forward`` (``src_mask`` is
    its ``attn_mask``); it returns a Tensor of the shape of ``src``.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> layer = mt.nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True, norm_first=True)
    >>> layer(np.ones((2, 7, 16), dtype=np.float32), is_causal=True).shape
    (2, 7, 16)
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        dtype: str = "float32",
        backend: Any = None,
    ) -> None:
        super().__init__(backend)
        be = self._backend
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, dtype=dtype, backend=be
        )
        self.linear1 = _torch_linear(d_model, dim_feedforward, bias, dtype, be)
        self.dropout = Dropout(dropout, backend=be)
        self.linear2 = _torch_linear(dim_feedforward, d_model, bias, dtype, be)
        self.norm_first = bool(norm_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype, backend=be)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype, backend=be)
        self.dropout1 = Dropout(dropout, backend=be)
        self.dropout2 = Dropout(dropout, backend=be)
        self.batch_first = bool(batch_first)
        if isinstance(activation, str):
            activation = canonical_activation(activation)
        elif not callable(activation):
            raise ValueError(f"TransformerEncoderLayer: activation must be a name or a callable, got {activation!r}")
        self.activation = activation

    def _sa_block(self, x: Tensor, attn_mask: Any, key_padding_mask: Any, is_causal: bool) -> Tensor:
        out = self.self_attn(x, x, x, key_padding_mask, need_weights=False, attn_mask=attn_mask, is_causal=is_causal)
        return self.dropout1(out[0])

    def _ff_block(self, x: Tensor) -> Tensor:
        act = self.activation
        if isinstance(act, str):
            h = F.linear(x, self.linear1.weight, self.linear1.bias, act)
        else:
            h = act(self.linear1(x))
        return self.dropout2(self.linear2(self.dropout(h)))

    def forward(
        self, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None, is_causal: bool = False
    ) -> Tensor:
        """Encode ``src``; returns a Tensor of its shape."""
        x = self.self_attn._tensor(src)
        if self.norm_first:
            x = F.add(x, self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal))
            return F.add(x, self._ff_block(self.norm2(x)))
        x = self.norm1(F.add(x, self._sa_block(x, src_mask, src_key_padding_mask, is_causal)))
        return self.norm2(F.add(x, self._ff_block(x)))

    def extra_repr(self) -> str:
        act = self.activation if isinstance(self.activation, str) else getattr(self.activation, "__name__", "")
        return f"activation={act!r}, norm_first={self.norm_first}" if act else f"norm_first={self.norm_first}"
