"""Nothing lost, nothing silently wrong: atomic ``load_state_dict``, string activations with their modules' defaults,
``CrossEntropyLoss(ignore_index=...)`` as in PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minitrain as mt
from minitrain import functional as F
from minitrain import losses, nn, optim
from minitrain.backend import ACTIVATIONS
from minitrain.testing import gradcheck

_RNG = np.random.default_rng(11)


# ---------------------------------------------------------------------- load_state_dict is atomic
def _net():
    with mt.random.seeded(0):
        return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


MODULE_FAULTS = {
    "conversion": lambda s: s.update({"2.bias": np.array(["a", "b"])}),
    "shape": lambda s: s.update({"2.bias": np.zeros(3)}),
    "missing-key": lambda s: s.pop("2.bias"),
    "extra-key": lambda s: s.update({"3.weight": np.zeros(2)}),
}


@pytest.mark.parametrize("fault", MODULE_FAULTS)
def test_module_load_state_dict_that_fails_changes_nothing(backend, fault):
    net = _net()
    before = net.state_dict()
    state = {key: value + 1 for key, value in before.items()}  # every value changes, then the last one is bad
    MODULE_FAULTS[fault](state)
    with pytest.raises((KeyError, ValueError, TypeError)):
        net.load_state_dict(state)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def _trained_adam():
    net = _net()
    opt = optim.Adam([{"params": net[0].parameters()}, {"params": net[2].parameters(), "lr": 0.1}], lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        (net(mt.tensor(_RNG.normal(size=(8, 3)), dtype="float32")) ** 2).mean().backward()
        opt.step()
    return opt


OPTIMIZER_FAULTS = {
    "negative-lr": lambda s: s["param_groups"][1].update(lr=-1.0),
    "betas": lambda s: s["param_groups"][1].update(betas=(0.9,)),
    "state-shape": lambda s: s["state"][1].update(exp_avg=np.zeros(3)),
    "state-conversion": lambda s: s["state"][1].update(exp_avg=np.array(["x"] * s["state"][1]["exp_avg"].size)),
}


@pytest.mark.parametrize("fault", OPTIMIZER_FAULTS)
def test_optimizer_load_state_dict_that_fails_changes_nothing(backend, fault):
    opt = _trained_adam()
    before = opt.state_dict()
    state = opt.state_dict()
    state["param_groups"][0]["lr"] = 0.5  # a valid change before the bad one
    state["state"][0]["exp_avg"] = state["state"][0]["exp_avg"] + 1
    OPTIMIZER_FAULTS[fault](state)
    with pytest.raises((ValueError, TypeError)):
        opt.load_state_dict(state)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for i, saved in before["state"].items():
        for key, value in saved.items():
            np.testing.assert_array_equal(after["state"][i][key], value, err_msg=f"{i}: {key}")


# ---------------------------------------------------------------------- string activations
MODULES = {
    "identity": nn.Identity,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU("tanh"),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


def _forward_backward(model, params, x_host):
    x = mt.tensor(x_host, requires_grad=True)
    y = model(x)
    (y * mt.tensor(np.linspace(-1.0, 1.0, y.size).reshape(y.shape))).sum().backward()
    return [y.numpy(), x.grad, *(p.grad for p in params)]


@pytest.mark.parametrize("composition", ["sequential", "separate"])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_linear_string_activation_equals_the_activation_module(backend, name, composition):
    fused = nn.Linear(5, 4, activation=name, dtype="float64")
    plain = nn.Linear(5, 4, dtype="float64")
    plain.load_state_dict(fused.state_dict())
    act = MODULES[name]()
    model = nn.Sequential(plain, act) if composition == "sequential" else (lambda x: act(plain(x)))
    x_host = 3.0 * _RNG.normal(size=(6, 5))  # both signs of every pre-activation
    expected = _forward_backward(model, plain.parameters(), x_host)
    for got, want in zip(_forward_backward(fused, fused.parameters(), x_host), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["leaky_relu", "elu"])
def test_functional_string_activation_takes_the_module_default(backend, name):
    x, w, b = (mt.tensor(3.0 * _RNG.normal(size=s)) for s in [(6, 5), (4, 5), (4,)])
    act = MODULES[name]()
    np.testing.assert_allclose(F.activation(x, name).numpy(), act(x).numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.linear(x, w, b, name).numpy(), act(F.linear(x, w, b)).numpy(), rtol=1e-12)


# ---------------------------------------------------------------------- CrossEntropyLoss(ignore_index=...)
def ref_cross_entropy(x, t, weight=None, smoothing=0.0, ignore_index=-100):
    """PyTorch's rule: per-sample losses (0 where ignored) and the divisor of 'mean' (the kept targets' weights)."""
    c = x.shape[1]
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=float)
    kept = t != ignore_index
    safe = np.where(kept, t, 0)
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    q = (1.0 - smoothing) * np.eye(c)[safe] + smoothing / c
    return -(q * w * logp).sum(axis=1) * kept, w[safe][kept].sum()


WEIGHTS = [0.5, 2.0, 3.0]
OPTIONS = [(None, 0.0), (None, 0.2), (WEIGHTS, 0.0), (WEIGHTS, 0.2)]  # (weight, label_smoothing)
LOGITS = np.array([[0.0, 0.0, 1.0], [5.0, 0.0, -1.0], [1.0, 2.0, 0.5], [-0.5, 0.3, 2.0]])
TARGETS = np.array([1, -100, 0, -100])


def _ce(reduction="mean", **kwargs):
    return losses.CrossEntropyLoss(reduction=reduction, **kwargs)(mt.tensor(LOGITS), TARGETS)


def test_cross_entropy_mean_averages_over_the_kept_targets(backend):
    lse0, lse2 = math.log(2 + math.e), math.log(math.e + math.e**2 + math.exp(0.5))
    assert _ce().item() == pytest.approx(((lse0 - 0.0) + (lse2 - 1.0)) / 2, rel=1e-12)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_cross_entropy_ignored_targets_contribute_zero(backend, reduction):
    per_sample, _ = ref_cross_entropy(LOGITS, TARGETS)
    expected = per_sample if reduction == "none" else per_sample.sum()
    np.testing.assert_allclose(_ce(reduction).numpy(), expected, rtol=1e-12)
    if reduction == "none":
        assert _ce("none").numpy()[1] == 0.0 and _ce("none").numpy()[3] == 0.0


def test_cross_entropy_weighted_mean_divides_by_the_kept_targets_weights(backend):
    per_sample, _ = ref_cross_entropy(LOGITS, TARGETS, WEIGHTS)
    assert _ce(weight=WEIGHTS).item() == pytest.approx(per_sample.sum() / (2.0 + 0.5), rel=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weight", [None, WEIGHTS], ids=["unweighted", "weighted"])
def test_cross_entropy_label_smoothing_with_ignored_targets(backend, reduction, weight):
    per_sample, denom = ref_cross_entropy(LOGITS, TARGETS, weight, smoothing=0.2)
    expected = {"mean": per_sample.sum() / denom, "sum": per_sample.sum(), "none": per_sample}[reduction]
    got = _ce(reduction, weight=weight, label_smoothing=0.2).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_cross_entropy_gradient_of_ignored_samples_is_zero(backend):
    x = mt.tensor(LOGITS, requires_grad=True)
    losses.CrossEntropyLoss(label_smoothing=0.1)(x, TARGETS).backward()
    np.testing.assert_array_equal(x.grad[TARGETS == -100], 0.0)
    assert np.abs(x.grad[TARGETS != -100]).min() > 0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("weight", "smoothing"), OPTIONS)
def test_cross_entropy_ignore_index_gradcheck(backend, reduction, weight, smoothing):
    loss = losses.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=smoothing)
    assert gradcheck(lambda x: loss(x, TARGETS), LOGITS)


def test_cross_entropy_ignore_index_may_name_a_class(backend):
    t = np.array([1, 2, 0, 1])
    per_sample, denom = ref_cross_entropy(LOGITS, t, ignore_index=1)
    got = losses.CrossEntropyLoss(ignore_index=1)(mt.tensor(LOGITS), t).item()
    assert got == pytest.approx(per_sample.sum() / denom, rel=1e-12) and denom == 2


def test_cross_entropy_mean_of_only_ignored_targets_is_nan_with_zero_gradient(backend):
    x = mt.tensor(LOGITS, requires_grad=True)
    loss = losses.CrossEntropyLoss(ignore_index=-1)(x, [-1, -1, -1, -1])
    loss.backward()
    assert math.isnan(loss.item())
    np.testing.assert_array_equal(x.grad, 0.0)


def test_cross_entropy_other_negative_targets_are_still_errors(backend):
    with pytest.raises(ValueError, match="class indices"):
        losses.CrossEntropyLoss(ignore_index=-100)(mt.tensor(LOGITS), [1, -1, 0, 2])


def test_cross_entropy_probability_targets_ignore_nothing(backend):
    probs = np.full(LOGITS.shape, 1.0 / 3)
    with_index = losses.CrossEntropyLoss(ignore_index=0)(mt.tensor(LOGITS), probs).item()
    assert with_index == pytest.approx(losses.CrossEntropyLoss()(mt.tensor(LOGITS), probs).item(), rel=1e-15)


def test_functional_cross_entropy_takes_ignore_index(backend):
    got = F.cross_entropy(mt.tensor(LOGITS), np.array([1, 7, 0, 7]), ignore_index=7).item()
    assert got == pytest.approx(_ce().item(), rel=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("weight", "smoothing"), OPTIONS)
def test_cross_entropy_ignore_index_matches_torch(backend, reduction, weight, smoothing):
    torch = pytest.importorskip("torch")
    x = mt.tensor(LOGITS, requires_grad=True)
    loss = losses.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=smoothing)(x, TARGETS)
    (loss * mt.tensor(np.arange(1.0, loss.size + 1.0).reshape(loss.shape))).sum().backward()
    tx = torch.tensor(LOGITS, requires_grad=True)
    tw = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    ref = torch.nn.functional.cross_entropy(
        tx, torch.tensor(TARGETS), weight=tw, reduction=reduction, label_smoothing=smoothing
    )
    (ref * torch.arange(1.0, ref.numel() + 1.0, dtype=torch.float64).reshape(ref.shape)).sum().backward()
    np.testing.assert_allclose(loss.numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12, atol=1e-15)
