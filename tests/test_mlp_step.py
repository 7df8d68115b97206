"""The MLP estimators' fused training step: the same loss and gradients as the autograd graph, without one."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from minitrain import MLPClassifier, MLPRegressor, nn
from minitrain.data import ArrayDataset
from minitrain.estimators import _mlp_step
from minitrain.estimators._mlp_losses import output_loss
from minitrain.estimators._mlp_network import build_network
from minitrain.estimators._mlp_step import MLPStep, reference_loss_grad

CASES = [  # hidden activation, output activation, hidden layers
    ("relu", "softmax", (7, 5)),
    ("tanh", "logistic", (6,)),
    ("logistic", "identity", (4, 3)),
    ("identity", "exp", (5,)),
    ("relu", "identity", ()),
]


class _Est:
    def __init__(self, activation, batch_norm=False, dropout=0.0):
        self.activation, self.batch_norm, self.dropout = activation, batch_norm, dropout


def _network(backend, activation, hidden, dtype, n_in=6, n_out=4, **kw):
    rs = np.random.RandomState(0)
    module = build_network(_Est(activation, **kw), [n_in, *hidden, n_out], backend, np.dtype(dtype), rs)
    module.flat_parameters()  # as the optimizer does: gradients become views into one buffer
    return module


def _targets(rng, out_act, n, n_out):
    if out_act == "softmax":
        return np.eye(n_out)[rng.integers(0, n_out, n)]
    if out_act == "logistic":
        return (rng.random((n, n_out)) < 0.5).astype(float)
    return np.abs(rng.standard_normal((n, n_out)))


def _autograd(module, x, y, w, wsum, out_act):
    for p in module.parameters():
        p.grad[...] = 0
    loss = output_loss(module(x), y, w, wsum, out_act)
    loss.backward()
    return float(loss.data), [p.backend.to_numpy(p.grad).copy() for p in module.parameters()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("act", "out_act", "hidden"), CASES)
def test_loss_and_gradients_equal_the_autograd_graph(backend, rng, act, out_act, hidden, weighted, dtype):
    module = _network(backend, act, hidden, dtype)
    step = MLPStep.for_module(module, out_act)
    for n in (9, 4, 9):  # a batch length, a shorter last batch, the first length again (reused buffers)
        x = backend.asarray(rng.standard_normal((n, 6)).astype(dtype))
        y = backend.asarray(_targets(rng, out_act, n, 4).astype(dtype))
        w = backend.asarray(rng.uniform(0.5, 2.0, n).astype(dtype)) if weighted else None
        wsum = float(n if w is None else backend.to_numpy(w).sum())
        ref_loss, ref_grads = _autograd(module, x, y, w, wsum, out_act)
        for p in module.parameters():
            p.grad[...] = np.nan  # the step sets every gradient: nothing may survive from before
        data = ArrayDataset(x, y, w, backend=backend, dtype=dtype)
        loss = step(data, slice(0, n) if n == 4 else np.arange(n)[::-1].copy(), wsum)
        rtol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(loss, ref_loss, rtol=rtol)
        for p, ref in zip(module.parameters(), ref_grads, strict=True):
            np.testing.assert_allclose(backend.to_numpy(p.grad), ref, rtol=rtol, atol=rtol * 1e-2)


def test_networks_with_other_layers_train_through_autograd(backend):
    assert MLPStep.for_module(_network(backend, "relu", (5,), "float32"), "softmax") is not None
    assert MLPStep.for_module(_network(backend, "relu", (5,), "float32", batch_norm=True), "softmax") is None
    assert MLPStep.for_module(_network(backend, "relu", (5,), "float32", dropout=0.2), "softmax") is None
    no_bias = nn.Sequential(nn.Linear(3, 2, bias=False, backend=backend), backend=backend)
    assert MLPStep.for_module(no_bias, "softmax") is None


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (MLPClassifier, {"alpha": 1e-2, "l1": 1e-3}),
        (MLPClassifier, {"solver": "sgd", "momentum": 0.9, "activation": "tanh", "early_stopping": True}),
        (MLPRegressor, {"activation": "logistic", "batch_size": 37}),
    ],
)
def test_estimators_fit_the_same_model_with_and_without_the_fused_step(backend, monkeypatch, cls, params):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0) if cls is MLPClassifier else X @ rng.standard_normal(5)
    kw = {"hidden_layer_sizes": (8, 6), "max_iter": 6, "random_state": 0, "backend": backend.name, **params}
    calls = []
    real = MLPStep.for_module

    def counted(module, out_act):
        step = real(module, out_act)
        calls.append(step)
        return step

    monkeypatch.setattr(_mlp_step.MLPStep, "for_module", staticmethod(counted))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fused = cls(**kw).fit(X, y)
        monkeypatch.setattr(_mlp_step.MLPStep, "for_module", staticmethod(lambda module, out_act: None))
        graph = cls(**kw).fit(X, y)
    assert calls and all(isinstance(s, MLPStep) for s in calls)
    np.testing.assert_allclose(fused.loss_curve_, graph.loss_curve_, rtol=1e-5)
    for a, b in zip(fused.coefs_ + fused.intercepts_, graph.coefs_ + graph.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("params", [{}, {"early_stopping": True}, {"class_weight": "balanced"}, {"solver": "lbfgs"}])
def test_multiclass_targets_train_as_class_indices_bit_for_bit_as_one_hot_rows(backend, monkeypatch, params):
    from minitrain.estimators._mlp import BaseMLP

    rng = np.random.default_rng(1)
    X = rng.standard_normal((160, 5)).astype(np.float32)
    y = np.array(["a", "b", "c", "d"])[(X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)]
    kw = {"hidden_layer_sizes": (8,), "max_iter": 5, "random_state": 0, "backend": backend.name, **params}
    seen = []
    real = MLPClassifier._dataset

    def spy(self, X, y, sample_weight):
        data = real(self, X, y, sample_weight)
        seen.append(backend.to_numpy(data.y))
        return data

    monkeypatch.setattr(MLPClassifier, "_dataset", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        codes = MLPClassifier(**kw).fit(X, y)
        monkeypatch.setattr(MLPClassifier, "_dataset", BaseMLP._dataset)  # the one-hot rows, as before
        onehot = MLPClassifier(**kw).fit(X, y)
    assert seen and all(s.ndim == 1 and s.dtype.kind == "i" for s in seen), [(s.shape, s.dtype) for s in seen]
    assert set(np.unique(seen[-1])) <= {0, 1, 2, 3}
    assert codes.loss_ == onehot.loss_
    np.testing.assert_array_equal(getattr(codes, "loss_curve_", []), getattr(onehot, "loss_curve_", []))
    for a, b in zip(codes.coefs_ + codes.intercepts_, onehot.coefs_ + onehot.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)


def _loss_grad(be, x, y, weights, biases, acts, output, **kw):
    """The step as MLPStep runs it on ``be``: the backend's extension where it applies, else the reference."""
    gws = [np.full_like(w, np.nan) for w in weights]
    gbs = [np.full_like(b, np.nan) for b in biases]
    args, kw = (x, y, weights, biases, acts, output), {**kw, "weight_grads": gws, "bias_grads": gbs}
    fast = be.extension("mlp_loss_grad")
    loss = NotImplemented if fast is None else fast(be, *args, **kw)
    return reference_loss_grad(be, *args, **kw) if loss is NotImplemented else loss, gws, gbs


@pytest.mark.parametrize("output", ["softmax", "logistic", "identity"])
def test_gradients_match_finite_differences(backend, output):
    rng = np.random.default_rng(5)
    n, sizes = 6, (3, 4, 2)
    x = rng.standard_normal((10, 3))
    y = rng.integers(0, 2, 10) if output == "softmax" else (rng.random((10, 2)) < 0.5).astype(float)
    weights = [np.asfortranarray(rng.standard_normal((o, i)) * 0.5) for i, o in itertools.pairwise(sizes)]
    biases = [rng.standard_normal(o) * 0.1 for o in sizes[1:]]
    rows, sw = np.array([4, 1, 7, 7, 0, 9]), rng.uniform(0.5, 2.0, 10)
    kw = {"rows": rows, "sample_weight": sw, "weight_sum": float(sw[rows].sum()) + 1.0}

    def loss(ws, bs):
        return _loss_grad(backend, x, y, ws, bs, ["tanh", "identity"], output, **kw)[0]

    _, gws, gbs = _loss_grad(backend, x, y, weights, biases, ["tanh", "identity"], output, **kw)
    h = 1e-6
    for params, grads, k in ((weights, gws, 0), (weights, gws, 1), (biases, gbs, 0), (biases, gbs, 1)):
        for idx in list(np.ndindex(params[k].shape))[:n]:
            plus = [p.copy(order="K") for p in params]
            minus = [p.copy(order="K") for p in params]
            plus[k][idx] += h
            minus[k][idx] -= h
            args = (plus, biases) if params is weights else (weights, plus)
            margs = (minus, biases) if params is weights else (weights, minus)
            numeric = (loss(*args) - loss(*margs)) / (2 * h)
            if output == "identity":  # scikit-learn's squared loss averages over outputs, its gradient does not
                numeric *= sizes[-1]
            np.testing.assert_allclose(grads[k][idx], numeric, rtol=1e-5, atol=1e-8)


def test_sparse_input_trains_as_its_dense_copy(backend):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((90, 5)) * (rng.random((90, 5)) < 0.5)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    kw = {"hidden_layer_sizes": (6,), "max_iter": 4, "random_state": 0, "backend": backend.name}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPClassifier(**kw).fit(X, y)
        sparse = MLPClassifier(**kw).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=1e-5)
    for a, b in zip(sparse.coefs_, dense.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
