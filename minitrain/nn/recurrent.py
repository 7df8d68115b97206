"""Recurrent layers ``LSTM`` and ``GRU`` (PyTorch's API), and ``LastStep`` to use them in ``Sequential``."""

from __future__ import annotations

import math
from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..init import uniform_
from .flat import Parameter
from .module import Module


class _RNNBase(Module):
    """Stacked recurrent layers; subclasses set the number of gates and the op."""

    _gates = 0
    _op = ""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: str = "float32",
        backend: Any = None,
    ) -> None:
        super().__init__(backend)
        name = type(self).__name__
        if min(input_size, hidden_size, num_layers) < 1:
            raise ValueError(
                f"{name} needs positive sizes, got input_size={input_size}, hidden_size={hidden_size}, "
                f"num_layers={num_layers}"
            )
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be a probability in [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional = bool(bidirectional)
        be, rows, bound = self._backend, self._gates * hidden_size, 1.0 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * self._directions
            shapes = {"weight_ih": (rows, width), "weight_hh": (rows, hidden_size)}
            if bias:
                shapes.update(bias_ih=(rows,), bias_hh=(rows,))
            for suffix in _SUFFIXES[: self._directions]:  # PyTorch's order: layer, then direction, then weight
                for key, shape in shapes.items():
                    p = uniform_(Parameter(be.alloc(shape, dtype), backend=be), -bound, bound)
                    setattr(self, f"{key}_l{layer}{suffix}", p)
        if self.dropout and num_layers > 1:  # masks between layers, from a generator of its own
            self.register_generator("generator")

    @property
    def _directions(self) -> int:
        return 2 if self.__dict__.get("bidirectional") else 1

    def _layer(self, layer: int, suffix: str = "") -> tuple[Parameter, ...]:
        """weight_ih, weight_hh, bias_ih, bias_hh (None without bias) of one layer and direction."""
        p = self._parameters
        return tuple(p.get(f"{k}_l{layer}{suffix}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _input(self, x: Any) -> tuple[Tensor, bool]:
        """``x`` as a Tensor of the weights' dtype, and whether it was unbatched (2-D)."""
        dtype = self._parameters["weight_ih_l0"].dtype
        if not isinstance(x, Tensor):
            x = Tensor(x, backend=self._backend, dtype=dtype)
        elif x.dtype != dtype:
            x = F.astype(x, dtype)
        layout = "(batch, seq_len, input_size)" if self.batch_first else "(seq_len, batch, input_size)"
        if x.ndim not in (2, 3):
            raise ValueError(
                f"{type(self).__name__}: input must have 3 dimensions {layout} (or 2 for one unbatched sequence), "
                f"got shape {x.shape}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: input has {x.shape[-1]} features (last axis of {x.shape}), "
                f"expected input_size={self.input_size}"
            )
        if x.ndim == 2:
            return F.reshape(x, (1, *x.shape) if self.batch_first else (x.shape[0], 1, x.shape[1])), True
        return x, False

    def _state(self, h: Any, batch: int, unbatched: bool, what: str) -> list[Tensor | None]:
        """The initial state ``h`` of shape (num_layers * num_directions, batch, hidden_size) split per layer and
        direction (None: zeros)."""
        n = self.num_layers * self._directions
        if h is None:
            return [None] * n
        if not isinstance(h, Tensor):
            h = Tensor(h, backend=self._backend, dtype=self._parameters["weight_ih_l0"].dtype)
        want = (n, self.hidden_size) if unbatched else (n, batch, self.hidden_size)
        if h.shape != want:
            raise ValueError(f"{type(self).__name__}: {what} has shape {h.shape}, expected {want}")
        if unbatched:
            h = F.reshape(h, (n, 1, self.hidden_size))
        return [F.getitem(h, k) for k in range(n)]

    def _reversed(self, x: Tensor) -> Tensor:
        """``x`` with its time axis reversed."""
        flip = slice(None, None, -1)
        return F.getitem(x, (slice(None), flip) if self.batch_first else flip)

    def _run(self, x: Any, states: tuple[Any, ...]) -> tuple[Tensor, list[Tensor]]:
        """Run every layer; returns the last layer's output and the final states stacked over layers (and
        directions)."""
        x, unbatched = self._input(x)
        batch = x.shape[0] if self.batch_first else x.shape[1]
        per_layer = [self._state(s, batch, unbatched, w) for s, w in zip(states, ("h_0", "c_0"))]
        finals: list[list[Tensor]] = [[] for _ in states]
        op, dirs = getattr(F, self._op), self._directions
        spaces = self.__dict__.setdefault("_workspaces", {})  # arrays each layer reuses from step to step
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                x = F.dropout(x, self.dropout, generator=self._generators.get("generator"))
            outputs = []
            for d, suffix in enumerate(_SUFFIXES[:dirs]):
                initial = (s[layer * dirs + d] for s in per_layer)
                seq = self._reversed(x) if d else x
                ws = spaces.setdefault((layer, d), {})
                out, *final = op(seq, *initial, *self._layer(layer, suffix), batch_first=self.batch_first, workspace=ws)
                outputs.append(self._reversed(out) if d else out)
                for acc, f in zip(finals, final):
                    acc.append(f)
            x = outputs[0] if dirs == 1 else F.concatenate(outputs, axis=-1)
        stacked = [F.stack(f) for f in finals]
        if unbatched:
            x = F.reshape(x, x.shape[1:] if self.batch_first else (x.shape[0], x.shape[2]))
            stacked = [F.reshape(s, (self.num_layers * dirs, self.hidden_size)) for s in stacked]
        return x, stacked

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_workspaces"}  # scratch memory, not state

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self._directions == 2:
            s += ", bidirectional=True"
        return s


_SUFFIXES = ("", "_reverse")


_PARAMS_DOC = """
    Parameters
    ----------
    input_size : int
        Features of each time step of the input.
    hidden_size : int
        Features of the hidden state.
    num_layers : int, default=1
        Recurrent layers stacked, each reading the previous one's output.
    bias : bool, default=True
        Learn the biases ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    batch_first : bool, default=False
        Input and output of shape (batch, seq_len, features) instead of (seq_len, batch, features).
    dropout : float, default=0.0
        Dropout on the output of every layer but the last, in training.
    bidirectional : bool, default=False
        Also run every layer backwards in time (weights ``*_l{k}_reverse``) and concatenate both directions'
        outputs on the feature axis: ``output`` has ``2 * hidden_size`` features, and the final states hold
        ``2 * num_layers`` entries, ordered layer 0 forward, layer 0 backward, layer 1 forward, ...
    dtype : str, default='float32'
    backend : str or Backend, optional
"""


class LSTM(_RNNBase):
    __doc__ = (
        """Long short-term memory over sequences, with PyTorch's equations, parameters and return values.

    Each layer computes, for every time step, the gates ``i, f, g, o`` (in this order in the weights):
    ``c' = sigmoid(f) * c + sigmoid(i) * tanh(g)`` and ``h' = sigmoid(o) * tanh(c')``. One layer over the
    whole sequence is one autograd node (see ``minitrain.functional.lstm``). Weights and biases are drawn
    from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
"""
        + _PARAMS_DOC
        + """
    Attributes
    ----------
    weight_ih_l{k} : Parameter of shape (4 * hidden_size, input_size), (4 * hidden_size, num_directions *
        hidden_size) for k > 0
    weight_hh_l{k} : Parameter of shape (4 * hidden_size, hidden_size)
    bias_ih_l{k}, bias_hh_l{k} : Parameter of shape (4 * hidden_size,)
    weight_ih_l{k}_reverse, ... : the same for the backward direction, with ``bidirectional=True``

    Notes
    -----
    ``forward(x, hx=None)`` takes ``x`` of shape (seq_len, batch, input_size) (or batch first, or
    (seq_len, input_size) for one sequence) and ``hx = (h_0, c_0)``, each (num_directions * num_layers, batch,
    hidden_size), zeros by default. It returns ``output, (h_n, c_n)``: ``output`` (seq_len, batch,
    num_directions * hidden_size) holds the last layer's hidden state at every step (both directions
    concatenated), ``h_n`` and ``c_n`` the final states of every layer and direction. In ``Sequential``, follow
    it with ``LastStep()`` to classify sequences.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> lstm = mt.nn.LSTM(3, 8, num_layers=2, batch_first=True)
    >>> output, (h_n, c_n) = lstm(np.ones((4, 10, 3), dtype=np.float32))
    >>> output.shape, h_n.shape, c_n.shape
    ((4, 10, 8), (2, 4, 8), (2, 4, 8))
    >>> net = mt.nn.Sequential(mt.nn.LSTM(3, 8, batch_first=True), mt.nn.LastStep(), mt.nn.Linear(8, 2))
    >>> net(np.ones((4, 10, 3), dtype=np.float32)).shape
    (4, 2)
    """
    )

    _gates, _op = 4, "lstm"

    def forward(self, x: Any, hx: tuple[Any, Any] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run over the sequence ``x``; returns ``output, (h_n, c_n)``."""
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise ValueError(
                "LSTM: hx must be a pair (h_0, c_0) of shape (num_directions * num_layers, batch, hidden_size) each"
            )
        output, (h_n, c_n) = self._run(x, (None, None) if hx is None else tuple(hx))
        return output, (h_n, c_n)


class GRU(_RNNBase):
    __doc__ = (
        """Gated recurrent unit over sequences, with PyTorch's equations, parameters and return values.

    Each layer computes, for every time step, the gates ``r, z`` and the candidate ``n`` (in this order in
    the weights): ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` and ``h' = (1 - z) * n + z * h``. One
    layer over the whole sequence is one autograd node (see ``minitrain.functional.gru``). Weights and
    biases are drawn from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
"""
        + _PARAMS_DOC
        + """
    Attributes
    ----------
    weight_ih_l{k} : Parameter of shape (3 * hidden_size, input_size), (3 * hidden_size, num_directions *
        hidden_size) for k > 0
    weight_hh_l{k} : Parameter of shape (3 * hidden_size, hidden_size)
    bias_ih_l{k}, bias_hh_l{k} : Parameter of shape (3 * hidden_size,)
    weight_ih_l{k}_reverse, ... : the same for the backward direction, with ``bidirectional=True``

    Notes
    -----
    ``forward(x, hx=None)`` takes ``x`` as ``LSTM`` does and ``hx = h_0`` of shape (num_directions *
    num_layers, batch, hidden_size), zeros by default; it returns ``output, h_n`` (shaped as ``LSTM``'s).
    In ``Sequential``, follow it with ``LastStep()`` to classify sequences.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> gru = mt.nn.GRU(3, 8)
    >>> output, h_n = gru(np.ones((10, 4, 3), dtype=np.float32))
    >>> output.shape, h_n.shape
    ((10, 4, 8), (1, 4, 8))
    >>> output, h_n = mt.nn.GRU(3, 8, num_layers=2, bidirectional=True)(np.ones((10, 4, 3), dtype=np.float32))
    >>> output.shape, h_n.shape
    ((10, 4, 16), (4, 4, 8))
    """
    )

    _gates, _op = 3, "gru"

    def forward(self, x: Any, hx: Any = None) -> tuple[Tensor, Tensor]:
        """Run over the sequence ``x``; returns ``output, h_n``."""
        output, (h_n,) = self._run(x, (hx,))
        return output, h_n


class LastStep(Module):
    """The last layer's hidden state at the last time step, to put an ``LSTM`` / ``GRU`` in ``Sequential``.

    Takes what ``LSTM`` or ``GRU`` return, ``(output, h_n)`` or ``(output, (h_n, c_n))``, and returns
    ``h_n[-1]`` of shape (batch, hidden_size), the many-to-one output that Keras' ``return_sequences=False``
    gives. For a bidirectional layer (its ``output`` has twice the features of ``h_n``) it returns the last
    layer's final states of both directions concatenated, ``[h_n[-2], h_n[-1]]`` of shape (batch,
    2 * hidden_size): the forward direction after the last step and the backward direction after the first,
    each having read the whole sequence (Keras' ``Bidirectional(..., merge_mode='concat')``). A plain output
    tensor of shape (seq_len, batch, features), or (batch, seq_len, features) with ``batch_first=True``, gives
    its last time step (for a bidirectional output, its backward half has then seen only that step: pass the
    pair instead).

    Parameters
    ----------
    batch_first : bool, default=False
        Layout of a plain tensor input (ignored for the tuple an ``LSTM`` / ``GRU`` returns).

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> net = mt.nn.Sequential(mt.nn.GRU(3, 8, batch_first=True), mt.nn.LastStep(), mt.nn.Linear(8, 2))
    >>> net(np.ones((4, 10, 3), dtype=np.float32)).shape
    (4, 2)
    >>> bi = mt.nn.Sequential(mt.nn.LSTM(3, 8, bidirectional=True), mt.nn.LastStep(), mt.nn.Linear(16, 2))
    >>> bi(np.ones((10, 4, 3), dtype=np.float32)).shape
    (4, 2)
    """

    def __init__(self, batch_first: bool = False, backend: Any = None) -> None:
        super().__init__(backend)
        self.batch_first = bool(batch_first)

    def forward(self, x: Any) -> Tensor:
        """Select the last time step."""
        if isinstance(x, tuple) and len(x) == 2:
            output, hidden = x[0], (x[1][0] if isinstance(x[1], tuple) else x[1])
            if output.shape[-1] == 2 * hidden.shape[-1]:  # bidirectional: both directions of the last layer
                return F.concatenate([F.getitem(hidden, -2), F.getitem(hidden, -1)], axis=-1)
            return F.getitem(hidden, -1)
        if not isinstance(x, Tensor) or x.ndim < 2:
            raise ValueError(
                f"LastStep expects the (output, hidden) pair of an LSTM/GRU or a sequence tensor, got {x!r:.80}"
            )
        return F.getitem(x, (slice(None), -1) if self.batch_first else -1)

    def extra_repr(self) -> str:
        return "batch_first=True" if self.batch_first else ""
