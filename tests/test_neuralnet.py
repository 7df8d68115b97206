"""NeuralNetClassifier / NeuralNetRegressor: any network as an estimator, with skorch-like parameter routing."""

from __future__ import annotations

import pickle
import re

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, make_regression
from sklearn.model_selection import GridSearchCV, PredefinedSplit, ShuffleSplit, cross_val_score, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks as ec
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from minitrain import list_backends, losses, nn, optim
from minitrain.callbacks import Callback, EarlyStopping, EpochLogger, LRScheduler
from minitrain.estimators import NeuralNetClassifier, NeuralNetRegressor
from minitrain.training import NonFiniteLossError

CPU_BACKENDS = [i.name for i in list_backends() if i.available and i.name != "cupy"]


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(120, 5, n_targets=1, noise=1.0, random_state=0)
    return X, y / 100.0


def clf(**kw):
    return NeuralNetClassifier(**{"backend": "numpy", "random_state": 0, "module__hidden": (8,), **kw})


def reg(**kw):
    return NeuralNetRegressor(**{"backend": "numpy", "random_state": 0, "module__hidden": (8,), **kw})


# ------------------------------------------------------------------ scikit-learn's own estimator checks
# float64 and no validation split: sklearn's checks compare weighted fits with fits on repeated samples and
# predictions on subsets with full-batch ones at a 1e-7 tolerance; float32 sums (and a random hold-out, whose
# samples differ between the two fits) cannot meet that. The defaults pass every other check (see below).
@parametrize_with_checks(
    [
        est(backend=b, dtype="float64", train_split=None)
        for b in CPU_BACKENDS
        for est in (NeuralNetClassifier, NeuralNetRegressor)
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


DEFAULT_CHECKS = [
    ec.check_fit2d_1sample, ec.check_fit_idempotent, ec.check_estimators_pickle, ec.check_n_features_in_after_fitting,
    ec.check_estimators_dtypes, ec.check_supervised_y_2d, ec.check_sample_weights_shape, ec.check_fit_check_is_fitted,
]  # fmt: skip


@pytest.mark.parametrize("check", DEFAULT_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("cls", [NeuralNetClassifier, NeuralNetRegressor], ids=lambda c: c.__name__)
def test_defaults_pass_sklearn_checks(cls, check):
    est = cls(backend="numpy")
    check(type(est).__name__, est)


def test_defaults_train_well_enough_for_sklearn():
    ec.check_classifiers_train("NeuralNetClassifier", NeuralNetClassifier(backend="numpy"))
    ec.check_classifiers_one_label("NeuralNetClassifier", NeuralNetClassifier(backend="numpy"))
    ec.check_regressors_train("NeuralNetRegressor", NeuralNetRegressor(backend="numpy"))


# ------------------------------------------------------------------ every backend
@pytest.mark.parametrize("cls", [NeuralNetClassifier, NeuralNetRegressor], ids=lambda c: c.__name__)
def test_learns_on_every_backend(cls, backend, iris, regression):
    X, y = iris if cls is NeuralNetClassifier else regression
    est = cls(backend=backend.name, max_epochs=30, lr=0.05, random_state=0, module__hidden=(16,)).fit(X, y)
    assert est.backend_ == backend.name and est.module_.backend is backend
    assert est.score(X, y) > 0.85


# ------------------------------------------------------------------ routed parameters
def test_routed_params_are_real_params():
    stop = EarlyStopping(patience=3)
    est = clf(optimizer__weight_decay=1e-4, criterion__label_smoothing=0.1, callbacks=[stop])
    shallow = est.get_params(deep=False)
    assert shallow["module__hidden"] == (8,) and shallow["optimizer__weight_decay"] == 1e-4
    assert "callbacks__early_stopping__patience" not in shallow
    deep = est.get_params()
    assert (
        deep["callbacks__early_stopping__patience"] == 3 and deep["callbacks__early_stopping__monitor"] == "valid_loss"
    )
    est.set_params(module__hidden=(4, 4), callbacks__early_stopping__patience=7, optimizer__momentum=0.5)
    assert est.get_params()["callbacks__early_stopping__patience"] == 7 and stop.patience == 3  # applies to the clone
    twin = clone(est)
    same = {k: v for k, v in twin.get_params().items() if k != "callbacks"}
    assert same == {k: v for k, v in est.get_params().items() if k != "callbacks"} and twin.callbacks[0] is not stop
    assert "module__hidden=(4, 4)" in repr(est)


def test_routed_params_reach_their_targets(iris):
    X, y = iris
    est = clf(
        optimizer="sgd", lr=0.1, optimizer__momentum=0.9, optimizer__weight_decay=1e-4, criterion__label_smoothing=0.1,
        module__hidden=(5, 3), module__activation="tanh", max_epochs=3,
        callbacks=[EarlyStopping()], callbacks__early_stopping__patience=2,
    ).fit(X, y)  # fmt: skip
    group = est.optimizer_.param_groups[0]
    assert isinstance(est.optimizer_, optim.SGD) and (group["lr"], group["momentum"], group["weight_decay"]) == (
        0.1,
        0.9,
        1e-4,
    )
    assert est.criterion_.label_smoothing == 0.1 and est.criterion_.reduction == "none"
    linears = [m for m in est.module_ if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 5), (5, 3), (3, 3)]
    assert all(m.activation == "tanh" for m in linears[:-1])
    name, stopper = est.callbacks_[0]
    assert name == "early_stopping" and stopper.patience == 2 and est.callbacks[0].patience == 5


def test_optimizer_lr_overrides_lr_and_classes_are_accepted(iris):
    X, y = iris
    est = clf(optimizer=optim.RMSprop, lr=0.5, optimizer__lr=0.01, max_epochs=1).fit(X, y)
    assert isinstance(est.optimizer_, optim.RMSprop) and est.optimizer_.param_groups[0]["lr"] == 0.01
    assert est.history_[0, "lr"] == 0.01


def test_callbacks_can_be_named_replaced_and_dropped(iris):
    X, y = iris
    est = clf(callbacks=[("stop", EarlyStopping()), LRScheduler("StepLR", step_size=1)], max_epochs=2)
    assert "callbacks__lr_scheduler__step_size" in est.get_params()
    est.set_params(callbacks__stop=None, callbacks__log=EpochLogger(sink=lambda line: None)).fit(X, y)
    assert [n for n, _ in est.callbacks_] == ["lr_scheduler", "log"]


def test_grid_search_tunes_routed_params_with_early_stopping(iris):
    X, y = iris
    stop = EarlyStopping(patience=3)
    pipe = Pipeline([("scale", StandardScaler()), ("net", clf(max_epochs=300, lr=0.1, callbacks=[stop]))])
    grid = {
        "net__module__hidden": [(4,), (16,)],
        "net__optimizer__weight_decay": [0.0, 1e-3],
        "net__callbacks__early_stopping__patience": [1, 2],
    }
    search = GridSearchCV(pipe, grid, cv=2, n_jobs=2).fit(X, y)
    best = search.best_estimator_[-1]
    assert {k: best.get_params()[k.partition("__")[2]] for k in grid} == search.best_params_
    assert best.n_epochs_ < 300 and dict(best.callbacks_)["early_stopping"].stopped_epoch_ == best.n_epochs_
    assert search.best_score_ > 0.8
    assert not hasattr(stop, "wait_")  # the estimator's callback is a template: fits use clones


def test_each_clone_stops_early_with_its_own_callback(iris):
    X, y = iris
    net = clf(max_epochs=300, lr=0.1, callbacks=[EarlyStopping(patience=2, min_delta=1e-3)])
    fitted = cross_validate(net, X, y, cv=3, n_jobs=2, return_estimator=True)["estimator"]
    stoppers = [dict(e.callbacks_)["early_stopping"] for e in fitted]
    assert len({id(s) for s in stoppers}) == 3
    assert all(s.stopped_epoch_ == e.n_epochs_ < 300 for s, e in zip(stoppers, fitted))


def test_pipeline_cross_val_score_and_set_output(iris):
    pd = pytest.importorskip("pandas")
    X, y = iris
    Xdf = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    pipe = Pipeline([("scale", StandardScaler()), ("net", clf(max_epochs=20, lr=0.05))]).set_output(transform="pandas")
    assert cross_val_score(pipe, Xdf, y, cv=3).mean() > 0.8
    pipe.fit(Xdf, y)
    assert list(pipe[-1].feature_names_in_) == ["a", "b", "c", "d"]


# ------------------------------------------------------------------ history, validation, scores
def test_history_records_every_epoch_with_best_flags(iris):
    X, y = iris
    est = clf(max_epochs=6, lr=0.05).fit(X, y)
    h = est.history_
    assert len(h) == est.n_epochs_ == est.n_iter_ == 6 and h[:, "epoch"] == [1, 2, 3, 4, 5, 6]
    for key in ("train_loss", "valid_loss", "valid_score", "lr", "duration", "valid_loss_best", "valid_score_best"):
        assert key in h[-1]
    np.testing.assert_array_equal(h.column("valid_loss"), h[:, "valid_loss"])
    losses_ = h.column("valid_loss")
    assert h[:, "valid_loss_best"] == [bool(v < losses_[:i].min(initial=np.inf)) for i, v in enumerate(losses_)]


def test_valid_score_is_accuracy_on_the_splitters_validation_part(iris):
    X, y = iris
    splitter = ShuffleSplit(1, test_size=0.3, random_state=1)
    est = clf(train_split=splitter, max_epochs=2).fit(X, y)
    _, valid = next(splitter.split(X, y))
    assert est.history_[-1, "valid_score"] == pytest.approx(est.score(X[valid], y[valid]))
    fold = np.where(np.arange(len(y)) % 5 == 0, 0, -1)
    est = reg(train_split=PredefinedSplit(fold), max_epochs=2).fit(X, X[:, 0])
    assert est.history_[-1, "valid_score"] == pytest.approx(est.score(X[fold == 0], X[fold == 0, 0]))


def test_early_stopping_can_monitor_valid_score(iris):
    X, y = iris
    est = clf(max_epochs=200, lr=0.1, callbacks=[EarlyStopping(monitor="valid_score", patience=3)]).fit(X, y)
    assert est.n_epochs_ < 200 and est.history_[-1, "valid_score"] > 0.8


def test_without_train_split_nothing_is_validated(iris):
    X, y = iris
    est = clf(train_split=None, max_epochs=2).fit(X, y)
    assert "valid_loss" not in est.history_[-1] and "valid_score" not in est.history_[-1]
    with pytest.raises(ValueError, match="monitors 'valid_loss'"):
        clf(train_split=None, callbacks=[EarlyStopping()]).fit(X, y)


def test_rare_classes_fall_back_to_an_unstratified_split(iris):
    X, y = iris
    y = y.copy()
    y[0] = 3  # a class with a single sample cannot be stratified
    assert clf(max_epochs=1).fit(X, y).classes_.tolist() == [0, 1, 2, 3]


# ------------------------------------------------------------------ sample weights, partial_fit, warm_start
@pytest.mark.parametrize("cls", [NeuralNetClassifier, NeuralNetRegressor], ids=lambda c: c.__name__)
def test_integer_sample_weights_equal_repeated_samples(cls, iris):
    X, y = iris[0][::5], iris[1][::5]
    w = np.arange(len(y)) % 3
    kw = {"dtype": "float64", "train_split": None, "batch_size": 1000, "max_epochs": 5, "backend": "numpy"}
    a = cls(random_state=0, **kw).fit(X, y, sample_weight=w)
    b = cls(random_state=0, **kw).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    method = "predict_proba" if cls is NeuralNetClassifier else "predict"
    np.testing.assert_allclose(getattr(a, method)(X), getattr(b, method)(X), rtol=1e-9)


def test_partial_fit_runs_one_epoch_per_call(iris):
    X, y = iris
    est = clf(train_split=None)
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, y)
    est.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    module = est.module_
    for _ in range(3):
        est.partial_fit(X, y)
    assert (
        est.n_epochs_ == 4 and est.n_iter_ == 1 and est.module_ is module and est.history_[:, "epoch"] == [1, 2, 3, 4]
    )
    with pytest.raises(ValueError, match=r"labels \[7\] that are not in classes_"):
        est.partial_fit(X[:3], [0, 1, 7])
    assert est.n_epochs_ == 4
    r = reg(train_split=None).partial_fit(X, X[:, 0]).partial_fit(X, X[:, 0])
    assert r.n_epochs_ == 2


def test_warm_start_continues_training(iris):
    X, y = iris
    est = clf(max_epochs=3).fit(X, y)
    module = est.module_
    est.set_params(warm_start=True).fit(X, y)
    assert est.module_ is module and est.n_epochs_ == 6 and est.n_iter_ == 3
    est.set_params(warm_start=False).fit(X, y)
    assert est.module_ is not module and est.n_epochs_ == 3


# ------------------------------------------------------------------ pickling
@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_pickle_round_trip_predicts_identically_and_resumes(dump, iris, tmp_path):
    X, y = iris
    est = clf(max_epochs=3, callbacks=[EarlyStopping()]).fit(X, y)
    if dump == "pickle":
        loaded = pickle.loads(pickle.dumps(est))
    else:
        joblib.dump(est, tmp_path / "net.joblib")
        loaded = joblib.load(tmp_path / "net.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    assert loaded.optimizer_ is None and len(loaded.history_) == 3
    steps = est.optimizer_.state_dict()["state"][0]["step"]
    loaded.partial_fit(X, y)
    assert loaded.optimizer_.state_dict()["state"][0]["step"] > steps  # the optimizer resumed its state


# ------------------------------------------------------------------ errors
class _KeepWeights(Callback):
    """Keep the weights after each epoch; make the lr explode after epoch 2."""

    def on_epoch_end(self, trainer):
        self.saved = [*getattr(self, "saved", []), trainer.module.state_dict()]
        if trainer.epoch == 2:
            trainer.lr = 1e10


def test_non_finite_loss_names_the_epoch_and_keeps_the_last_finite_weights():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    est = reg(optimizer="sgd", train_split=None, max_epochs=10, callbacks=[("keep", _KeepWeights())])
    with pytest.raises(NonFiniteLossError, match=r"at epoch \d+") as info:
        est.fit(X, 10 * X.sum(axis=1))
    epoch = int(re.search(r"at epoch (\d+)", str(info.value)).group(1))
    assert epoch > 2 and est.n_epochs_ == len(est.history_) == epoch - 1
    saved = dict(est.callbacks_)["keep"].saved[epoch - 2]
    assert all(np.array_equal(saved[k], v) for k, v in est.module_.state_dict().items())
    assert np.isfinite(est.predict(X)).all()


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        ([[np.nan, 1.0]] * 10, [0, 1] * 5, "Input X contains NaN"),
        ([[np.inf, 1.0]] * 10, [0, 1] * 5, "Input X contains infinity"),
        ([[0.0, 1.0]] * 10, [0.0, np.nan] * 5, "Input y contains NaN"),
        ([[0.0, 1.0]] * 4, [0, 1] * 2, "validation set is too small.*train_split"),
    ],
    ids=["nan-X", "inf-X", "nan-y", "too-few-samples"],
)
def test_bad_input_is_named(X, y, match):
    with pytest.raises(ValueError, match=match):
        reg().fit(np.array(X), np.array(y))


@pytest.mark.parametrize(
    ("params", "X_part", "y_part"),
    [
        ({"backend": "nope"}, slice(None), None),
        ({}, slice(0, 2), "nan"),
        ({"train_split": 0.999}, slice(0, 2), None),
        ({"module__nope": 1}, slice(0, 3), None),
        ({"warm_start": True}, slice(None), "new-label"),
    ],
    ids=["backend", "nan-y", "split", "module-param", "warm-start-label"],
)
def test_failed_refit_keeps_the_fitted_model(params, X_part, y_part, iris):
    X, y = iris
    est = clf(max_epochs=2).fit(X, y)
    module, proba = est.module_, est.predict_proba(X)
    y_bad = {"nan": np.full(len(y), np.nan), "new-label": y + 1, None: y}[y_part]
    with pytest.raises((ValueError, TypeError)):
        est.set_params(**params).fit(X[:, X_part], y_bad)
    assert est.module_ is module and est.n_features_in_ == 4 and est.classes_.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(est.predict_proba(X), proba)


def test_unknown_and_gpu_backends_list_the_backends(iris):
    X, y = iris
    with pytest.raises(ValueError, match="unknown backend 'nope'.*numpy"):
        clf(backend="nope").fit(X, y)
    if "cupy" not in CPU_BACKENDS:
        with pytest.raises(ValueError, match="cupy.*numpy"):
            clf(backend="cupy").fit(X, y)


def test_predict_checks_features_and_fitting(iris):
    X, y = iris
    with pytest.raises(Exception, match="not fitted"):
        clf().predict(X)
    est = clf(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but NeuralNetClassifier is expecting 4"):
        est.predict(X[:, :3])


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"lr": -1.0}, "'lr' parameter"),
        ({"max_epochs": 0}, "'max_epochs' parameter"),
        ({"batch_size": 0}, "'batch_size' parameter"),
        ({"train_split": 1.5}, "'train_split' parameter"),
        ({"optimizer": 3}, "'optimizer' parameter"),
    ],
)
def test_invalid_parameter_values_use_sklearns_messages(params, match, iris):
    with pytest.raises(InvalidParameterError, match=match):
        clf(**params).fit(*iris)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"max_epoch": 5}, TypeError, r"unexpected parameter\(s\) \['max_epoch'\]"),
        ({"module__nope": 1}, TypeError, "could not build the module.*nope"),
        ({"optimizer__nope": 1}, TypeError, "could not build the optimizer.*nope"),
        ({"optimizer": "lbfgs"}, ValueError, "unknown optimizer 'lbfgs'; use one of adagrad, adam"),
        ({"criterion": "hinge"}, ValueError, "unknown criterion 'hinge'"),
        ({"callbacks__stop__patience": 1}, ValueError, "name no callback"),
        ({"callbacks": [EarlyStopping(), EarlyStopping()]}, ValueError, "several callbacks are named"),
        ({"callbacks": [print]}, TypeError, "not a minitrain Callback"),
        ({"module": nn.Linear(4, 3), "module__hidden": 3}, ValueError, "already built Linear"),
    ],
)
def test_invalid_routing_is_reported_at_fit(params, error, match, iris):
    est = clf(**params)  # scikit-learn's rule: __init__ and set_params validate nothing
    with pytest.raises(error, match=match):
        est.fit(*iris)


def test_set_params_rejects_unknown_plain_names():
    with pytest.raises(ValueError, match="Invalid parameter 'max_epoch'"):
        clf().set_params(max_epoch=3)


# ------------------------------------------------------------------ modules, criteria, outputs
class TwoLayer(nn.Module):
    def __init__(self, in_features, out_features, width=4, backend=None):
        super().__init__(backend)
        self.hidden = nn.Linear(in_features, width, activation="relu")
        self.out = nn.Linear(width, out_features)

    def forward(self, x):
        return self.out(self.hidden(x))


class ByClasses(nn.Module):
    def __init__(self, n_features, n_classes):
        super().__init__()
        self.lin = nn.Linear(n_features, n_classes)

    def forward(self, x):
        return self.lin(x)


def build(n_features, n_outputs, width=3, dtype="float32"):
    return nn.Sequential(nn.Linear(n_features, width, dtype=dtype), nn.Tanh(), nn.Linear(width, n_outputs, dtype=dtype))


def test_module_class_gets_sizes_and_routed_params(backend, iris):
    X, y = iris
    est = NeuralNetClassifier(TwoLayer, module__width=6, backend=backend.name, max_epochs=2).fit(X, y)
    assert est.module_.hidden.out_features == 6 and est.module_.out.out_features == 3
    assert est.module_.backend is backend and est.module_.hidden.backend is backend
    est = NeuralNetClassifier(ByClasses, backend=backend.name, max_epochs=2).fit(X, y)
    assert est.module_.lin.in_features == 4 and est.module_.lin.out_features == 3


def test_module_callable_gets_sizes_dtype_and_routed_params(iris):
    X, y = iris
    est = clf(module=build, module__hidden=None, module__width=5, dtype="float64", max_epochs=2)
    with pytest.raises(TypeError, match="hidden"):
        est.fit(X, y)
    est = NeuralNetClassifier(build, module__width=5, dtype="float64", max_epochs=2, backend="numpy").fit(X, y)
    assert est.module_[0].out_features == 5 and est.module_[0].weight.dtype == np.float64
    assert est.predict_proba(X).dtype == np.float64


def test_module_instance_is_copied_so_clones_never_share_weights(iris):
    X, y = iris
    net = nn.Sequential(nn.Linear(4, 3, backend="numpy"), backend="numpy")
    before = net.state_dict()
    a = NeuralNetClassifier(net, backend="numpy", max_epochs=2, random_state=0).fit(X, y)
    b = clone(a).set_params(lr=0.1).fit(X, y)
    assert a.module_ is not net and b.module_ is not a.module_
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())
    assert not np.array_equal(a.module_.state_dict()["0.weight"], b.module_.state_dict()["0.weight"])


def test_module_with_wrong_output_width_is_reported(iris):
    X, y = iris
    with pytest.raises(ValueError, match="needs 3 output"):
        NeuralNetClassifier(nn.Linear(4, 2), backend="numpy").fit(X, y)


def test_binary_bce_uses_one_logit(iris):
    X, y = iris
    Xb, yb = X[y > 0], np.where(y[y > 0] == 1, "a", "b")
    est = clf(criterion="bce_with_logits", max_epochs=20, lr=0.05).fit(Xb, yb)
    assert est.n_outputs_ == 1 and est.module_[-1].out_features == 1
    proba = est.predict_proba(Xb)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(est.classes_[proba.argmax(axis=1)], est.predict(Xb))
    np.testing.assert_allclose(est.predict_log_proba(Xb), np.log(proba))
    assert est.score(Xb, yb) > 0.8


def test_multiclass_bce_is_one_vs_rest_and_class_weights_route(iris):
    X, y = iris
    est = clf(criterion=losses.BCEWithLogitsLoss, max_epochs=20, lr=0.05).fit(X, y)
    assert est.n_outputs_ == 3 and est.score(X, y) > 0.8
    np.testing.assert_allclose(est.predict_proba(X).sum(axis=1), 1.0)
    weighted = clf(criterion__weight=[1.0, 1.0, 5.0], max_epochs=20, lr=0.05).fit(X, y)
    assert (weighted.predict(X) == 2).sum() >= (clf(max_epochs=20, lr=0.05).fit(X, y).predict(X) == 2).sum()


def test_regressor_supports_several_outputs_and_other_losses(regression):
    X, y = regression
    Y = np.column_stack([y, -y, 2 * y])
    est = reg(max_epochs=40, lr=0.05, criterion="huber").fit(X, Y)
    assert est.predict(X).shape == (len(X), 3) and est.n_outputs_ == 3 and est.score(X, Y) > 0.8
    assert reg(max_epochs=2).fit(X, y).predict(X).shape == (len(X),)
    with pytest.raises(ValueError, match="y has 1 outputs but the model was fitted with 3"):
        est.set_params(warm_start=True).fit(X, y)


def test_verbose_prints_one_line_per_epoch(iris, capsys):
    clf(max_epochs=3, verbose=True).fit(*iris)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("epoch   3") and "valid_loss" in lines[-1]


def test_verbose_on_a_terminal_shows_the_progress_bar(iris, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out, err = io.StringIO(), Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    est = clf(max_epochs=3, verbose=True).fit(*iris)
    assert [name for name, _ in est.callbacks_][-1] == "progress_bar"
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("epoch  ")]
    assert len(lines) == 3 and "valid_loss" in lines[-1] and out.getvalue() == ""
