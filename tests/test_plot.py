"""minitrain.plot.learning_curves: loss and score per epoch, the best epoch and the early-stopping point."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

import minitrain as mt
from minitrain.callbacks import EarlyStopping, GradientMonitor, History
from minitrain.plot import learning_curves

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


@pytest.fixture
def history():
    h = History()
    for epoch, (loss, valid, score) in enumerate([(1.0, 1.2, 0.5), (0.6, 0.7, 0.7), (0.4, 0.8, 0.8)], start=1):
        h.new_epoch(epoch=epoch, train_loss=loss, valid_loss=valid, valid_score=score)
    return h


def _curves(ax):
    """{label: (x, y)} of the lines on ``ax``."""
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def _marks(fig):
    """The labels of the vertical lines marking epochs, with their epoch, on each panel."""
    return [{k: v[0][0] for k, v in _curves(ax).items() if k.startswith(("best", "early"))} for ax in fig.axes]


def test_learning_curves_draws_the_train_and_validation_loss_and_the_score_per_epoch(history):
    fig = learning_curves(history)
    loss, score = fig.axes
    assert (loss.get_ylabel(), score.get_ylabel(), loss.get_xlabel()) == ("loss", "score", "epoch")
    assert _curves(loss)["train"] == ([1, 2, 3], [1.0, 0.6, 0.4])
    assert _curves(loss)["validation"] == ([1, 2, 3], [1.2, 0.7, 0.8])
    assert _curves(score)["validation"] == ([1, 2, 3], [0.5, 0.7, 0.8])


def test_learning_curves_of_a_history_marks_the_epoch_of_the_lowest_validation_loss(history):
    assert _marks(learning_curves(history)) == [{"best epoch 2": 2}, {"best epoch 2": 2}]


def test_learning_curves_marks_what_a_neuralnets_early_stopping_kept_and_when_it_stopped(digits):
    est = mt.NeuralNetClassifier(max_epochs=60, lr=0.05, module__hidden=(32,), random_state=0,
                                 callbacks=[EarlyStopping(patience=2)]).fit(*digits)  # fmt: skip
    stopper = dict(est.callbacks_)["early_stopping"]
    assert stopper.stopped_epoch_ is not None and stopper.stopped_epoch_ < 60
    best, stop = stopper.best_epoch_, stopper.stopped_epoch_
    assert _marks(learning_curves(est))[0] == {f"best epoch {best}": best, f"early stop (epoch {stop})": stop}


def test_learning_curves_of_an_mlp_with_early_stopping_marks_its_best_validation_score(digits):
    est = mt.MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, n_iter_no_change=3, random_state=0)
    est.fit(*digits)
    best = int(np.argmax(est.validation_scores_)) + 1
    fig = learning_curves(est)
    assert _curves(fig.axes[0])["train"][1] == pytest.approx(est.loss_curve_)
    assert _curves(fig.axes[1])["validation"][1] == pytest.approx(est.validation_scores_)
    assert _marks(fig)[1] == {f"best epoch {best}": best, f"early stop (epoch {est.n_iter_})": est.n_iter_}


def test_learning_curves_of_an_mlp_that_ran_out_of_epochs_marks_no_stop(digits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = mt.MLPClassifier(hidden_layer_sizes=(16,), max_iter=4, random_state=0).fit(*digits)
    best = int(np.argmin(est.loss_curve_)) + 1
    fig = learning_curves(est)
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss"]  # no validation: no score panel
    assert _marks(fig) == [{f"best epoch {best}": best}]


def test_learning_curves_reads_scikit_learns_mlp_curves(digits):
    est = SklearnMLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, n_iter_no_change=3, random_state=0)
    est.fit(*digits)
    fig = learning_curves(est)
    assert _curves(fig.axes[0])["train"][1] == pytest.approx(est.loss_curve_)
    assert _curves(fig.axes[1])["validation"][1] == pytest.approx(est.validation_scores_)
    assert f"early stop (epoch {est.n_iter_})" in _marks(fig)[1]


def test_learning_curves_draws_every_key_under_a_prefix(digits):
    est = mt.NeuralNetClassifier(max_epochs=3, module__hidden=(8,), random_state=0, callbacks=[GradientMonitor()])
    fig = learning_curves(est.fit(*digits), metrics=["grad_norm"])
    curves = _curves(fig.axes[0])
    assert curves["0"][1] == est.history_[:, "grad_norm/0"] and curves["1"][1] == est.history_[:, "grad_norm/1"]


def test_learning_curves_draws_into_the_given_axes(history):
    from matplotlib.figure import Figure

    fig = Figure()
    axes = fig.subplots(2, 1)
    assert learning_curves(history, ax=axes) is fig and _curves(axes[1])["validation"][1] == [0.5, 0.7, 0.8]
    assert learning_curves(history, metrics=["loss"], ax=axes[0]) is fig
    with pytest.raises(ValueError, match=r"2 panels \(\['loss', 'score'\]\) but 1 Axes"):
        learning_curves(history, ax=[axes[0]])


def test_learning_curves_takes_the_epochs_to_mark(history):
    fig = learning_curves(history, metrics=["loss"], best_epoch=3, stopped_epoch=3)
    assert _marks(fig) == [{"best epoch 3": 3, "early stop (epoch 3)": 3}]


def test_learning_curves_figure_saves_a_png(history, tmp_path):
    path = tmp_path / "curves.png"
    learning_curves(history).savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learning_curves_of_an_unfitted_estimator_says_to_fit_it():
    with pytest.raises(ValueError, match="fit the estimator first"):
        learning_curves(mt.MLPClassifier())


def test_learning_curves_without_anything_to_plot_lists_the_recorded_keys(history):
    with pytest.raises(ValueError, match=r"nothing to plot for metrics \['accuracy'\]; recorded: \['epoch'"):
        learning_curves(history, metrics=["accuracy"])


def test_learning_curves_without_matplotlib_says_how_to_install_it(history, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "minitrain\[plot\]"'):
        learning_curves(history)


def test_importing_minitrain_plot_does_not_import_matplotlib():
    code = "import sys, minitrain.plot; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_quickstart_example_saves_its_learning_curves(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("quickstart", EXAMPLES / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    path = tmp_path / "curves.png"
    quickstart.main(["--backend", "numpy", "--epochs", "2", "--plot", str(path)])
    assert f"learning curves saved to {path}" in capsys.readouterr().out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
