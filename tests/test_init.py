"""Initializers: distributions, scales, determinism, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minitrain as mt
from minitrain import init
from minitrain.nn import Parameter


def _param(backend, shape, dtype="float32"):
    return Parameter(backend.alloc(shape, dtype), backend=backend)


BOUNDED = [
    # (initializer, expected bound for a (300, 400) weight: fan_in 400, fan_out 300)
    (init.xavier_uniform_, math.sqrt(6 / 700)),
    (init.he_uniform_, math.sqrt(6 / 400)),
    (init.lecun_uniform_, math.sqrt(3 / 400)),
    (lambda t: init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"), math.sqrt(6 / 300)),
]
NORMAL = [
    (init.xavier_normal_, math.sqrt(2 / 700)),
    (init.he_normal_, math.sqrt(2 / 400)),
    (init.lecun_normal_, math.sqrt(1 / 400)),
    (lambda t: init.xavier_normal_(t, gain=init.calculate_gain("tanh")), 5 / 3 * math.sqrt(2 / 700)),
]


@pytest.mark.parametrize(("fn", "bound"), BOUNDED)
def test_uniform_initializers_have_the_right_bound(backend, fn, bound):
    mt.manual_seed(0)
    w = fn(_param(backend, (300, 400))).numpy()
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound


@pytest.mark.parametrize(("fn", "std"), NORMAL)
def test_normal_initializers_have_the_right_std(backend, fn, std):
    mt.manual_seed(0)
    w = fn(_param(backend, (300, 400))).numpy()
    assert abs(w.std() - std) < 0.01 * std
    assert abs(w.mean()) < 0.01 * std


def test_conv_shaped_fans_use_the_receptive_field(backend):
    mt.manual_seed(0)
    w = init.he_uniform_(_param(backend, (64, 32, 3, 3))).numpy()
    assert np.abs(w).max() <= math.sqrt(6 / (32 * 9)) * (1 + 1e-6)


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (20, 5, 2)])
def test_orthogonal_gives_orthonormal_rows_or_columns(backend, shape):
    mt.manual_seed(0)
    w = init.orthogonal_(_param(backend, shape, "float64"), gain=2.0).numpy().reshape(shape[0], -1)
    small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    np.testing.assert_allclose(small, 4 * np.eye(small.shape[0]), atol=1e-10)


def test_constants(backend):
    t = _param(backend, (3, 2))
    assert (init.ones_(t).numpy() == 1).all()
    assert (init.zeros_(t).numpy() == 0).all()
    assert (init.constant_(t, 2.5).numpy() == 2.5).all()


def test_initializers_keep_dtype_and_flat_views(backend):
    lin = mt.nn.Linear(4, 3, backend=backend)
    (fb,) = lin.flat_parameters()
    init.xavier_normal_(lin.weight)
    assert lin.weight.dtype == np.float32
    np.testing.assert_array_equal(backend.to_numpy(fb.data)[:12], lin.weight.numpy().ravel(order="K"))  # memory order


def test_same_seed_same_weights(backend):
    mt.manual_seed(7)
    a = mt.nn.Linear(5, 5, backend=backend).weight.numpy()
    mt.manual_seed(7)
    b = mt.nn.Linear(5, 5, backend=backend).weight.numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("name", "param", "gain"),
    [
        ("linear", None, 1.0),
        ("tanh", None, 5 / 3),
        ("relu", None, math.sqrt(2)),
        ("leaky_relu", 0.2, math.sqrt(2 / 1.04)),
    ],
)
def test_calculate_gain(name, param, gain):
    assert init.calculate_gain(name, param) == pytest.approx(gain)


def test_errors_name_the_problem(backend):
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(_param(backend, (5,)))
    with pytest.raises(ValueError, match="unknown initializer 'nope'"):
        init.get_initializer("nope")
    with pytest.raises(ValueError, match="mode must be"):
        init.kaiming_normal_(_param(backend, (2, 2)), mode="fan_avg")
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


def test_linear_accepts_initializer_names_and_callables(backend):
    lin = mt.nn.Linear(3, 2, init="zeros", backend=backend)
    assert not lin.weight.numpy().any()
    lin = mt.nn.Linear(3, 2, init=lambda t: init.constant_(t, 0.5), backend=backend)
    assert (lin.weight.numpy() == 0.5).all()
