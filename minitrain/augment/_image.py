"""Image augmentations on batches ``(n, C, H, W)``: flips, crops, rotations and translations, erasing."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._base import Transform, as_int, bernoulli, check_float, uniform

_LAYOUT = "(n_samples, channels, height, width)"


def _range(name: str, value: Any) -> tuple[float, float]:
    """``(-v, v)`` for a number ``v >= 0``, a pair as it is."""
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0 when it is a single number, got {value}")
        return -float(value), float(value)
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"{name} must be (min, max) with min <= max, got {value}")
    return low, high


def _pair(name: str, value: Any) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or any(int(v) < 0 for v in pair):
        raise ValueError(f"{name} must be a non-negative int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def gather(xp: Any, x: Any, rows: Any, cols: Any, fill: float) -> Any:
    """``out[i, c, r, s] = x[i, c, rows[i, r, s], cols[i, r, s]]`` (integer arrays broadcast to (n, h, w)), ``fill``
    where a position lies outside the image."""
    n, c, h, w = x.shape
    rows, cols = xp.broadcast_arrays(rows, cols)
    oh, ow = rows.shape[1:]
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    flat = (xp.clip(rows, 0, h - 1) * w + xp.clip(cols, 0, w - 1)).reshape(n, 1, oh * ow)
    out = x.reshape(n, c, h * w)[xp.arange(n)[:, None, None], xp.arange(c)[None, :, None], flat]
    out = out.reshape(n, c, oh, ow)
    return xp.where(inside[:, None], out, x.dtype.type(fill))


def warp(xp: Any, x: Any, angle: Any, shift_y: Any, shift_x: Any, fill: float) -> Any:
    """Rotate each image of ``x`` by ``angle`` radians (counter-clockwise, about its centre) and move it by
    ``(shift_y, shift_x)`` pixels (down, right), with bilinear sampling; ``fill`` outside the source image."""
    h, w = x.shape[2:]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    dy = xp.arange(h, dtype=np.float64)[None, :, None] - cy - shift_y[:, None, None]
    dx = xp.arange(w, dtype=np.float64)[None, None, :] - cx - shift_x[:, None, None]
    cos, sin = xp.cos(angle)[:, None, None], xp.sin(angle)[:, None, None]
    sx, sy = cos * dx - sin * dy + cx, sin * dx + cos * dy + cy  # the source of each output pixel
    x0, y0 = xp.floor(sx), xp.floor(sy)
    fx, fy = sx - x0, sy - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    out = None
    for rows, wy in ((y0, 1.0 - fy), (y0 + 1, fy)):
        for cols, wx in ((x0, 1.0 - fx), (x0 + 1, fx)):
            term = gather(xp, x, rows, cols, fill) * (wy * wx).astype(x.dtype)[:, None]
            out = term if out is None else out + term
    return out


def erase(xp: Any, x: Any, top: Any, left: Any, height: Any, width: Any, apply: Any, value: float) -> Any:
    """``x`` with the rectangle ``[top, top + height) x [left, left + width)`` of each sample (where ``apply``) set
    to ``value``; the bounds are integer arrays of shape (n,)."""
    h, w = x.shape[2:]
    r, s = xp.arange(h)[None, :], xp.arange(w)[None, :]
    in_rows = (r >= top[:, None]) & (r < (top + height)[:, None])
    in_cols = (s >= left[:, None]) & (s < (left + width)[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return xp.where(mask[:, None], x.dtype.type(value), x)


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p`` (torchvision's name).

    Parameters
    ----------
    p : float, default=0.5

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(4.0).reshape(1, 1, 2, 2)
    >>> RandomHorizontalFlip(p=1.0)(x, None, np.random.default_rng(0))[0][0, 0].tolist()
    [[1.0, 0.0], [3.0, 2.0]]
    """

    _axis = -1

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def _apply(self, x: Any, y: Any, gen: Any, xp: Any) -> tuple[Any, Any]:
        check_float(type(self).__name__, x, (4,), _LAYOUT)
        flip = bernoulli(gen, xp, x.shape[0], self.p)
        return xp.where(flip[:, None, None, None], xp.flip(x, axis=self._axis), x), y


class RandomVerticalFlip(RandomHorizontalFlip):
    """Mirror each image upside down with probability ``p`` (torchvision's name).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(4.0).reshape(1, 1, 2, 2)
    >>> RandomVerticalFlip(p=1.0)(x, None, np.random.default_rng(0))[0][0, 0].tolist()
    [[2.0, 3.0], [0.0, 1.0]]
    """

    _axis = -2


class RandomCrop(Transform):
    """Pad each image by ``padding`` pixels of ``fill`` on every side, then cut a ``size`` window at a random place
    (torchvision's ``RandomCrop(size, padding)``; ``RandomCrop(32, padding=4)`` is the CIFAR recipe).

    Parameters
    ----------
    size : int, (height, width) or None, default=None
        Size of the crop; None keeps the image's size (a random shift of up to ``padding`` pixels).
    padding : int or (pad_height, pad_width), default=0
    fill : float, default=0.0

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((2, 3, 8, 8), dtype=np.float32)
    >>> RandomCrop(6, padding=1)(x, None, np.random.default_rng(0))[0].shape
    (2, 3, 6, 6)
    """

    def __init__(self, size: Any = None, padding: Any = 0, fill: float = 0.0) -> None:
        self.size = size
        self.padding = padding
        self.fill = fill

    def _apply(self, x: Any, y: Any, gen: Any, xp: Any) -> tuple[Any, Any]:
        check_float("RandomCrop", x, (4,), _LAYOUT)
        n, _, h, w = x.shape
        ph, pw = _pair("padding", self.padding)
        oh, ow = (h, w) if self.size is None else _pair("size", self.size)
        if not (0 < oh <= h + 2 * ph and 0 < ow <= w + 2 * pw):
            raise ValueError(f"RandomCrop: size {(oh, ow)} does not fit images of {(h, w)} padded by {(ph, pw)}")
        top = as_int(xp, uniform(gen, xp, n, 0, h + 2 * ph - oh + 1)) - ph
        left = as_int(xp, uniform(gen, xp, n, 0, w + 2 * pw - ow + 1)) - pw
        rows = top[:, None, None] + xp.arange(oh)[None, :, None]
        cols = left[:, None, None] + xp.arange(ow)[None, None, :]
        return gather(xp, x, rows, cols, self.fill), y


class RandomAffine(Transform):
    """Rotate each image by a random angle and move it by a random whole number of pixels, with bilinear sampling
    (torchvision's ``RandomAffine(degrees, translate)`` without scale and shear).

    Parameters
    ----------
    degrees : float or (min, max), default=0.0
        Angles in degrees, drawn uniformly from ``(-degrees, degrees)`` or ``(min, max)``; positive turns
        counter-clockwise.
    translate : (a, b) or None, default=None
        Largest shifts as fractions of the width and the height: the horizontal shift is drawn from
        ``(-a * width, a * width)`` and the vertical one from ``(-b * height, b * height)``, then rounded to pixels.
    fill : float, default=0.0
        Value of the pixels the image leaves.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> RandomAffine(degrees=(90, 90))(x, None, np.random.default_rng(0))[0][0, 0].round(6).tolist()
    [[2.0, 5.0, 8.0], [1.0, 4.0, 7.0], [0.0, 3.0, 6.0]]
    """

    def __init__(self, degrees: Any = 0.0, translate: Any = None, fill: float = 0.0) -> None:
        self.degrees = degrees
        self.translate = translate
        self.fill = fill

    def _apply(self, x: Any, y: Any, gen: Any, xp: Any) -> tuple[Any, Any]:
        check_float(type(self).__name__, x, (4,), _LAYOUT)
        n, _, h, w = x.shape
        low, high = _range("degrees", self.degrees)
        angle = uniform(gen, xp, n, low, high) * (math.pi / 180.0)
        shift_y = shift_x = xp.zeros(n)
        if self.translate is not None:
            a, b = (float(v) for v in self.translate)
            if not (0.0 <= a <= 1.0 and 0.0 <= b <= 1.0):
                raise ValueError(f"translate must hold two fractions in [0, 1], got {self.translate!r}")
            shift_x = xp.round(uniform(gen, xp, n, -a * w, a * w))
            shift_y = xp.round(uniform(gen, xp, n, -b * h, b * h))
        return warp(xp, x, angle, shift_y, shift_x, self.fill), y


class RandomRotation(RandomAffine):
    """Rotate each image by a random angle about its centre, with bilinear sampling (torchvision's name).

    Parameters
    ----------
    degrees : float or (min, max)
        Drawn uniformly from ``(-degrees, degrees)`` or ``(min, max)``; positive turns counter-clockwise.
    fill : float, default=0.0

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((4, 1, 8, 8), dtype=np.float32)
    >>> RandomRotation(10)(x, None, np.random.default_rng(0))[0].shape
    (4, 1, 8, 8)
    """

    def __init__(self, degrees: Any = 10.0, fill: float = 0.0) -> None:
        super().__init__(degrees=degrees, fill=fill)


class RandomTranslation(RandomAffine):
    """Move each image by a random whole number of pixels (Keras' ``RandomTranslation``).

    Parameters
    ----------
    translate : (a, b), default=(0.1, 0.1)
        Largest shifts as fractions of the width and the height (see :class:`RandomAffine`).
    fill : float, default=0.0

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((4, 1, 8, 8), dtype=np.float32)
    >>> RandomTranslation((0.25, 0.25))(x, None, np.random.default_rng(0))[0].shape
    (4, 1, 8, 8)
    """

    def __init__(self, translate: Any = (0.1, 0.1), fill: float = 0.0) -> None:
        super().__init__(translate=translate, fill=fill)


class RandomErasing(Transform):
    """With probability ``p``, set a random rectangle of each image to ``value`` (torchvision's ``RandomErasing``).

    The rectangle covers a fraction of the image drawn from ``scale``, with an aspect ratio (height / width)
    drawn log-uniformly from ``ratio``; where it would not fit it is clipped to the image (torchvision draws again).

    Parameters
    ----------
    p : float, default=0.5
    scale : (min, max), default=(0.02, 0.33)
    ratio : (min, max), default=(0.3, 3.3)
    value : float, default=0.0

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((2, 1, 8, 8), dtype=np.float32)
    >>> bool((RandomErasing(p=1.0)(x, None, np.random.default_rng(0))[0] == 0).any())
    True
    """

    def __init__(self, p: float = 0.5, scale: Any = (0.02, 0.33), ratio: Any = (0.3, 3.3), value: float = 0.0) -> None:
        self.p = p
        self.scale = scale
        self.ratio = ratio
        self.value = value

    def _apply(self, x: Any, y: Any, gen: Any, xp: Any) -> tuple[Any, Any]:
        check_float("RandomErasing", x, (4,), _LAYOUT)
        n, _, h, w = x.shape
        area = uniform(gen, xp, n, *_range("scale", self.scale)) * (h * w)
        lo, hi = _range("ratio", self.ratio)
        ratio = xp.exp(uniform(gen, xp, n, math.log(lo), math.log(hi)))
        eh = xp.clip(xp.round(xp.sqrt(area * ratio)), 1, h).astype(np.int64)
        ew = xp.clip(xp.round(xp.sqrt(area / ratio)), 1, w).astype(np.int64)
        top = as_int(xp, uniform(gen, xp, n, 0, 1) * (h - eh + 1))
        left = as_int(xp, uniform(gen, xp, n, 0, 1) * (w - ew + 1))
        apply = bernoulli(gen, xp, n, self.p)
        return erase(xp, x, top, left, eh, ew, apply, self.value), y


class Cutout(Transform):
    """With probability ``p``, set a ``size`` x ``size`` square of each image, centred on a random pixel, to
    ``value`` (DeVries & Taylor's Cutout; the square may reach past the border).

    Parameters
    ----------
    size : int, default=8
    p : float, default=1.0
    value : float, default=0.0

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((3, 1, 8, 8), dtype=np.float32)
    >>> out = Cutout(size=2)(x, None, np.random.default_rng(0))[0]
    >>> [int((img == 0).sum()) <= 4 for img in out]
    [True, True, True]
    """

    def __init__(self, size: int = 8, p: float = 1.0, value: float = 0.0) -> None:
        self.size = size
        self.p = p
        self.value = value

    def _apply(self, x: Any, y: Any, gen: Any, xp: Any) -> tuple[Any, Any]:
        check_float("Cutout", x, (4,), _LAYOUT)
        n, _, h, w = x.shape
        size = int(self.size)
        top = as_int(xp, uniform(gen, xp, n, 0, h)) - size // 2
        left = as_int(xp, uniform(gen, xp, n, 0, w)) - size // 2
        side = xp.full(n, size, dtype=np.int64)
        return erase(xp, x, top, left, side, side, bernoulli(gen, xp, n, self.p), self.value), y
