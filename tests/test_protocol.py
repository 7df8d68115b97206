"""The layer-level backend protocol: a backend that sets only ``xp`` is complete, overrides fall back to the
reference by returning NotImplemented, the conv/pool geometry is a named structure, extensions are optional."""

from __future__ import annotations

import pathlib
import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import minitrain as mt
from minitrain import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor, nn
from minitrain.backend import KERNELS, Backend, NumpyBackend, register_backend, unregister_backend
from minitrain.backend.base import Geometry2d, geometry2d
from minitrain.testing import check_backend


class _Namespace:
    """NumPy's API through attribute lookups that it counts: arrays are NumPy's, the module object is not."""

    def __init__(self) -> None:
        self.lookups: dict[str, int] = {}

    def __getattr__(self, name: str):
        self.lookups[name] = self.lookups.get(name, 0) + 1
        return getattr(np, name)


class XPOnlyBackend(Backend):
    """A third party's backend as the protocol allows it to be written: a name and an array module."""

    name = "xponly"
    xp = _Namespace()


@pytest.fixture
def xponly():
    register_backend("xponly", XPOnlyBackend)
    try:
        yield mt.get_backend("xponly")
    finally:
        unregister_backend("xponly")


def test_a_backend_that_sets_only_xp_passes_check_backend(xponly):
    check_backend(xponly)
    assert xponly.xp.lookups.get("matmul", 0) > 0  # the reference computed through this backend's xp


def _fit_quietly(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=5),
        lambda: MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", early_stopping=True, max_iter=5),
        lambda: MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=5),
        lambda: MLPClassifier(hidden_layer_sizes=(8,), dropout=0.2, batch_norm=True, max_iter=5),
        lambda: MLPRegressor(hidden_layer_sizes=(8,), max_iter=5),
        lambda: NeuralNetClassifier(module__hidden=(8,), max_epochs=3),
        lambda: NeuralNetRegressor(module__hidden=(8,), module__dropout=0.1, max_epochs=3),
    ],
    ids=["mlp-adam", "mlp-sgd-early-stop", "mlp-lbfgs", "mlp-dropout-bn", "mlp-regressor", "nn-clf", "nn-reg"],
)
def test_a_backend_that_sets_only_xp_trains_every_estimator(xponly, make):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    est = make().set_params(backend="xponly", random_state=0)
    y = X[:, 0] + X[:, 1] if "Regressor" in type(est).__name__ else (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    _fit_quietly(est, X, y)
    assert est.backend_ == "xponly" and est.module_.backend is xponly
    pred = est.predict(X)
    assert pred.shape == (60,) and np.isfinite(est.score(X, y))
    ref = _fit_quietly(make().set_params(backend="numpy", random_state=0), X, y)
    np.testing.assert_allclose(pred, ref.predict(X), rtol=1e-6, atol=1e-6)  # the same reference code


def _conv_net(n_features, n_outputs, backend=None):
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, backend=backend), nn.ReLU(backend=backend), nn.MaxPool2d(2, backend=backend),
        nn.Flatten(backend=backend), nn.Linear(2 * 2 * 2, n_outputs, backend=backend), backend=backend,
    )  # fmt: skip


def test_a_backend_that_sets_only_xp_trains_a_cnn_and_an_lstm(xponly):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 1, 4, 4)).astype(np.float32)
    with mt.use_backend(xponly):
        for model, inp in (
            (_conv_net(16, 3), x),
            (nn.LSTM(4, 5, batch_first=True), rng.standard_normal((6, 3, 4)).astype(np.float32)),
        ):
            opt = mt.optim.Adam(model, lr=0.01)
            out = model(mt.tensor(inp))
            out = out[0] if isinstance(out, tuple) else out
            loss = (out * out).mean()
            loss.backward()
            opt.step()
            assert model.backend is xponly and np.isfinite(float(loss.item()))


# ---------------------------------------------------------------------------------------- automatic fallback
class _Half:
    """A mixin accelerating ``act`` for float32 only, counting what it did."""

    calls: list

    def act(self, z, activation="identity", *, alpha=0.01, out=None):
        if z.dtype != np.float32:
            return NotImplemented
        self.calls.append(activation)
        return np.full_like(z, 7.0) if out is None else out.fill(7.0) or out


class HalfBackend(_Half, NumpyBackend):
    name = "half"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def mse(self, pred, target):
        return NotImplemented  # never accelerated: always the reference


def test_an_override_returning_notimplemented_runs_the_reference_with_the_same_arguments():
    be = HalfBackend()
    z = np.array([-1.0, 2.0])
    np.testing.assert_array_equal(be.act(z, "relu"), [0.0, 2.0])  # float64: the reference
    out = np.empty(2)
    assert be.act(z, activation="leaky_relu", alpha=0.5, out=out) is out
    np.testing.assert_array_equal(out, [-0.5, 2.0])  # keyword arguments reach it too
    np.testing.assert_array_equal(be.act(z.astype(np.float32), "relu"), [7.0, 7.0])  # float32: the override
    assert be.calls == ["relu"]
    loss, grad = be.mse(np.array([1.0, 3.0]), np.array([0.0, 1.0]))
    np.testing.assert_array_equal(loss, [1.0, 4.0])
    np.testing.assert_array_equal(grad, [2.0, 4.0])


def test_overrides_keep_their_signatures_after_the_fallback_wrapper():
    import inspect

    def sig(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    for cls in (HalfBackend, *(type(mt.get_backend(i.name)) for i in mt.list_backends() if i.available)):
        for name in KERNELS:
            assert sig(getattr(cls, name)) == sig(getattr(Backend, name)), (cls.__name__, name)


def test_the_numba_plugin_falls_back_without_calling_super():
    root = pathlib.Path(__file__).resolve().parents[1] / "backends" / "minitrain_numba"
    for path in root.glob("*.py"):
        assert "super()." not in path.read_text(), f"{path.name}: overrides return NotImplemented instead"


# ---------------------------------------------------------------------------------------- protocol surface
def test_base_names_no_estimator_concept():
    source = (pathlib.Path(mt.__file__).parent / "backend" / "base.py").read_text()
    found = re.findall(r"mlp|estimator|scikit|sklearn|output_loss", source, re.IGNORECASE)
    assert not found, found


def test_geometry2d_is_a_named_structure_with_the_output_size():
    g = geometry2d((2, 3, 9, 7), (3, 2), (2, 1), (1, 0))
    assert isinstance(g, Geometry2d) and g == Geometry2d(kh=3, kw=2, sh=2, sw=1, ph=1, pw=0, ho=5, wo=6)
    assert geometry2d((1, 1, 4, 4), 2, 2, 0)._asdict() == {
        "kh": 2, "kw": 2, "sh": 2, "sw": 2, "ph": 0, "pw": 0, "ho": 2, "wo": 2,
    }  # fmt: skip


def test_extensions_are_optional_and_looked_up_by_name():
    class WithExtension(NumpyBackend):
        name = "withext"
        extensions = {"double": lambda be, x: 2 * x, "lazy": "math:sqrt"}  # noqa: RUF012

    be = WithExtension()
    assert be.extension("double")(be, 3) == 6
    assert be.extension("lazy")(16.0) == 4.0
    assert be.extension("missing") is None and NumpyBackend().extension("double") is None


@pytest.mark.parametrize(("device", "spec"), [(None, "numpy"), (0, "numpy"), (2, "numpy:2")])
def test_spec_is_the_name_the_registry_parses_back(device, spec):
    assert NumpyBackend(device=device).spec == spec
