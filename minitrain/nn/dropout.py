"""``Dropout``: zero activations at random while training."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from .module import Module


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the rest.

    Parameters
    ----------
    p : float, default=0.5
        Probability of zeroing an element; identity in eval mode.
    backend : str or Backend, optional
    seed : int, optional
        Seed of this layer's own generator of masks (``self.generator``); by default one is drawn from the
        current stream (see :mod:`minitrain.random`).
    """

    def __init__(self, p: float = 0.5, backend: Any = None, seed: int | None = None) -> None:
        super().__init__(backend)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        self.register_generator("generator", seed)

    def forward(self, x: Tensor) -> Tensor:
        """Apply dropout (training) or pass through (eval)."""
        return F.dropout(x, self.p, self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"
