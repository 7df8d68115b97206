"""Parity cases of the convolution and pooling kernels: ``PARITY[kernel]`` is a function of one ``Ctx``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import product
from typing import Any

import numpy as np

from ..backend import geometry2d
from ._ctx import LAYOUTS, Ctx

#: Convolutions: (n, c, h, w), (out_channels, kh, kw), stride, padding; odd sizes, an empty batch,
#: a kernel as large as the padded input, 1x1 kernels with strides, more padding than kernel, windows in padding.
_CONVS = (
    ((2, 3, 7, 5), (4, 3, 2), (2, 1), (1, 0)),
    ((3, 2, 6, 6), (5, 3, 3), 1, 1),
    ((1, 1, 5, 5), (2, 5, 5), 1, 0),
    ((2, 3, 9, 11), (2, 1, 1), (3, 2), 0),
    ((0, 2, 6, 6), (3, 3, 3), 1, 1),
    ((2, 2, 4, 7), (3, 2, 3), (2, 3), (2, 1)),
    ((1, 2, 2, 5), (3, 1, 2), (10, 3), (3, 0)),
)
#: Poolings: (n, c, h, w), kernel_size, stride, padding; disjoint, overlapping, padded, more than 128 offsets.
_POOLS = (
    ((2, 3, 7, 5), 2, 2, 0),
    ((2, 3, 7, 5), 3, 2, 1),
    ((2, 2, 9, 8), (3, 2), (1, 2), (1, 1)),
    ((1, 1, 4, 4), 4, 4, 2),
    ((0, 2, 4, 4), 2, 2, 0),
    ((3, 2, 6, 6), 3, 1, 1),
    ((1, 2, 12, 13), 12, 1, 0),
)
#: Pooling inputs: random, many ties (integers), all negative (padding must not win a max).
_DATA = ("random", "ties", "negative")


def _pool_input(c: Ctx, shape: tuple[int, ...], data: str) -> np.ndarray:
    x = c.randn(*shape, scale=2.0)
    if data == "ties":
        return np.round(x)
    return -np.abs(x) - np.dtype(c.dt).type(1.0) if data == "negative" else x


def _pool_kw(kernel: object, stride: object, padding: object) -> dict[str, object]:
    return {"kernel_size": kernel, "stride": stride, "padding": padding}


def _conv2d(c: Ctx) -> None:
    for ((n, ch, h, w), (o, kh, kw), stride, padding), bias in product(_CONVS, (True, False)):
        args = [c.randn(n, ch, h, w), c.randn(o, ch, kh, kw), c.randn(o) if bias else None]
        label = f"x={(n, ch, h, w)} weight={(o, ch, kh, kw)} stride={stride} padding={padding} bias={bias}"
        c.run("conv2d", label, args, {"stride": stride, "padding": padding}, names=("y",))


def _conv2d_backward(c: Ctx) -> None:
    for ((n, ch, h, w), (o, kh, kw), stride, padding), need in product(_CONVS, (True, False)):
        x, weight = c.randn(n, ch, h, w), c.randn(o, ch, kh, kw)
        grad = c.randn(*c.ref.conv2d(x, weight, None, stride=stride, padding=padding).shape)
        kw_ = {"stride": stride, "padding": padding, "need_input_grad": need}
        label = f"x={(n, ch, h, w)} weight={(o, ch, kh, kw)} stride={stride} padding={padding} need_input_grad={need}"
        c.run("conv2d_backward", label, [grad, x, weight], kw_, names=("dx", "dweight", "dbias"))


def _maxpool2d(c: Ctx) -> None:
    for (shape, kernel, stride, padding), data, layout in product(_POOLS, _DATA, LAYOUTS):
        label = f"{shape} kernel_size={kernel} stride={stride} padding={padding} {data}"
        kw = _pool_kw(kernel, stride, padding)
        res = c.run("maxpool2d", label, [_pool_input(c, shape, data)], kw, layouts=[layout], names=("y",))
        if res is not None:
            (_, argmax), (_, want) = res
            with c.check(f"maxpool2d {label} {layout}: argmax (i * kw + j of the first max in each window)"):
                c.close("argmax", argmax, want, exact=True, dtype=str(want.dtype))


def _maxpool2d_backward(c: Ctx) -> None:
    for (shape, kernel, stride, padding), data in product(_POOLS, _DATA):
        kw = _pool_kw(kernel, stride, padding)
        y, argmax = c.ref.maxpool2d(_pool_input(c, shape, data), **kw)
        label = f"{shape} kernel_size={kernel} stride={stride} padding={padding} {data}"
        c.run("maxpool2d_backward", label, [c.randn(*y.shape), argmax, shape], kw, names=("dx",))


def _avgpool2d(c: Ctx) -> None:
    for shape, kernel, stride, padding in _POOLS:
        label = f"{shape} kernel_size={kernel} stride={stride} padding={padding}"
        c.run("avgpool2d", label, [c.randn(*shape)], _pool_kw(kernel, stride, padding), names=("y",))


def _avgpool2d_backward(c: Ctx) -> None:
    for shape, kernel, stride, padding in _POOLS:
        kw = _pool_kw(kernel, stride, padding)
        grad = c.randn(*c.ref.avgpool2d(c.randn(*shape), **kw).shape)
        label = f"{shape} kernel_size={kernel} stride={stride} padding={padding}"
        c.run("avgpool2d_backward", label, [grad, shape], kw, names=("dx",))


#: Conv -> activation -> pool blocks: activations (each whose backward reads its output) and pool sizes.
_BLOCK_ACTS = ("relu", "identity", "leaky_relu", "sigmoid")
_BLOCK_POOLS = ((2, 2), (1, 1), (3, 2))


def _blocks(c: Ctx) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, Any], str]]:
    """``(x, weight, kwargs, label)`` of every conv of ``_CONVS`` with every activation and pool that fits it."""
    for ((n, ch, h, w), (o, kh, kw), stride, padding), act, pool in product(_CONVS, _BLOCK_ACTS, _BLOCK_POOLS):
        g = geometry2d((n, ch, h, w), (kh, kw), stride, padding)
        if g.ho >= pool[0] and g.wo >= pool[1]:
            kw_ = {"stride": stride, "padding": padding, "activation": act, "pool": pool}
            yield c.randn(n, ch, h, w), c.randn(o, ch, kh, kw), kw_, f"x={(n, ch, h, w)} weight={(o, ch, kh, kw)} {kw_}"


def _conv2d_act_pool(c: Ctx) -> None:
    for (x, weight, kw, label), bias in product(_blocks(c), (True, False)):
        args = [x, weight, c.randn(weight.shape[0]) if bias else None]
        res = c.run("conv2d_act_pool", label + f" bias={bias}", args, kw, names=("y",))
        if res is not None and kw["activation"] != "sigmoid":  # a saturated sigmoid ties where rounding differs
            (_, argmax), (_, want) = res
            with c.check(f"conv2d_act_pool {label}: argmax (i * kw + j of the first max in each window)"):
                if want is None:
                    assert argmax is None, f"expected no argmax without pooling, got {type(argmax).__name__}"
                else:
                    c.close("argmax", argmax, want, exact=True, dtype=str(want.dtype))


def _conv2d_act_pool_backward(c: Ctx) -> None:
    for (x, weight, kw, label), need in product(_blocks(c), (True, False)):
        y, argmax = c.ref.conv2d_act_pool(x, weight, c.randn(weight.shape[0]), **kw)
        args = [c.randn(*y.shape), x, weight, y, argmax]
        kw = {**kw, "need_input_grad": need}
        c.run("conv2d_act_pool_backward", f"{label} need_input_grad={need}", args, kw, names=("dx", "dweight", "dbias"))


PARITY: dict[str, Callable[[Ctx], None]] = {
    "conv2d": _conv2d,
    "conv2d_backward": _conv2d_backward,
    "maxpool2d": _maxpool2d,
    "maxpool2d_backward": _maxpool2d_backward,
    "avgpool2d": _avgpool2d,
    "avgpool2d_backward": _avgpool2d_backward,
    "conv2d_act_pool": _conv2d_act_pool,
    "conv2d_act_pool_backward": _conv2d_act_pool_backward,
}
