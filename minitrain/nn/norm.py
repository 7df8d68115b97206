"""Batch normalization layers."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from .flat import Parameter
from .module import Module


class BatchNorm1d(Module):
    """Batch normalization over inputs of shape (N, C) or (N, C, L).

    Parameters
    ----------
    num_features : int
        C, the number of channels.
    eps : float, default=1e-5
    momentum : float, default=0.1
        Weight of the batch statistics in the running averages.
    affine : bool, default=True
        Learn a per-channel scale and shift.
    track_running_stats : bool, default=True
        Keep running mean/variance for eval mode (else batch statistics are always used).
    dtype : str, default='float32'
    backend : str or Backend, optional
    """

    _expected_ndim = (2, 3)

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: str = "float32",
        backend: Any = None,
    ) -> None:
        super().__init__(backend)
        be = self._backend
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(be.alloc((num_features,), dtype, fill=1.0), backend=be) if affine else None
        self.bias = Parameter(be.alloc((num_features,), dtype), backend=be) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", be.alloc((num_features,), dtype))
            self.register_buffer("running_var", be.alloc((num_features,), dtype, fill=1.0))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def forward(self, x: Tensor) -> Tensor:
        """Normalize with batch statistics (training) or running statistics (eval)."""
        if x.ndim not in self._expected_ndim or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expects input of {self._expected_ndim} dims "
                f"with {self.num_features} channels on axis 1, got shape {x.shape}"
            )
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=self.training,
            momentum=self.momentum,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm2d(BatchNorm1d):
    """Batch normalization over inputs of shape (N, C, H, W): statistics per channel over N, H and W.

    Parameters
    ----------
    num_features : int
        C, the number of channels.
    eps : float, default=1e-5
    momentum : float, default=0.1
        Weight of the batch statistics in the running averages.
    affine : bool, default=True
        Learn a per-channel scale and shift.
    track_running_stats : bool, default=True
        Keep running mean/variance for eval mode (else batch statistics are always used).
    dtype : str, default='float32'
    backend : str or Backend, optional

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> bn = mt.nn.BatchNorm2d(3)
    >>> y = bn(mt.tensor(np.random.default_rng(0).normal(size=(4, 3, 5, 5)), dtype="float32"))
    >>> y.shape, bool(abs(y.numpy().mean(axis=(0, 2, 3))).max() < 1e-5)
    ((4, 3, 5, 5), True)
    """

    _expected_ndim = (4,)
