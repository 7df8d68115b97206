"""``Dropout``, ``Dropout1d``, ``Dropout2d``: zero activations (or whole channels) at random while training."""

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

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> drop = mt.nn.Dropout(0.5, seed=0)
    >>> y = drop(mt.tensor(np.ones((4, 250), dtype=np.float32))).numpy()
    >>> sorted(np.unique(y).tolist()), bool(0.4 < (y == 0).mean() < 0.6)  # the kept values are scaled by 2
    ([0.0, 2.0], True)
    >>> drop.eval()(mt.tensor([1.0, 2.0])).numpy().tolist()  # identity in eval mode
    [1.0, 2.0]
    """

    def __init__(self, p: float = 0.5, backend: Any = None, seed: int | None = None) -> None:
        super().__init__(backend)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        self.register_generator("generator", seed)

    def forward(self, x: Any) -> Tensor:
        """Apply dropout (training) or pass through (eval)."""
        return F.dropout(self._tensor(x), self.p, self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Channel-wise dropout: in training, zero whole channels of (N, C, H, W) (or (C, H, W)) inputs with
    probability ``p`` and scale the others by 1 / (1 - p); identity in eval mode.

    Neighbouring pixels of a feature map are strongly correlated, so dropping single pixels barely
    regularizes a convolutional network; dropping whole maps does.

    Parameters
    ----------
    p : float, default=0.5
        Probability of zeroing a channel.
    backend : str or Backend, optional
    seed : int, optional
        Seed of this layer's own generator of masks; by default one is drawn from the current stream.

    Notes
    -----
    A 3-D input is one unbatched (C, H, W) sample, as PyTorch documents (PyTorch itself still treats it as
    (N, C, L), with a warning).

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> y = mt.nn.Dropout2d(0.5, seed=0)(np.ones((4, 6, 5, 5), dtype=np.float32)).numpy()
    >>> sorted({float(v) for v in np.unique(y)}), bool((y.std(axis=(2, 3)) == 0).all())
    ([0.0, 2.0], True)
    """

    _spatial = 2

    def forward(self, x: Any) -> Tensor:
        """Drop whole channels (training) or pass through (eval)."""
        if not isinstance(x, Tensor):
            x = Tensor(x, backend=self._backend)
        op = F.dropout2d if self._spatial == 2 else F.dropout1d
        return op(x, self.p, self.training, generator=self.generator)


class Dropout1d(Dropout2d):
    """Channel-wise dropout over (N, C, L) (or (C, L)) inputs: whole channels are zeroed with probability
    ``p`` in training, the others scaled by 1 / (1 - p); identity in eval mode.

    Parameters
    ----------
    p : float, default=0.5
    backend : str or Backend, optional
    seed : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> mt.nn.Dropout1d(0.5)(np.ones((4, 6, 10), dtype=np.float32)).shape
    (4, 6, 10)
    """

    _spatial = 1
