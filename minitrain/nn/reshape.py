"""``Unflatten`` and ``Reshape``: give flat samples a shape (images, sequences) inside a network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import functional as F
from ..autograd import Tensor
from .module import Module


def _sizes(name: str, sizes: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(s) for s in sizes)
    if not out or sum(s == -1 for s in out) > 1 or any(s < 1 and s != -1 for s in out):
        raise ValueError(f"{name} needs positive sizes (at most one -1), got {tuple(sizes)}")
    return out


class Unflatten(Module):
    """Expand axis ``dim`` into ``unflattened_size`` (PyTorch's ``nn.Unflatten``), the inverse of ``Flatten``.

    Parameters
    ----------
    dim : int
        The axis to expand (negative counts from the end).
    unflattened_size : sequence of int
        The shape it becomes; their product must equal the axis's length (one entry may be -1).

    Notes
    -----
    Shapes: input ``(*, S, *)`` with ``S = prod(unflattened_size)`` at ``dim``; output ``(*, *unflattened_size, *)``.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> mt.nn.Unflatten(1, (1, 8, 8))(np.zeros((5, 64), dtype=np.float32)).shape
    (5, 1, 8, 8)
    """

    def __init__(self, dim: int, unflattened_size: Sequence[int], backend: Any = None) -> None:
        super().__init__(backend)
        self.dim = int(dim)
        self.unflattened_size = _sizes("Unflatten", unflattened_size)

    def forward(self, x: Any) -> Tensor:
        """Expand axis ``dim`` of ``x``."""
        x = x if isinstance(x, Tensor) else Tensor(x, backend=self._backend)
        shape = x.shape
        dim = self.dim % len(shape)
        return F.reshape(x, (*shape[:dim], *self.unflattened_size, *shape[dim + 1 :]))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Reshape(Module):
    """Give every sample the shape ``shape``; the batch axis (the first) stays as it is.

    ``Reshape(1, 8, 8)`` turns flat samples ``(n, 64)`` into images ``(n, 1, 8, 8)`` and leaves samples of that
    shape as they are, so a network starting with it takes both flat and shaped input.

    Parameters
    ----------
    *shape : int
        The shape of one sample (one entry may be -1).

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> layer = mt.nn.Reshape(1, 8, 8)
    >>> layer(np.zeros((5, 64), dtype=np.float32)).shape, layer(np.zeros((5, 1, 8, 8), dtype=np.float32)).shape
    ((5, 1, 8, 8), (5, 1, 8, 8))
    """

    def __init__(self, *shape: int, backend: Any = None) -> None:
        super().__init__(backend)
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        self.shape = _sizes("Reshape", shape)

    def forward(self, x: Any) -> Tensor:
        """Reshape each sample of ``x``."""
        x = x if isinstance(x, Tensor) else Tensor(x, backend=self._backend)
        return F.reshape(x, (x.shape[0], *self.shape))

    def extra_repr(self) -> str:
        return ", ".join(map(str, self.shape))
