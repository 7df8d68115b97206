"""Adaptive pooling layers: ``AdaptiveAvgPool2d`` (global average pooling with ``output_size=1``) and
``AdaptiveMaxPool2d`` (PyTorch's names and windows)."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..functional.spatial_ops import _output_size
from .module import Module


class _AdaptivePool2d(Module):
    def __init__(self, output_size: int | tuple[int | None, int | None], backend: Any = None) -> None:
        super().__init__(backend)
        _output_size(type(self).__name__, output_size, (1, 1))  # checks it
        self.output_size = tuple(output_size) if isinstance(output_size, (tuple, list)) else output_size

    def _input(self, x: Any) -> Tensor:
        return x if isinstance(x, Tensor) else Tensor(x, backend=self._backend)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """2-D average pooling to a fixed output size, whatever the input size.

    Window ``i`` of an axis of length ``n`` pooled to ``out`` covers ``[floor(i * n / out), ceil((i + 1) * n /
    out))``, as in PyTorch: windows of equal size when ``out`` divides ``n``, overlapping ones otherwise.
    ``AdaptiveAvgPool2d(1)`` is global average pooling (follow it with ``Flatten()``).

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        (H_out, W_out); an int for both; None keeps that input size.
    backend : str or Backend, optional

    Notes
    -----
    ``forward(x)`` takes (N, C, H, W) or (C, H, W) and returns (N, C, H_out, W_out) or (C, H_out, W_out).

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> net = mt.nn.Sequential(mt.nn.AdaptiveAvgPool2d(1), mt.nn.Flatten())
    >>> net(np.ones((2, 8, 7, 5), dtype=np.float32)).shape
    (2, 8)
    >>> mt.nn.AdaptiveAvgPool2d((3, None))(np.ones((2, 8, 7, 5), dtype=np.float32)).shape
    (2, 8, 3, 5)
    """

    def forward(self, x: Any) -> Tensor:
        """Pool ``x`` to ``output_size``."""
        return F.adaptive_avg_pool2d(self._input(x), self.output_size)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """2-D max pooling to a fixed output size, with ``AdaptiveAvgPool2d``'s windows.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
    return_indices : bool, default=False
        Also return where each maximum is (its index in the flattened H * W plane), as PyTorch does.
    backend : str or Backend, optional

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> mt.nn.AdaptiveMaxPool2d((2, 3))(np.ones((2, 8, 7, 5), dtype=np.float32)).shape
    (2, 8, 2, 3)
    """

    def __init__(
        self, output_size: int | tuple[int | None, int | None], return_indices: bool = False, backend: Any = None
    ) -> None:
        super().__init__(output_size, backend)
        self.return_indices = bool(return_indices)

    def forward(self, x: Any) -> Any:
        """Pool ``x`` to ``output_size`` (and return the indices of the maxima if asked)."""
        return F.adaptive_max_pool2d(self._input(x), self.output_size, self.return_indices)
