"""The CuPy backend: its CUDA source compiles, its kernels compute what the reference computes, and it reports
why it cannot run.

Without a GPU, the kernels are compiled for the CPU and the backend's Python code runs over a NumPy stand-in for
cupy (``fake_cupy``): every kernel's arithmetic and every launch is checked there. The tests marked ``gpu`` need
a CUDA device and skip with the backend's reason otherwise.
"""

from __future__ import annotations

import pickle
import re
import shutil
import subprocess
import warnings

import fake_cupy
import numpy as np
import pytest
from minitrain_cupy import CupyBackend, _kernels

import minitrain as mt
from minitrain import nn
from minitrain.backend import list_backends
from minitrain.testing import check_backend

_INFO = {i.name: i for i in list_backends()}.get("cupy")
needs_gpu = pytest.mark.skipif(
    _INFO is None or not _INFO.available, reason=f"needs a CUDA GPU: {_INFO.reason if _INFO else 'not registered'}"
)
needs_cxx = pytest.mark.skipif(fake_cupy.compiler() is None, reason="needs a C++ compiler (g++) for the CPU build")
_KINDS = {"T*": "T*", "constT*": "T*", "T": "T", "L": "i64", "int": "i32", "L*": "i64*", "constL*": "i64*",
          "double*": "f64*", "signedchar*": "i8*", "constsignedchar*": "i8*"}  # fmt: skip


@pytest.fixture
def standin():
    """A CupyBackend over the NumPy stand-in for cupy, with CPU builds of its kernels."""
    if fake_cupy.compiler() is None:
        pytest.skip("needs a C++ compiler (g++) for the CPU build of the CUDA kernels")
    with fake_cupy.installed():
        yield mt.get_backend("cupy")


def test_registered_with_a_reason_when_unavailable():
    assert _INFO is not None, "the cupy backend is not registered (entry point minitrain.backends: cupy)"
    if _INFO.available:
        pytest.skip("cupy runs here")
    assert "cupy" in _INFO.reason.lower() or "cuda" in _INFO.reason.lower(), _INFO.reason
    with pytest.raises(ValueError, match="cupy.*unavailable|cupy") as err:
        mt.get_backend("cupy")
    assert _INFO.reason.split(";")[0] in str(err.value)
    X, y = np.random.default_rng(0).random((20, 3)), np.arange(20) % 2
    clf = mt.MLPClassifier(hidden_layer_sizes=(4,), max_iter=5).fit(X, y)
    before = clf.predict(X)
    with pytest.raises(ValueError, match="cupy"):
        clf.set_params(backend="cupy").fit(X, y)
    np.testing.assert_array_equal(clf.predict(X), before)  # the fitted model is untouched


def _param_type(param: str) -> str:
    """A C parameter's type without spaces or its name: ``const T* x`` -> ``constT*``, ``L n`` -> ``L``."""
    typ = param[: param.index("*") + 1] if "*" in param else param.strip().rsplit(None, 1)[0]
    return re.sub(r"\s+", "", typ)


def test_signatures_match_the_source():
    declared = re.findall(r'extern "C" __global__ void (\w+)_##S\(([^)]*)\)', _kernels.SOURCE)
    assert {name for name, _ in declared} == set(_kernels.SIGNATURES)
    for name, params in declared:
        kinds = tuple(_KINDS[_param_type(p)] for p in params.replace("\\", "").split(","))
        assert kinds == _kernels.SIGNATURES[name], f"{name}: source {kinds} != SIGNATURES {_kernels.SIGNATURES[name]}"
    assert set(_kernels.ACTIVATION_CODES) == set(mt.backend.ACTIVATIONS)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs CUDA's nvcc (no GPU needed) to compile the kernels")
def test_cuda_source_compiles_with_nvcc(tmp_path):
    src = tmp_path / "kernels.cu"
    src.write_text(_kernels.SOURCE)
    cmd = ["nvcc", "--ptx", "-arch=compute_80", "-std=c++14", "-Werror", "all-warnings", str(src)]
    done = subprocess.run([*cmd, "-o", str(tmp_path / "k.ptx")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    ptx = (tmp_path / "k.ptx").read_text()
    for name in _kernels.SIGNATURES:
        for suffix in ("f32", "f64"):
            assert f".entry {name}_{suffix}(" in ptx, f"kernel {name}_{suffix} missing from the PTX"


@needs_cxx
def test_check_backend_on_the_cpu_build(standin):
    """The whole conformance suite, with every kernel of the source launched in both dtypes."""
    fake_cupy.LAUNCHES.clear()
    check_backend(standin)
    never = [f"{k}_{s}" for k in _kernels.SIGNATURES for s in ("f32", "f64") if not fake_cupy.LAUNCHES.get(f"{k}_{s}")]
    assert not never, f"kernels the conformance suite never launched: {never}"


@needs_cxx
def test_out_of_range_labels_give_nan_loss_on_the_device(standin):
    """Where the reference's indexing raises, the kernel gives NaN (the training loop's finiteness check reports
    it without a host round trip per step); -1 counts from the end, as in the reference."""
    logits = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    loss, _ = standin.softmax_cross_entropy(logits, np.array([0, 4, -5, -1]))
    ref, _ = mt.get_backend("numpy").softmax_cross_entropy(logits, np.array([0, 3, 3, 3]))
    assert np.isnan(loss[1]) and np.isnan(loss[2])
    np.testing.assert_allclose(loss[[0, 3]], ref[[0, 3]], rtol=1e-6)


@needs_cxx
def test_non_contiguous_and_int_inputs_fall_back_to_the_reference(standin):
    fake_cupy.LAUNCHES.clear()
    x = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    np.testing.assert_allclose(standin.act(x[:, ::2], "tanh"), np.tanh(x[:, ::2]), rtol=1e-6)
    assert not fake_cupy.LAUNCHES, "a non-contiguous view reached a kernel"
    np.testing.assert_allclose(standin.act(x, "tanh"), np.tanh(x), rtol=1e-6)
    assert fake_cupy.LAUNCHES == {"act_f32": 1}


def test_devices_are_checked_and_made_current():
    if fake_cupy.compiler() is None:
        pytest.skip("needs a C++ compiler (g++) for the CPU build of the CUDA kernels")
    with fake_cupy.installed(devices=2):
        be = CupyBackend(1)
        assert (be.device, be.spec) == ("cuda:1", "cupy:1")
        fake_cupy.Device.entered.clear()
        be.act(be.alloc((2, 3)), "relu")
        assert fake_cupy.Device.entered and set(fake_cupy.Device.entered) == {1}
        assert fake_cupy.Device.current == 0, "the previous device is current again after the call"
        with be.context():
            assert fake_cupy.Device.current == 1
        with pytest.raises(ValueError, match="2 CUDA device"):
            CupyBackend(2)
        assert mt.get_backend("cupy:1").device == "cuda:1"
        seen = []

        class Where(mt.callbacks.Callback):
            def on_batch_end(self, trainer, batch, loss):
                seen.append(fake_cupy.Device.current)

        X, y = _digits()
        net = mt.NeuralNetClassifier(nn.Linear(64, 10), max_epochs=1, backend="cupy:1", callbacks=[Where()])
        net.fit(X, y)
        assert seen and set(seen) == {1}, "the training loop runs with the model's device current"
        assert fake_cupy.Device.current == 0
        with pytest.raises(ValueError, match=r"'cupy:5': this machine has 2 CUDA device\(s\), numbered 0 to 1"):
            mt.MLPClassifier(backend="cupy:5").fit([[1.0], [2.0]], [0, 1])


def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X[:400] / 16.0).astype(np.float32), y[:400]


@needs_cxx
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_mlp_trains_alike_on_the_cpu_build(standin, solver):
    X, y = _digits()
    kw = dict(hidden_layer_sizes=(32,), max_iter=8, solver=solver, random_state=0, batch_size=64, tol=0)
    ref = mt.MLPClassifier(backend="numpy", **kw).fit(X, y)
    got = mt.MLPClassifier(backend=standin, **kw).fit(X, y)
    np.testing.assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=2e-4)
    np.testing.assert_allclose(got.predict_proba(X), ref.predict_proba(X), atol=1e-4)


@needs_cxx
def test_cnn_and_lstm_train_alike_on_the_cpu_build(standin):
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((48, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 48)

    def cnn():
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64, 3),
        )  # fmt: skip

    seqs = rng.standard_normal((32, 5, 3)).astype(np.float32)
    runs = {}
    for be in ("numpy", standin):
        losses = []
        for build, X, y in ((cnn, images, labels), (lambda: _Seq(), seqs, labels[:32])):
            mt.manual_seed(3)
            net = mt.NeuralNetClassifier(build(), max_epochs=3, batch_size=16, lr=0.05, optimizer="adam", backend=be,
                                         random_state=0, train_split=None)  # fmt: skip
            net.fit(X, y)
            losses.append(np.array(net.history_[:, "train_loss"]))
        runs[str(be)] = losses
    ref, got = runs.values()
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4)


@needs_cxx
def test_dropout_training_is_reproducible_on_the_cpu_build(standin):
    X, y = _digits()

    def fit():
        mt.manual_seed(1)  # the module's initial weights
        module = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))
        net = mt.NeuralNetClassifier(module, max_epochs=4, batch_size=32, lr=0.01, backend=standin, random_state=5,
                                     train_split=None)  # fmt: skip
        return np.array(net.fit(X, y).history_[:, "train_loss"])

    first, second = fit(), fit()
    np.testing.assert_array_equal(first, second)
    assert first[-1] < 0.5 * first[0]


@needs_cxx
@pytest.mark.parametrize("kind", ["mlp", "mlp-weighted", "net-weighted"])
def test_a_training_step_reads_one_value_back_from_the_device(kind):
    """Only the batch loss comes back to the host each step (for the history and callbacks): no label or row
    checks, weight sums or penalties read back per batch. Counted on arrays that record every conversion."""
    if fake_cupy.compiler() is None:
        pytest.skip("needs a C++ compiler (g++) for the CPU build of the CUDA kernels")
    X, y = _digits()
    weight = np.linspace(0.5, 1.5, len(y)) if kind.endswith("weighted") else None
    with fake_cupy.installed(counting=True):
        be = CupyBackend()
        if kind.startswith("mlp"):
            est = mt.MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, batch_size=50, backend=be, tol=0)
        else:
            module = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 10))
            est = mt.NeuralNetClassifier(module, max_epochs=2, batch_size=50, backend=be, train_split=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # max_iter reached
            fake_cupy.TRANSFERS.clear()
            est.fit(X, y, sample_weight=weight)
    steps = 2 * -(-len(y) // 50)
    per_step = [t for t in fake_cupy.TRANSFERS if t[0] in ("float", "int", "bool", "item", "index", "tolist")]
    per_step = [t for t in per_step if not t[1].endswith("<genexpr>")]  # the weights' finiteness, once an epoch
    assert len(per_step) == steps, f"{len(per_step)} reads for {steps} steps: {sorted(set(per_step))}"


@needs_cxx
def test_a_gpu_fitted_estimator_pickles_to_host_arrays():
    """Pickles hold NumPy arrays: they load and predict the same where cupy is missing."""
    X, y = _digits()
    with fake_cupy.installed():
        clf = mt.MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, backend="cupy", random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y)
        proba = clf.predict_proba(X)
        blob = pickle.dumps(clf)
    assert b"minitrain_cupy" not in blob and b"cupy" in blob  # the backend by name only
    back = pickle.loads(blob)
    assert back.module_.backend.name == "numpy" and back.backend_ == "cupy"
    np.testing.assert_allclose(back.predict_proba(X), proba, atol=1e-6)


@needs_cxx
@pytest.mark.parametrize("kind", ["mlp", "net"])
def test_cupy_arrays_in_give_cupy_arrays_out(kind):
    """scikit-learn's Array API convention: CuPy in, CuPy out; NumPy in, NumPy out."""
    if fake_cupy.compiler() is None:
        pytest.skip("needs a C++ compiler (g++) for the CPU build of the CUDA kernels")
    X, y = _digits()
    with fake_cupy.installed(counting=True) as cp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "mlp":
            est = mt.MLPClassifier((16,), max_iter=30, learning_rate_init=0.01, backend="cupy", random_state=0)
        else:
            module = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
            est = mt.NeuralNetClassifier(module, max_epochs=30, backend="cupy", random_state=0, train_split=None)
        Xd, yd = cp.asarray(X), cp.asarray(y)
        assert isinstance(Xd, fake_cupy.DeviceArray)
        est.fit(Xd, yd)
        for method in ("predict", "predict_proba"):
            on_device, on_host = getattr(est, method)(Xd), getattr(est, method)(X)
            assert isinstance(on_device, fake_cupy.DeviceArray), method
            assert type(on_host) is np.ndarray, method
            np.testing.assert_array_equal(on_device, on_host)
        assert est.score(Xd, yd) == est.score(X, y) > 0.5
        est.partial_fit(Xd, yd)


class _Text(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8, padding_idx=0)
        self.enc = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.norm(self.enc(self.emb(x))).mean(axis=1))


@needs_cxx
def test_embedding_and_attention_train_alike_on_the_cpu_build(standin):
    rng = np.random.default_rng(0)
    tokens, labels = rng.integers(0, 20, (40, 6)), rng.integers(0, 3, 40)
    curves = []
    for be in ("numpy", standin):
        mt.manual_seed(4)
        net = mt.NeuralNetClassifier(
            _Text(), max_epochs=3, batch_size=10, lr=0.01, backend=be, train_split=None, random_state=0
        )
        curves.append(np.array(net.fit(tokens, labels).history_[:, "train_loss"]))
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-4)
    out = nn.Embedding(5, 2).to(standin)(np.array([1, 7]))
    assert np.isfinite(out.numpy()[0]).all() and np.isnan(out.numpy()[1]).all()  # no host check on a device


class _Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 6, batch_first=True)
        self.gru = nn.GRU(6, 5, batch_first=True)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        out, _ = self.gru(out)
        return self.head(out[:, -1])


# ---------------------------------------------------------------------------------------------- on a GPU
@needs_gpu
def test_check_backend_on_the_gpu():
    check_backend("cupy")


@needs_gpu
def test_mlp_on_the_gpu_matches_numpy_and_returns_host_arrays():
    X, y = _digits()
    kw = dict(hidden_layer_sizes=(64,), max_iter=10, random_state=0, batch_size=64, tol=0)
    ref = mt.MLPClassifier(backend="numpy", **kw).fit(X, y)
    got = mt.MLPClassifier(backend="cupy", **kw).fit(X, y)
    assert got.backend_ == "cupy" and isinstance(got.predict_proba(X), np.ndarray)
    np.testing.assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=1e-3)
    assert (got.predict(X) == ref.predict(X)).mean() > 0.98
