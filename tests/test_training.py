"""The training loop: epochs, shuffling, stopping, interruption, divergence, evaluation and the callback protocol."""

from __future__ import annotations

import time

import numpy as np
import pytest

import minitrain as mt
from minitrain import functional as F
from minitrain import nn, optim
from minitrain.callbacks import Callback, History
from minitrain.data import ArrayDataset
from minitrain.training import NonFiniteLossError, Trainer

N, D, BATCH = 30, 3, 8  # 4 batches per epoch, the last one short


def _data(backend="numpy", n=N, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    return ArrayDataset(X, X @ np.array([1.0, -2.0, 0.5]) + 0.3, backend=backend)


def _mse(out, y, w, n):
    return F.mse_loss(out, y.reshape(-1, 1))


def _model(backend="numpy"):
    mt.manual_seed(0)
    with mt.use_backend(backend):
        return nn.Sequential(nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, 1))


def _trainer(model=None, callbacks=(), lr=0.05, opt=optim.SGD, seed=0, **kwargs):
    model = model if model is not None else _model()
    rs = np.random.RandomState(seed)
    return Trainer(model, _mse, opt(model, lr=lr), batch_size=BATCH, callbacks=callbacks, random_state=rs, **kwargs)


def _weights(trainer):
    be = trainer.module.backend
    return [np.array(be.to_numpy(w), copy=True) for w in trainer.get_weights()]


class Log(Callback):
    """Appends ``(name, hook, *args)`` to a shared list at every hook."""

    def __init__(self, name="log", log=None):
        self.name = name
        self.log = log

    def on_train_begin(self, trainer):
        self.log.append((self.name, "train_begin"))

    def on_epoch_begin(self, trainer):
        self.log.append((self.name, "epoch_begin", trainer.epoch, trainer.n_batches))

    def on_batch_end(self, trainer, batch, loss):
        self.log.append((self.name, "batch_end", batch))

    def on_epoch_end(self, trainer):
        self.log.append((self.name, "epoch_end", trainer.epoch))

    def on_train_end(self, trainer):
        self.log.append((self.name, "train_end"))


class Snapshots(Callback):
    """The weights (NumPy copies) after each epoch."""

    def on_train_begin(self, trainer):
        self.weights = []

    def on_epoch_end(self, trainer):
        self.weights.append(_weights(trainer))


class Interrupt(Callback):
    """Raises KeyboardInterrupt after batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch=2, batch=1):
        self.epoch = epoch
        self.batch = batch

    def on_batch_end(self, trainer, batch, loss):
        if trainer.epoch == self.epoch and batch == self.batch:
            raise KeyboardInterrupt


class Probe(nn.Module):
    """A linear layer that records the first input column and the training flag of each forward pass."""

    def __init__(self):
        super().__init__(backend="numpy")
        self.linear = nn.Linear(D, 1, backend="numpy")
        self.seen, self.modes = [], []

    def forward(self, x):
        self.seen.append(np.array(self.backend.to_numpy(x.data)[:, 0]))
        self.modes.append(self.training)
        return self.linear(x)


def test_training_loss_decreases(backend):
    trainer = _trainer(_model(backend), opt=optim.Adam, lr=0.02)
    trainer.fit(_data(backend), epochs=25)
    losses = trainer.history[:, "train_loss"]
    assert losses[-1] < 0.5 * losses[0]


def test_same_seed_gives_the_same_training():
    model_a, model_b = _model(), _model()
    model_b.load_state_dict(model_a.state_dict())
    a, b = _trainer(model_a, seed=3), _trainer(model_b, seed=3)
    a.fit(_data(), epochs=3)
    b.fit(_data(), epochs=3)
    assert a.history[:, "train_loss"] == b.history[:, "train_loss"]
    for wa, wb in zip(_weights(a), _weights(b)):
        np.testing.assert_array_equal(wa, wb)


def test_shuffling_depends_on_the_seed():
    probes = [Probe(), Probe()]
    for seed, probe in zip((1, 2), probes):
        _trainer(probe, lr=0.0, seed=seed).fit(ArrayDataset(np.arange(N * D).reshape(N, D), np.zeros(N)), epochs=1)
    assert not np.array_equal(np.concatenate(probes[0].seen), np.concatenate(probes[1].seen))


def test_shuffling_visits_every_sample_once_per_epoch():
    probe = Probe()
    X = np.arange(N * D, dtype=float).reshape(N, D)
    _trainer(probe, lr=0.0).fit(ArrayDataset(X, np.zeros(N)), epochs=2)
    first, second = np.concatenate(probe.seen[:4]), np.concatenate(probe.seen[4:])
    assert sorted(first) == sorted(second) == X[:, 0].tolist()
    assert not np.array_equal(first, second)


def test_without_shuffle_samples_come_in_order():
    probe = Probe()
    X = np.arange(N * D, dtype=float).reshape(N, D)
    _trainer(probe, lr=0.0, shuffle=False).fit(ArrayDataset(X, np.zeros(N)), epochs=1)
    np.testing.assert_array_equal(np.concatenate(probe.seen), X[:, 0])


def test_stop_training_ends_fit_after_the_epoch():
    class StopAt2(Callback):
        def on_epoch_end(self, trainer):
            trainer.stop_training = trainer.epoch == 2

    trainer = _trainer(callbacks=[StopAt2()]).fit(_data(), epochs=10)
    assert trainer.epoch == 2
    assert len(trainer.history) == 2


def test_fit_again_continues_the_epoch_count():
    trainer = _trainer()
    trainer.fit(_data(), epochs=2).fit(_data(), epochs=3)
    assert trainer.epoch == 5
    assert trainer.history[:, "epoch"] == [1, 2, 3, 4, 5]


def test_initialize_forgets_previous_epochs():
    trainer = _trainer().fit(_data(), epochs=2)
    trainer.initialize()
    assert trainer.epoch == 0
    assert len(trainer.history) == 0


def test_keyboard_interrupt_warns_and_leaves_a_usable_model():
    log = []
    trainer = _trainer(callbacks=[Interrupt(epoch=2, batch=1), Log(log=log)])
    with pytest.warns(UserWarning, match="interrupted"):
        trainer.fit(_data(), epochs=5)
    assert trainer.epoch == 1  # the interrupted epoch 2 is forgotten: the history holds whole epochs only
    assert len(trainer.history) == 1 and np.isfinite(trainer.history[:, "train_loss"]).all()
    assert log[-1] == ("log", "train_end")
    assert all(np.isfinite(w).all() for w in _weights(trainer))
    trainer.callbacks = [trainer.history]
    trainer.fit(_data(), epochs=1)  # training can go on
    assert np.isfinite(trainer.history[-1, "train_loss"])


def test_non_finite_loss_raises_and_restores_the_last_finite_weights(backend):
    class Explode(Callback):
        def on_epoch_end(self, trainer):
            if trainer.epoch == 2:
                trainer.lr = 1e10

    snaps = Snapshots()
    trainer = _trainer(_model(backend), callbacks=[snaps, Explode()])
    with pytest.raises(NonFiniteLossError, match=r"at epoch 3, .*after epoch 2"):
        trainer.fit(_data(backend), epochs=10)
    for now, after_2 in zip(_weights(trainer), snaps.weights[1]):
        np.testing.assert_array_equal(now, after_2)


def test_non_finite_loss_error_is_a_value_error():
    assert issubclass(NonFiniteLossError, ValueError)


def test_evaluate_loss_runs_in_eval_mode_and_restores_the_mode():
    probe = Probe()
    trainer = _trainer(probe)
    trainer.evaluate_loss(_data())
    assert probe.modes == [False]
    assert probe.training is True


def test_evaluate_loss_is_the_mean_loss(backend):
    model = _model(backend)
    data = _data(backend)
    trainer = _trainer(model)
    be = model.backend
    with mt.no_grad():
        out = be.to_numpy(model(mt.tensor(be.to_numpy(data.X), backend=be)).data)[:, 0]
    expected = np.mean((out - be.to_numpy(data.y)) ** 2)
    np.testing.assert_allclose(trainer.evaluate_loss(data), expected, rtol=1e-5)


def test_callbacks_are_called_in_order():
    log = []
    trainer = _trainer(callbacks=[Log("a", log), Log("b", log)])
    trainer.fit(_data(n=16), epochs=1)  # 2 batches
    assert isinstance(trainer.callbacks[0], History)
    assert log == [
        ("a", "train_begin"), ("b", "train_begin"),
        ("a", "epoch_begin", 1, 2), ("b", "epoch_begin", 1, 2),
        ("a", "batch_end", 0), ("b", "batch_end", 0),
        ("a", "batch_end", 1), ("b", "batch_end", 1),
        ("a", "epoch_end", 1), ("b", "epoch_end", 1),
        ("a", "train_end"), ("b", "train_end"),
    ]  # fmt: skip


def test_history_passed_in_is_the_one_kept():
    history = History()
    trainer = _trainer(callbacks=[history]).fit(_data(), epochs=2)
    assert trainer.history is history
    assert len(history) == 2


def test_epoch_records_hold_losses_scores_lr_and_duration():
    began = time.perf_counter()
    trainer = _trainer(score_fn=lambda ds: 0.5).fit(_data(), _data(seed=1), epochs=1)
    elapsed = time.perf_counter() - began
    record = trainer.history[-1]
    assert record["lr"] == 0.05
    assert record["valid_score"] == 0.5
    assert 0 < record["duration"] <= elapsed  # the epoch's own time
    assert np.isfinite([record["train_loss"], record["valid_loss"]]).all()


def test_best_flags_mark_a_new_best():
    trainer = _trainer(lr=0.1, score_fn=lambda ds: -trainer.history[-1, "valid_loss"])
    trainer.fit(_data(), _data(seed=1), epochs=8)
    for key, better in (("train_loss", np.less), ("valid_loss", np.less), ("valid_score", np.greater)):
        values = trainer.history[:, key]
        expected = [i == 0 or bool(better(v, values[:i]).all()) for i, v in enumerate(values)]
        assert trainer.history[:, f"{key}_best"] == expected, key


def test_penalty_is_added_to_the_reported_loss():
    model = _model()
    plain = _trainer(model, lr=0.0).fit(_data(), epochs=1)
    penalized = _trainer(model, lr=0.0, penalty=lambda wsum: 0.25).fit(_data(), epochs=1)
    np.testing.assert_allclose(penalized.history[-1, "train_loss"], plain.history[-1, "train_loss"] + 0.25)


def test_forward_backward_replaces_the_autograd_step():
    model = _model()
    trainer = _trainer(model)
    before = _weights(trainer)
    seen = []

    def forward_backward(data, rows, wsum):
        xb, _, _ = data.take(rows)  # the step gathers its own batch
        seen.append((xb.shape[0], wsum))
        for p in model.parameters():
            p.grad[...] = 1.0  # a constant gradient: SGD moves every parameter by -lr per step
        return 2.0

    trainer.forward_backward = forward_backward
    trainer.fit(_data(), epochs=1)
    assert seen == [(8, 8.0), (8, 8.0), (8, 8.0), (6, 6.0)]
    assert trainer.history[-1, "train_loss"] == 2.0
    for a, b in zip(_weights(trainer), before, strict=True):
        np.testing.assert_allclose(a, b - 4 * 0.05, atol=1e-6)


def test_lr_setter_sets_every_parameter_group():
    model = _model()
    groups = [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[2].parameters(), "lr": 0.2}]
    trainer = Trainer(model, _mse, optim.SGD(groups), batch_size=BATCH)
    assert trainer.lr == 0.1
    trainer.lr = 0.5
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.5, 0.5]


def test_set_weights_restores_parameters_and_buffers():
    with mt.use_backend("numpy"):
        model = nn.Sequential(nn.Linear(D, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    trainer = _trainer(model)
    before, saved = model.state_dict(), trainer.get_weights()
    trainer.fit(_data(), epochs=1)
    trainer.set_weights(saved)
    after = model.state_dict()
    assert any("running_mean" in k for k in after)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
