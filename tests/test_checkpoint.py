"""Checkpoints and exact resume: a fit stopped after k epochs and resumed from its checkpoint in a fresh process
ends bit for bit where the uninterrupted fit ends, with dropout and a schedule active, on every backend."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import minitrain as mt
from minitrain import MLPClassifier, NeuralNetClassifier, nn, optim
from minitrain import functional as F
from minitrain.callbacks import Checkpoint, EarlyStopping, LRScheduler
from minitrain.data import ArrayDataset
from minitrain.training import Trainer

rng = np.random.default_rng(0)
X = rng.standard_normal((150, 6))
Y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)

ESTIMATORS = {
    "neuralnet": (
        "NeuralNetClassifier(module__hidden=(16,), module__dropout=0.3, batch_size=32, random_state=0, "
        "backend={backend!r}, callbacks=[LRScheduler('StepLR', step_size=2, gamma=0.5), "
        "EarlyStopping(patience=10), Checkpoint({where!r})])",
        "max_epochs",
    ),
    "mlp": (
        "MLPClassifier((16,), solver='sgd', learning_rate='invscaling', learning_rate_init=0.05, dropout=0.2, "
        "early_stopping=True, n_iter_no_change=50, batch_size=32, random_state=0, backend={backend!r}, "
        "callbacks=[Checkpoint({where!r})])",
        "max_iter",
    ),
}

_RESUME = """
import pickle, sys, warnings
import numpy as np
from minitrain import MLPClassifier, NeuralNetClassifier
from minitrain.callbacks import Checkpoint, EarlyStopping, LRScheduler
warnings.simplefilter("ignore")
X, Y = np.load(sys.argv[1]), np.load(sys.argv[2])
est = {make}.set_params({epochs}=6)
est.fit(X, Y, resume_from=sys.argv[3])
pickle.dump(([p.numpy() for p in est.module_.parameters()], est.history_.records), open(sys.argv[4], "wb"))
"""


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn()


def _strip(records):
    return [{k: v for k, v in r.items() if k != "duration"} for r in records]


@pytest.mark.parametrize("kind", list(ESTIMATORS))
def test_a_fit_resumed_in_a_fresh_process_ends_where_the_uninterrupted_fit_ends(backend, kind, tmp_path):
    import pickle

    make, epochs = ESTIMATORS[kind]
    context = {"MLPClassifier": MLPClassifier, "NeuralNetClassifier": NeuralNetClassifier, "Checkpoint": Checkpoint,
               "EarlyStopping": EarlyStopping, "LRScheduler": LRScheduler}  # fmt: skip
    whole = eval(make.format(backend=backend.name, where=str(tmp_path / "whole")), context)
    _quiet(lambda: whole.set_params(**{epochs: 6}).fit(X, Y))
    part = eval(make.format(backend=backend.name, where=str(tmp_path / "part")), context)
    _quiet(lambda: part.set_params(**{epochs: 3}).fit(X, Y))  # stopped after 3 epochs
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    code = _RESUME.format(make=make.format(backend=backend.name, where=str(tmp_path / "resumed")), epochs=epochs)
    last, out = str(tmp_path / "part" / "last.safetensors"), str(tmp_path / "out.pkl")
    args = [str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), last, out]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    weights, records = pickle.loads(open(out, "rb").read())
    for a, b in zip(weights, whole.module_.parameters(), strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    assert _strip(records) == _strip(whole.history_.records) and len(records) == 6
    if kind == "neuralnet":
        assert [r["lr"] for r in records] == [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025]  # the schedule went on


def _trainer(backend):
    with mt.random.seeded(3):
        model = nn.Sequential(
            nn.Linear(6, 12, activation="relu", backend=backend), nn.Dropout(0.3, backend=backend),
            nn.Linear(12, 1, backend=backend), backend=backend,
        )  # fmt: skip
    opt = optim.Adam(model, lr=0.01)
    callbacks = [LRScheduler("ExponentialLR", gamma=0.7), Checkpoint(os.environ["CKPT_DIR"], monitor="train_loss")]
    trainer = Trainer(model, lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1)), opt, batch_size=40,
                      callbacks=callbacks, random_state=np.random.RandomState(5))  # fmt: skip
    return trainer, ArrayDataset(X, X[:, 0], backend=backend)


def test_a_trainer_resumes_from_its_checkpoint_in_place(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("CKPT_DIR", str(tmp_path / "whole"))
    whole, data = _trainer(backend)
    whole.fit(data, epochs=5)
    monkeypatch.setenv("CKPT_DIR", str(tmp_path / "part"))
    part, data = _trainer(backend)
    part.fit(data, epochs=2)
    monkeypatch.setenv("CKPT_DIR", str(tmp_path / "again"))
    again, data = _trainer(backend)  # the same script, run again
    again.resume(tmp_path / "part" / "last.safetensors")
    assert again.epoch == 2 and len(again.history) == 2
    again.fit(data, epochs=3)
    for a, b in zip(again.module.parameters(), whole.module.parameters(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert again.history[:, "lr"] == whole.history[:, "lr"]


def test_early_stopping_and_the_checkpoint_agree_on_the_best_epoch(backend, tmp_path):
    stopper, ckpt = EarlyStopping(patience=3, restore_best_weights=True), Checkpoint(tmp_path, save_last=False)
    est = NeuralNetClassifier(module__hidden=(16,), lr=0.1, max_epochs=30, random_state=0, backend=backend.name,
                              callbacks=[stopper, ckpt])  # fmt: skip
    est.fit(X, Y)
    stopper, ckpt = est.callbacks_[0][1], est.callbacks_[1][1]
    assert stopper.best_epoch_ == ckpt.best_epoch_ and stopper.stopped_epoch_ is not None
    best = mt.load(tmp_path / "best.safetensors")["estimator"]
    assert len(best.history_) == ckpt.best_epoch_
    for a, b in zip(best.module_.parameters(), est.module_.parameters(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # the restored weights are the best checkpoint's


def test_checkpoints_every_n_epochs_and_only_what_is_asked(tmp_path):
    ckpt = Checkpoint(tmp_path, monitor="train_loss", save_best=False, save_last=False, every=2)
    NeuralNetClassifier(max_epochs=5, train_split=None, callbacks=[ckpt], random_state=0).fit(X, Y)
    assert sorted(os.listdir(tmp_path)) == ["epoch_2.safetensors", "epoch_4.safetensors"]
    with pytest.raises(ValueError, match="every must be a whole number"):
        NeuralNetClassifier(max_epochs=1, callbacks=[Checkpoint(tmp_path, every=0)]).fit(X, Y)


def test_resuming_from_a_file_that_is_not_its_checkpoint_changes_nothing(tmp_path):
    est = NeuralNetClassifier(max_epochs=1, random_state=0).fit(X, Y)
    mt.save(nn.Linear(2, 2), tmp_path / "other.safetensors")
    before = [p.numpy().copy() for p in est.module_.parameters()]
    with pytest.raises(ValueError, match="not a checkpoint of a NeuralNetClassifier"):
        est.fit(X, Y, resume_from=tmp_path / "other.safetensors")
    for a, b in zip(est.module_.parameters(), before, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)
