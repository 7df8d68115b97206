"""Convolution and pooling layers: ``Conv2d``, ``MaxPool2d``, ``AvgPool2d`` (layout NCHW, PyTorch's names), and
``fused_conv``: Conv2d -> activation (-> MaxPool2d) as one node in ``Sequential``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..backend.base import NEEDS_PREACTIVATION, canonical_activation
from ..functional.conv_ops import _pair, conv2d_act_pool
from ..init import get_initializer, zeros_
from .activation import Activation
from .flat import Parameter
from .module import Module


class Conv2d(Module):
    """2-D convolution over inputs of shape (N, C_in, H, W), one autograd node over the ``conv2d`` kernel.

    Parameters
    ----------
    in_channels, out_channels : int
        C_in and C_out.
    kernel_size : int or (int, int)
        Height and width of the filters.
    stride : int or (int, int), default=1
    padding : int or (int, int), default=0
        Zeros added on both sides of each spatial axis (``padding=k // 2`` keeps H and W for odd k, stride 1).
    bias : bool, default=True
        Learn an additive bias per output channel.
    init : str or callable, default='auto'
        Weight initializer: 'auto' is Glorot uniform (as for a ``Linear`` without a fused activation),
        with fan_in = C_in * kh * kw and fan_out = C_out * kh * kw; or a name from ``minitrain.init``
        (e.g. 'he_uniform' before a ReLU), or a function filling a tensor in place. The bias starts at zero.
    dtype : str, default='float32'
    backend : str or Backend, optional

    Attributes
    ----------
    weight : Parameter of shape (out_channels, in_channels, kh, kw)
    bias : Parameter of shape (out_channels,) or None

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> conv = mt.nn.Conv2d(1, 4, kernel_size=3, padding=1)
    >>> conv(np.zeros((2, 1, 8, 8), dtype=np.float32)).shape
    (2, 4, 8, 8)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        init: str | Callable[[Tensor], Any] = "auto",
        dtype: str = "float32",
        backend: Any = None,
    ) -> None:
        super().__init__(backend)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"Conv2d needs positive channel counts, got in={in_channels}, out={out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = _pair("Conv2d", "stride", stride, 1)
        self.padding = _pair("Conv2d", "padding", padding, 0)
        be = self._backend
        self.weight = Parameter(be.alloc((out_channels, in_channels, *self.kernel_size), dtype), backend=be)
        get_initializer(init, "identity")(self.weight)
        self.bias = zeros_(Parameter(be.alloc((out_channels,), dtype), backend=be)) if bias else None

    def _input(self, x: Any) -> Tensor:
        """``x`` as a Tensor of the weight's dtype, checked to be (N, in_channels, H, W)."""
        if not isinstance(x, Tensor):
            x = Tensor(x, backend=self._backend, dtype=self.weight.dtype)
        elif x.dtype != self.weight.dtype:
            x = F.astype(x, self.weight.dtype)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d({self.in_channels}, {self.out_channels}) expects input of shape "
                f"(N, {self.in_channels}, H, W), got shape {x.shape}"
            )
        return x

    def forward(self, x: Any) -> Tensor:
        """Convolve ``x`` of shape (N, in_channels, H, W); returns (N, out_channels, H_out, W_out)."""
        return F.conv2d(self._input(x), self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        head = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        padding = "" if self.padding == (0, 0) else f", padding={self.padding}"
        return head + padding + ("" if self.bias is not None else ", bias=False")


class _Pool2d(Module):
    _op: Callable[..., Tensor]

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        backend: Any = None,
    ) -> None:
        super().__init__(backend)
        name = type(self).__name__
        _pair(name, "kernel_size", kernel_size, 1)
        if stride is not None:
            _pair(name, "stride", stride, 1)
        _pair(name, "padding", padding, 0)
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = kernel_size if stride is None else stride

    def forward(self, x: Any) -> Tensor:
        """Pool ``x`` of shape (N, C, H, W); returns (N, C, H_out, W_out)."""
        if not isinstance(x, Tensor):
            x = Tensor(x, backend=self._backend)
        return self._op(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """2-D max pooling over inputs of shape (N, C, H, W); padding counts as -inf, like PyTorch.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default=0
        At most half the kernel size.
    backend : str or Backend, optional

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> mt.nn.MaxPool2d(2)(np.zeros((2, 3, 8, 7), dtype=np.float32)).shape
    (2, 3, 4, 3)
    """

    _op = staticmethod(F.max_pool2d)


class AvgPool2d(_Pool2d):
    """2-D average pooling over inputs of shape (N, C, H, W); padded zeros count in the mean, like PyTorch.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default=0
        At most half the kernel size.
    backend : str or Backend, optional

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> mt.nn.AvgPool2d(2, stride=1)(np.ones((1, 2, 3, 3), dtype=np.float32)).shape
    (1, 2, 2, 2)
    """

    _op = staticmethod(F.avg_pool2d)


def fused_conv(mods: list[Module], i: int) -> tuple[Callable[[Any], Tensor], int] | None:
    """``mods[i]`` a ``Conv2d`` followed by an activation module (and a ``MaxPool2d`` with disjoint windows) as one
    step of ``Sequential`` over the ``conv2d_act_pool`` kernel, with the number of modules it covers; else None.

    The step computes what the modules compute in turn (the same values, gradients and errors); where the pooling
    no longer fits its input, or its windows were changed to overlap, it runs the modules one by one.
    """
    conv, act = mods[i], mods[i + 1] if i + 1 < len(mods) else None
    if type(conv) is not Conv2d or not isinstance(act, Activation) or type(act).forward is not Activation.forward:
        return None
    if canonical_activation(act.act_name) in NEEDS_PREACTIVATION:
        return None
    pool = mods[i + 2] if i + 2 < len(mods) and type(mods[i + 2]) is MaxPool2d else None
    if pool is not None and _disjoint(pool) is None:
        pool = None

    def step(x: Any) -> Tensor:
        x = conv._input(x)
        size = (1, 1) if pool is None else _disjoint(pool)
        ho, wo = (
            (n + 2 * p - k) // s + 1 for n, p, k, s in zip(x.shape[2:], conv.padding, conv.kernel_size, conv.stride)
        )
        if size is None or ho < size[0] or wo < size[1]:  # the modules themselves run (and raise)
            y = act(F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding))
            return y if pool is None else pool(y)
        return conv2d_act_pool(x, conv.weight, conv.bias, conv.stride, conv.padding, act.act_name, act.act_alpha, size)

    return step, 2 if pool is None else 3


def _disjoint(pool: MaxPool2d) -> tuple[int, int] | None:
    """The window size of a max pooling whose windows tile its input (stride = size, no padding), else None."""
    size = _pair("MaxPool2d", "kernel_size", pool.kernel_size, 1)
    if _pair("MaxPool2d", "stride", pool.stride, 1) != size or _pair("MaxPool2d", "padding", pool.padding, 0) != (0, 0):
        return None
    return size
