"""Faults as a user meets them, on every backend: divergence, interrupts, validation data that stays out of
training, bad parameters and targets, and the scikit-learn attributes that code written for its MLP reads.
Each test reproduces one scenario of the faults issue (layer-level ones are in test_faults_layers.py and
test_freezing.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor

import minitrain as mt
from minitrain import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor, optim
from minitrain.callbacks import Callback
from minitrain.training import NonFiniteLossError

rng = np.random.default_rng(0)
X = rng.standard_normal((120, 5))
Y_CLASS = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
Y_REG = X @ rng.standard_normal(5)
SKLEARN_SENTENCE = "Solver produced non-finite parameter weights. The input data may contain large values"


def _finite_weights(est):
    return all(np.isfinite(p.numpy()).all() for p in est.module_.parameters())


def _weights(est):
    return [p.numpy().copy() for p in est.module_.parameters()]


class Diverging(optim.SGD):
    """SGD whose step number ``at`` sends every parameter to infinity: a diverging last step."""

    def __init__(self, params, lr=0.01, at=-1):
        super().__init__(params, lr=lr)
        self.at, self.steps = at, 0

    def step(self):
        super().step()
        self.steps += 1
        if self.steps == self.at:
            for group in self.param_groups:
                for p in group["params"]:
                    p.data[...] = np.inf


# ---------------------------------------------------------------------------------------- training faults
@pytest.mark.parametrize("cls", [NeuralNetClassifier, NeuralNetRegressor])
def test_a_neuralnet_whose_last_step_diverges_raises_and_keeps_finite_weights(backend, cls):
    y = Y_CLASS if cls is NeuralNetClassifier else Y_REG
    kw = {"module__hidden": (8,), "batch_size": 40, "train_split": None, "random_state": 0, "backend": backend.name}
    last_step_of_fit = 2 * 3  # 2 epochs of 3 batches
    est = cls(optimizer=Diverging, optimizer__at=last_step_of_fit, max_epochs=2, **kw)
    with pytest.raises(NonFiniteLossError, match="non-finite at epoch 2"):
        est.fit(X, y)
    assert _finite_weights(est) and np.isfinite(est.predict(X).astype(float)).all()
    assert est.n_epochs_ == len(est.history_) == 1
    if cls is NeuralNetClassifier:
        assert len(np.unique(est.predict(X))) > 1
    ok = cls(optimizer=Diverging, optimizer__at=3 + 3, max_epochs=1, **kw).fit(X, y)  # partial_fit: its last step
    before = _weights(ok)
    with pytest.raises(NonFiniteLossError):
        ok.partial_fit(X, y)
    for a, b in zip(_weights(ok), before, strict=True):
        np.testing.assert_array_equal(a, b)
    ok.partial_fit(X, y)  # still usable: the optimizer carries on from the restored weights
    assert _finite_weights(ok)


def test_a_diverging_neuralnet_regressor_with_its_validation_split_raises_the_non_finite_error(backend):
    est = NeuralNetRegressor(optimizer="sgd", lr=10.0, max_epochs=5, random_state=0, backend=backend.name)
    with pytest.raises(NonFiniteLossError, match="became"):  # not scikit-learn's "Input contains NaN" from r2_score
        est.fit(X * 1e3, Y_REG * 100)
    assert _finite_weights(est) and np.isfinite(est.predict(X)).all()
    assert all(np.isfinite(est.history_[:, key]).all() for key in ("train_loss", "valid_loss", "valid_score"))


def test_the_mlp_raises_where_scikit_learn_raises_and_keeps_its_last_finite_weights(backend):
    params = {"solver": "sgd", "learning_rate_init": 1.0, "random_state": 0, "max_iter": 30}
    with pytest.raises(ValueError) as theirs, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SkMLPRegressor(**params).fit(X * 1e3, Y_REG * 100)
    est = MLPRegressor(backend=backend.name, **params)
    with pytest.raises(NonFiniteLossError) as ours:
        est.fit(X * 1e3, Y_REG * 100)
    assert isinstance(ours.value, ValueError) and str(ours.value).startswith(str(theirs.value))
    assert "lower the learning rate" in str(ours.value)
    assert _finite_weights(est)  # scikit-learn keeps NaN weights; these are the last finite ones (if huge)
    with np.errstate(over="ignore", invalid="ignore"):
        assert est.predict(X).shape == (120,)


def test_the_mlp_finishes_where_scikit_learn_tolerates_the_divergence(backend):
    params = {"solver": "sgd", "learning_rate_init": 1.0, "early_stopping": True, "random_state": 0, "max_iter": 30}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SkMLPRegressor(**params).fit(X * 1e3, Y_REG * 100)  # finishes, with overflow warnings
    with pytest.warns(ConvergenceWarning, match="diverged"):
        est = MLPRegressor(backend=backend.name, **params).fit(X * 1e3, Y_REG * 100)
    assert _finite_weights(est) and np.isfinite(est.predict(X)).all()
    assert len(est.loss_curve_) == est.n_iter_ and np.isfinite(est.loss_curve_).all()


def test_lbfgs_ending_on_non_finite_weights_raises_and_keeps_the_weights_it_had(backend, monkeypatch):
    est = MLPRegressor(solver="lbfgs", hidden_layer_sizes=(4,), max_iter=5, random_state=0, backend=backend.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, Y_REG)
    before = _weights(est)

    def diverging(fun, x0, **kwargs):
        fun(x0 * np.inf)  # the solver's last evaluation leaves its point in the network
        return scipy.optimize.OptimizeResult(x=x0 * np.nan, fun=np.nan, nit=3, status=0, message="diverged")

    monkeypatch.setattr(scipy.optimize, "minimize", diverging)
    with pytest.raises(NonFiniteLossError, match=SKLEARN_SENTENCE):
        est.set_params(warm_start=True).fit(X, Y_REG)
    for a, b in zip(_weights(est), before, strict=True):
        np.testing.assert_array_equal(a, b)


class Interrupt(Callback):
    def __init__(self, epoch=3):
        self.epoch = epoch

    def on_batch_end(self, trainer, batch, loss):
        if trainer.epoch == self.epoch and batch == 1:
            raise KeyboardInterrupt


INTERRUPTED = {
    "mlp": lambda be: MLPClassifier((8,), batch_size=30, max_iter=10, callbacks=[Interrupt()], backend=be),
    "neuralnet": lambda be: NeuralNetClassifier(
        module__hidden=(8,), batch_size=30, max_epochs=10, callbacks=[Interrupt()], backend=be
    ),
}


@pytest.mark.parametrize("kind", list(INTERRUPTED))
def test_an_interrupted_fit_keeps_the_model_and_a_history_of_whole_epochs(backend, kind):
    with pytest.warns(UserWarning, match="interrupted"):
        est = INTERRUPTED[kind](backend.name).fit(X, Y_CLASS)
    assert len(est.history_) == 2 and np.isfinite(est.history_[:, "train_loss"]).all()
    assert est.n_iter_ == 2
    if kind == "mlp":
        assert len(est.loss_curve_) == 2
    else:
        assert est.n_epochs_ == 2 and np.isfinite(est.history_[:, "valid_loss"]).all()
    assert est.predict(X).shape == (120,)


@pytest.mark.parametrize("kind", list(INTERRUPTED))
@pytest.mark.parametrize("search", ["grid", "cross_val_score"])
def test_an_interrupt_inside_a_search_stops_the_search(backend, kind, search):
    est = INTERRUPTED[kind](backend.name)
    with pytest.raises(KeyboardInterrupt):
        if search == "grid":
            param = "alpha" if kind == "mlp" else "lr"
            GridSearchCV(est, {param: [1e-3, 1e-2]}, cv=2).fit(X, Y_CLASS)
        else:
            cross_val_score(est, X, Y_CLASS, cv=2)


# ---------------------------------------------------------------------------------------- validation data
@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_continued_neuralnet_fits_validate_on_the_first_split_only(backend, how):
    est = NeuralNetClassifier(module__hidden=(8,), max_epochs=1, random_state=0, backend=backend.name)
    est.set_params(warm_start=how == "warm_start")
    est.fit(X, Y_CLASS)
    _, train0, valid0 = est._split_
    assert not set(train0) & set(valid0)
    for _ in range(3):
        est.partial_fit(X, Y_CLASS) if how == "partial_fit" else est.fit(X, Y_CLASS)
        _, train, valid = est._split_
        np.testing.assert_array_equal(valid, valid0)  # never a sample it trained on
        np.testing.assert_array_equal(np.sort(train), np.sort(train0))
    est.partial_fit(X[:60], Y_CLASS[:60])  # other data: a split of its own
    assert len(est._split_[2]) == 12
    est.set_params(warm_start=False).fit(X, Y_CLASS)  # a fresh fit draws anew
    assert est.n_epochs_ == 1


# ---------------------------------------------------------------------------------------- checked parameters
@pytest.mark.parametrize(
    "make",
    [lambda: MLPClassifier(dtype="float16", max_iter=2), lambda: NeuralNetClassifier(dtype="float16", max_epochs=1)],
)
def test_a_dtype_the_backends_do_not_train_in_is_refused(backend, make):
    est = make().set_params(backend=backend.name)
    with pytest.raises(ValueError, match=r"dtype='float16' is not supported.*'float32' or 'float64'"):
        est.fit(X, Y_CLASS)
    assert not hasattr(est, "module_")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MLPClassifier(hidden_layer_sizes=(2.5,)), "hidden_layer_sizes must hold whole numbers"),
        (lambda: NeuralNetClassifier(module__hidden=(2.5,)), "module__hidden must hold positive whole numbers"),
        (lambda: NeuralNetClassifier(module__hidden=(4, 0)), "module__hidden must hold positive whole numbers"),
    ],
)
def test_fractional_layer_sizes_are_refused_in_both_families(make, match):
    with pytest.raises(ValueError, match=match):
        make().fit(X, Y_CLASS)


@pytest.mark.parametrize(
    "make", [lambda: MLPClassifier((4,), max_iter=2), lambda: NeuralNetClassifier(module__hidden=(4,), max_epochs=1)]
)
def test_negative_sample_weights_are_accepted_in_both_families_as_by_scikit_learn(make):
    weights = np.where(np.arange(120) % 10 == 0, -0.5, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        SkMLPClassifier((4,), max_iter=2).fit(X, Y_CLASS, sample_weight=weights)
        est = make().fit(X, Y_CLASS, sample_weight=weights)
    assert _finite_weights(est)


def test_an_unknown_backend_in_the_environment_variable_is_named(monkeypatch):
    monkeypatch.setenv("MINITRAIN_BACKEND", "garbage")
    with pytest.raises(ValueError, match="environment variable MINITRAIN_BACKEND='garbage'.*unknown backend"):
        MLPClassifier(max_iter=1).fit(X, Y_CLASS)
    with pytest.raises(ValueError, match="MINITRAIN_BACKEND"):
        mt.get_backend()


@pytest.mark.parametrize("cls", [MLPRegressor, NeuralNetRegressor])
@pytest.mark.parametrize(
    ("y", "what"),
    [
        (np.array(["a", "b"] * 60), "y holds str values such as 'a'"),
        (np.array([1, "b"] * 60, dtype=object), "y holds int and str values such as 'b'"),
    ],
)
def test_a_regressor_given_string_targets_names_the_problem(cls, y, what):
    with pytest.raises(ValueError, match=f"{cls.__name__} needs numeric targets.*{what}.*classifier"):
        cls().fit(X, y)


# ---------------------------------------------------------------------------------------- drop-in fidelity
@pytest.mark.parametrize(
    "params",
    [
        {"solver": "sgd", "learning_rate": "adaptive", "max_iter": 60, "tol": 1e-2, "n_iter_no_change": 2},
        {"solver": "sgd", "learning_rate": "invscaling", "max_iter": 5},
        {"solver": "adam", "max_iter": 5},
    ],
    ids=["adaptive", "invscaling", "adam"],
)
def test_the_attributes_code_reads_from_scikit_learns_mlp_are_there(params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = SkMLPClassifier(random_state=0, **params).fit(X, Y_CLASS)
        ours = MLPClassifier(random_state=0, backend="numpy", **params).fit(X, Y_CLASS)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-9)
    assert ours._optimizer.learning_rate_init == theirs._optimizer.learning_rate_init
    assert ours.t_ == theirs.t_ and ours.n_iter_ == theirs.n_iter_
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-6)


def test_an_early_stopping_split_with_a_single_member_class_raises_scikit_learns_error():
    y = np.array([0] * 9 + [1])
    with pytest.raises(ValueError) as theirs:
        SkMLPClassifier(early_stopping=True, validation_fraction=0.1).fit(X[:10], y)
    with pytest.raises(ValueError) as ours:
        MLPClassifier(early_stopping=True, validation_fraction=0.1).fit(X[:10], y)
    assert "least populated class" in str(theirs.value) and str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("cls", [NeuralNetClassifier, NeuralNetRegressor])
def test_explicit_validation_data_is_what_a_neuralnet_validates_on(backend, cls):
    y = Y_CLASS if cls is NeuralNetClassifier else Y_REG
    est = cls(module__hidden=(8,), max_epochs=2, random_state=0, backend=backend.name)
    est.fit(X[:90], y[:90], X_val=X[90:], y_val=y[90:])
    assert not hasattr(est, "_split_")  # all 90 samples trained on
    want = est.score(X[90:], y[90:])
    assert est.history_[-1, "valid_score"] == pytest.approx(want, rel=1e-6)
    est.partial_fit(X[:90], y[:90], X_val=X[90:], y_val=y[90:])
    assert est.history_[-1, "valid_score"] == pytest.approx(est.score(X[90:], y[90:]), rel=1e-6)
    with pytest.raises(ValueError, match="both X_val and y_val"):
        est.fit(X, y, X_val=X[:5])


def test_partial_fit_after_turning_early_stopping_off():
    """scikit-learn's MLP raises a TypeError here (best_loss_ is None after an early-stopped fit); ours goes on."""
    X = np.random.default_rng(0).standard_normal((100, 3))
    y = X.sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = mt.MLPRegressor(early_stopping=True, max_iter=5, random_state=0).fit(X, y)
        assert reg.best_loss_ is None
        n = len(reg.loss_curve_)
        reg.set_params(early_stopping=False).partial_fit(X, y)
    assert len(reg.loss_curve_) == n + 1 and reg.best_loss_ == reg.loss_curve_[-1]
