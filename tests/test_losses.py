"""Losses against hand-written NumPy float64 formulas (PyTorch's definitions), gradients by finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minitrain as mt
from minitrain import losses

REDUCTIONS = ["mean", "sum", "none"]
_RNG = np.random.default_rng(7)


# ---------------------------------------------------------------------- reference formulas (float64)
def _log_softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def ref_huber(x, t, delta):
    d = np.abs(x - t)
    return np.where(d <= delta, 0.5 * d**2, delta * (d - 0.5 * delta))


def ref_bce(x, t, weight=None, pos_weight=None):
    pw = 1.0 if pos_weight is None else pos_weight
    loss = -(pw * t * _log_sigmoid(x) + (1 - t) * _log_sigmoid(-x))
    return loss if weight is None else loss * weight


def ref_cross_entropy(x, t, weight=None, smoothing=0.0):
    """PyTorch's formula: per-sample losses and the divisor of 'mean'."""
    n, c = x.shape
    logp = _log_softmax(x)
    w = np.ones(c) if weight is None else weight
    if t.ndim == 1:  # class indices: (1 - s) * weighted NLL + s * weighted mean over classes
        nll = -w[t] * logp[np.arange(n), t]
        smooth = -(w * logp).sum(axis=1) / c
        return (1 - smoothing) * nll + smoothing * smooth, (w[t].sum() if weight is not None else n)
    q = (1 - smoothing) * t + smoothing / c
    return -(w * q * logp).sum(axis=1), n


def ref_poisson(x, t, log_input, full, eps=1e-8):
    loss = np.exp(x) - t * x if log_input else x - t * np.log(x + eps)
    if full:
        ts = np.where(t > 1, t, 1.0)
        loss = loss + np.where(t > 1, ts * np.log(ts) - ts + 0.5 * np.log(2 * math.pi * ts), 0.0)
    return loss


def _softmax_rows(shape):
    e = np.exp(_RNG.normal(size=shape))
    return e / e.sum(axis=1, keepdims=True)


_X = _RNG.normal(size=(4, 3))
_T = _RNG.normal(size=(4, 3))
_LOGITS = _RNG.normal(size=(5, 4))
_LABELS = np.array([0, 3, 1, 3, 2])
_PROBS = _softmax_rows((5, 4))
_W = np.array([0.5, 2.0, 1.0, 3.0])
_COUNTS = np.array([[0.0, 1.0, 2.0], [5.0, 0.0, 3.0], [1.0, 7.0, 4.0], [2.0, 2.0, 0.0]])
_RATES = _RNG.uniform(0.5, 3.0, size=(4, 3))
_BCE_T = _RNG.uniform(size=(4, 3))
_BCE_W = np.array([0.5, 1.0, 2.0])
_POS_W = np.array([3.0, 1.0, 0.25])

# id: (loss factory, input, target, reference -> (elementwise loss, divisor of 'mean' or None))
CASES = {
    "mse": (lambda r: losses.MSELoss(r), _X, _T, lambda: ((_X - _T) ** 2, None)),
    "l1": (lambda r: losses.L1Loss(r), _X, _T, lambda: (np.abs(_X - _T), None)),
    "huber-1": (lambda r: losses.HuberLoss(r), 2 * _X, _T, lambda: (ref_huber(2 * _X, _T, 1.0), None)),
    "huber-0.5": (lambda r: losses.HuberLoss(r, delta=0.5), _X, _T, lambda: (ref_huber(_X, _T, 0.5), None)),
    "bce": (lambda r: losses.BCEWithLogitsLoss(reduction=r), _X, _BCE_T, lambda: (ref_bce(_X, _BCE_T), None)),
    "bce-weights": (
        lambda r: losses.BCEWithLogitsLoss(weight=_BCE_W, reduction=r, pos_weight=_POS_W),
        _X,
        _BCE_T,
        lambda: (ref_bce(_X, _BCE_T, _BCE_W, _POS_W), None),
    ),
    "ce": (
        lambda r: losses.CrossEntropyLoss(reduction=r),
        _LOGITS,
        _LABELS,
        lambda: ref_cross_entropy(_LOGITS, _LABELS),
    ),
    "ce-weight": (
        lambda r: losses.CrossEntropyLoss(weight=_W, reduction=r),
        _LOGITS,
        _LABELS,
        lambda: ref_cross_entropy(_LOGITS, _LABELS, _W),
    ),
    "ce-smoothing": (
        lambda r: losses.CrossEntropyLoss(reduction=r, label_smoothing=0.2),
        _LOGITS,
        _LABELS,
        lambda: ref_cross_entropy(_LOGITS, _LABELS, smoothing=0.2),
    ),
    "ce-weight-smoothing": (
        lambda r: losses.CrossEntropyLoss(weight=_W, reduction=r, label_smoothing=0.1),
        _LOGITS,
        _LABELS,
        lambda: ref_cross_entropy(_LOGITS, _LABELS, _W, 0.1),
    ),
    "ce-probs": (
        lambda r: losses.CrossEntropyLoss(reduction=r),
        _LOGITS,
        _PROBS,
        lambda: ref_cross_entropy(_LOGITS, _PROBS),
    ),
    "ce-probs-weight-smoothing": (
        lambda r: losses.CrossEntropyLoss(weight=_W, reduction=r, label_smoothing=0.3),
        _LOGITS,
        _PROBS,
        lambda: ref_cross_entropy(_LOGITS, _PROBS, _W, 0.3),
    ),
    "poisson-log": (
        lambda r: losses.PoissonNLLLoss(reduction=r),
        _X,
        _COUNTS,
        lambda: (ref_poisson(_X, _COUNTS, True, False), None),
    ),
    "poisson-log-full": (
        lambda r: losses.PoissonNLLLoss(full=True, reduction=r),
        _X,
        _COUNTS,
        lambda: (ref_poisson(_X, _COUNTS, True, True), None),
    ),
    "poisson-rate": (
        lambda r: losses.PoissonNLLLoss(log_input=False, reduction=r),
        _RATES,
        _COUNTS,
        lambda: (ref_poisson(_RATES, _COUNTS, False, False), None),
    ),
    "poisson-rate-full": (
        lambda r: losses.PoissonNLLLoss(log_input=False, full=True, eps=1e-3, reduction=r),
        _RATES,
        _COUNTS,
        lambda: (ref_poisson(_RATES, _COUNTS, False, True, eps=1e-3), None),
    ),
}


def _expected(case, reduction):
    values, divisor = CASES[case][3]()
    if reduction == "none":
        return values
    return values.sum() / (values.size if divisor is None else divisor) if reduction == "mean" else values.sum()


def _numeric_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar function ``f`` at ``x`` (float64)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[i] += eps
        lo[i] -= eps
        grad[i] = (f(hi) - f(lo)) / (2 * eps)
    return grad


# ---------------------------------------------------------------------- values and gradients
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_loss_matches_reference_formula(backend, case, reduction):
    factory, x, target, _ = CASES[case]
    out = factory(reduction)(mt.tensor(x), target)
    np.testing.assert_allclose(out.numpy(), _expected(case, reduction), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_loss_gradient_matches_finite_differences(backend, case, reduction):
    factory, x, target, _ = CASES[case]
    loss_fn = factory(reduction)
    upstream = np.random.default_rng(3).normal(size=_expected(case, reduction).shape)
    xt = mt.tensor(x, requires_grad=True)
    loss_fn(xt, target).backward(upstream)
    numeric = _numeric_grad(lambda v: float((loss_fn(mt.tensor(v), target).numpy() * upstream).sum()), x)
    np.testing.assert_allclose(backend.to_numpy(xt.grad), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", ["mse", "ce", "ce-probs", "bce", "poisson-log-full"])
def test_float32_input_gives_float32_loss_close_to_reference(backend, case):
    factory, x, target, _ = CASES[case]
    out = factory("mean")(mt.tensor(x.astype(np.float32)), target)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.item(), _expected(case, "mean"), rtol=1e-5)


@pytest.mark.parametrize("kind", ["list", "numpy", "tensor"])
@pytest.mark.parametrize("case", ["mse", "l1", "huber-1", "bce", "ce", "ce-probs", "poisson-log"])
def test_targets_may_be_lists_arrays_or_tensors(backend, case, kind):
    factory, x, target, _ = CASES[case]
    given = {"list": target.tolist(), "numpy": target, "tensor": mt.tensor(target)}[kind]
    np.testing.assert_allclose(factory("sum")(mt.tensor(x), given).item(), _expected(case, "sum"), rtol=1e-10)


def test_huber_equals_half_squared_error_inside_delta(backend):
    x, t = np.array([0.1, -0.3, 0.2]), np.zeros(3)
    assert losses.HuberLoss(delta=1.0)(mt.tensor(x), t).item() == pytest.approx(0.5 * np.mean(x**2), rel=1e-12)


def test_l1_gradient_is_sign_of_difference(backend):
    x = mt.tensor(np.array([2.0, -1.0, 0.5]), requires_grad=True)
    losses.L1Loss("sum")(x, [1.0, 1.0, 1.0]).backward()
    np.testing.assert_array_equal(backend.to_numpy(x.grad), [1.0, -1.0, -1.0])


def test_loss_is_not_differentiated_wrt_target(backend):
    x = mt.tensor(_X, requires_grad=True)
    t = mt.tensor(_T, requires_grad=True)
    losses.MSELoss()(x, t).backward()
    assert t.grad is None and x.grad is not None


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "loss_cls", [losses.MSELoss, losses.L1Loss, losses.HuberLoss, losses.BCEWithLogitsLoss, losses.PoissonNLLLoss]
)
def test_elementwise_losses_reject_wrong_target_shape(backend, loss_cls):
    with pytest.raises(ValueError, match="shape"):
        loss_cls()(mt.tensor(_X), np.zeros((4, 2)))


@pytest.mark.parametrize(
    "loss_cls",
    [
        losses.MSELoss,
        losses.L1Loss,
        losses.HuberLoss,
        losses.BCEWithLogitsLoss,
        losses.CrossEntropyLoss,
        losses.PoissonNLLLoss,
    ],
)
def test_unknown_reduction_is_rejected_at_construction(loss_cls):
    with pytest.raises(ValueError, match="reduction"):
        loss_cls(reduction="avg")


@pytest.mark.parametrize("labels", [[0, 4, 1, 2, 3], [-1, 0, 1, 2, 3]])
def test_cross_entropy_rejects_labels_out_of_range(backend, labels):
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 4\)"):
        losses.CrossEntropyLoss()(mt.tensor(_LOGITS), labels)


@pytest.mark.parametrize("target", [np.zeros(4, dtype=int), np.zeros((5, 3)), np.zeros((5, 4, 1))])
def test_cross_entropy_rejects_wrong_target_shape(backend, target):
    with pytest.raises(ValueError):
        losses.CrossEntropyLoss()(mt.tensor(_LOGITS), target)


def test_cross_entropy_rejects_float_class_indices(backend):
    with pytest.raises(TypeError, match="integers"):
        losses.CrossEntropyLoss()(mt.tensor(_LOGITS), _LABELS.astype(float))


def test_cross_entropy_rejects_wrong_weight_shape(backend):
    with pytest.raises(ValueError, match="class weights"):
        losses.CrossEntropyLoss(weight=[1.0, 2.0])(mt.tensor(_LOGITS), _LABELS)


@pytest.mark.parametrize(
    "make",
    [
        lambda: losses.HuberLoss(delta=0.0),
        lambda: losses.HuberLoss(delta=-1.0),
        lambda: losses.CrossEntropyLoss(label_smoothing=1.5),
        lambda: losses.CrossEntropyLoss(label_smoothing=-0.1),
        lambda: losses.PoissonNLLLoss(eps=-1.0),
    ],
)
def test_invalid_hyperparameters_raise(make):
    with pytest.raises(ValueError):
        make()


def test_loss_repr_shows_its_settings():
    assert repr(losses.HuberLoss("sum", delta=2.0)) == "HuberLoss(reduction='sum', delta=2.0)"
