"""What every augmentation shares: the ``Transform`` protocol, ``Compose``, the generator an estimator owns."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from .. import nn


def namespace(x: Any) -> Any:
    """The array module of ``x``: ``numpy`` for NumPy arrays, the top module of the library an array comes from
    (``cupy`` for CuPy arrays), else the array API namespace it declares."""
    if isinstance(x, np.ndarray):
        return np
    module = sys.modules.get(type(x).__module__.partition(".")[0])
    if module is not None and hasattr(module, "asarray") and hasattr(module, "where"):
        return module
    return x.__array_namespace__()


def uniform(gen: Any, xp: Any, size: Any, low: float, high: float) -> Any:
    """Float64 draws in ``[low, high)`` from ``gen`` as an array of ``xp``."""
    return xp.asarray(gen.random(size)) * (high - low) + low


def bernoulli(gen: Any, xp: Any, n: int, p: float) -> Any:
    """``n`` booleans, each True with probability ``p``."""
    return xp.asarray(gen.random(n)) < p


def normal(gen: Any, xp: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """Standard normal draws of ``shape`` in ``dtype``."""
    return xp.asarray(gen.normal(0.0, 1.0, shape)).astype(dtype, copy=False)


def as_int(xp: Any, a: Any) -> Any:
    """``a`` (float draws) rounded down to integers."""
    return xp.floor(a).astype(np.int64)


def check_float(name: str, x: Any, ndims: Sequence[int] | None = None, layout: str = "") -> None:
    """Raise a clear error when ``x`` is not a floating batch with one of ``ndims`` dimensions."""
    if ndims is not None and x.ndim not in ndims:
        raise ValueError(f"{name} expects batches of shape {layout}, got shape {tuple(x.shape)}")
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"{name} works on floating input, got {x.dtype}; integer token ids cannot be augmented so")


class Transform(BaseEstimator):
    """Base class of the augmentations: ``transform(x, y, generator) -> (x, y)`` on one training batch.

    ``x`` and ``y`` are arrays of one backend (``y`` may be None); ``generator`` is a random generator of that
    backend (``Backend.generator``), or None for a fresh one. A transform draws every random number from
    ``generator`` (with the methods every backend's generator has: ``random``, ``uniform``, ``normal``), works with
    array operations over the whole batch, never changes its inputs in place, and returns new arrays. Its settings
    are scikit-learn parameters (``get_params`` / ``set_params`` / ``clone``), so an estimator's ``augment`` can be
    tuned by a grid search. A subclass stores its parameters in ``__init__`` and implements
    ``_apply(x, y, generator, xp) -> (x, y)``, ``xp`` being the array module of ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> class Scale(Transform):
    ...     def __init__(self, factor=2.0):
    ...         self.factor = factor
    ...     def _apply(self, x, y, gen, xp):
    ...         return x * self.factor, y
    >>> Scale(3.0)(np.ones((2, 2)))[0].tolist(), Scale().get_params()
    ([[3.0, 3.0], [3.0, 3.0]], {'factor': 2.0})
    """

    def __call__(self, x: Any, y: Any = None, generator: Any = None) -> tuple[Any, Any]:
        gen = np.random.default_rng() if generator is None else generator
        if x.shape[0] == 0:
            return x, y
        return self._apply(x, y, gen, namespace(x))

    def _apply(self, x: Any, y: Any, gen: Any, xp: Any) -> tuple[Any, Any]:
        """The transform itself, on a non-empty batch; every subclass implements it."""
        raise NotImplementedError(f"{type(self).__name__} must implement _apply(x, y, gen, xp)")


class Compose(Transform):
    """Apply ``transforms`` one after the other (torchvision's ``Compose``), each drawing from the same generator.

    Parameters
    ----------
    transforms : list of callables ``(x, y, generator) -> (x, y)``

    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import augment
    >>> aug = augment.Compose([augment.RandomHorizontalFlip(p=1.0), augment.GaussianNoise(std=0.0)])
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4)
    >>> aug(x, None, np.random.default_rng(0))[0][0, 0].tolist()
    [[3.0, 2.0, 1.0, 0.0], [7.0, 6.0, 5.0, 4.0]]
    """

    def __init__(self, transforms: Sequence[Any] = ()) -> None:
        self.transforms = transforms

    def __call__(self, x: Any, y: Any = None, generator: Any = None) -> tuple[Any, Any]:
        gen = np.random.default_rng() if generator is None else generator
        for t in self.transforms:
            x, y = t(x, y, gen)
        return x, y


def as_transform(spec: Any, **defaults: Any) -> Any:
    """The augmentation an estimator applies: None, or a fresh copy of ``spec`` (a transform, a callable or a list
    of them, which becomes a :class:`Compose`) whose parameters named in ``defaults`` are set where they are None.

    Examples
    --------
    >>> from minitrain import augment
    >>> aug = augment.as_transform([augment.Mixup(alpha=0.4)], num_classes=3)
    >>> aug.transforms[0].num_classes, augment.as_transform(None)
    (3, None)
    """
    if spec is None:
        return None
    if isinstance(spec, (list, tuple)):
        return Compose([as_transform(t, **defaults) for t in spec])
    if not callable(spec):
        raise TypeError(
            f"augment must be a transform of minitrain.augment, a callable (x, y, generator) -> (x, y), a list of "
            f"them or None, got {spec!r}"
        )
    if not isinstance(spec, BaseEstimator):
        return spec
    out = clone(spec)
    if isinstance(out, Compose):
        out.transforms = [as_transform(t, **defaults) for t in out.transforms]
    params = out.get_params(deep=False)
    out.set_params(**{k: v for k, v in defaults.items() if k in params and params[k] is None})
    return out


class RandomSource(nn.Module):
    """The generator an estimator's augmentation draws from: a module, so that it moves between backends, pickles
    and saves like the network's own generators and a continued fit (``partial_fit``, warm start) continues its
    stream.

    Parameters
    ----------
    seed : int, optional
        None draws one from the current stream (see :mod:`minitrain.random`).

    Examples
    --------
    >>> a, b = RandomSource(0, backend="numpy"), RandomSource(0, backend="numpy")
    >>> bool(a.generator.random() == b.generator.random())
    True
    """

    def __init__(self, seed: int | None = None, backend: Any = None) -> None:
        super().__init__(backend)
        self.register_generator("generator", seed)
