"""Weight initialization, in place (PyTorch's names).

Glorot/Xavier, He/Kaiming, LeCun, orthogonal, constants. Values are drawn on the host in float64 from
``generator`` (a NumPy ``Generator``), by default the current stream of :mod:`minitrain.random`, and cast: a
seed gives the same weights on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import random
from .autograd import Tensor


def _fans(t: Tensor) -> tuple[int, int]:
    shape = t.shape
    if len(shape) < 2:
        raise ValueError(f"fan in/out need a tensor with at least 2 dimensions, got shape {shape}")
    receptive = 1
    for d in shape[2:]:
        receptive *= d
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table).

    Parameters
    ----------
    nonlinearity : str
        'linear', 'identity', 'sigmoid', 'logistic', 'conv1d', 'conv2d', 'tanh', 'relu', 'elu', 'gelu',
        'gelu_tanh', 'softplus', 'leaky_relu' or 'selu'.
    param : float, optional
        The negative slope of 'leaky_relu' (default 0.01).

    Returns
    -------
    float

    Examples
    --------
    >>> from minitrain import init
    >>> round(init.calculate_gain("tanh"), 4), round(init.calculate_gain("relu"), 4)
    (1.6667, 1.4142)
    >>> round(init.calculate_gain("leaky_relu", 0.2), 4)
    1.3868
    """
    if nonlinearity in ("linear", "identity", "sigmoid", "logistic", "conv1d", "conv2d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity in ("relu", "elu", "gelu", "gelu_tanh", "softplus"):
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _fill(t: Tensor, values: Any) -> Tensor:
    t.data[...] = t.backend.asarray(values, dtype=t.dtype)
    return t


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0, generator: np.random.Generator | None = None) -> Tensor:
    """Fill with U(a, b).

    Parameters
    ----------
    t : Tensor
    a : float, default=0.0
        The lower bound.
    b : float, default=1.0
        The upper bound.
    generator : numpy.random.Generator, optional
        Where to draw from; the current stream of :mod:`minitrain.random` by default.

    Returns
    -------
    Tensor
        ``t``, filled in place.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> w = mt.init.uniform_(mt.tensor(np.zeros((2, 3))), -1.0, 1.0, generator=np.random.default_rng(0))
    >>> w.shape, bool((abs(w.numpy()) <= 1.0).all())
    ((2, 3), True)
    """
    return _fill(t, (generator or random.host_generator()).uniform(a, b, size=t.shape))


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0, generator: np.random.Generator | None = None) -> Tensor:
    """Fill with N(mean, std**2).

    Parameters
    ----------
    t : Tensor
    mean : float, default=0.0
    std : float, default=1.0
    generator : numpy.random.Generator, optional
        Where to draw from; the current stream of :mod:`minitrain.random` by default.

    Returns
    -------
    Tensor
        ``t``, filled in place.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> w = mt.init.normal_(mt.tensor(np.zeros((100, 100))), 5.0, 0.1, generator=np.random.default_rng(0))
    >>> round(float(w.numpy().mean()), 1), round(float(w.numpy().std()), 1)
    (5.0, 0.1)
    """
    return _fill(t, (generator or random.host_generator()).normal(mean, std, size=t.shape))


def constant_(t: Tensor, value: float) -> Tensor:
    """Fill with a constant.

    Parameters
    ----------
    t : Tensor
    value : float

    Returns
    -------
    Tensor
        ``t``, filled in place.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> mt.init.constant_(mt.tensor(np.zeros(3, np.float32)), 0.5).numpy().tolist()
    [0.5, 0.5, 0.5]
    """
    t.data[...] = value
    return t


def zeros_(t: Tensor) -> Tensor:
    """Fill with zeros.

    Parameters
    ----------
    t : Tensor

    Returns
    -------
    Tensor
        ``t``, filled in place.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> mt.init.zeros_(mt.tensor([1.0, 2.0])).numpy().tolist()
    [0.0, 0.0]
    """
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    """Fill with ones.

    Parameters
    ----------
    t : Tensor

    Returns
    -------
    Tensor
        ``t``, filled in place.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> mt.init.ones_(mt.tensor([1.0, 2.0])).numpy().tolist()
    [1.0, 1.0]
    """
    return constant_(t, 1.0)


def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot uniform: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).

    Parameters
    ----------
    t : Tensor
        At least 2-D: (fan_out, fan_in, *receptive field).
    gain : float, default=1.0
        E.g. ``calculate_gain(nonlinearity)``.

    Returns
    -------
    Tensor
        ``t``, filled in place.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> with mt.random.seeded(0):
    ...     w = mt.init.xavier_uniform_(mt.tensor(np.zeros((20, 30), np.float32)))
    >>> bound = np.sqrt(6 / (30 + 20))
    >>> bool((abs(w.numpy()) <= bound).all()), bool(abs(w.numpy()).max() > 0.9 * bound)
    (True, True)
    """
    fan_in, fan_out = _fans(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def xavier_normal_(t: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot normal: N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out)).

    Parameters
    ----------
    t : Tensor
        At least 2-D: (fan_out, fan_in, *receptive field).
    gain : float, default=1.0

    Returns
    -------
    Tensor
        ``t``, filled in place.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> with mt.random.seeded(0):
    ...     w = mt.init.xavier_normal_(mt.tensor(np.zeros((200, 300))))
    >>> round(float(w.numpy().std()), 3), round((2 / (300 + 200)) ** 0.5, 3)
    (0.063, 0.063)
    """
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(t: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(t)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    """He uniform: U(-b, b) with b = gain * sqrt(3 / fan).

    Parameters
    ----------
    t : Tensor
        At least 2-D: (fan_out, fan_in, *receptive field).
    a : float, default=0.0
        The negative slope of a leaky_relu ``nonlinearity``.
    mode : {'fan_in', 'fan_out'}, default='fan_in'
        Which fan to preserve the variance of (the forward or the backward pass).
    nonlinearity : str, default='leaky_relu'
        Passed to :func:`calculate_gain`.

    Returns
    -------
    Tensor
        ``t``, filled in place.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> with mt.random.seeded(0):
    ...     w = mt.init.kaiming_uniform_(mt.tensor(np.zeros((8, 3, 3, 3), np.float32)), nonlinearity="relu")
    >>> bool((abs(w.numpy()) <= np.sqrt(6 / 27)).all())  # fan_in = 3 * 3 * 3
    True
    """
    bound = math.sqrt(3.0) * _kaiming_std(t, a, mode, nonlinearity)
    return uniform_(t, -bound, bound)


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    """He normal: N(0, std**2) with std = gain / sqrt(fan).

    Parameters
    ----------
    t : Tensor
        At least 2-D: (fan_out, fan_in, *receptive field).
    a : float, default=0.0
        The negative slope of a leaky_relu ``nonlinearity``.
    mode : {'fan_in', 'fan_out'}, default='fan_in'
    nonlinearity : str, default='leaky_relu'
        Passed to :func:`calculate_gain`.

    Returns
    -------
    Tensor
        ``t``, filled in place.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> with mt.random.seeded(0):
    ...     w = mt.init.kaiming_normal_(mt.tensor(np.zeros((400, 200))), mode="fan_out", nonlinearity="relu")
    >>> round(float(w.numpy().std()), 2), round((2 / 400) ** 0.5, 2)
    (0.07, 0.07)
    """
    return normal_(t, 0.0, _kaiming_std(t, a, mode, nonlinearity))


def he_uniform_(t: Tensor) -> Tensor:
    """He uniform for ReLU: U(-b, b), b = sqrt(6 / fan_in).

    Fills ``t`` (at least 2-D: fan_out, fan_in, *receptive field) in place and returns it.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> with mt.random.seeded(0):
    ...     w = mt.init.he_uniform_(mt.tensor(np.zeros((16, 24), np.float32)))
    >>> bool((abs(w.numpy()) <= np.sqrt(6 / 24)).all())
    True
    """
    return kaiming_uniform_(t, nonlinearity="relu")


def he_normal_(t: Tensor) -> Tensor:
    """He normal for ReLU: N(0, 2 / fan_in).

    Fills ``t`` (at least 2-D: fan_out, fan_in, *receptive field) in place and returns it.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> with mt.random.seeded(0):
    ...     w = mt.init.he_normal_(mt.tensor(np.zeros((300, 200))))
    >>> round(float(w.numpy().std()), 2), round((2 / 200) ** 0.5, 2)
    (0.1, 0.1)
    """
    return kaiming_normal_(t, nonlinearity="relu")


def lecun_uniform_(t: Tensor) -> Tensor:
    """LeCun uniform: U(-b, b), b = sqrt(3 / fan_in).

    Fills ``t`` (at least 2-D: fan_out, fan_in, *receptive field) in place and returns it.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> with mt.random.seeded(0):
    ...     w = mt.init.lecun_uniform_(mt.tensor(np.zeros((16, 12), np.float32)))
    >>> bool((abs(w.numpy()) <= np.sqrt(3 / 12)).all())
    True
    """
    return kaiming_uniform_(t, nonlinearity="linear")


def lecun_normal_(t: Tensor) -> Tensor:
    """LeCun normal: N(0, 1 / fan_in).

    Fills ``t`` (at least 2-D: fan_out, fan_in, *receptive field) in place and returns it.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> with mt.random.seeded(0):
    ...     w = mt.init.lecun_normal_(mt.tensor(np.zeros((300, 100))))
    >>> round(float(w.numpy().std()), 2), round((1 / 100) ** 0.5, 2)
    (0.1, 0.1)
    """
    return kaiming_normal_(t, nonlinearity="linear")


def orthogonal_(t: Tensor, gain: float = 1.0, generator: np.random.Generator | None = None) -> Tensor:
    """A (semi-)orthogonal matrix, scaled by ``gain``, over the flattened trailing axes.

    Parameters
    ----------
    t : Tensor
        At least 2-D; seen as a (shape[0], rest) matrix.
    gain : float, default=1.0
    generator : numpy.random.Generator, optional
        Where to draw from; the current stream of :mod:`minitrain.random` by default.

    Returns
    -------
    Tensor
        ``t``, filled in place.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> w = mt.init.orthogonal_(mt.tensor(np.zeros((3, 5))), generator=np.random.default_rng(0)).numpy()
    >>> bool(np.allclose(w @ w.T, np.eye(3)))  # orthonormal rows
    True
    """
    if t.ndim < 2:
        raise ValueError(f"orthogonal_ needs at least 2 dimensions, got shape {t.shape}")
    be = t.backend
    xp = be.xp
    rows, cols = t.shape[0], t.size // t.shape[0]
    a = be.asarray((generator or random.host_generator()).normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols))))
    q, r = xp.linalg.qr(a)
    q = q * xp.sign(xp.diag(r))  # unique decomposition: positive diagonal of r
    if rows < cols:
        q = q.T
    return _fill(t, (gain * q).reshape(t.shape))


glorot_uniform_ = xavier_uniform_
glorot_normal_ = xavier_normal_

_BY_NAME: dict[str, Callable[[Tensor], Tensor]] = {
    "glorot_uniform": xavier_uniform_,
    "glorot_normal": xavier_normal_,
    "xavier_uniform": xavier_uniform_,
    "xavier_normal": xavier_normal_,
    "he_uniform": he_uniform_,
    "he_normal": he_normal_,
    "kaiming_uniform": he_uniform_,
    "kaiming_normal": he_normal_,
    "lecun_uniform": lecun_uniform_,
    "lecun_normal": lecun_normal_,
    "orthogonal": orthogonal_,
    "zeros": zeros_,
}
_RELU_LIKE = frozenset({"relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "softplus"})


def get_initializer(init: str | Callable[[Tensor], Any], activation: str = "identity") -> Callable[[Tensor], Any]:
    """Resolve an initializer by name; ``'auto'`` is He uniform for ReLU-like, Glorot uniform otherwise.

    Parameters
    ----------
    init : str or callable
        'auto', a name ('glorot_uniform', 'xavier_normal', 'he_uniform', 'kaiming_normal', 'lecun_uniform',
        'orthogonal', 'zeros', ...), or a callable, returned as it is.
    activation : str, default='identity'
        The activation that follows, for 'auto'.

    Returns
    -------
    callable
        Taking a Tensor and filling it in place.

    Raises
    ------
    ValueError
        If ``init`` is an unknown name.

    Examples
    --------
    >>> from minitrain import init
    >>> init.get_initializer("auto", activation="relu") is init.he_uniform_
    True
    >>> init.get_initializer("glorot_normal").__name__
    'xavier_normal_'
    """
    if callable(init):
        return init
    if init == "auto":
        return he_uniform_ if activation in _RELU_LIKE else xavier_uniform_
    try:
        return _BY_NAME[init]
    except KeyError:
        raise ValueError(
            f"unknown initializer {init!r}; expected 'auto', one of {sorted(_BY_NAME)}, or a callable"
        ) from None
