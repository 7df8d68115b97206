"""Differentiable ops: gradients by finite differences, forward values by NumPy formulas, operators, dtypes."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy.special import erf

import minitrain as mt
from minitrain import functional as F
from minitrain.autograd import Tensor
from minitrain.backend import ACTIVATIONS
from minitrain.testing import gradcheck


# ------------------------------------------------------------------------------------------ input specs
def N(*shape):
    """Standard normal values."""
    return lambda rng: rng.standard_normal(shape)


def P(*shape):
    """Positive values away from 0."""
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def A(*shape):
    """Values at least 0.2 away from 0 (clear of kinks)."""
    return lambda rng: rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


def V(values):
    """Fixed values."""
    return lambda rng: np.array(values, dtype=np.float64)


def gap_pair(*shape):
    """Two arrays that differ by at least 0.1 everywhere (no ties for maximum/minimum)."""

    def make(rng):
        a = rng.standard_normal(shape)
        return a, a + rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 1.0, shape)

    return make


def materialize(specs, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for spec in specs:
        value = spec(rng)
        out.extend(value if isinstance(value, tuple) else [value])
    return out


IDX = np.array([2, 0, 1, 2, 1])  # class indices for 5 samples, 3 classes
PROBS = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [0.0, 0.5, 0.5]])
CLASS_W = np.array([0.5, 2.0, 1.5])
BIN_T = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.3, 0.9, 0.5], [1.0, 1.0, 0.0]])
MASK = np.array([[True, False, True, False], [False, True, True, False], [True, True, False, False]])
RUNNING = (np.array([0.1, -0.3, 0.2]), np.array([0.8, 1.5, 1.1]))


def _bn(x, *affine, training, running):
    be = x.backend
    rm, rv = (be.asarray(RUNNING[0].copy()), be.asarray(RUNNING[1].copy())) if running else (None, None)
    return F.batch_norm(x, rm, rv, *affine, training=training)


GRAD_CASES = [
    # arithmetic, with scalars and broadcasting tensors
    pytest.param(F.add, [N(3, 4), N(3, 4)], id="add"),
    pytest.param(F.add, [N(3, 4), N(4)], id="add-broadcast-row"),
    pytest.param(F.add, [N(3, 1), N(1, 4)], id="add-broadcast-outer"),
    pytest.param(F.add, [N(2, 3, 4), N(3, 1)], id="add-broadcast-leading"),
    pytest.param(lambda a: F.add(a, 2.5), [N(3, 4)], id="add-scalar"),
    pytest.param(lambda a: F.add(2.5, a), [N(3, 4)], id="add-scalar-left"),
    pytest.param(F.sub, [N(3, 4), N(3, 4)], id="sub"),
    pytest.param(F.sub, [N(3, 1), N(4)], id="sub-broadcast"),
    pytest.param(lambda a: F.sub(a, 2.5), [N(3, 4)], id="sub-scalar"),
    pytest.param(lambda a: F.sub(2.5, a), [N(3, 4)], id="sub-scalar-left"),
    pytest.param(F.mul, [N(3, 4), N(3, 4)], id="mul"),
    pytest.param(F.mul, [N(2, 3, 4), N(4)], id="mul-broadcast"),
    pytest.param(lambda a: F.mul(a, -1.5), [N(3, 4)], id="mul-scalar"),
    pytest.param(lambda a: F.mul(-1.5, a), [N(3, 4)], id="mul-scalar-left"),
    pytest.param(F.div, [N(3, 4), A(3, 4)], id="div"),
    pytest.param(F.div, [N(3, 4), A(3, 1)], id="div-broadcast"),
    pytest.param(lambda a: F.div(a, 4.0), [N(3, 4)], id="div-scalar"),
    pytest.param(lambda a: F.div(2.0, a), [A(3, 4)], id="div-scalar-left"),
    pytest.param(F.neg, [N(3, 4)], id="neg"),
    pytest.param(lambda a: F.pow(a, 2), [N(3, 4)], id="pow-2"),
    pytest.param(lambda a: F.pow(a, 3), [N(3, 4)], id="pow-3"),
    pytest.param(lambda a: F.pow(a, 0.5), [P(3, 4)], id="pow-half"),
    pytest.param(lambda a: F.pow(a, -1.5), [P(3, 4)], id="pow-negative"),
    pytest.param(F.pow, [P(3, 4), N(3, 4)], id="pow-tensor-exponent"),
    pytest.param(F.pow, [P(3, 4), N(4)], id="pow-broadcast-exponent"),
    # matmul
    pytest.param(F.matmul, [N(3, 4), N(4, 5)], id="matmul-2d"),
    pytest.param(F.matmul, [N(2, 3, 4), N(2, 4, 5)], id="matmul-batched"),
    pytest.param(F.matmul, [N(2, 3, 4), N(4, 5)], id="matmul-batched-by-2d"),
    pytest.param(F.matmul, [N(3, 4), N(2, 4, 5)], id="matmul-2d-by-batched"),
    pytest.param(F.matmul, [N(4), N(4)], id="matmul-1d-1d"),
    pytest.param(F.matmul, [N(4), N(4, 3)], id="matmul-1d-2d"),
    pytest.param(F.matmul, [N(3, 4), N(4)], id="matmul-2d-1d"),
    pytest.param(F.matmul, [N(2, 3, 4), N(4)], id="matmul-3d-1d"),
    pytest.param(F.matmul, [N(4), N(2, 4, 3)], id="matmul-1d-3d"),
    # reductions
    pytest.param(F.sum, [N(3, 4)], id="sum-all"),
    pytest.param(lambda a: F.sum(a, axis=0), [N(3, 4)], id="sum-axis0"),
    pytest.param(lambda a: F.sum(a, axis=1, keepdims=True), [N(3, 4)], id="sum-keepdims"),
    pytest.param(lambda a: F.sum(a, axis=(0, 2)), [N(2, 3, 4)], id="sum-axes"),
    pytest.param(lambda a: F.sum(a, axis=-1, keepdims=True), [N(2, 3, 4)], id="sum-negative-axis"),
    pytest.param(F.mean, [N(3, 4)], id="mean-all"),
    pytest.param(lambda a: F.mean(a, axis=1), [N(3, 4)], id="mean-axis1"),
    pytest.param(lambda a: F.mean(a, axis=(0, 2), keepdims=True), [N(2, 3, 4)], id="mean-axes-keepdims"),
    pytest.param(F.max, [N(3, 4)], id="max-all"),
    pytest.param(lambda a: F.max(a, axis=1), [N(3, 4)], id="max-axis1"),
    pytest.param(lambda a: F.max(a, axis=0, keepdims=True), [N(3, 4)], id="max-keepdims"),
    pytest.param(lambda a: F.max(a, axis=(0, 2)), [N(2, 3, 4)], id="max-axes"),
    pytest.param(lambda a: F.max(a, axis=1), [V([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, -1.0, 0.5]])], id="max-ties"),
    pytest.param(F.min, [N(3, 4)], id="min-all"),
    pytest.param(lambda a: F.min(a, axis=-1, keepdims=True), [N(3, 4)], id="min-keepdims"),
    pytest.param(lambda a: F.min(a, axis=0), [V([[1.0, -3.0], [1.0, 0.0]])], id="min-ties"),
    # shape
    pytest.param(lambda a: F.reshape(a, 2, 6), [N(3, 4)], id="reshape"),
    pytest.param(lambda a: F.reshape(a, (4, -1)), [N(2, 3, 2)], id="reshape-tuple"),
    pytest.param(F.flatten, [N(2, 3, 2)], id="flatten"),
    pytest.param(lambda a: F.flatten(a, 1), [N(2, 3, 2)], id="flatten-from-1"),
    pytest.param(lambda a: F.flatten(a, 0, 1), [N(2, 3, 2)], id="flatten-0-1"),
    pytest.param(F.transpose, [N(3, 4)], id="transpose"),
    pytest.param(lambda a: F.transpose(a, 1, 2, 0), [N(2, 3, 4)], id="transpose-perm"),
    pytest.param(lambda a: F.transpose(a, (2, 0, 1)), [N(2, 3, 4)], id="transpose-tuple"),
    pytest.param(
        lambda a: F.transpose(a, (-1, 0, 1)),
        [N(2, 3, 4)],
        id="transpose-negative-axes",
    ),
    pytest.param(lambda a: a[1:, ::2], [N(3, 4)], id="getitem-slices"),
    pytest.param(lambda a: a[1], [N(3, 4)], id="getitem-int"),
    pytest.param(lambda a: a[-1, 2], [N(3, 4)], id="getitem-ints"),
    pytest.param(lambda a: a[..., 1], [N(2, 3, 4)], id="getitem-ellipsis"),
    pytest.param(lambda a: a[None, ::-1], [N(3, 4)], id="getitem-newaxis-reversed"),
    pytest.param(lambda a: a[[0, 2, 0]], [N(3, 4)], id="getitem-fancy-repeated"),
    pytest.param(lambda a: a[[0, 0, 1], [1, 1, 3]], [N(3, 4)], id="getitem-fancy-pairs-repeated"),
    pytest.param(lambda a: a[:, [1, 1, 3]], [N(3, 4)], id="getitem-slice-and-fancy"),
    pytest.param(lambda a: a[MASK], [N(3, 4)], id="getitem-bool-mask"),
    pytest.param(lambda a: a[np.array([2, 2])], [N(3, 4)], id="getitem-index-array"),
    pytest.param(lambda a, b, c: F.concatenate([a, b, c]), [N(2, 3), N(1, 3), N(3, 3)], id="concatenate-axis0"),
    pytest.param(lambda a, b: F.concatenate([a, b], axis=1), [N(2, 3), N(2, 1)], id="concatenate-axis1"),
    pytest.param(lambda a, b: F.concatenate([a, b], axis=-1), [N(2, 2, 3), N(2, 2, 2)], id="concatenate-last"),
    pytest.param(lambda a, b, c: F.stack([a, b, c]), [N(2, 3), N(2, 3), N(2, 3)], id="stack-axis0"),
    pytest.param(lambda a, b: F.stack([a, b], axis=1), [N(2, 3), N(2, 3)], id="stack-axis1"),
    pytest.param(lambda a, b: F.stack([a, b], axis=-1), [N(2, 3), N(2, 3)], id="stack-last"),
    # elementwise math
    pytest.param(F.exp, [N(3, 4)], id="exp"),
    pytest.param(F.log, [P(3, 4)], id="log"),
    pytest.param(F.sqrt, [P(3, 4)], id="sqrt"),
    pytest.param(F.abs, [A(3, 4)], id="abs"),
    pytest.param(lambda a: F.clip(a, -1.0, 1.0), [V([[-2.0, -0.7, -0.3, 0.2], [0.6, 1.4, -1.1, 0.9]])], id="clip"),
    pytest.param(lambda a: F.clip(a, min=0.0), [A(3, 4)], id="clip-min-only"),
    pytest.param(lambda a: F.clip(a, max=0.5), [V([[-2.0, 0.7], [0.3, 1.2]])], id="clip-max-only"),
    pytest.param(lambda a, b: F.where(MASK, a, b), [N(3, 4), N(3, 4)], id="where"),
    pytest.param(lambda a, b: F.where(MASK, a, b), [N(4), N(3, 1)], id="where-broadcast"),
    pytest.param(lambda a: F.where(MASK, a, 0.0), [N(3, 4)], id="where-scalar"),
    pytest.param(F.maximum, [gap_pair(3, 4)], id="maximum"),
    pytest.param(F.minimum, [gap_pair(3, 4)], id="minimum"),
    pytest.param(lambda a: F.maximum(a, 0.0), [A(3, 4)], id="maximum-scalar"),
    # activations (inputs clear of kinks)
    pytest.param(F.relu, [A(3, 4)], id="relu"),
    pytest.param(F.leaky_relu, [A(3, 4)], id="leaky_relu"),
    pytest.param(lambda a: F.leaky_relu(a, 0.2), [A(3, 4)], id="leaky_relu-slope"),
    pytest.param(F.elu, [A(3, 4)], id="elu"),
    pytest.param(lambda a: F.elu(a, 0.5), [A(3, 4)], id="elu-alpha"),
    pytest.param(F.gelu, [N(3, 4)], id="gelu"),
    pytest.param(lambda a: F.gelu(a, approximate="tanh"), [N(3, 4)], id="gelu-tanh"),
    pytest.param(F.sigmoid, [N(3, 4)], id="sigmoid"),
    pytest.param(F.tanh, [N(3, 4)], id="tanh"),
    pytest.param(F.softplus, [N(3, 4)], id="softplus"),
    pytest.param(lambda a: F.activation(a, "identity"), [N(3, 4)], id="activation-identity"),
    pytest.param(lambda a: F.activation(a, "logistic"), [N(3, 4)], id="activation-logistic"),
    pytest.param(F.softmax, [N(3, 4)], id="softmax"),
    pytest.param(lambda a: F.softmax(a, axis=0), [N(3, 4)], id="softmax-axis0"),
    pytest.param(F.log_softmax, [N(3, 4)], id="log_softmax"),
    pytest.param(lambda a: F.log_softmax(a, axis=0), [N(3, 4)], id="log_softmax-axis0"),
    # batch norm
    pytest.param(lambda x, w, b: _bn(x, w, b, training=True, running=True), [N(5, 3), P(3), N(3)], id="bn-train"),
    pytest.param(lambda x: _bn(x, training=True, running=False), [N(5, 3)], id="bn-train-plain"),
    pytest.param(lambda x, w, b: _bn(x, w, b, training=False, running=True), [N(5, 3), P(3), N(3)], id="bn-eval"),
    pytest.param(lambda x: _bn(x, training=False, running=True), [N(5, 3)], id="bn-eval-plain"),
    pytest.param(lambda x: _bn(x, training=False, running=False), [N(5, 3)], id="bn-eval-batch-stats"),
    pytest.param(lambda x, w, b: _bn(x, w, b, training=True, running=True), [N(3, 3, 4), P(3), N(3)], id="bn-3d"),
    # losses
    *[
        pytest.param(lambda x, r=r: F.cross_entropy(x, IDX, reduction=r), [N(5, 3)], id=f"ce-index-{r}")
        for r in ("mean", "sum", "none")
    ],
    *[
        pytest.param(lambda x, r=r: F.cross_entropy(x, PROBS, reduction=r), [N(5, 3)], id=f"ce-probs-{r}")
        for r in ("mean", "sum", "none")
    ],
    *[
        pytest.param(lambda x, r=r: F.cross_entropy(x, IDX, CLASS_W, reduction=r), [N(5, 3)], id=f"ce-weight-{r}")
        for r in ("mean", "sum", "none")
    ],
    pytest.param(lambda x: F.cross_entropy(x, PROBS, CLASS_W), [N(5, 3)], id="ce-probs-weight"),
    pytest.param(lambda x: F.cross_entropy(x, IDX, label_smoothing=0.1), [N(5, 3)], id="ce-smoothing"),
    pytest.param(lambda x: F.cross_entropy(x, IDX, CLASS_W, label_smoothing=0.2), [N(5, 3)], id="ce-weight-smooth"),
    *[
        pytest.param(lambda x, r=r: F.binary_cross_entropy_with_logits(x, BIN_T, reduction=r), [N(4, 3)], id=f"bce-{r}")
        for r in ("mean", "sum", "none")
    ],
    pytest.param(lambda x: F.binary_cross_entropy_with_logits(x, BIN_T, weight=CLASS_W), [N(4, 3)], id="bce-weight"),
    pytest.param(lambda x: F.binary_cross_entropy_with_logits(x, BIN_T, pos_weight=CLASS_W), [N(4, 3)], id="bce-pos"),
    pytest.param(
        lambda x: F.binary_cross_entropy_with_logits(x, BIN_T, weight=2.0, pos_weight=3.0, reduction="sum"),
        [N(4, 3)],
        id="bce-weight-pos-scalars",
    ),
    *[
        pytest.param(lambda x, r=r: F.mse_loss(x, BIN_T, reduction=r), [N(4, 3)], id=f"mse-{r}")
        for r in ("mean", "sum", "none")
    ],
]


@pytest.mark.parametrize(("fn", "specs"), GRAD_CASES)
def test_gradient_matches_finite_differences(backend, fn, specs):
    assert gradcheck(fn, *materialize(specs), backend=backend)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("shape", [(4, 3), (2, 2, 3), (3,)], ids=["2d", "3d", "1d"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_gradient_matches_finite_differences(backend, activation, shape, with_bias):
    specs = [N(*shape), N(2, 3)] + ([N(2)] if with_bias else [])
    inputs = materialize(specs, seed=7)
    assert gradcheck(lambda x, w, b=None: F.linear(x, w, b, activation, alpha=0.3), *inputs, backend=backend)


def test_astype_gradient_is_cast_back(backend):
    # a float32 detour: finite differences need a large step, exact for this linear function
    fn = lambda a: F.astype(F.astype(a, "float32") * 3.0, "float64")  # noqa: E731
    assert gradcheck(fn, np.array([[0.5, -1.0], [2.0, 0.25]]), eps=1e-2, backend=backend)


def test_max_ties_share_the_gradient_equally(backend):
    x = mt.tensor(np.array([[1.0, 3.0, 3.0, 3.0], [2.0, 0.0, 2.0, 1.0]]), requires_grad=True)
    F.max(x, axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 1 / 3, 1 / 3, 1 / 3], [0.5, 0, 0.5, 0]], rtol=1e-15)


def test_repeated_fancy_indices_accumulate(backend):
    x = mt.tensor(np.zeros(4), requires_grad=True)
    x[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0, 0.0])


def test_maximum_tie_sends_gradient_to_first_argument(backend):
    a, b = (mt.tensor(np.array([1.0, 2.0]), requires_grad=True) for _ in range(2))
    F.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [1.0, 1.0])
    np.testing.assert_array_equal(b.grad, [0.0, 0.0])


# ------------------------------------------------------------------------------------------ dropout
def test_dropout_output_is_input_times_a_scaled_mask(backend):
    x = mt.tensor(np.random.default_rng(0).uniform(1.0, 2.0, (50, 40)), requires_grad=True)
    y = F.dropout(x, 0.2)
    mask = y.numpy() / x.numpy()
    assert set(np.unique(mask).round(12).tolist()) == {0.0, 1.25}


def test_dropout_gradient_is_the_mask(backend):
    x = mt.tensor(np.random.default_rng(0).uniform(1.0, 2.0, (50, 40)), requires_grad=True)
    y = F.dropout(x, 0.2)
    upstream = np.random.default_rng(1).standard_normal(x.shape)
    y.backward(upstream)
    np.testing.assert_allclose(x.grad, upstream * (y.numpy() / x.numpy()), rtol=1e-12)


def test_dropout_with_p_zero_is_identity(backend):
    x = mt.tensor(np.arange(6.0), requires_grad=True)
    y = F.dropout(x, 0.0)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(6))


def test_dropout_in_eval_is_identity(backend):
    x = mt.tensor(np.arange(6.0), requires_grad=True)
    np.testing.assert_array_equal(F.dropout(x, 0.9, training=False).numpy(), x.numpy())


def test_dropout_with_p_one_drops_everything(backend):
    x = mt.tensor(np.arange(1.0, 7.0), requires_grad=True)
    y = F.dropout(x, 1.0)
    y.sum().backward()
    np.testing.assert_array_equal(y.numpy(), np.zeros(6))
    np.testing.assert_array_equal(x.grad, np.zeros(6))


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_probability_out_of_range_raises(backend, p):
    with pytest.raises(ValueError, match="dropout probability"):
        F.dropout(mt.tensor([1.0]), p)


# ------------------------------------------------------------------------------------------ batch norm state
def test_batch_norm_training_updates_running_stats_in_place(backend):
    x = np.random.default_rng(0).standard_normal((8, 3)) * 2 + 1
    rm, rv = backend.asarray(np.zeros(3)), backend.asarray(np.ones(3))
    F.batch_norm(mt.tensor(x), rm, rv, training=True, momentum=0.5)
    np.testing.assert_allclose(backend.to_numpy(rm), 0.5 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(rv), 0.5 + 0.5 * x.var(axis=0, ddof=1), rtol=1e-12)


def test_batch_norm_training_needs_more_than_one_value_per_channel(backend):
    with pytest.raises(ValueError, match="more than one value per channel"):
        F.batch_norm(mt.tensor(np.ones((1, 3))), None, None, training=True)


# ------------------------------------------------------------------------------------------ forward values
def _np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_ce(x, target, weight=None):
    logp = np.log(_np_softmax(x))
    w = np.ones(x.shape[1]) if weight is None else weight
    if target.ndim == 1:
        picked = w[target] * logp[np.arange(len(target)), target]
        return -picked.sum() / w[target].sum()
    return -(w * target * logp).sum(axis=1).mean()


def _np_bce(z, t, pos_weight=1.0):
    s = 1 / (1 + np.exp(-z))
    return -(pos_weight * t * np.log(s) + (1 - t) * np.log(1 - s))


X = np.array([[0.5, -1.2, 2.0], [-0.3, 0.8, -2.5], [1.5, 0.1, -0.7], [-1.1, 2.2, 0.4], [0.9, -0.6, 1.3]])
X2 = np.roll(X, 1, axis=0) * 0.7
FORWARD_CASES = [
    pytest.param(F.exp, [X], np.exp, id="exp"),
    pytest.param(F.log, [np.abs(X) + 0.1], np.log, id="log"),
    pytest.param(F.sqrt, [np.abs(X)], np.sqrt, id="sqrt"),
    pytest.param(F.abs, [X], np.abs, id="abs"),
    pytest.param(F.neg, [X], np.negative, id="neg"),
    pytest.param(lambda a: F.clip(a, -1, 1), [X], lambda a: np.clip(a, -1, 1), id="clip"),
    pytest.param(F.matmul, [X, X.T], np.matmul, id="matmul"),
    pytest.param(lambda a: F.pow(a, 3), [X], lambda a: a**3, id="pow"),
    pytest.param(lambda a: F.sum(a, axis=0, keepdims=True), [X], lambda a: a.sum(axis=0, keepdims=True), id="sum"),
    pytest.param(lambda a: F.mean(a, axis=1), [X], lambda a: a.mean(axis=1), id="mean"),
    pytest.param(lambda a: F.max(a, axis=0), [X], lambda a: a.max(axis=0), id="max"),
    pytest.param(lambda a: F.min(a), [X], np.min, id="min"),
    pytest.param(lambda a: F.transpose(a), [X], np.transpose, id="transpose"),
    pytest.param(lambda a, b: F.where(a > 0, a, b), [X, -X], lambda a, b: np.where(a > 0, a, b), id="where"),
    pytest.param(F.maximum, [X, X2], np.maximum, id="maximum"),
    pytest.param(F.relu, [X], lambda a: np.maximum(a, 0), id="relu"),
    pytest.param(lambda a: F.leaky_relu(a, 0.1), [X], lambda a: np.where(a > 0, a, 0.1 * a), id="leaky_relu"),
    pytest.param(F.elu, [X], lambda a: np.where(a > 0, a, np.exp(a) - 1), id="elu"),
    pytest.param(F.gelu, [X], lambda a: 0.5 * a * (1 + erf(a / math.sqrt(2))), id="gelu"),
    pytest.param(
        lambda a: F.gelu(a, "tanh"),
        [X],
        lambda a: 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a**3))),
        id="gelu-tanh",
    ),
    pytest.param(F.sigmoid, [X], lambda a: 1 / (1 + np.exp(-a)), id="sigmoid"),
    pytest.param(F.tanh, [X], np.tanh, id="tanh"),
    pytest.param(F.softplus, [X], lambda a: np.log1p(np.exp(a)), id="softplus"),
    pytest.param(F.softmax, [X], _np_softmax, id="softmax"),
    pytest.param(lambda a: F.softmax(a, axis=0), [X], lambda a: _np_softmax(a, axis=0), id="softmax-axis0"),
    pytest.param(F.log_softmax, [X], lambda a: np.log(_np_softmax(a)), id="log_softmax"),
    pytest.param(
        lambda x, w, b: F.linear(x, w, b, "tanh"),
        [X, X[:2], X[0, :2]],
        lambda x, w, b: np.tanh(x @ w.T + b),
        id="linear",
    ),
    pytest.param(lambda x: F.cross_entropy(x, IDX), [X], lambda x: _np_ce(x, IDX), id="ce-index"),
    pytest.param(lambda x: F.cross_entropy(x, IDX, CLASS_W), [X], lambda x: _np_ce(x, IDX, CLASS_W), id="ce-weight"),
    pytest.param(lambda x: F.cross_entropy(x, PROBS), [X], lambda x: _np_ce(x, PROBS), id="ce-probs"),
    pytest.param(
        lambda x: F.cross_entropy(x, IDX, label_smoothing=0.3),
        [X],
        lambda x: _np_ce(x, np.eye(3)[IDX] * 0.7 + 0.1),
        id="ce-smoothing",
    ),
    pytest.param(
        lambda x: F.cross_entropy(x, IDX, reduction="none"),
        [X],
        lambda x: -np.log(_np_softmax(x))[np.arange(5), IDX],
        id="ce-none",
    ),
    pytest.param(
        lambda x: F.binary_cross_entropy_with_logits(x, BIN_T), [X[:4]], lambda x: _np_bce(x, BIN_T).mean(), id="bce"
    ),
    pytest.param(
        lambda x: F.binary_cross_entropy_with_logits(x, BIN_T, weight=CLASS_W, pos_weight=2.0, reduction="sum"),
        [X[:4]],
        lambda x: (_np_bce(x, BIN_T, 2.0) * CLASS_W).sum(),
        id="bce-weight-pos",
    ),
    pytest.param(lambda x, t: F.mse_loss(x, t), [X, X2], lambda x, t: ((x - t) ** 2).mean(), id="mse"),
    pytest.param(
        lambda x: F.batch_norm(x, None, None, training=True),
        [X],
        lambda x: (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5),
        id="batch_norm",
    ),
]


@pytest.mark.parametrize(("fn", "inputs", "expected"), FORWARD_CASES)
def test_forward_matches_numpy_formula(backend, fn, inputs, expected):
    got = fn(*[mt.tensor(a) for a in inputs])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got.numpy(), expected(*inputs), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x: F.cross_entropy(x, IDX, reduction="avg"), ValueError, "reduction"),
        (lambda x: F.cross_entropy(x, np.array([0, 1, 2, 3, 0])), ValueError, r"\[0, 3\)"),
        (lambda x: F.cross_entropy(x, IDX.astype(float)), TypeError, "integers"),
        (lambda x: F.cross_entropy(x, IDX[:3]), ValueError, "3 labels for 5 samples"),
        (lambda x: F.cross_entropy(x, IDX, label_smoothing=1.5), ValueError, "label_smoothing"),
        (lambda x: F.cross_entropy(x, IDX, np.ones(4)), ValueError, "class weights"),
        (lambda x: F.binary_cross_entropy_with_logits(x, np.ones((5, 2))), ValueError, "does not match"),
        (lambda x: F.mse_loss(x, np.ones(3)), ValueError, "does not match"),
        (lambda x: F.linear(x, mt.tensor(np.ones((2, 4)))), ValueError, "expected"),
        (lambda x: F.gelu(x, approximate="fast"), ValueError, "approximate"),
        (lambda x: F.activation(x, "swish"), ValueError, "unknown activation"),
        (lambda x: F.where(MASK, 1.0, 2.0), TypeError, "Tensor"),
    ],
    ids=[
        "ce-reduction",
        "ce-index-range",
        "ce-float-index",
        "ce-count",
        "ce-smoothing",
        "ce-weight-shape",
        "bce-shape",
        "mse-shape",
        "linear-shape",
        "gelu-approximate",
        "unknown-activation",
        "where-no-tensor",
    ],
)
def test_invalid_arguments_raise(backend, call, error, match):
    with pytest.raises(error, match=match):
        call(mt.tensor(X))


# ------------------------------------------------------------------------------------------ Tensor operators
OPERATOR_CASES = [
    pytest.param(lambda x, y: x + 1, lambda x, y: x + 1, id="x + 1"),
    pytest.param(lambda x, y: 1 + x, lambda x, y: 1 + x, id="1 + x"),
    pytest.param(lambda x, y: 1 - x, lambda x, y: 1 - x, id="1 - x"),
    pytest.param(lambda x, y: x - y, lambda x, y: x - y, id="x - y"),
    pytest.param(lambda x, y: 2 * x, lambda x, y: 2 * x, id="2 * x"),
    pytest.param(lambda x, y: x * y, lambda x, y: x * y, id="x * y"),
    pytest.param(lambda x, y: x / y, lambda x, y: x / y, id="x / y"),
    pytest.param(lambda x, y: 1 / y, lambda x, y: 1 / y, id="1 / y"),
    pytest.param(lambda x, y: x**2, lambda x, y: x**2, id="x ** 2"),
    pytest.param(lambda x, y: -x, lambda x, y: -x, id="-x"),
    pytest.param(lambda x, y: x @ y.T, lambda x, y: x @ y.T, id="x @ y.T"),
    pytest.param(lambda x, y: x[1:], lambda x, y: x[1:], id="x[1:]"),
    pytest.param(lambda x, y: x.T, lambda x, y: x.T, id="x.T"),
    pytest.param(lambda x, y: x.sum(axis=0), lambda x, y: x.sum(axis=0), id="x.sum"),
    pytest.param(lambda x, y: x.mean(), lambda x, y: x.mean(), id="x.mean"),
    pytest.param(lambda x, y: x.max(axis=1), lambda x, y: x.max(axis=1), id="x.max"),
    pytest.param(lambda x, y: x.reshape(6), lambda x, y: x.reshape(6), id="x.reshape"),
    pytest.param(lambda x, y: x.flatten(), lambda x, y: x.flatten(), id="x.flatten"),
    pytest.param(lambda x, y: y.log(), lambda x, y: np.log(y), id="y.log"),
    pytest.param(lambda x, y: x.exp(), lambda x, y: np.exp(x), id="x.exp"),
    pytest.param(lambda x, y: x.abs(), lambda x, y: np.abs(x), id="x.abs"),
    pytest.param(lambda x, y: x.relu(), lambda x, y: np.maximum(x, 0), id="x.relu"),
    pytest.param(lambda x, y: x.softmax(), lambda x, y: _np_softmax(x), id="x.softmax"),
]
XO = np.array([[0.5, -1.5, 2.0], [1.0, -0.25, 3.0]])
YO = np.array([[2.0, 0.5, 1.5], [0.75, 1.25, 4.0]])


@pytest.mark.parametrize(("op", "expected"), OPERATOR_CASES)
def test_tensor_operators_compute_and_record(backend, op, expected):
    x, y = mt.tensor(XO, requires_grad=True), mt.tensor(YO, requires_grad=True)
    out = op(x, y)
    assert isinstance(out, Tensor) and out.requires_grad
    np.testing.assert_allclose(out.numpy(), expected(XO, YO), rtol=1e-12)


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (lambda x: x > 0.5, XO > 0.5),
        (lambda x: x >= 0.5, XO >= 0.5),
        (lambda x: x < 1, XO < 1),
        (lambda x: x <= 1, XO <= 1),
        (lambda x: x > mt.tensor(YO), XO > YO),
    ],
    ids=[">", ">=", "<", "<=", "tensor"],
)
def test_comparisons_return_boolean_tensors_without_grad(backend, op, expected):
    out = op(mt.tensor(XO, requires_grad=True))
    assert out.dtype == np.bool_ and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), expected)


def test_numpy_array_on_the_left_defers_to_tensor(backend):
    out = np.ones((2, 2)) @ mt.tensor(XO, requires_grad=True)
    assert isinstance(out, Tensor) and out.requires_grad


# ------------------------------------------------------------------------------------------ float32
FLOAT32_OPS = [
    pytest.param(lambda x, y: x + 1.5, id="add-scalar"),
    pytest.param(lambda x, y: 2.5 - x, id="rsub-scalar"),
    pytest.param(lambda x, y: x * 0.1, id="mul-scalar"),
    pytest.param(lambda x, y: 3.0 / y, id="rdiv-scalar"),
    pytest.param(lambda x, y: x / y, id="div"),
    pytest.param(lambda x, y: y**0.5, id="pow"),
    pytest.param(lambda x, y: x + np.ones(3), id="add-float64-array"),
    pytest.param(lambda x, y: x @ y.T, id="matmul"),
    pytest.param(lambda x, y: x.mean(axis=0), id="mean"),
    pytest.param(lambda x, y: x.max(), id="max"),
    pytest.param(lambda x, y: F.exp(x), id="exp"),
    pytest.param(lambda x, y: F.log(y), id="log"),
    pytest.param(lambda x, y: F.clip(x, -1, 1), id="clip"),
    pytest.param(lambda x, y: F.where(MASK[:2, :3], x, 0.0), id="where"),
    pytest.param(lambda x, y: F.stack([x, y]), id="stack"),
    pytest.param(F.maximum, id="maximum"),
    *[pytest.param(lambda x, y, a=a: F.activation(x, a), id=a) for a in ACTIVATIONS],
    pytest.param(lambda x, y: F.softmax(x), id="softmax"),
    pytest.param(lambda x, y: F.log_softmax(x), id="log_softmax"),
    pytest.param(lambda x, y: F.linear(x, y, y[0, :2] * 0 + 1, "relu"), id="linear"),
    pytest.param(lambda x, y: F.dropout(x, 0.5), id="dropout"),
    pytest.param(lambda x, y: F.batch_norm(x, None, None, y[0], y[1], training=True), id="batch_norm"),
    pytest.param(lambda x, y: F.cross_entropy(x, np.array([0, 2]), CLASS_W, label_smoothing=0.1), id="ce"),
    pytest.param(lambda x, y: F.cross_entropy(x, PROBS[:2], reduction="sum"), id="ce-probs"),
    pytest.param(lambda x, y: F.binary_cross_entropy_with_logits(x, BIN_T[:2], pos_weight=2.0), id="bce"),
    pytest.param(lambda x, y: F.mse_loss(x, YO), id="mse"),
]


@pytest.mark.parametrize("op", FLOAT32_OPS)
def test_float32_stays_float32_through_ops_and_gradients(backend, op):
    x = mt.tensor(XO, requires_grad=True, dtype="float32")
    y = mt.tensor(YO, requires_grad=True, dtype="float32")
    out = op(x, y)
    assert out.dtype == np.float32
    out.backward(np.ones(out.shape))
    for t in (x, y):
        assert t.grad is None or t.grad.dtype == np.float32


# ------------------------------------------------------------------------------------------ gradcheck itself
def _wrong_square(x):
    """x * x with a backward that is off by 10% on the last element."""
    xd = x.data

    def bw(g):
        out = 2 * xd * g
        out.reshape(-1)[-1] *= 1.1
        return (out,)

    return Tensor._make(xd * xd, x.backend, (x,), bw)


def test_gradcheck_passes_a_correct_op(backend):
    assert gradcheck(lambda a, b: a * b + F.exp(a), np.arange(3.0), np.ones(3), backend=backend) is True


def test_gradcheck_accepts_tensors(backend):
    assert gradcheck(F.tanh, mt.tensor([0.5, -0.5]), backend=backend)


def test_gradcheck_names_the_input_and_worst_element(backend):
    with pytest.raises(AssertionError, match=r"input 1 \(shape \(2, 2\)\).*worst at index \(1, 1\)") as err:
        gradcheck(lambda a, b: a + _wrong_square(b), np.ones(2), np.array([[1.0, 2.0], [3.0, 4.0]]), backend=backend)
    analytic, numeric = map(float, re.search(r"analytic (\S+), numeric (\S+)", str(err.value)).groups())
    assert analytic / numeric == pytest.approx(1.1, rel=1e-6)  # the planted 10% error, with its values


def test_gradcheck_checks_every_output_element(backend):
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(_wrong_square, np.array([0.5, -1.0, 2.0]), backend=backend)


def test_gradcheck_catches_a_missing_gradient(backend):
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(lambda a: F.mul(a.detach(), a.detach()) + a, np.array([1.0, 2.0]), backend=backend)


def test_gradcheck_rejects_non_tensor_output(backend):
    with pytest.raises(TypeError, match="must return a floating-point Tensor"):
        gradcheck(lambda a: a.numpy(), np.ones(2), backend=backend)


def test_scalar_to_the_power_of_a_tensor(backend):
    x = mt.tensor(np.array([0.0, 1.0, 2.0]), requires_grad=True)
    y = 2.0**x
    np.testing.assert_allclose(y.numpy(), [1.0, 2.0, 4.0])
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.log(2.0) * np.array([1.0, 2.0, 4.0]), rtol=1e-6)
