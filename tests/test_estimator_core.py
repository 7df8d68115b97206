"""The estimator core every estimator shares: one fit path, ``backend_`` as the registry's name, models moved
between backends with their optimizer's state, invalid input that loses nothing, pickles from any backend."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import minitrain as mt
from minitrain import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor
from minitrain.backend import NumpyBackend, register_backend, unregister_backend
from minitrain.estimators._estimator import NetEstimator

ESTIMATORS = (MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor)
rng = np.random.default_rng(0)
X = rng.standard_normal((80, 5))
Y_CLASS = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
Y_REG = X[:, 0] - 2 * X[:, 1]


class OnDevice(NumpyBackend):
    """A backend whose devices are named like a GPU's ("cuda:1"), as CuPy's are."""

    name = "ondevice"

    @property
    def device(self) -> str:
        return f"cuda:{self.device_index}"


@pytest.fixture
def ondevice():
    register_backend("ondevice", OnDevice)
    try:
        yield
    finally:
        unregister_backend("ondevice")


def _make(cls, **kw):
    small = {"hidden_layer_sizes": (6,), "max_iter": 3} if cls in (MLPClassifier, MLPRegressor) else {}
    small = small or {"module__hidden": (6,), "max_epochs": 3, "train_split": None}
    return cls(random_state=0, **{**small, **kw})


def _y(cls):
    return Y_REG if cls in (MLPRegressor, NeuralNetRegressor) else Y_CLASS


def _fit(est, method="fit", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return getattr(est, method)(X, _y(type(est)), **kw)


def _weights(est):
    return [p.numpy().copy() for p in est.module_.parameters()]


def test_every_estimator_fits_through_the_one_core():
    for cls in ESTIMATORS:
        assert issubclass(cls, NetEstimator)
        assert cls._fit is NetEstimator._fit, cls.__name__


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize(
    ("spec", "want"), [("ondevice", "ondevice"), ("ondevice:0", "ondevice"), ("ondevice:2", "ondevice:2")]
)
def test_backend_is_recorded_as_the_name_the_registry_parses_back(ondevice, cls, spec, want):
    est = _fit(_make(cls, backend=spec))
    assert est.backend_ == want
    assert mt.get_backend(est.backend_) is est.module_.backend
    clone = pickle.loads(pickle.dumps(est))
    assert clone.module_.backend is mt.get_backend(want)
    np.testing.assert_array_equal(clone.predict(X), est.predict(X))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_model_fitted_on_a_backend_missing_at_load_time_unpickles_on_numpy(ondevice, cls):
    est = _fit(_make(cls, backend="ondevice:1"))
    data, want = pickle.dumps(est), est.predict(X)
    unregister_backend("ondevice")
    clone = pickle.loads(data)
    assert clone.module_.backend.name == "numpy" and clone.backend_ == "ondevice:1"
    np.testing.assert_array_equal(clone.predict(X), want)
    assert np.isfinite(clone.score(X, _y(cls)))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_moving_to_another_backend_keeps_the_optimizers_state(ondevice, cls):
    here = _fit(_make(cls, backend="numpy"), "partial_fit", **({"classes": [0, 1, 2]} if _y(cls) is Y_CLASS else {}))
    moved = pickle.loads(pickle.dumps(here))
    _fit(here, "partial_fit")
    _fit(moved.set_params(backend="ondevice"), "partial_fit")  # the same reference code on another backend
    assert moved.module_.backend.name == "ondevice" and moved.backend_ == "ondevice"
    for a, b in zip(_weights(moved), _weights(here), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_invalid_input_to_a_fitted_estimator_changes_nothing(cls, method):
    est = _fit(_make(cls, warm_start=True))
    before = pickle.dumps(est)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        getattr(est, method)(bad, _y(cls))
    with pytest.raises(ValueError):
        getattr(est, method)(X[:, :3], _y(cls))
    after = pickle.loads(pickle.dumps(est))
    for a, b in zip(_weights(after), _weights(pickle.loads(before)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert sorted(vars(after)) == sorted(vars(pickle.loads(before)))
    _fit(est, method)  # still usable


def test_the_mlp_rejects_partial_fit_with_early_stopping_before_touching_anything():
    est = MLPClassifier(hidden_layer_sizes=(4,), early_stopping=True)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        est.partial_fit(X, Y_CLASS, classes=[0, 1, 2])
    assert not hasattr(est, "module_")
