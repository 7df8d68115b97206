"""The Numba backend's extension ``mlp_loss_grad``: NumPy's BLAS from compiled code, the compiled path really
used, where it declines (the estimators' reference step runs), and the estimators' results with and without it."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from minitrain import MLPClassifier, MLPRegressor
from minitrain.backend import NumpyBackend, get_backend
from minitrain.estimators import _mlp_step

pytest.importorskip("numba")
from minitrain_numba import _blas, _mlp, _mlp_kernels


@pytest.fixture
def nb():
    return get_backend("numba")


def _net(rng, sizes, dtype, column_major=True):
    weights = [rng.standard_normal((o, i)).astype(dtype) * 0.5 for i, o in itertools.pairwise(sizes)]
    weights = [np.asfortranarray(w) if column_major else w for w in weights]
    return weights, [rng.standard_normal(o).astype(dtype) * 0.1 for o in sizes[1:]]


def _loss_grad(be, x, y, weights, biases, acts, output, **kw):
    """The step as the MLP estimators run it: the backend's extension, else the reference composition."""
    gws = [np.full_like(w, np.nan) for w in weights]
    gbs = [np.full_like(b, np.nan) for b in biases]
    args, kw = (x, y, weights, biases, acts, output), {**kw, "weight_grads": gws, "bias_grads": gbs}
    fast = be.extension("mlp_loss_grad")
    loss = NotImplemented if fast is None else fast(be, *args, **kw)
    return _mlp_step.reference_loss_grad(be, *args, **kw) if loss is NotImplemented else loss, gws, gbs


def test_the_backend_offers_the_extension(nb):
    assert nb.extension("mlp_loss_grad") is _mlp.mlp_loss_grad
    assert NumpyBackend().extension("mlp_loss_grad") is None


def test_numpys_own_blas_is_registered_for_compiled_code():
    assert _blas.register()
    path = _blas._numpy_openblas()
    assert path is not None and "numpy" in path


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_gemm_matches_matmul_for_every_layout(dtype):
    rng = np.random.default_rng(0)
    for (m, n, k), ta, tb, fa, fb, fc in itertools.product(
        [(5, 7, 3), (1, 4, 6), (4, 1, 2), (3, 3, 1), (0, 3, 2), (2, 3, 0)], *[(False, True)] * 5
    ):
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
        a, b = (np.asfortranarray(a) if fa else a), (np.asfortranarray(b) if fb else b)
        c = np.full((m, n), 3.0, dtype, order="F" if fc else "C")
        _blas.gemm(a, ta, b, tb, c, 1.0, 0.0)
        np.testing.assert_allclose(c, (a.T if ta else a) @ (b.T if tb else b), rtol=1e-5, atol=1e-6)
    big = rng.standard_normal((10, 12)).astype(dtype)
    c = np.ones((4, 5), dtype)
    _blas.gemm(big[2:6, 1:4], False, big[0:3, 3:8], False, c, 2.0, 1.0)  # views, alpha and beta
    np.testing.assert_allclose(c, 2.0 * big[2:6, 1:4] @ big[0:3, 3:8] + 1.0, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_estimators_train_through_the_compiled_kernel(nb, monkeypatch, dtype):
    def fell_back(*args, **kwargs):
        raise AssertionError("the reference step ran")

    monkeypatch.setattr(_mlp_step, "reference_loss_grad", fell_back)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est, y in (
            (MLPClassifier(activation="tanh"), np.arange(120) % 3),  # class indices
            (MLPClassifier(activation="logistic"), np.arange(120) % 2),  # binary: logistic output
            (MLPRegressor(), X[:, :2].sum(1)),  # squared error
        ):
            est.set_params(hidden_layer_sizes=(7, 5), max_iter=3, backend="numba", dtype=dtype, random_state=0)
            est.fit(X, y)
            assert np.isfinite(est.loss_)


def test_without_numpys_blas_the_reference_runs(nb, monkeypatch):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((9, 4)).astype(np.float32), rng.integers(0, 3, 9)
    weights, biases = _net(rng, (4, 5, 3), np.float32)
    args = (x, y, weights, biases, ["relu", "identity"], "softmax")
    want = _loss_grad(NumpyBackend(), *args)
    monkeypatch.setattr(_mlp_kernels, "AVAILABLE", False)
    gws, gbs = [np.zeros_like(w) for w in weights], [np.zeros_like(b) for b in biases]
    assert _mlp.mlp_loss_grad(nb, *args, weight_grads=gws, bias_grads=gbs, workspace={}) is NotImplemented
    got = _loss_grad(nb, *args, workspace={})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    for g, w in zip(got[1] + got[2], want[1] + want[2]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)


def test_rebound_parameter_arrays_are_seen_at_the_next_call(nb):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    workspace: dict = {}
    for seed in (3, 4):  # new weight arrays (other values, same shapes) into the same workspace
        weights, biases = _net(np.random.default_rng(seed), (4, 6, 3), np.float32)
        args = (x, y, weights, biases, ["relu", "identity"], "softmax")
        got, want = _loss_grad(nb, *args, workspace=workspace), _loss_grad(NumpyBackend(), *args)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
        np.testing.assert_allclose(got[1][0], want[1][0], rtol=1e-5, atol=1e-7)


def test_a_bias_gradient_of_the_wrong_shape_sends_the_batch_to_the_reference(nb):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    weights, biases = _net(rng, (4, 6, 3), np.float32)
    gws = [np.zeros_like(w) for w in weights]
    gbs = [np.zeros(7, np.float32), np.zeros(3, np.float32)]  # the first layer has 6 biases
    got = _mlp.mlp_loss_grad(
        nb, x, y, weights, biases, ["relu", "identity"], "softmax", weight_grads=gws, bias_grads=gbs, workspace={}
    )
    assert got is NotImplemented
