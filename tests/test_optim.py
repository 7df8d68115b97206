"""Optimizers against hand-written float64 NumPy versions of PyTorch's documented update rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minitrain as mt
from minitrain import optim
from minitrain.nn import Linear, Parameter, flatten_parameters

SHAPES = [(3, 4), (5,)]
N_STEPS = 5


# ---------------------------------------------------------------------- reference rules (float64)
def ref_sgd(p, grads, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, l1=0.0):
    p, buf = p.copy(), None
    for g in grads:
        g = g + weight_decay * p + l1 * np.sign(p)
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def ref_adam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, l1=0.0, decoupled=False):
    p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
            g = g + l1 * np.sign(p)
        else:
            g = g + weight_decay * p + l1 * np.sign(p)
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def ref_adamw(p, grads, weight_decay=1e-2, **kw):
    return ref_adam(p, grads, weight_decay=weight_decay, decoupled=True, **kw)


def ref_rmsprop(p, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, l1=0.0):
    p, v, g_avg, buf = p.copy(), np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        g = g + weight_decay * p + l1 * np.sign(p)
        v = alpha * v + (1 - alpha) * g * g
        v_tilde = v
        if centered:
            g_avg = alpha * g_avg + (1 - alpha) * g
            v_tilde = v - g_avg**2
        if momentum > 0:
            buf = momentum * buf + g / (np.sqrt(v_tilde) + eps)
            p = p - lr * buf
        else:
            p = p - lr * g / (np.sqrt(v_tilde) + eps)
    return p


def ref_adagrad(p, grads, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, l1=0.0):
    p, state_sum = p.copy(), np.full_like(p, initial_accumulator_value)
    for t, g in enumerate(grads, start=1):
        clr = lr / (1 + (t - 1) * lr_decay)
        g = g + weight_decay * p + l1 * np.sign(p)
        state_sum = state_sum + g * g
        p = p - clr * g / (np.sqrt(state_sum) + eps)
    return p


CASES = [
    (optim.SGD, ref_sgd, {"lr": 0.1}),
    (optim.SGD, ref_sgd, {"lr": 0.1, "momentum": 0.9}),
    (optim.SGD, ref_sgd, {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    (optim.SGD, ref_sgd, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    (optim.SGD, ref_sgd, {"lr": 0.1, "weight_decay": 0.1}),
    (optim.SGD, ref_sgd, {"lr": 0.1, "l1": 0.05}),
    (optim.SGD, ref_sgd, {"lr": 0.05, "momentum": 0.5, "nesterov": True, "weight_decay": 0.01, "l1": 0.01}),
    (optim.Adam, ref_adam, {"lr": 0.01}),
    (optim.Adam, ref_adam, {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-6}),
    (optim.Adam, ref_adam, {"lr": 0.01, "weight_decay": 0.1}),
    (optim.Adam, ref_adam, {"lr": 0.01, "l1": 0.05}),
    (optim.AdamW, ref_adamw, {"lr": 0.01}),
    (optim.AdamW, ref_adamw, {"lr": 0.01, "weight_decay": 0.5, "l1": 0.01}),
    (optim.RMSprop, ref_rmsprop, {"lr": 0.01}),
    (optim.RMSprop, ref_rmsprop, {"lr": 0.01, "alpha": 0.9, "momentum": 0.8}),
    (optim.RMSprop, ref_rmsprop, {"lr": 0.01, "centered": True}),
    (optim.RMSprop, ref_rmsprop, {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1, "l1": 0.01}),
    (optim.Adagrad, ref_adagrad, {"lr": 0.1}),
    (optim.Adagrad, ref_adagrad, {"lr": 0.1, "lr_decay": 0.3}),
    (optim.Adagrad, ref_adagrad, {"lr": 0.1, "initial_accumulator_value": 0.5, "weight_decay": 0.1, "l1": 0.01}),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for cls, _, kw in CASES]


def _cases(*idx):
    """Parametrize over some of CASES."""
    return pytest.mark.parametrize(("cls", "ref", "kwargs"), [CASES[i] for i in idx], ids=[IDS[i] for i in idx])


def _values(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in SHAPES]


def _grads(n_steps=N_STEPS, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.normal(size=s) for s in SHAPES] for _ in range(n_steps)]


def _params(dtype="float64", seed=0):
    return [Parameter(v, dtype=dtype) for v in _values(seed)]


def _run(opt, params, grads, backend):
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad[...] = backend.asarray(g, dtype=p.dtype)
        opt.step()


def _assert_params(params, expected, backend, dtype):
    tol = {"float64": {"rtol": 1e-10, "atol": 1e-12}, "float32": {"rtol": 1e-5, "atol": 2e-6}}[dtype]
    for p, e in zip(params, expected, strict=True):
        assert p.dtype == np.dtype(dtype)
        np.testing.assert_allclose(backend.to_numpy(p.data), e, **tol)


# ---------------------------------------------------------------------- update rules
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("cls", "ref", "kwargs"), CASES, ids=IDS)
def test_steps_match_reference_rule(backend, cls, ref, kwargs, dtype):
    params, grads = _params(dtype), _grads()
    _run(cls(params, **kwargs), params, grads, backend)
    expected = [ref(v, [g[i] for g in grads], **kwargs) for i, v in enumerate(_values())]
    _assert_params(params, expected, backend, dtype)


@_cases(2, 9, 16, 19)
def test_param_groups_use_their_own_hyperparameters(backend, cls, ref, kwargs):
    params, grads = _params(), _grads()
    other = {**kwargs, "lr": kwargs["lr"] * 3, "weight_decay": 0.2}
    _run(cls([{"params": [params[0]]}, {"params": [params[1]], **other}], **kwargs), params, grads, backend)
    expected = [ref(_values()[0], [g[0] for g in grads], **kwargs), ref(_values()[1], [g[1] for g in grads], **other)]
    _assert_params(params, expected, backend, "float64")


def test_mixed_dtypes_get_one_buffer_each_and_both_update(backend):
    params = [Parameter(_values()[0], dtype="float32"), Parameter(_values()[1], dtype="float64")]
    grads = _grads()
    _run(optim.SGD(params, lr=0.1, momentum=0.9), params, grads, backend)
    for i, p in enumerate(params):
        expected = ref_sgd(_values()[i], [g[i] for g in grads], lr=0.1, momentum=0.9)
        np.testing.assert_allclose(backend.to_numpy(p.data), expected, rtol=1e-5, atol=2e-6)


def test_added_param_group_keeps_earlier_state(backend):
    params, grads = _params(), _grads()
    opt = optim.SGD([params[0]], lr=0.1, momentum=0.9)
    _run(opt, params[:1], [g[:1] for g in grads[:2]], backend)
    opt.add_param_group({"params": [params[1]], "lr": 0.2})
    _run(opt, params, grads[2:], backend)
    expected0 = ref_sgd(_values()[0], [g[0] for g in grads], lr=0.1, momentum=0.9)
    expected1 = ref_sgd(_values()[1], [g[1] for g in grads[2:]], lr=0.2, momentum=0.9)
    _assert_params(params, [expected0, expected1], backend, "float64")


KERNELS = {optim.SGD: "sgd_step", optim.Adam: "adam_step", optim.AdamW: "adam_step", optim.RMSprop: "rmsprop_step"}
KERNELS[optim.Adagrad] = "adagrad_step"


@pytest.mark.parametrize("cls", list(KERNELS), ids=lambda c: c.__name__)
def test_each_step_is_one_kernel_call_per_flat_buffer(backend, monkeypatch, cls):
    calls, kernel = [], KERNELS[cls]
    original = getattr(backend, kernel)
    monkeypatch.setattr(backend, kernel, lambda *a, **k: calls.append(1) or original(*a, **k))
    params = [Parameter(np.ones((4, 3)), dtype="float32"), Parameter(np.ones(3), dtype="float32")]
    params.append(Parameter(np.ones(2), dtype="float64"))
    opt = cls(params, lr=0.1)
    opt.step()
    opt.step()
    assert len(calls) == 4  # two dtypes -> two buffers, two steps


def test_state_is_allocated_lazily_with_the_buffer_size(backend):
    opt = optim.Adam(_params(), lr=0.1)
    assert opt.state == {}
    opt.step()
    (state,) = opt.state.values()
    assert state["step"] == 1 and state["exp_avg"].shape == (17,) and state["exp_avg_sq"].shape == (17,)


# ---------------------------------------------------------------------- clipping
def _clip_reference(grads, max_norm):
    total = math.sqrt(sum((g**2).sum() for g in grads))
    coef = min(1.0, max_norm / (total + 1e-6))
    return [g * coef for g in grads]


@pytest.mark.parametrize("groups", [False, True], ids=["one-buffer", "two-buffers"])
def test_clip_grad_norm_option_clips_the_global_norm(backend, groups):
    params, grads = _params(), _grads(1)
    spec = [{"params": [params[0]]}, {"params": [params[1]]}] if groups else params
    _run(optim.SGD(spec, lr=1.0, clip_grad_norm=0.5), params, grads, backend)
    clipped = _clip_reference(grads[0], 0.5)
    _assert_params(params, [v - g for v, g in zip(_values(), clipped, strict=True)], backend, "float64")


def test_clip_grad_value_option_clamps_each_gradient(backend):
    params, grads = _params(), _grads(1)
    _run(optim.SGD(params, lr=1.0, clip_grad_value=0.3), params, grads, backend)
    expected = [v - np.clip(g, -0.3, 0.3) for v, g in zip(_values(), grads[0], strict=True)]
    _assert_params(params, expected, backend, "float64")


@pytest.mark.parametrize("norm_type", [1.0, 2.0, math.inf])
def test_clip_grad_norm_function_returns_norm_and_scales(backend, norm_type):
    model = Linear(4, 3, dtype="float64")
    optim.SGD(model)  # flattens the model
    grads = [_grads(1)[0][0], np.arange(3.0)]
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad[...] = backend.asarray(g)
    flat = np.concatenate([g.ravel() for g in grads])
    total = np.abs(flat).max() if norm_type == math.inf else (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    assert optim.clip_grad_norm_(model, 1.0, norm_type=norm_type) == pytest.approx(total, rel=1e-10)
    coef = min(1.0, 1.0 / (total + 1e-6))
    for p, g in zip(model.parameters(), grads, strict=True):
        np.testing.assert_allclose(backend.to_numpy(p.grad), g * coef, rtol=1e-10)


def test_clip_grad_norm_function_on_part_of_a_buffer_leaves_the_rest(backend):
    model = Linear(4, 3, dtype="float64")
    optim.SGD(model)
    model.weight.grad[...] = 10.0
    model.bias.grad[...] = 10.0
    assert optim.clip_grad_norm_([model.weight], 1.0) == pytest.approx(10.0 * math.sqrt(12))
    np.testing.assert_allclose(np.linalg.norm(backend.to_numpy(model.weight.grad)), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(backend.to_numpy(model.bias.grad), np.full(3, 10.0))


def test_clip_grad_value_function_clamps(backend):
    params = _params()
    optim.SGD(params)
    for p, g in zip(params, _grads(1)[0], strict=True):
        p.grad[...] = backend.asarray(g)
    optim.clip_grad_value_(params, 0.2)
    for p, g in zip(params, _grads(1)[0], strict=True):
        np.testing.assert_array_equal(backend.to_numpy(p.grad), np.clip(g, -0.2, 0.2))


# ---------------------------------------------------------------------- state, zero_grad, staleness
@_cases(3, 10, 12, 16, 18)
def test_state_dict_round_trip_gives_identical_next_steps(backend, cls, ref, kwargs):
    grads = _grads(6)
    params_a = _params()
    opt_a = cls(params_a, **kwargs)
    _run(opt_a, params_a, grads[:3], backend)
    saved = opt_a.state_dict()
    params_b = [Parameter(backend.to_numpy(p.data).copy()) for p in params_a]
    opt_b = cls(params_b, lr=123.0)
    opt_b.load_state_dict(saved)
    assert opt_b.param_groups[0]["lr"] == kwargs["lr"]
    _run(opt_a, params_a, grads[3:], backend)
    _run(opt_b, params_b, grads[3:], backend)
    for a, b in zip(params_a, params_b, strict=True):
        np.testing.assert_array_equal(backend.to_numpy(a.data), backend.to_numpy(b.data))


def test_state_dict_holds_numpy_copies(backend):
    params = _params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    _run(opt, params, _grads(1), backend)
    saved = opt.state_dict()
    buf = saved["state"][0]["momentum_buffer"]
    assert isinstance(buf, np.ndarray) and saved["state"][0]["step"] == 1
    before = buf.copy()
    _run(opt, params, _grads(1, seed=5), backend)
    np.testing.assert_array_equal(buf, before)
    assert saved["param_groups"][0]["params"] == [0, 1]


def test_load_state_dict_rejects_a_different_layout(backend):
    opt = optim.SGD(_params(), lr=0.1, momentum=0.9)
    opt.step()
    other = optim.SGD([Parameter(np.ones(3))], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="do not match"):
        other.load_state_dict(opt.state_dict())


def test_zero_grad_zeroes_every_gradient(backend):
    params = [Parameter(np.ones((2, 2)), dtype="float32"), Parameter(np.ones(3), dtype="float64")]
    opt = optim.Adam(params)
    for p in params:
        p.grad[...] = 5.0
    opt.zero_grad()
    for p in params:
        np.testing.assert_array_equal(backend.to_numpy(p.grad), np.zeros(p.shape))


def test_step_after_reflattening_raises(backend):
    model = Linear(3, 2)
    opt = optim.SGD(model, lr=0.1)
    flatten_parameters([model.bias, model.weight])  # another order: new buffers, the optimizer's go stale
    with pytest.raises(RuntimeError, match="build the optimizer after"):
        opt.step()
    with pytest.raises(RuntimeError, match="re-flattened"):
        opt.zero_grad()


def test_gradients_from_backward_reach_the_flat_buffer(backend):
    model = Linear(3, 1, dtype="float64")
    opt = optim.SGD(model, lr=0.5)
    before = backend.to_numpy(model.weight.data).copy()
    x = np.array([[1.0, 2.0, 3.0]])
    model(mt.tensor(x)).sum().backward()
    opt.step()
    np.testing.assert_allclose(backend.to_numpy(model.weight.data), before - 0.5 * x, rtol=1e-12)


def test_closure_is_called_and_its_loss_returned(backend):
    params = _params()
    opt = optim.SGD(params, lr=0.1)
    calls = []
    assert opt.step(lambda: calls.append(1) or 42.0) == 42.0
    assert calls == [1]
    assert opt.step() is None


@pytest.mark.parametrize(
    ("cls", "lr"),
    [(optim.SGD, 0.05), (optim.Adam, 0.1), (optim.AdamW, 0.1), (optim.RMSprop, 0.03), (optim.Adagrad, 1.0)],
)
def test_quadratic_bowl_is_minimized(backend, cls, lr):
    curvature = mt.tensor(np.array([1.0, 4.0, 10.0]))
    p = Parameter(np.array([3.0, -2.0, 1.5]))
    opt = cls([p], lr=lr)

    def loss():
        return ((p * p) * curvature).sum() * 0.5

    first = loss().item()
    for _ in range(200):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 1e-3 * first


# ---------------------------------------------------------------------- construction and validation
def test_module_and_its_parameter_list_are_the_same(backend):
    model = Linear(3, 2)
    opt = optim.Adam(model)
    assert opt.param_groups[0]["params"] == model.parameters()
    assert "Adam (" in repr(opt) and "lr: 0.001" in repr(opt)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda ps: optim.SGD(ps, lr=-0.1), ValueError, "lr"),
        (lambda ps: optim.SGD(ps, lr="fast"), TypeError, "lr"),
        (lambda ps: optim.SGD(ps, momentum=-0.5), ValueError, "momentum"),
        (lambda ps: optim.SGD(ps, nesterov=True), ValueError, "nesterov"),
        (lambda ps: optim.SGD(ps, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "nesterov"),
        (lambda ps: optim.SGD(ps, weight_decay=-1), ValueError, "weight_decay"),
        (lambda ps: optim.SGD(ps, l1=-1), ValueError, "l1"),
        (lambda ps: optim.SGD(ps, clip_grad_norm=-1), ValueError, "clip_grad_norm"),
        (lambda ps: optim.SGD(ps, clip_grad_value=-1), ValueError, "clip_grad_value"),
        (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
        (lambda ps: optim.Adam(ps, betas=(-0.1, 0.9)), ValueError, r"betas\[0\]"),
        (lambda ps: optim.Adam(ps, betas=0.9), ValueError, "pair"),
        (lambda ps: optim.AdamW(ps, eps=-1e-8), ValueError, "eps"),
        (lambda ps: optim.RMSprop(ps, alpha=1.5), ValueError, "alpha"),
        (lambda ps: optim.Adagrad(ps, lr_decay=-0.1), ValueError, "lr_decay"),
        (lambda ps: optim.Adagrad(ps, initial_accumulator_value=-1), ValueError, "initial_accumulator_value"),
        (lambda ps: optim.SGD([{"params": ps[:1], "lr": -1.0}]), ValueError, "lr"),
        (lambda ps: optim.SGD([{"params": ps[:1], "clip_grad_norm": 1.0}]), ValueError, "whole optimizer"),
        (lambda ps: optim.SGD([{"params": ps}, {"params": ps[:1]}]), ValueError, "more than one parameter group"),
        (lambda ps: optim.SGD([{"lr": 0.1}]), TypeError, "'params'"),
        (lambda ps: optim.SGD([]), ValueError, "empty"),
        (lambda ps: optim.SGD([mt.tensor([1.0])]), TypeError, "Parameters"),
        (lambda ps: optim.SGD(3.0), TypeError, "iterable of Parameters"),
    ],
)
def test_invalid_arguments_raise_clear_errors(backend, make, error, match):
    with pytest.raises(error, match=match):
        make(_params())


def test_clip_grad_norm_function_rejects_zero_norm_type(backend):
    with pytest.raises(ValueError, match="norm_type"):
        optim.clip_grad_norm_(_params(), 1.0, norm_type=0)
