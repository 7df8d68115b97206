"""Saving and loading without pickle: every layer, optimizers with their models, fitted estimators, any backend
to any other, and files that were truncated or edited, which never load halfway."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save
from sklearn.exceptions import ConvergenceWarning

import minitrain as mt
from minitrain import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor, losses, nn, optim
from minitrain.io import FORMAT_VERSION, Unresolved

rng = np.random.default_rng(0)
X = rng.standard_normal((60, 6))
Y_CLASS = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)


def _images(be):
    return nn.Sequential(
        nn.Conv2d(2, 4, (3, 2), stride=(1, 2), padding=1, backend=be), nn.BatchNorm2d(4, backend=be),
        nn.ELU(alpha=0.5, backend=be), nn.MaxPool2d(2, stride=1, backend=be), nn.AvgPool2d(2, backend=be),
        nn.Flatten(backend=be), nn.Dropout(0.3, backend=be), nn.Linear(4 * 2 * 1, 3, bias=False, backend=be),
        nn.LogSoftmax(dim=1, backend=be), backend=be,
    )  # fmt: skip


def _sequences(be):
    return nn.Sequential(
        nn.LSTM(3, 5, num_layers=2, dropout=0.2, batch_first=True, backend=be), nn.LastStep(backend=be),
        nn.Residual(nn.Linear(5, 5, activation="leaky_relu", backend=be), backend=be),
        nn.LeakyReLU(0.1, backend=be), nn.Linear(5, 2, dtype="float64", backend=be), backend=be,
    )  # fmt: skip


def _dense(be):
    return nn.Sequential(
        nn.Linear(6, 8, activation="gelu", backend=be), nn.GELU(backend=be), nn.BatchNorm1d(8, backend=be),
        nn.Tanh(backend=be), nn.Sigmoid(backend=be), nn.Softplus(backend=be), nn.Identity(backend=be),
        nn.Flatten(backend=be), nn.ReLU(backend=be), nn.Softmax(dim=-1, backend=be), backend=be,
    )  # fmt: skip


NETS = {
    "images": (_images, lambda: rng.standard_normal((5, 2, 6, 7)).astype(np.float32)),
    "sequences": (_sequences, lambda: rng.standard_normal((5, 4, 3)).astype(np.float32)),
    "dense": (_dense, lambda: rng.standard_normal((4, 6)).astype(np.float32)),
}


def _out(model, x):
    out = model(mt.tensor(x, backend=model.backend))
    return (out[0] if isinstance(out, tuple) else out).numpy()


@pytest.mark.parametrize("kind", list(NETS))
def test_every_layer_round_trips_with_its_settings_weights_and_random_streams(backend, kind, tmp_path):
    build, data = NETS[kind]
    model, x = build(backend), data()
    _out(model, x)  # batch norm statistics move, dropout streams advance
    model.parameters()[0].requires_grad = False
    mt.save(model, tmp_path / "m.safetensors")
    loaded = mt.load(tmp_path / "m.safetensors")
    assert repr(loaded) == repr(model) and loaded.backend is model.backend
    assert [p.requires_grad for p in loaded.parameters()] == [p.requires_grad for p in model.parameters()]
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(_out(loaded, x), _out(model, x))  # training mode: the same dropout masks
    model.eval(), loaded.eval()
    np.testing.assert_array_equal(_out(loaded, x), _out(model, x))


@pytest.mark.parametrize(("saved_on", "loaded_on"), [("numba", "numpy"), ("numpy", "numba")])
def test_a_file_from_one_backend_loads_into_another(saved_on, loaded_on, tmp_path):
    pytest.importorskip("numba")
    model, x = _images(saved_on), NETS["images"][1]()
    model.eval()
    mt.save(model, tmp_path / "m.safetensors")
    loaded = mt.load(tmp_path / "m.safetensors", backend=loaded_on)
    assert loaded.backend.name == loaded_on and all(p.backend.name == loaded_on for p in loaded.parameters())
    np.testing.assert_allclose(_out(loaded, x), _out(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opt_cls", [optim.SGD, optim.Adam, optim.RMSprop])
def test_a_model_and_its_optimizer_load_together_and_step_the_same(backend, opt_cls, tmp_path):
    model = _dense(backend)
    opt = opt_cls([{"params": model[0].parameters(), "lr": 0.01}, {"params": model[2].parameters()}], lr=0.05)
    x = NETS["dense"][1]()

    def step(m, o):
        o.zero_grad()
        (m(mt.tensor(x, backend=m.backend)) ** 2).sum().backward()
        o.step()

    step(model, opt)
    mt.save({"model": model, "optimizer": opt, "epoch": 7}, tmp_path / "ck.safetensors")
    ck = mt.load(tmp_path / "ck.safetensors")
    assert ck["epoch"] == 7 and ck["optimizer"].param_groups[1]["params"][0] is ck["model"][2].weight
    step(model, opt)
    step(ck["model"], ck["optimizer"])
    for a, b in zip(model.parameters(), ck["model"].parameters(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


ESTIMATORS = [
    lambda be: MLPClassifier((8,), max_iter=4, random_state=0, backend=be),
    lambda be: MLPRegressor(hidden_layer_sizes=(8,), max_iter=4, dropout=0.1, random_state=0, backend=be),
    lambda be: NeuralNetClassifier(module__hidden=(8,), module__dropout=0.2, max_epochs=2, random_state=0, backend=be),
    lambda be: NeuralNetRegressor(criterion=losses.HuberLoss, max_epochs=2, random_state=0, backend=be),
]


@pytest.mark.parametrize("make", ESTIMATORS, ids=["mlp-clf", "mlp-reg", "nn-clf", "nn-reg"])
def test_a_fitted_estimator_predicts_and_trains_on_as_before(backend, make, tmp_path):
    est = make(backend.name)
    y = X[:, 0] if "Regressor" in type(est).__name__ else Y_CLASS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
        mt.save(est, tmp_path / "e.safetensors")
        loaded = mt.load(tmp_path / "e.safetensors")
        assert type(loaded) is type(est) and loaded.get_params() == est.get_params()
        assert loaded.backend_ == est.backend_ and loaded.module_.backend is est.module_.backend
        np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
        assert loaded.history_.records == est.history_.records
        loaded.partial_fit(X, y)
        est.partial_fit(X, y)
    for a, b in zip(loaded.module_.parameters(), est.module_.parameters(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert pickle.loads(pickle.dumps(loaded)).score(X, y) == loaded.score(X, y)  # pickle keeps working


def test_loading_runs_no_code_from_the_file_and_names_foreign_classes(tmp_path):
    class Mine(nn.Module):
        def __init__(self, backend=None):
            super().__init__(backend)
            self.lin = nn.Linear(2, 2, backend=backend)

        def forward(self, x):
            return self.lin(x)

    Mine.__qualname__ = "Mine"  # a module-level class in a user's code
    mt.save([Mine(), print], tmp_path / "m.safetensors")
    with pytest.raises(TypeError, match=r"names test_io:Mine, which is not minitrain's.*classes="):
        mt.load(tmp_path / "m.safetensors")
    with pytest.warns(UserWarning, match="builtins:print not given in classes="):
        mine, fn = mt.load(tmp_path / "m.safetensors", classes=[Mine])
    assert type(mine) is Mine and isinstance(fn, Unresolved)
    with pytest.raises(TypeError, match="was not loaded"):
        fn()


def test_what_cannot_be_saved_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"cannot save obj\[1\].*lambda"):
        mt.save([1, lambda: 0], tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


# ---------------------------------------------------------------------------------------- damaged files
def _rewrite(src, dst, edit=None, digest=None):
    """Write ``src`` again with its minitrain metadata edited (and the digest recomputed if asked)."""
    data = src.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8 : 8 + size])["__metadata__"]
    text = edit(meta["minitrain"]) if edit else meta["minitrain"]
    arrays = st_load(data)
    if digest:
        from minitrain.io import _digest

        meta["digest"] = _digest(text, arrays)
    dst.write_bytes(st_save(arrays, metadata={"minitrain": text, "digest": meta["digest"]}))


@pytest.fixture
def saved(tmp_path):
    model = _dense("numpy")
    mt.save(model, tmp_path / "good.safetensors")
    return tmp_path / "good.safetensors"


def test_a_truncated_file_is_refused(saved, tmp_path):
    bad = tmp_path / "bad.safetensors"
    data = saved.read_bytes()
    for cut in (4, 100, len(data) - 10):
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="too short|truncated|damaged"):
            mt.load(bad)


def test_an_edited_header_is_refused(saved, tmp_path):
    bad = tmp_path / "bad.safetensors"
    _rewrite(saved, bad, lambda text: text.replace('"out_features":8', '"out_features":9'))
    with pytest.raises(ValueError, match="changed after it was written"):
        mt.load(bad)
    data = bytearray(saved.read_bytes())
    data[20] ^= 0xFF  # inside the header's JSON
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="minitrain"):
        mt.load(bad)


def test_edited_weights_and_a_wrong_shape_are_refused(saved, tmp_path):
    bad = tmp_path / "bad.safetensors"
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0x01  # a weight
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="changed after it was written"):
        mt.load(bad)
    arrays = st_load(saved.read_bytes())
    name = next(k for k, a in arrays.items() if a.ndim == 2)
    arrays[name] = arrays[name].reshape(-1)  # the same bytes, another shape
    (size,) = struct.unpack("<Q", saved.read_bytes()[:8])
    meta = json.loads(saved.read_bytes()[8 : 8 + size])["__metadata__"]
    bad.write_bytes(st_save(arrays, metadata=meta))
    with pytest.raises(ValueError, match="changed after it was written"):
        mt.load(bad)


def test_an_unknown_format_version_is_refused(saved, tmp_path):
    bad = tmp_path / "bad.safetensors"
    _rewrite(saved, bad, lambda text: text.replace(f'"version":{FORMAT_VERSION}', '"version":99'), digest=True)
    with pytest.raises(ValueError, match="format version 99; this minitrain reads version 1 only"):
        mt.load(bad)


def test_a_file_of_another_kind_is_refused(tmp_path):
    other = tmp_path / "other.safetensors"
    other.write_bytes(st_save({"w": np.ones(3, np.float32)}))
    with pytest.raises(ValueError, match="not a file written by minitrain.save"):
        mt.load(other)


def test_a_saved_model_loads_in_a_fresh_process(tmp_path):
    model = _images("numpy")
    model.eval()
    x = NETS["images"][1]()
    mt.save(model, tmp_path / "m.safetensors")
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np, minitrain as mt; m = mt.load(sys.argv[1]); m.eval(); "
        "np.save(sys.argv[2], m(mt.tensor(np.load(sys.argv[3]), backend=m.backend)).numpy())"
    )
    args = [str(tmp_path / "m.safetensors"), str(tmp_path / "y.npy"), str(tmp_path / "x.npy")]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), _out(model, x))
