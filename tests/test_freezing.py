"""Freezing freezes: a parameter with ``requires_grad`` False is bit-for-bit unchanged by every optimizer, penalty
and clipping, with its optimizer state; unfrozen, it resumes from its own state and step count (PyTorch's rule for
a parameter whose gradient is None)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import minitrain as mt
from minitrain import nn, optim
from minitrain.nn import Parameter

OPTIMIZERS = {
    "SGD-momentum-wd-l1": (optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1, "l1": 0.01}),
    "SGD-nesterov-wd": (optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    "SGD-dampening": (optim.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    "Adam-wd-l1": (optim.Adam, {"lr": 0.01, "weight_decay": 0.1, "l1": 0.01}),
    "AdamW-wd0.1": (optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    "RMSprop-centered-momentum-wd-l1": (
        optim.RMSprop,
        {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1, "l1": 0.01},
    ),
    "Adagrad-decay-wd-l1": (
        optim.Adagrad,
        {"lr": 0.1, "lr_decay": 0.1, "initial_accumulator_value": 0.1, "weight_decay": 0.1, "l1": 0.01},
    ),
}
CLIPPING = {"clip_grad_norm": 0.05, "clip_grad_value": 0.01}


def _net(seed=0):
    with mt.random.seeded(seed):
        return nn.Sequential(nn.Linear(3, 5, activation="tanh"), nn.Linear(5, 4, activation="tanh"), nn.Linear(4, 2))


def _batch(seed=0):
    return mt.tensor(np.random.default_rng(seed).normal(size=(16, 3)), dtype="float32")


def _train(net, opt, steps, x):
    for _ in range(steps):
        opt.zero_grad()
        ((net(x) - 1.0) ** 2).mean().backward()
        opt.step()


def _slices(opt, param):
    """The optimizer's state arrays of ``param``, as NumPy copies."""
    for fb, _ in opt._flat_groups:
        offset = 0
        for p in fb.params:
            if p is param:
                arrays = {k: v for k, v in opt.state.get(fb, {}).items() if hasattr(v, "shape")}
                return {k: fb.backend.to_numpy(v[offset : offset + p.size]).copy() for k, v in arrays.items()}
            offset += p.size
    raise AssertionError("parameter not in the optimizer")


# ---------------------------------------------------------------------- optimizers, penalties, clipping
@pytest.mark.parametrize("clip", [{}, *({k: v} for k, v in CLIPPING.items())], ids=["noclip", *CLIPPING])
@pytest.mark.parametrize("case", OPTIMIZERS)
def test_a_parameter_frozen_from_the_start_never_moves(backend, case, clip):
    cls, kwargs = OPTIMIZERS[case]
    net, x = _net(), _batch()
    opt = cls(net, **kwargs, **clip)
    frozen = net[1].weight
    frozen.requires_grad = False
    before = frozen.numpy().copy()
    _train(net, opt, 20, x)
    np.testing.assert_array_equal(frozen.numpy(), before)
    assert not np.array_equal(net[0].weight.numpy(), _net()[0].weight.numpy())  # the others trained


@pytest.mark.parametrize("case", OPTIMIZERS)
def test_a_parameter_frozen_after_some_steps_keeps_its_value_and_state(backend, case):
    cls, kwargs = OPTIMIZERS[case]
    net, x = _net(), _batch()
    opt = cls(net, **kwargs)
    _train(net, opt, 5, x)
    net[1].freeze()
    values = [p.numpy().copy() for p in net[1].parameters()]
    states = [_slices(opt, p) for p in net[1].parameters()]
    _train(net, opt, 20, x)
    for p, value, state in zip(net[1].parameters(), values, states, strict=True):
        np.testing.assert_array_equal(p.numpy(), value)
        for key, array in _slices(opt, p).items():
            np.testing.assert_array_equal(array, state[key], err_msg=key)


def _two_parameters(backend):
    """Two parameters of one flat buffer whose gradients do not depend on each other."""
    rng = np.random.default_rng(3)
    a, b = Parameter(rng.normal(size=(3, 4)), backend=backend), Parameter(rng.normal(size=6), backend=backend)
    return a, b


def _set_grad(p, step):
    p.grad[...] = p.backend.asarray(np.cos(np.arange(p.size) + 0.7 * step).reshape(p.shape) + 0.1 * p.numpy())


SCHEDULES = {"frozen-in-between": [False] * 3 + [True] * 4 + [False] * 3, "frozen-at-first": [True] * 4 + [False] * 5}


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("case", OPTIMIZERS)
def test_an_unfrozen_parameter_resumes_from_its_own_state_and_step_count(backend, case, schedule):
    cls, kwargs = OPTIMIZERS[case]
    a, b = _two_parameters(backend)
    opt = cls([a, b], **kwargs)
    alone = Parameter(a.numpy().copy(), backend=backend)
    opt_alone = cls([alone], **kwargs)  # a's own steps, without the frozen ones in between
    own_steps = 0
    for step, frozen in enumerate(SCHEDULES[schedule]):
        a.requires_grad = not frozen
        _set_grad(b, step)
        if frozen:
            a.grad[...] = 1e3  # e.g. a gradient left from before: not used
        else:
            _set_grad(a, own_steps)
            _set_grad(alone, own_steps)
            opt_alone.step()
            own_steps += 1
        opt.step()
    np.testing.assert_allclose(a.numpy(), alone.numpy(), rtol=1e-12, atol=1e-12)


def test_an_optimizer_reloaded_while_a_parameter_is_frozen_keeps_its_step_count(backend):
    a, b = _two_parameters(backend)
    opt = optim.Adam([a, b], lr=0.05)
    alone = Parameter(a.numpy().copy(), backend=backend)
    opt_alone = optim.Adam([alone], lr=0.05)
    for step in range(6):  # a trains at steps 0-1, is frozen at 2-5
        a.requires_grad = step < 2
        for p in (a, alone) if step < 2 else (b,):
            _set_grad(p, step)
        opt.step()
        if step < 2:
            opt_alone.step()
    saved = opt.state_dict()
    a2, b2 = (Parameter(p.numpy().copy(), backend=backend) for p in (a, b))
    reloaded = optim.Adam([a2, b2], lr=0.05)
    reloaded.load_state_dict(saved)
    for own_step in range(2, 5):  # a2 resumes at its own third step
        for p in (a2, b2, alone):
            _set_grad(p, own_step)
        reloaded.step()
        opt_alone.step()
    np.testing.assert_allclose(a2.numpy(), alone.numpy(), rtol=1e-12, atol=1e-12)


def test_an_unfrozen_parameter_resumes_as_in_pytorch(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(4, 3)), rng.normal(size=5)]
    mine = [Parameter(v, backend=backend) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    opt = optim.Adam(mine, lr=0.05, weight_decay=0.1)
    ref = torch.optim.Adam(theirs, lr=0.05, weight_decay=0.1)
    for step in range(12):
        frozen = 3 <= step < 8
        mine[0].requires_grad = not frozen
        grads = [np.sin(np.arange(v.size).reshape(v.shape) + step) for v in values]
        for p, t, g in zip(mine, theirs, grads, strict=True):
            p.grad[...] = backend.asarray(g)
            t.grad = None if frozen and t is theirs[0] else torch.tensor(g)
        opt.step()
        ref.step()
    for p, t in zip(mine, theirs, strict=True):
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("clip", list(CLIPPING))
def test_optimizer_clipping_covers_the_trainable_parameters_only(backend, clip):
    def grads_into(params):
        for i, p in enumerate(params):
            p.grad[...] = p.backend.asarray(np.full(p.shape, 0.02 * (i + 1)))

    net, reference = _net(), _net()
    frozen = net[0].weight
    frozen.requires_grad = False
    trainable = net.trainable_parameters()
    opt = optim.SGD(net, lr=0.1, **{clip: CLIPPING[clip]})
    ref = optim.SGD(reference.parameters()[1:], lr=0.1, **{clip: CLIPPING[clip]})
    grads_into(trainable)
    frozen.grad[...] = backend.asarray(np.full(frozen.shape, 100.0))  # e.g. a gradient left from before the freeze
    grads_into(reference.parameters()[1:])
    opt.step()
    ref.step()
    for p, q in zip(trainable, reference.parameters()[1:], strict=True):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    np.testing.assert_array_equal(frozen.grad, np.full(frozen.shape, 100.0, dtype=frozen.dtype))


def test_clip_grad_norm_helper_measures_the_trainable_parameters_only(backend):
    a, b = Parameter([3.0, 4.0], backend=backend), Parameter([100.0], backend=backend)
    optim.SGD([a, b])  # one flat buffer
    a.grad[...], b.grad[...] = backend.asarray([3.0, 4.0]), backend.asarray([100.0])
    b.requires_grad = False
    assert optim.clip_grad_norm_([a, b], 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(b.grad, [100.0])
    np.testing.assert_allclose(a.grad, [0.6, 0.8], rtol=1e-5)


def test_clip_grad_value_helper_leaves_frozen_gradients(backend):
    a, b = Parameter([3.0, -4.0], backend=backend), Parameter([100.0], backend=backend)
    optim.SGD([a, b])
    a.grad[...], b.grad[...] = backend.asarray([3.0, -4.0]), backend.asarray([100.0])
    b.requires_grad = False
    optim.clip_grad_value_([a, b], 1.0)
    np.testing.assert_array_equal(a.grad, [1.0, -1.0])
    np.testing.assert_array_equal(b.grad, [100.0])


@pytest.mark.parametrize(("solver", "extra"), [("adam", {}), ("sgd", {"momentum": 0.9, "learning_rate": "adaptive"})])
def test_mlp_estimator_penalties_leave_a_frozen_layer_unchanged(backend, solver, extra):
    from sklearn.datasets import make_classification

    from minitrain.estimators import MLPClassifier

    X, y = make_classification(120, 6, random_state=0)
    clf = MLPClassifier((8,), solver=solver, alpha=1.0, l1=0.01, max_iter=3, random_state=0, backend=backend.name)
    clf.set_params(**extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        clf.fit(X, y)
        first = clf.module_.parameters()[0]  # the first layer's weights
        first.requires_grad = False
        before = first.numpy().copy()
        for _ in range(3):
            clf.partial_fit(X, y)
    np.testing.assert_array_equal(first.numpy(), before)


def test_lbfgs_leaves_a_frozen_layer_unchanged(backend):
    from sklearn.datasets import make_regression

    from minitrain.estimators import MLPRegressor

    X, y = make_regression(120, 6, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", alpha=1.0, max_iter=20, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        reg.set_params(backend=backend.name).fit(X, y)
        first, last = reg.module_.parameters()[0], reg.module_.parameters()[2]
        reg.module_[0].freeze()  # the first Linear: weight and bias
        before, last_before = [p.numpy().copy() for p in reg.module_[0].parameters()], last.numpy().copy()
        reg.fit(X, y)
    for p, b in zip(reg.module_[0].parameters(), before, strict=True):
        np.testing.assert_array_equal(p.numpy(), b)
    assert first.requires_grad is False and not np.array_equal(last.numpy(), last_before)


# ---------------------------------------------------------------------- fast path
def test_nothing_frozen_is_one_kernel_call_over_the_whole_buffer(backend, monkeypatch):
    calls = []
    kernel = backend.adam_step
    monkeypatch.setattr(backend, "adam_step", lambda p, *a, **k: calls.append(p.size) or kernel(p, *a, **k))
    net = _net()
    opt = optim.Adam(net)
    _train(net, opt, 2, _batch())
    assert calls == [net.num_parameters()] * 2


def test_frozen_parameters_are_skipped_run_by_run(backend, monkeypatch):
    calls = []
    kernel = backend.adam_step
    monkeypatch.setattr(backend, "adam_step", lambda p, *a, **k: calls.append(p.size) or kernel(p, *a, **k))
    net = _net()
    opt = optim.Adam(net)
    net[1].freeze()
    _train(net, opt, 1, _batch())
    assert calls == [3 * 5 + 5, 4 * 2 + 2]  # the runs before and after the frozen layer


# ---------------------------------------------------------------------- module helpers
def test_freeze_and_unfreeze_are_recursive_and_return_the_module(backend):
    net = _net()
    assert net.freeze() is net
    assert not any(p.requires_grad for p in net.parameters())
    assert net.unfreeze() is net
    assert all(p.requires_grad for p in net.parameters())


def test_trainable_parameters_are_those_not_frozen(backend):
    net = _net()
    net[1].freeze()
    assert [id(p) for p in net.trainable_parameters()] == [id(p) for p in (*net[0].parameters(), *net[2].parameters())]


def test_backward_leaves_a_frozen_parameter_without_gradient(backend):
    net = _net()
    net[0].freeze()
    ((net(_batch()) - 1.0) ** 2).mean().backward()
    assert net[0].weight.grad is None and net[0].bias.grad is None
    assert net[1].weight.grad is not None
