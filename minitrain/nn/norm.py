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

    Examples
    --------
    >>> import minitrain as mt
    >>> bn = mt.nn.BatchNorm1d(2)
    >>> bn(mt.tensor([[1.0, 10.0], [3.0, 30.0]])).numpy().astype(float).round(3).tolist()
    [[-1.0, -1.0], [1.0, 1.0]]
    >>> bn.state_dict()["running_mean"].astype(float).round(2).tolist()  # momentum 0.1 of the batch mean
    [0.2, 2.0]
    >>> bn.eval()(mt.tensor([[0.2, 2.0]])).numpy().astype(float).round(3).tolist()  # running statistics
    [[0.0, 0.0]]
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

    def forward(self, x: Any) -> Tensor:
        """Normalize with batch statistics (training) or running statistics (eval)."""
        x = self._tensor(x, None if self.weight is None else self.weight.dtype)
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


class LayerNorm(Module):
    """Layer normalization over the trailing ``normalized_shape`` axes of each sample, one fused node.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, with the mean and the (biased) variance taken over the
    last ``len(normalized_shape)`` axes; the same in training and evaluation.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing shape normalized over (an int: the last axis only).
    eps : float, default=1e-5
    elementwise_affine : bool, default=True
        Learn a scale ``weight`` (ones at first) and, with ``bias``, a shift ``bias`` (zeros), each of shape
        ``normalized_shape``.
    bias : bool, default=True
    dtype : str, default='float32'
    backend : str or Backend, optional

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> ln = mt.nn.LayerNorm(4)
    >>> y = ln(np.arange(8, dtype=np.float32).reshape(2, 4))
    >>> y.shape, bool(abs(y.numpy().mean(axis=1)).max() < 1e-6)
    ((2, 4), True)
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: str = "float32",
        backend: Any = None,
    ) -> None:
        super().__init__(backend)
        shape = (int(normalized_shape),) if isinstance(normalized_shape, int) else tuple(map(int, normalized_shape))
        if not shape or min(shape) < 1:
            raise ValueError(f"LayerNorm: normalized_shape must be positive sizes, got {normalized_shape!r}")
        self.normalized_shape, self.eps, self.elementwise_affine = shape, float(eps), bool(elementwise_affine)
        be = self._backend
        affine = self.elementwise_affine
        self.weight = Parameter(be.alloc(shape, dtype, fill=1.0), backend=be) if affine else None
        self.bias = Parameter(be.alloc(shape, dtype), backend=be) if affine and bias else None
        self._dtype = str(dtype)

    def forward(self, x: Any) -> Tensor:
        """Normalize ``x`` of shape (*, *normalized_shape)."""
        if not isinstance(x, Tensor):
            x = Tensor(x, backend=self._backend, dtype=self._dtype)
        elif self.weight is not None and x.dtype != self.weight.dtype:
            x = F.astype(x, self.weight.dtype)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
