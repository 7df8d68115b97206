"""Monitoring callbacks: GradientMonitor, TensorBoard, WandbLogger, and ProgressBar (what verbose shows)."""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from sklearn.base import clone

import minitrain as mt
from minitrain import functional as F
from minitrain import nn, optim
from minitrain.callbacks import (
    Callback,
    EpochLogger,
    GradientMonitor,
    GradientWarning,
    ProgressBar,
    TensorBoard,
    WandbLogger,
)
from minitrain.data import ArrayDataset
from minitrain.training import NonFiniteLossError, Trainer

N, D, BATCH = 64, 4, 16  # 4 batches per epoch


def _data(backend="numpy", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D)).astype(np.float32)
    return ArrayDataset(X, (X @ np.array([1.0, -2.0, 0.5, 1.0]) + 0.3).astype(np.float32), backend=backend)


def _mse(out, y, w, n):
    return F.mse_loss(out, y.reshape(-1, 1))


def _trainer(model, callbacks, lr=0.05):
    return Trainer(model, _mse, optim.SGD(model, lr=lr), batch_size=BATCH, callbacks=callbacks,
                   random_state=np.random.RandomState(0))  # fmt: skip


def _mlp(backend, hidden=8):
    mt.manual_seed(0)
    with mt.use_backend(backend):
        return nn.Sequential(nn.Linear(D, hidden, activation="relu"), nn.Linear(hidden, 1))


def _deep(backend, activation, batch_norm=False, depth=20, width=16):
    """``depth`` Linear layers with ``activation``; with batch_norm, each hidden one is Linear, BatchNorm1d, ReLU."""
    mt.manual_seed(0)
    with mt.use_backend(backend):
        layers, n_in = [], D
        for _ in range(depth - 1):
            if batch_norm:
                layers += [nn.Linear(n_in, width), nn.BatchNorm1d(width), nn.ReLU()]
            else:
                layers.append(nn.Linear(n_in, width, activation=activation))
            n_in = width
        return nn.Sequential(*layers, nn.Linear(n_in, 1))


def _layer_norm(be, arrays):
    return math.sqrt(sum(float((be.to_numpy(a).astype(np.float64) ** 2).sum()) for a in arrays))


class BatchGradNorms(Callback):
    """Each batch's gradient norm of every layer (module owning parameters), read from the parameters' ``.grad``."""

    def on_train_begin(self, trainer):
        self.norms, self.fused = [], trainer.forward_backward is not None

    def on_epoch_begin(self, trainer):
        self.norms.append([])

    def on_batch_end(self, trainer, batch, loss):
        be, mods = trainer.module.backend, trainer.module.named_modules()
        self.norms[-1].append({n: _layer_norm(be, [p.grad for p in m._parameters.values()]) for n, m in mods
                               if m._parameters})  # fmt: skip


# ------------------------------------------------------------------------------------------------ GradientMonitor
def test_gradient_monitor_records_each_layers_gradient_and_weight_norms(backend):
    model = _mlp(backend)
    trainer = _trainer(model, [GradientMonitor()]).fit(_data(backend), epochs=2)
    record = trainer.history[-1]
    assert sorted(k for k in record if "norm/" in k) == ["grad_norm/0", "grad_norm/1", "weight_norm/0", "weight_norm/1"]
    for i, layer in enumerate(model):
        weight_norm = _layer_norm(model.backend, [layer.weight.data, layer.bias.data])
        assert record[f"weight_norm/{i}"] == pytest.approx(weight_norm, rel=1e-5)
        assert record[f"grad_norm/{i}"] > 0


def test_gradient_norm_of_an_epoch_is_the_root_mean_square_over_its_batches(backend):
    probe = BatchGradNorms()
    trainer = _trainer(_mlp(backend), [GradientMonitor(), probe]).fit(_data(backend), epochs=3)
    for record, batches in zip(trainer.history, probe.norms, strict=True):
        assert len(batches) == N // BATCH
        for layer in ("0", "1"):
            rms = math.sqrt(np.mean([b[layer] ** 2 for b in batches]))
            assert record[f"grad_norm/{layer}"] == pytest.approx(rms, rel=1e-5)


class PlainSGD:
    """A user's optimizer that updates each parameter in place (its parameters stay out of flat buffers)."""

    def __init__(self, model, lr=0.05):
        self.model, self.param_groups = model, [{"lr": lr}]

    def zero_grad(self):
        self.model.zero_grad()

    def step(self):
        for p in self.model.parameters():
            p.data -= self.param_groups[0]["lr"] * p.grad

    def clear_state(self):
        pass


def test_gradient_monitor_measures_parameters_outside_flat_buffers_too(backend):
    model, probe = _mlp(backend), BatchGradNorms()
    trainer = Trainer(model, _mse, PlainSGD(model), batch_size=BATCH, callbacks=[GradientMonitor(), probe])
    trainer.fit(_data(backend), epochs=2)
    assert all(p._flat is None for p in model.parameters())
    for record, batches in zip(trainer.history, probe.norms, strict=True):
        rms = math.sqrt(np.mean([b["1"] ** 2 for b in batches]))
        assert record["grad_norm/1"] == pytest.approx(rms, rel=1e-5) and rms > 0


def test_gradient_monitor_measures_the_mlp_estimators_fused_step(backend):
    X, y = _data().X, _data().y
    probe = BatchGradNorms()
    est = mt.MLPRegressor(hidden_layer_sizes=(8, 8), max_iter=3, batch_size=BATCH, random_state=0, backend=backend,
                          callbacks=[GradientMonitor(), probe])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        est.fit(X, y)
    assert probe.fused  # the gradients come from the MLPStep, not from autograd
    for record, batches in zip(est.history_, probe.norms, strict=True):
        for layer in ("0", "1", "2"):
            rms = math.sqrt(np.mean([b[layer] ** 2 for b in batches]))
            assert record[f"grad_norm/{layer}"] == pytest.approx(rms, rel=1e-5) and rms > 0


def test_gradient_monitor_leaves_out_frozen_layers():
    model = _mlp("numpy")
    model[0].freeze()
    trainer = _trainer(model, [GradientMonitor()]).fit(_data(), epochs=1)
    assert [k for k in trainer.history[-1] if "norm/" in k] == ["grad_norm/1", "weight_norm/1"]


def test_gradient_monitor_warns_once_naming_the_layers_where_a_deep_sigmoid_networks_gradients_vanish(backend):
    monitor = GradientMonitor(patience=2)
    with pytest.warns(GradientWarning) as caught:
        _trainer(_deep(backend, "logistic"), [monitor], lr=0.01).fit(_data(backend), epochs=5)
    messages = [str(w.message) for w in caught if issubclass(w.category, GradientWarning)]
    assert len(messages) == 1
    assert "gradients vanish in layers '0' (Linear)" in messages[0]
    assert "ReLU" in messages[0] and "batch normalization" in messages[0] and "residual" in messages[0]
    assert monitor.vanishing_["0"] == 2 and "18" not in monitor.vanishing_ and not monitor.exploding_


def test_gradient_monitor_stays_quiet_with_relu_and_batch_norm(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientWarning)
        trainer = _trainer(_deep(backend, None, batch_norm=True), [GradientMonitor(patience=2)], lr=0.01)
        trainer.fit(_data(backend), epochs=5)
    assert "grad_norm/1" in trainer.history[-1]  # the BatchNorm1d layers are measured too


def test_gradient_monitor_warns_when_gradients_exceed_the_threshold():
    with pytest.warns(GradientWarning, match=r"gradients explode in layers '0' \(Linear\), '1' \(Linear\).*clip"):
        _trainer(_mlp("numpy"), [GradientMonitor(explode_threshold=1e-3)]).fit(_data(), epochs=1)


def test_gradient_monitor_names_the_layer_whose_gradients_become_infinite():
    with pytest.raises(NonFiniteLossError), pytest.warns(GradientWarning, match="explode.*learning rate"):
        _trainer(_mlp("numpy"), [GradientMonitor()], lr=1e30).fit(_data(), epochs=2)


def test_gradient_monitor_clones_and_pickles_after_a_fit():
    monitor = GradientMonitor(vanish_threshold=1e-4, explode_threshold=10.0, patience=5, warn=False)
    assert clone(monitor).get_params() == monitor.get_params()
    _trainer(_mlp("numpy"), [monitor]).fit(_data(), epochs=1)
    assert pickle.loads(pickle.dumps(monitor)).get_params() == monitor.get_params()


def test_gradient_monitor_takes_routed_parameters_in_a_neuralnet_estimator():
    est = mt.NeuralNetRegressor(max_epochs=2, callbacks=[GradientMonitor()], callbacks__gradient_monitor__patience=7,
                                module__hidden=(4,), random_state=0)  # fmt: skip
    est.fit(_data().X, _data().y)
    assert dict(est.callbacks_)["gradient_monitor"].patience == 7 and "grad_norm/0" in est.history_[-1]


# ------------------------------------------------------------------------------------------------ TensorBoard
def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0}).Reload()


@pytest.fixture(scope="module")
def tensorboard_fit(tmp_path_factory):
    """A NeuralNetRegressor fitted for 4 epochs with TensorBoard (histograms every 2) before a GradientMonitor."""
    log_dir = tmp_path_factory.mktemp("tb")
    est = mt.NeuralNetRegressor(max_epochs=4, module__hidden=(8,), random_state=0,
                                callbacks=[TensorBoard(log_dir, histogram_freq=2), GradientMonitor()])  # fmt: skip
    start = time.perf_counter()
    est.fit(_data().X, _data().y)
    return est, _events(log_dir), time.perf_counter() - start


def test_tensorboard_scalars_equal_the_history_each_epoch(tensorboard_fit):
    est, events, _ = tensorboard_fit
    keys = ["train_loss", "valid_loss", "valid_score", "lr", "duration", "grad_norm/0", "weight_norm/1"]
    assert set(keys) <= set(events.Tags()["scalars"])
    for key in keys:  # the GradientMonitor's keys, recorded after TensorBoard's turn, are logged too
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in est.history_]


def test_tensorboard_logs_training_samples_per_second(tensorboard_fit):
    est, events, fit_seconds = tensorboard_fit
    n_train = round(N * 0.8)
    durations = est.history_[:, "duration"]
    assert 0 < sum(durations) < fit_seconds
    logged = [e.value for e in events.Scalars("samples_per_sec")]
    assert logged == [pytest.approx(n_train / d, rel=1e-6) for d in durations]


def test_tensorboard_writes_parameter_and_gradient_histograms_every_histogram_freq_epochs(tensorboard_fit):
    _, events, _ = tensorboard_fit
    assert set(events.Tags()["histograms"]) == {f"{kind}/{layer}.{p}" for kind in ("weights", "gradients")
                                               for layer in (0, 1) for p in ("weight", "bias")}  # fmt: skip
    assert [h.step for h in events.Histograms("gradients/0.weight")] == [2, 4]
    assert events.Histograms("weights/1.weight")[-1].histogram_value.num == 8


def test_a_fitted_estimator_holding_tensorboard_pickles_and_clones(tensorboard_fit):
    est, _, _ = tensorboard_fit
    board = dict(est.callbacks_)["tensor_board"]
    assert board.writer_ is None  # closed when training ended
    restored = pickle.loads(pickle.dumps(est))
    assert clone(restored).get_params()["callbacks"][0].get_params() == board.get_params()


def test_tensorboard_continues_the_steps_over_partial_fit(tmp_path):
    est = mt.NeuralNetRegressor(module__hidden=(4,), random_state=0, callbacks=[TensorBoard(tmp_path)])
    for _ in range(3):
        est.partial_fit(_data().X, _data().y)
    assert [e.step for e in _events(tmp_path).Scalars("train_loss")] == [1, 2, 3]


# ------------------------------------------------------------------------------------------------ WandbLogger
@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """wandb confined to tmp_path, offline and silent: no network, no user config."""
    wandb = pytest.importorskip("wandb")
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
                        "WANDB_DISABLE_GIT": "true", "WANDB_DISABLE_CODE": "true", "WANDB_DIR": tmp_path,
                        "WANDB_CONFIG_DIR": tmp_path / "config", "WANDB_CACHE_DIR": tmp_path / "cache",
                        "WANDB_DATA_DIR": tmp_path / "data", "HOME": tmp_path}.items():  # fmt: skip
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield tmp_path
    wandb.teardown()


def _wandb_records(run_file):
    """The protobuf records of an offline run's .wandb file (a LevelDB-style log after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunk, out = 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's trailer
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            out.append(wandb_internal_pb2.Record.FromString(chunk))
            chunk = b""
    return out


def test_wandb_logger_logs_the_history_and_the_parameters_to_an_offline_run(offline_wandb):
    settings = {"x_disable_stats": True, "x_disable_machine_info": True}
    logger = WandbLogger(project="minitrain-tests", mode="offline", save_dir=offline_wandb,
                         init_kwargs={"settings": settings})  # fmt: skip
    est = mt.NeuralNetRegressor(max_epochs=3, module__hidden=(4,), random_state=0,
                                callbacks=[logger, GradientMonitor()])  # fmt: skip
    est.fit(_data().X, _data().y)
    logger = dict(est.callbacks_)["wandb_logger"]
    [run_file] = offline_wandb.glob(f"wandb/offline-run-*-{logger.run_id_}/run-{logger.run_id_}.wandb")
    records = _wandb_records(run_file)
    rows = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item} for r in records
            if r.WhichOneof("record_type") == "history"]  # fmt: skip
    assert [row["_step"] for row in rows] == [1, 2, 3]
    for row, record in zip(rows, est.history_, strict=True):
        for key in ("train_loss", "valid_loss", "valid_score", "lr", "duration", "grad_norm/0", "weight_norm/1"):
            assert row[key] == pytest.approx(record[key], rel=1e-12), key
        assert row["epoch"] == record["epoch"] and row["samples_per_sec"] > 0
    [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert run.project == "minitrain-tests" and config["max_epochs"] == 3 and config["lr"] == 0.01
    assert logger.run_ is None and pickle.loads(pickle.dumps(est)).n_epochs_ == 3


# ------------------------------------------------------------------------------------------------ optional packages
@pytest.mark.parametrize(
    ("make", "module", "extra"),
    [(lambda: TensorBoard("runs"), "tensorboardX", "monitor"), (lambda: WandbLogger(), "wandb", "wandb")],
    ids=["tensorboard", "wandb"],
)
def test_a_tracker_without_its_package_says_how_to_install_it(monkeypatch, make, module, extra):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf'needs the {module} package: pip install "minitrain\[{extra}\]"'):
        make()


def test_importing_minitrain_imports_no_optional_package():
    code = ("import sys, minitrain, minitrain.callbacks, minitrain.plot; "
            "print(sorted({'matplotlib', 'tensorboardX', 'tensorboard', 'wandb'} & set(sys.modules)))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------------ ProgressBar
class Terminal(io.StringIO):
    def isatty(self):
        return True


def _fit_with_bar(bar, epochs=2):
    return _trainer(_mlp("numpy"), [bar]).fit(_data(), _data(seed=1), epochs=epochs)


def test_progress_bar_stays_quiet_when_its_stream_is_not_a_terminal():
    out = io.StringIO()
    _fit_with_bar(ProgressBar(file=out))
    assert out.getvalue() == ""


def test_progress_bar_on_a_terminal_shows_batches_running_loss_and_one_summary_line_per_epoch():
    out = Terminal()
    trainer = _fit_with_bar(ProgressBar(file=out, mininterval=0))
    text = out.getvalue()
    assert "epoch 1" in text and "4/4" in text and "loss=" in text
    summaries = [line.split("\r")[-1] for line in text.splitlines() if line.split("\r")[-1].startswith("epoch  ")]
    assert summaries == [EpochLogger().format_record(r) for r in trainer.history]


def test_progress_bar_disable_false_forces_it_and_true_silences_it():
    forced, silenced = io.StringIO(), Terminal()
    _fit_with_bar(ProgressBar(file=forced, disable=False))
    _fit_with_bar(ProgressBar(file=silenced, disable=True))
    assert "epoch   2  train_loss" in forced.getvalue() and silenced.getvalue() == ""


def test_progress_bar_writes_to_stderr_by_default(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    _fit_with_bar(ProgressBar(), epochs=1)
    assert "epoch   1  train_loss" in sys.stderr.getvalue() and capsys.readouterr().out == ""


def test_progress_bar_clones_and_pickles_and_rejects_an_unknown_stream_name():
    bar = ProgressBar(leave=True, file="stdout", summary=False)
    assert clone(bar).get_params() == bar.get_params()
    _fit_with_bar(bar, epochs=1)
    pickle.dumps(bar)
    with pytest.raises(ValueError, match="file must be 'stderr', 'stdout' or a stream"):
        _fit_with_bar(ProgressBar(file="log.txt", disable=False), epochs=1)
