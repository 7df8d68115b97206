"""Randomness belongs to the model: same-seed fits agree across threads, a fit resumed from a pickle in a fresh
process continues bit for bit (dropout included), and fitting another model in between changes nothing."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import minitrain as mt
from minitrain import MLPClassifier, NeuralNetClassifier, nn

X = np.random.default_rng(0).standard_normal((120, 6)).astype(np.float32)
Y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
CLASSES = np.unique(Y)


def _mlp(backend, **kw):
    params = {"hidden_layer_sizes": (16,), "dropout": 0.3, "batch_size": 32, "random_state": 0}
    return MLPClassifier(backend=backend, **{**params, **kw})


def _net(backend, **kw):
    params = {"module__hidden": (16,), "module__dropout": 0.3, "batch_size": 32, "train_split": None}
    return NeuralNetClassifier(backend=backend, **{**params, "random_state": 0, **kw})


def _cnn(n_features, n_outputs, backend=None, dtype="float32"):
    return nn.Sequential(
        nn.Linear(n_features, 12, activation="relu", backend=backend), nn.Dropout(0.4, backend=backend),
        nn.Linear(12, n_outputs, backend=backend), backend=backend,
    )  # fmt: skip


def _state(est):
    return [p.numpy().copy() for p in est.module_.parameters()]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn()


MAKERS = {
    "mlp": lambda be: _mlp(be, max_iter=4),
    "neuralnet": lambda be: _net(be, max_epochs=4),
    "neuralnet-module-class": lambda be: NeuralNetClassifier(_cnn, max_epochs=4, random_state=3, backend=be),
}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_same_seed_fits_in_two_threads_equal_the_sequential_fits(backend, kind):
    make = MAKERS[kind]
    sequential = [_state(_quiet(lambda: make(backend.name).fit(X, Y))) for _ in range(2)]
    _same(*sequential)
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def fit(i):
        try:
            est = make(backend.name)
            barrier.wait()
            results[i] = _state(_quiet(lambda: est.fit(X, Y)))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _same(results[0], sequential[0])
    _same(results[1], sequential[0])


_RESUME = """
import pickle, sys, warnings
import numpy as np
est = pickle.load(open(sys.argv[1], "rb"))
X, Y = np.load(sys.argv[2]), np.load(sys.argv[3])
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for _ in range(int(sys.argv[4])):
        est.partial_fit(X, Y)
pickle.dump([p.numpy() for p in est.module_.parameters()], open(sys.argv[1], "wb"))
"""


@pytest.mark.parametrize("kind", ["mlp", "neuralnet"])
def test_a_fit_resumed_from_a_pickle_in_a_fresh_process_continues_bit_for_bit(backend, kind, tmp_path):
    n, k = 5, 2
    if kind == "mlp":  # scikit-learn's MLP restarts its shuffling at each partial_fit: the run is partial_fits
        whole = _mlp(backend.name)
        for _ in range(n):
            whole.partial_fit(X, Y, classes=CLASSES)
        part = _mlp(backend.name)
        for _ in range(k):
            part.partial_fit(X, Y, classes=CLASSES)
    else:  # one run of n epochs, against k epochs of fit and n - k partial_fits
        whole = _net(backend.name, max_epochs=n).fit(X, Y)
        part = _net(backend.name, max_epochs=k).fit(X, Y)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(part))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    args = [str(path), str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), str(n - k)]
    done = subprocess.run([sys.executable, "-c", _RESUME, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resumed = pickle.loads(path.read_bytes())
    _same(resumed, _state(whole))
    assert not all(np.array_equal(a, b) for a, b in zip(_state(part), _state(whole), strict=True))


@pytest.mark.parametrize("kind", list(MAKERS))
def test_fitting_other_models_in_between_changes_nothing(backend, kind):
    make = MAKERS[kind]
    alone = _state(_quiet(lambda: make(backend.name).fit(X, Y)))
    first = make(backend.name)
    _quiet(lambda: first.partial_fit(X, Y, classes=CLASSES))
    _quiet(lambda: _mlp(backend.name, max_iter=2, random_state=None).fit(X, Y))  # the default streams
    _quiet(lambda: _net(backend.name, max_epochs=2, random_state=7).fit(X, Y))
    mt.functional.dropout(mt.tensor(X), 0.5)
    again = _state(_quiet(lambda: make(backend.name).fit(X, Y)))
    _same(again, alone)


def _drawing_layers(backend):
    return [
        nn.Dropout(0.5, backend=backend),
        nn.LSTM(3, 4, num_layers=2, dropout=0.5, batch_first=True, backend=backend),
    ]


def _out(layer, x):
    out = layer(mt.tensor(x))
    return (out[0] if isinstance(out, tuple) else out).numpy()


def test_layers_that_draw_own_their_generators_and_pickle_them_mid_stream(backend):
    x = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32)
    with mt.random.seeded(3):
        first = _drawing_layers(backend)
    with mt.random.seeded(3):
        second = _drawing_layers(backend)
    for a, b in zip(first, second, strict=True):
        assert dict(a.named_generators()).keys() == {"generator"}
        _same([_out(a, x)], [_out(b, x)])  # same seed, same masks
        resumed = pickle.loads(pickle.dumps(a))  # mid-stream
        moved = pickle.loads(pickle.dumps(a)).to("numpy")
        want = [_out(a, x), _out(a, x)]
        _same([_out(resumed, x), _out(resumed, x)], want)
        _same([_out(moved, x), _out(moved, x)], want)
        assert not np.array_equal(want[0], want[1])  # the stream moves on


def test_seed_generators_reseeds_every_generator_of_a_model(backend):
    x = np.ones((4, 50), np.float32)
    net = nn.Sequential(nn.Dropout(0.5, backend=backend), nn.Dropout(0.5, backend=backend), backend=backend)
    a = _out(net.seed_generators(11), x)
    b = _out(net.seed_generators(11), x)
    _same([a], [b])
    assert not np.array_equal(_out(net.seed_generators(12), x), a)
