"""Augmentations of any batch: noise, masking, mixup; and of sequences ``(n, T, ...)``: time shifts and masks."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import betaincinv

from ._base import Transform, as_int, check_float, normal, uniform


class GaussianNoise(Transform):
    """Add noise drawn from N(0, ``std``²) to every entry of a floating batch of any shape.

    Parameters
    ----------
    std : float, default=0.1

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((1000, 3), dtype=np.float32)
    >>> out = GaussianNoise(std=0.5)(x, None, np.random.default_rng(0))[0]
    >>> out.dtype, round(float(out.std()), 1)
    (dtype('float32'), 0.5)
    """

    def __init__(self, std: float = 0.1) -> None:
        self.std = std

    def _apply(self, x: Any, y: Any, gen: Any, xp: Any) -> tuple[Any, Any]:
        check_float("GaussianNoise", x)
        if self.std < 0:
            raise ValueError(f"GaussianNoise: std must be >= 0, got {self.std}")
        return x + normal(gen, xp, x.shape, x.dtype) * x.dtype.type(self.std), y


class RandomMasking(Transform):
    """Set each entry of the batch (a feature of a tabular sample, a step's feature of a sequence, a pixel's
    channel) to ``value`` with probability ``p``, independently; unlike dropout, nothing is rescaled.

    Parameters
    ----------
    p : float, default=0.1
    value : float, default=0.0

    Examples
    --------
    >>> import numpy as np
    >>> out = RandomMasking(p=0.5)(np.ones((100, 8)), None, np.random.default_rng(0))[0]
    >>> round(float((out == 0).mean()), 1)
    0.5
    """

    def __init__(self, p: float = 0.1, value: float = 0.0) -> None:
        self.p = p
        self.value = value

    def _apply(self, x: Any, y: Any, gen: Any, xp: Any) -> tuple[Any, Any]:
        mask = xp.asarray(gen.random(x.shape)) < self.p
        return xp.where(mask, x.dtype.type(self.value), x), y


def _steps(name: str, value: Any, length: int) -> int:
    """A number of time steps: an int as it is, a float in [0, 1] as that fraction of ``length``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        steps = int(value)
    elif isinstance(value, float) and 0.0 <= value <= 1.0:
        steps = round(value * length)
    else:
        raise ValueError(f"{name} must be a number of steps (int >= 0) or a fraction in [0, 1], got {value!r}")
    if steps < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return steps


def _check_sequence(name: str, x: Any) -> None:
    if x.ndim < 2:
        raise ValueError(f"{name} expects sequences of shape (n_samples, n_steps, ...), got shape {tuple(x.shape)}")


class TimeShift(Transform):
    """Shift each sequence along its time axis (axis 1) by a random number of steps in ``[-max_shift, max_shift]``.

    Parameters
    ----------
    max_shift : int or float, default=0.1
        Steps, or a fraction in [0, 1] of the sequence's length.
    wrap : bool, default=True
        Steps pushed off one end come back at the other (a roll); False fills the steps left empty with ``fill``.
    fill : float, default=0.0

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(5.0).reshape(1, 5, 1)
    >>> TimeShift(max_shift=2, wrap=False)(x, None, np.random.default_rng(0))[0].ravel().tolist()
    [0.0, 0.0, 1.0, 2.0, 3.0]
    """

    def __init__(self, max_shift: Any = 0.1, wrap: bool = True, fill: float = 0.0) -> None:
        self.max_shift = max_shift
        self.wrap = wrap
        self.fill = fill

    def _apply(self, x: Any, y: Any, gen: Any, xp: Any) -> tuple[Any, Any]:
        _check_sequence("TimeShift", x)
        n, t = x.shape[:2]
        m = _steps("max_shift", self.max_shift, t)
        shift = as_int(xp, uniform(gen, xp, n, -m, m + 1))
        src = xp.arange(t)[None, :] - shift[:, None]  # out[:, s] = x[:, s - shift]
        inside = (src >= 0) & (src < t)
        src = src % t if self.wrap else xp.clip(src, 0, t - 1)
        out = x[xp.arange(n)[:, None], src]
        if self.wrap:
            return out, y
        inside = inside.reshape(n, t, *(1,) * (x.ndim - 2))
        return xp.where(inside, out, x.dtype.type(self.fill)), y


class TimeMask(Transform):
    """Set a random span of consecutive time steps (axis 1) of each sequence to ``value`` (SpecAugment's time
    masking, torchaudio's ``TimeMasking``): its length is drawn from ``[0, max_width]``, its start uniformly.

    Parameters
    ----------
    max_width : int or float, default=0.1
        Steps, or a fraction in [0, 1] of the sequence's length.
    value : float, default=0.0

    Examples
    --------
    >>> import numpy as np
    >>> out = TimeMask(max_width=3)(np.ones((4, 10, 2)), None, np.random.default_rng(0))[0]
    >>> [int((seq[:, 0] == 0).sum()) <= 3 for seq in out]
    [True, True, True, True]
    """

    def __init__(self, max_width: Any = 0.1, value: float = 0.0) -> None:
        self.max_width = max_width
        self.value = value

    def _apply(self, x: Any, y: Any, gen: Any, xp: Any) -> tuple[Any, Any]:
        _check_sequence("TimeMask", x)
        n, t = x.shape[:2]
        m = min(_steps("max_width", self.max_width, t), t)
        width = as_int(xp, uniform(gen, xp, n, 0, m + 1))
        start = as_int(xp, uniform(gen, xp, n, 0, 1) * (t - width + 1))
        steps = xp.arange(t)[None, :]
        mask = (steps >= start[:, None]) & (steps < (start + width)[:, None])
        return xp.where(mask.reshape(n, t, *(1,) * (x.ndim - 2)), x.dtype.type(self.value), x), y


class Mixup(Transform):
    """Blend the batch with a shuffled copy of itself, inputs and targets alike (Zhang et al.'s mixup).

    One weight ``lam ~ Beta(alpha, alpha)`` is drawn per batch (one uniform draw, inverted on the host: the one
    value a batch reads back from the device) and each sample ``i`` becomes
    ``lam * x[i] + (1 - lam) * x[j]`` for a random partner ``j``. Targets are blended the same way: floating
    targets (regression values, one-hot or binary labels) as they are, and class indices of shape (n,) after
    becoming one-hot rows of ``num_classes`` columns, so the batch's targets become class probabilities, which
    ``CrossEntropyLoss`` (and the MLP estimators' softmax loss) accept. The estimators set ``num_classes`` when it
    is None. Sample weights stay with their sample (the first of the pair).

    Parameters
    ----------
    alpha : float, default=0.2
        Concentration of the Beta distribution: small values keep samples close to one of the pair.
    num_classes : int or None, default=None
        Number of classes of class-index targets.

    Examples
    --------
    >>> import numpy as np
    >>> x, y = np.eye(4, dtype=np.float32), np.arange(4)
    >>> xm, ym = Mixup(alpha=1.0, num_classes=4)(x, y, np.random.default_rng(0))
    >>> ym.shape, bool(np.allclose(ym, xm)), bool(np.allclose(ym.sum(1), 1))
    ((4, 4), True, True)
    """

    def __init__(self, alpha: float = 0.2, num_classes: int | None = None) -> None:
        self.alpha = alpha
        self.num_classes = num_classes

    def _apply(self, x: Any, y: Any, gen: Any, xp: Any) -> tuple[Any, Any]:
        check_float("Mixup", x)
        if not self.alpha > 0:
            raise ValueError(f"Mixup: alpha must be > 0, got {self.alpha}")
        lam = float(betaincinv(self.alpha, self.alpha, float(gen.random())))  # Beta(alpha, alpha) by inversion
        partner = xp.argsort(xp.asarray(gen.random(x.shape[0])))
        x = x * x.dtype.type(lam) + x[partner] * x.dtype.type(1.0 - lam)
        if y is None:
            return x, y
        if np.dtype(y.dtype).kind in "iu":
            if y.ndim != 1 or self.num_classes is None:
                raise ValueError(
                    "Mixup blends class-index targets as one-hot rows: they must have shape (n_samples,) and "
                    f"num_classes must be set (got shape {tuple(y.shape)}, num_classes={self.num_classes})"
                )
            y = xp.eye(int(self.num_classes), dtype=x.dtype)[y]
        return x, y * y.dtype.type(lam) + y[partner] * y.dtype.type(1.0 - lam)
