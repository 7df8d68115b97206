"""Callbacks: History, EarlyStopping, LRScheduler, ReduceLROnPlateau, ProgressBar, EpochLogger, CSVLogger."""

from __future__ import annotations

import csv
import pickle
import re

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.model_selection import GridSearchCV

import minitrain as mt
from minitrain import functional as F
from minitrain import nn, optim, schedules
from minitrain.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    EpochLogger,
    History,
    LRScheduler,
    ProgressBar,
    ReduceLROnPlateau,
)
from minitrain.data import ArrayDataset
from minitrain.training import Trainer

N, D, BATCH = 32, 3, 8  # 4 batches per epoch


def _data(backend="numpy", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    return ArrayDataset(X, X @ np.array([1.0, -2.0, 0.5]) + 0.3, backend=backend)


def _flat_data(backend="numpy"):
    """Zero inputs: a bias-free linear model's loss stays exactly 1.0, whatever the lr."""
    return ArrayDataset(np.zeros((N, D)), np.ones(N), backend=backend)


def _mse(out, y, w, n):
    return F.mse_loss(out, y.reshape(-1, 1))


def _trainer(callbacks=(), backend="numpy", lr=0.05, bias=True, **kwargs):
    mt.manual_seed(0)
    with mt.use_backend(backend):
        model = nn.Sequential(nn.Linear(D, 8, bias=bias), nn.ReLU(), nn.Linear(8, 1, bias=bias))
    rs = np.random.RandomState(0)
    return Trainer(
        model, _mse, optim.SGD(model, lr=lr), batch_size=BATCH, callbacks=callbacks, random_state=rs, **kwargs
    )


def _weights(trainer):
    be = trainer.module.backend
    return [np.array(be.to_numpy(w), copy=True) for w in trainer.get_weights()]


def _assert_weights_equal(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


class Script(Callback):
    """Records ``values[epoch - 1]`` under ``key`` after each epoch (place it before the callback under test)."""

    def __init__(self, values=(), key="scripted_loss"):
        self.values = values
        self.key = key

    def on_epoch_end(self, trainer):
        trainer.history.record(self.key, self.values[trainer.epoch - 1])


class Snapshots(Callback):
    """The weights (NumPy copies) after each epoch."""

    def on_train_begin(self, trainer):
        self.weights = []

    def on_epoch_end(self, trainer):
        self.weights.append(_weights(trainer))


class Interrupt(Callback):
    def __init__(self, epoch=2):
        self.epoch = epoch

    def on_batch_end(self, trainer, batch, loss):
        if trainer.epoch == self.epoch and batch == 1:
            raise KeyboardInterrupt


# ------------------------------------------------------------------------------------------------ History
@pytest.fixture
def history():
    h = History()
    for epoch, loss in enumerate([0.9, 0.5, 0.7], start=1):
        h.new_epoch(epoch=epoch, train_loss=loss)
        h.record("train_loss_best", loss == 0.5 or epoch == 1)
    return h


def test_history_indexes_records_and_columns(history):
    assert history[0] == {"epoch": 1, "train_loss": 0.9, "train_loss_best": True}
    assert history[-1, "train_loss"] == 0.7
    assert history[:, "train_loss"] == [0.9, 0.5, 0.7]
    assert history[1:, ("epoch", "train_loss")] == [(2, 0.5), (3, 0.7)]
    assert history[:, "train_loss_best"] == [True, True, False]


def test_history_column_fills_missing_values(history):
    history.record("valid_loss", 0.1)
    np.testing.assert_array_equal(history.column("valid_loss"), [np.nan, np.nan, 0.1])


def test_history_missing_key_error_lists_recorded_keys(history):
    with pytest.raises(KeyError, match="'valid_loss' was not recorded in epoch 3; recorded: .*train_loss"):
        history[-1, "valid_loss"]


def test_history_record_before_any_epoch_is_an_error():
    with pytest.raises(IndexError, match="no epoch has started"):
        History().record("train_loss", 1.0)


def test_history_initialize_forgets_records(history):
    assert len(history.initialize()) == 0


def test_history_to_dataframe(history):
    pytest.importorskip("pandas")
    assert history.to_dataframe()["train_loss"].tolist() == [0.9, 0.5, 0.7]


# ------------------------------------------------------------------------------------------------ EarlyStopping
SCRIPT = [3.0, 2.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]  # best at epoch 3


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    stopper = EarlyStopping(monitor="scripted_loss", patience=2)
    trainer = _trainer([Script(SCRIPT), stopper]).fit(_data(), epochs=10)
    assert trainer.epoch == 5
    assert (stopper.best_epoch_, stopper.stopped_epoch_, stopper.best_) == (3, 5, 1.0)


def test_early_stopping_restores_the_best_weights(backend):
    snaps = Snapshots()
    trainer = _trainer([Script(SCRIPT), snaps, EarlyStopping(monitor="scripted_loss", patience=2)], backend)
    trainer.fit(_data(backend), epochs=10)
    _assert_weights_equal(_weights(trainer), snaps.weights[2])


def test_early_stopping_restores_the_best_weights_when_epochs_run_out():
    snaps, stopper = Snapshots(), EarlyStopping(monitor="scripted_loss", patience=10)
    trainer = _trainer([Script([3.0, 1.0, 2.0, 2.0]), snaps, stopper]).fit(_data(), epochs=4)
    assert stopper.stopped_epoch_ is None
    _assert_weights_equal(_weights(trainer), snaps.weights[1])


def test_early_stopping_restores_the_best_weights_after_an_interrupt():
    snaps = Snapshots()
    trainer = _trainer([Script([3.0, 1.0, 2.0, 2.0]), snaps, EarlyStopping(monitor="scripted_loss"), Interrupt(4)])
    with pytest.warns(UserWarning, match="interrupted"):
        trainer.fit(_data(), epochs=10)
    _assert_weights_equal(_weights(trainer), snaps.weights[1])


def test_early_stopping_without_restore_keeps_the_last_weights():
    snaps = Snapshots()
    stopper = EarlyStopping(monitor="scripted_loss", patience=2, restore_best_weights=False)
    trainer = _trainer([Script(SCRIPT), snaps, stopper]).fit(_data(), epochs=10)
    _assert_weights_equal(_weights(trainer), snaps.weights[-1])
    assert stopper.best_weights_ is None


@pytest.mark.parametrize(("min_delta", "stopped"), [(0.0, None), (0.1, 4)])
def test_early_stopping_min_delta_ignores_small_improvements(min_delta, stopped):
    stopper = EarlyStopping(monitor="scripted_loss", patience=3, min_delta=min_delta)
    _trainer([Script([1.0, 0.95, 0.92, 0.91]), stopper]).fit(_data(), epochs=4)
    assert stopper.stopped_epoch_ == stopped


def test_early_stopping_auto_mode_maximizes_a_score():
    scores = iter([0.5, 0.7, 0.6, 0.6, 0.6])
    stopper = EarlyStopping(monitor="valid_score", patience=2)
    _trainer([stopper], score_fn=lambda ds: next(scores)).fit(_data(), _data(seed=1), epochs=5)
    assert (stopper.best_epoch_, stopper.stopped_epoch_) == (2, 4)


def test_early_stopping_explicit_mode_overrides_auto():
    stopper = EarlyStopping(monitor="scripted_loss", patience=1, mode="max")
    _trainer([Script([1.0, 2.0, 1.0]), stopper]).fit(_data(), epochs=3)
    assert (stopper.best_epoch_, stopper.stopped_epoch_) == (2, 3)


def test_early_stopping_on_valid_loss_without_validation_data_says_what_to_do():
    with pytest.raises(ValueError, match=r"'valid_loss'.*validation data.*'train_loss'"):
        _trainer([EarlyStopping()]).fit(_data(), epochs=3)


@pytest.mark.parametrize("params", [{"mode": "best"}, {"patience": -1}, {"min_delta": -0.1}])
def test_early_stopping_rejects_bad_parameters(params):
    with pytest.raises(ValueError, match=next(iter(params))):
        _trainer([EarlyStopping(monitor="train_loss", **params)]).fit(_data(), epochs=1)


def test_early_stopping_initialize_resets_its_state():
    stopper = EarlyStopping(monitor="scripted_loss", patience=2)
    trainer = _trainer([Script(SCRIPT), stopper]).fit(_data(), epochs=10)
    trainer.initialize()
    assert (stopper.best_epoch_, stopper.stopped_epoch_, stopper.wait_) == (None, None, 0)
    assert stopper.best_weights_ is None


def test_early_stopping_get_and_set_params():
    stopper = EarlyStopping(monitor="train_loss", patience=3)
    assert stopper.get_params() == {
        "monitor": "train_loss", "patience": 3, "min_delta": 0.0, "mode": "auto", "restore_best_weights": True,
    }  # fmt: skip
    assert stopper.set_params(patience=7, min_delta=0.5).get_params()["patience"] == 7
    assert stopper.min_delta == 0.5


def test_early_stopping_clone_keeps_parameters_and_drops_state():
    stopper = EarlyStopping(monitor="scripted_loss", patience=2, min_delta=0.01)
    _trainer([Script(SCRIPT), stopper]).fit(_data(), epochs=10)
    copy = clone(stopper)
    assert copy.get_params() == stopper.get_params()
    assert not hasattr(copy, "best_epoch_")


def test_early_stopping_pickles_its_best_weights_as_numpy_copies():
    stopper = EarlyStopping(monitor="scripted_loss", patience=2)
    _trainer([Script(SCRIPT), stopper]).fit(_data(), epochs=10)
    loaded = pickle.loads(pickle.dumps(stopper))  # a resumed fit restores the best weights as the stopped one would
    assert all(type(a) is np.ndarray for a in loaded.best_weights_)
    for a, b in zip(loaded.best_weights_, stopper.best_weights_, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert (loaded.best_epoch_, loaded.get_params()) == (3, stopper.get_params())


class TinyRegressor(RegressorMixin, BaseEstimator):
    """A minimal estimator over Trainer, to check callbacks inside GridSearchCV."""

    def __init__(self, lr=0.05, callbacks=None):
        self.lr = lr
        self.callbacks = callbacks

    def fit(self, X, y):
        self.trainer_ = _trainer(list(self.callbacks or ()), lr=self.lr).initialize()
        self.trainer_.fit(ArrayDataset(X, y, backend="numpy"), epochs=30)
        return self

    def predict(self, X):
        with mt.no_grad():
            return self.trainer_.module(mt.tensor(X, backend="numpy", dtype="float32")).numpy()[:, 0]


def test_early_stopping_works_inside_grid_search():
    data = _data()
    stopper = EarlyStopping(monitor="train_loss", patience=2, min_delta=0.05)
    search = GridSearchCV(TinyRegressor(callbacks=[stopper]), {"lr": [0.01, 0.05]}, cv=2).fit(data.X, data.y)
    fitted = search.best_estimator_.callbacks[0]
    assert fitted is not stopper
    assert fitted.stopped_epoch_ is not None and fitted.stopped_epoch_ < 30
    assert not hasattr(stopper, "best_epoch_")  # the template was cloned, never fitted


# ------------------------------------------------------------------------------------------------ LRScheduler
def test_lr_scheduler_steps_once_per_epoch():
    trainer = _trainer([LRScheduler("StepLR", step_size=2, gamma=0.5)], lr=0.08).fit(_data(), epochs=5)
    assert trainer.history[:, "lr"] == [0.08, 0.08, 0.04, 0.04, 0.02]


def test_lr_scheduler_steps_once_per_batch():
    sched = LRScheduler(schedules.ExponentialLR, step_every="batch", gamma=0.5)
    trainer = _trainer([sched], lr=0.04).fit(_data(), epochs=3)  # 4 batches per epoch
    assert trainer.history[:, "lr"] == [0.04, 0.04 * 0.5**4, 0.04 * 0.5**8]
    assert trainer.lr == 0.04 * 0.5**12


def test_lr_scheduler_builds_a_schedule_class_with_its_arguments():
    trainer = _trainer([LRScheduler(schedules.CosineAnnealingLR, T_max=2)], lr=0.1).fit(_data(), epochs=3)
    np.testing.assert_allclose(trainer.history[:, "lr"], [0.1, 0.05, 0.0], atol=1e-12)


def test_lr_scheduler_accepts_a_schedule_on_the_trainers_optimizer():
    trainer = _trainer(lr=0.1)
    trainer.callbacks.append(LRScheduler(schedules.StepLR(trainer.optimizer, step_size=1, gamma=0.5)))
    trainer.fit(_data(), epochs=3)
    assert trainer.history[:, "lr"] == [0.1, 0.05, 0.025]


def test_lr_scheduler_rejects_a_schedule_on_another_optimizer():
    other = optim.SGD(nn.Linear(2, 1, backend="numpy"), lr=0.1)
    with pytest.raises(ValueError, match="name or class"):
        _trainer([LRScheduler(schedules.StepLR(other, step_size=1))]).fit(_data(), epochs=1)


def test_lr_scheduler_unknown_name_lists_the_schedules():
    with pytest.raises(ValueError, match="unknown schedule 'Steplr'; choose one of .*StepLR"):
        _trainer([LRScheduler("Steplr")]).fit(_data(), epochs=1)


def test_lr_scheduler_with_a_plateau_schedule_steps_on_the_monitored_value():
    sched = LRScheduler("ReduceLROnPlateau", monitor="train_loss", factor=0.5, patience=0)
    trainer = _trainer([sched], bias=False).fit(_flat_data(), epochs=3)
    assert trainer.history[:, "lr"] == [0.05, 0.05, 0.025]


def test_lr_scheduler_refuses_a_plateau_schedule_per_batch():
    with pytest.raises(ValueError, match="step_every='epoch'"):
        _trainer([LRScheduler("ReduceLROnPlateau", step_every="batch")]).fit(_data(), epochs=1)


def test_lr_scheduler_continues_across_fits_and_restarts_after_initialize():
    trainer = _trainer([LRScheduler("StepLR", step_size=1, gamma=0.5)], lr=0.1)
    trainer.fit(_data(), epochs=2).fit(_data(), epochs=1)
    assert trainer.history[:, "lr"] == [0.1, 0.05, 0.025]
    trainer.initialize().fit(_data(), epochs=2)
    assert trainer.history[:, "lr"] == [0.1, 0.05]


def test_lr_scheduler_clone_and_set_params_keep_the_schedule_arguments():
    sched = LRScheduler("StepLR", step_size=3, gamma=0.5)
    copy = clone(sched)
    assert copy.get_params() == {"schedule": "StepLR", "step_every": "epoch", "monitor": "valid_loss",
                                 "step_size": 3, "gamma": 0.5}  # fmt: skip
    copy.set_params(step_size=1)
    trainer = _trainer([copy], lr=0.1).fit(_data(), epochs=2)
    assert trainer.history[:, "lr"] == [0.1, 0.05]
    assert sched.step_size == 3


def test_lr_scheduler_rejects_arguments_that_shadow_its_methods():
    with pytest.raises(TypeError, match="clash"):
        LRScheduler("StepLR", initialize=1)


# ------------------------------------------------------------------------------------------------ ReduceLROnPlateau
def test_reduce_lr_on_plateau_reduces_after_patience_epochs():
    plateau = ReduceLROnPlateau(monitor="train_loss", factor=0.5, patience=1)
    trainer = _trainer([plateau], bias=False, lr=0.1).fit(_flat_data(), epochs=6)
    assert trainer.history[:, "lr"] == [0.1, 0.1, 0.1, 0.05, 0.05, 0.025]


def test_reduce_lr_on_plateau_keeps_the_lr_while_improving():
    plateau = ReduceLROnPlateau(monitor="scripted_loss", patience=0)
    trainer = _trainer([Script([4.0, 3.0, 2.0, 1.0]), plateau], lr=0.1).fit(_data(), epochs=4)
    assert trainer.lr == 0.1


def test_reduce_lr_on_plateau_auto_mode_maximizes_a_score():
    plateau = ReduceLROnPlateau(monitor="scripted_score", factor=0.5, patience=0)
    trainer = _trainer([Script([1.0, 2.0, 3.0, 1.0], key="scripted_score"), plateau], lr=0.1).fit(_data(), epochs=4)
    assert trainer.history[:, "lr"] == [0.1, 0.1, 0.1, 0.1]
    assert trainer.lr == 0.05


def test_reduce_lr_on_plateau_missing_monitor_says_what_to_do():
    with pytest.raises(ValueError, match="validation data"):
        _trainer([ReduceLROnPlateau()]).fit(_data(), epochs=1)


def test_reduce_lr_on_plateau_clone_keeps_parameters():
    plateau = ReduceLROnPlateau(monitor="train_loss", factor=0.2, patience=3, min_lr=1e-4)
    assert clone(plateau).get_params() == plateau.get_params()


# ------------------------------------------------------------------------------------------------ ProgressBar
def test_progress_bar_writes_to_stderr(capsys):
    _trainer([ProgressBar(disable=False)]).fit(_data(), epochs=2)
    captured = capsys.readouterr()
    assert "epoch 1" in captured.err and "epoch 2" in captured.err
    assert captured.out == ""


def test_progress_bar_left_on_screen_shows_the_epoch_losses(capsys):
    _trainer([ProgressBar(leave=True, disable=False)]).fit(_data(), _data(seed=1), epochs=1)
    err = capsys.readouterr().err
    assert "4/4" in err
    assert "train_loss=" in err and "valid_loss=" in err


def test_progress_bar_closes_its_bar_when_training_ends():
    bar = ProgressBar(disable=True)
    with pytest.warns(UserWarning, match="interrupted"):
        _trainer([bar, Interrupt(1)]).fit(_data(), epochs=2)
    assert bar.bar_ is None
    pickle.dumps(bar)


# ------------------------------------------------------------------------------------------------ EpochLogger
def test_epoch_logger_prints_one_line_per_epoch_with_best_marks(capsys):
    _trainer([EpochLogger()], score_fn=lambda ds: 0.9).fit(_data(), _data(seed=1), epochs=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    number = r"\d+\.\d{4}"
    assert re.fullmatch(
        rf"epoch   1  train_loss {number}\+  valid_loss {number}\+  valid_score 0\.9000\+  lr 0\.05  dur \d+\.\d\ds",
        lines[0],
    )
    assert "valid_score 0.9000  " in lines[1]  # equal, not better: no mark


def test_epoch_logger_shows_the_chosen_keys_in_order():
    lines = []
    _trainer([Script([0.25]), EpochLogger(sink=lines.append, keys=["scripted_loss", "epoch"])]).fit(_data(), epochs=1)
    assert lines == ["scripted_loss 0.2500  epoch   1"]


def test_epoch_logger_shows_extra_recorded_numbers():
    lines = []
    _trainer([Script([0.25]), EpochLogger(sink=lines.append)]).fit(_data(), epochs=1)
    assert "  scripted_loss 0.2500  lr " in lines[0]


# ------------------------------------------------------------------------------------------------ CSVLogger
def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    path = tmp_path / "history.csv"
    trainer = _trainer([CSVLogger(path)]).fit(_data(), epochs=3)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    np.testing.assert_allclose([float(r["train_loss"]) for r in rows], trainer.history[:, "train_loss"])


def test_csv_logger_starts_a_new_file_on_each_fit_unless_appending(tmp_path):
    path = tmp_path / "history.csv"
    trainer = _trainer([CSVLogger(path)]).fit(_data(), epochs=2)
    trainer.initialize().fit(_data(), epochs=1)
    assert len(path.read_text().splitlines()) == 2
    appending = _trainer([CSVLogger(path, append=True)]).fit(_data(), epochs=2)
    assert len(appending.history) == 2
    assert len(path.read_text().splitlines()) == 4  # one header
