"""MLPClassifier / MLPRegressor: a drop-in for sklearn.neural_network, checked against it directly."""

from __future__ import annotations

import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import neural_network as sknn
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from minitrain import MLPClassifier, MLPRegressor, callbacks, list_backends
from minitrain.training import NonFiniteLossError

CPU_BACKENDS = [i.name for i in list_backends() if i.available and i.name != "cupy"]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(300, 8, n_targets=1, noise=5.0, random_state=0)
    return X, y / 100.0


def _quiet_fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


# ------------------------------------------------------------------ scikit-learn's own estimator checks
@parametrize_with_checks(
    [est(backend=b, max_iter=50, random_state=0) for b in CPU_BACKENDS for est in (MLPClassifier, MLPRegressor)]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_constructor_matches_sklearn_signature():
    for ours, theirs in ((MLPClassifier, sknn.MLPClassifier), (MLPRegressor, sknn.MLPRegressor)):
        mine, ref = ours().get_params(), theirs().get_params()
        assert {k: mine[k] for k in ref} == ref


# ------------------------------------------------------------------ parity with scikit-learn
PARITY = [
    (MLPClassifier, {}),
    (MLPClassifier, {"solver": "sgd", "learning_rate": "invscaling", "learning_rate_init": 0.1}),
    (MLPClassifier, {"solver": "sgd", "learning_rate": "adaptive", "tol": 0.1, "n_iter_no_change": 2}),
    (MLPClassifier, {"solver": "sgd", "nesterovs_momentum": False, "batch_size": 64, "activation": "tanh"}),
    (MLPClassifier, {"early_stopping": True, "activation": "logistic"}),
    (MLPClassifier, {"solver": "lbfgs", "alpha": 1e-2}),
    (MLPRegressor, {}),
    (MLPRegressor, {"loss": "poisson"}),
    (MLPRegressor, {"solver": "lbfgs", "activation": "tanh"}),
]


@pytest.mark.parametrize(("cls", "params"), PARITY, ids=lambda v: str(v) if isinstance(v, dict) else v.__name__)
def test_training_follows_sklearn_step_for_step(cls, params, backend, digits, regression):
    X, y = digits if cls is MLPClassifier else regression
    if params.get("loss") == "poisson":
        y = np.abs(y)
    sk_cls = getattr(sknn, cls.__name__)
    kw = {"hidden_layer_sizes": (20,), "max_iter": 15, "random_state": 0, **params}
    ref, ours = _quiet_fit(sk_cls(**kw), X, y), _quiet_fit(cls(backend=backend.name, **kw), X, y)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.loss_, ref.loss_, rtol=1e-6)
    if hasattr(ref, "loss_curve_"):
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-6)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        assert a.shape == b.shape and isinstance(a, np.ndarray)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.predict(X[:50]), ref.predict(X[:50]), rtol=1e-5, atol=1e-6)
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_)
        assert ours.best_validation_score_ == ref.best_validation_score_


def test_sample_weight_and_multilabel_follow_sklearn():
    X, Y = make_multilabel_classification(120, n_features=6, n_classes=3, random_state=0)
    w = np.random.default_rng(0).uniform(0.1, 2.0, len(X))
    kw = {"hidden_layer_sizes": (8,), "max_iter": 10, "random_state": 0}
    ref = _quiet_fit(sknn.MLPClassifier(**kw), X, Y, sample_weight=w)
    ours = _quiet_fit(MLPClassifier(backend="numpy", **kw), X, Y, sample_weight=w)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-7)
    assert ours.predict(X).shape == Y.shape
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


def test_fitted_attributes_match_sklearn(digits):
    X, y = digits
    kw = {"hidden_layer_sizes": (12, 7), "max_iter": 3, "random_state": 1}
    ref, ours = _quiet_fit(sknn.MLPClassifier(**kw), X, y), _quiet_fit(MLPClassifier(**kw), X, y)
    for name in ("n_iter_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_", "t_"):
        assert getattr(ours, name) == getattr(ref, name), name
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    assert [c.shape for c in ours.coefs_] == [c.shape for c in ref.coefs_]
    assert ours.best_validation_score_ is None and ours.validation_scores_ is None
    assert len(ours.history_) == ours.n_iter_


def test_float32_input_trains_in_float32(digits):
    X, y = digits
    clf = _quiet_fit(MLPClassifier((10,), max_iter=3, random_state=0), X.astype(np.float32), y)
    assert all(c.dtype == np.float32 for c in clf.coefs_)
    assert clf.predict_proba(X.astype(np.float32)).dtype == np.float32
    clf64 = _quiet_fit(MLPClassifier((10,), max_iter=3, random_state=0, dtype="float32"), X, y)
    assert clf64.coefs_[0].dtype == np.float32


# ------------------------------------------------------------------ behaviour
def test_convergence_warning_at_max_iter(digits):
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier((5,), max_iter=2, random_state=0).fit(*digits)


@pytest.mark.parametrize(
    "classes, y",
    [
        ([1, 3, 7], [3, 1, 7, 1, 3]),
        (["a", "b", "c"], ["b", "a", "c", "a", "b"]),
        (np.array(["a", "b", "c", "d"], dtype=object), np.array(["d", "a", "a"], dtype=object)),
        ([1.0, 2.0, 3.0], [3.0, 1.0]),
        ([1, 3, 7], [3, 2, 7]),  # a label outside the classes: LabelBinarizer's all-zero row
        ([0, 1], [1, 0, 0]),  # binary: one column
    ],
)
def test_one_hot_targets_match_label_binarizer(classes, y):
    from sklearn.preprocessing import LabelBinarizer

    clf = MLPClassifier()
    clf._label_binarizer = LabelBinarizer().fit(classes)
    got = clf._one_hot(np.asarray(y))
    expected = clf._label_binarizer.transform(np.asarray(y)).astype(bool)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, expected)


def test_partial_fit_is_one_epoch_and_needs_classes_first(digits):
    X, y = digits
    clf = MLPClassifier((10,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X, y, classes=np.unique(y))
    first = clf.loss_
    for _ in range(5):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 1 and clf.t_ == 6 * len(X) and clf.loss_ < first
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, np.where(y == 0, 11, y))
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")


def test_warm_start_continues(digits):
    X, y = digits
    clf = _quiet_fit(MLPClassifier((10,), max_iter=3, warm_start=True, random_state=0), X, y)
    before = clf.coefs_[0].copy()
    _quiet_fit(clf, X, y)
    assert len(clf.loss_curve_) == 6 and clf.loss_curve_[-1] < clf.loss_curve_[2]
    assert not np.array_equal(before, clf.coefs_[0])
    with pytest.raises(ValueError, match="warm_start can only be used"):
        clf.fit(X[y < 5], y[y < 5])


def test_sparse_input_equals_dense(digits):
    X, y = digits
    kw = {"hidden_layer_sizes": (10,), "max_iter": 3, "random_state": 0}
    dense = _quiet_fit(MLPClassifier(**kw), X, y)
    sparse = _quiet_fit(MLPClassifier(**kw), sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(sparse.predict_proba(sp.csr_matrix(X)), dense.predict_proba(X), rtol=1e-10)


class _Interrupt(callbacks.Callback):
    def __init__(self, at_epoch=2):
        self.at_epoch = at_epoch

    def on_batch_end(self, trainer, batch, loss):
        if trainer.epoch == self.at_epoch:
            raise KeyboardInterrupt


def test_keyboard_interrupt_leaves_a_usable_model(digits):
    X, y = digits
    clf = MLPClassifier((10,), max_iter=50, callbacks=[_Interrupt()], random_state=0)
    with pytest.warns(UserWarning, match="interrupted"):
        clf.fit(X, y)
    assert clf.n_iter_ == 1 and clf.predict(X).shape == y.shape


def test_non_finite_loss_names_the_epoch_and_keeps_finite_weights(regression):
    X, y = regression
    reg = MLPRegressor(hidden_layer_sizes=(50,), solver="sgd", learning_rate_init=1e4, max_iter=50, random_state=0)
    with pytest.raises(NonFiniteLossError, match=r"at epoch \d+"):
        reg.fit(X * 1e3, y * 1e6)
    assert all(np.isfinite(c).all() for c in reg.coefs_)
    assert np.isfinite(reg.predict(X)).all()


# ------------------------------------------------------------------ minitrain's additions
def test_class_weight_balanced_shifts_predictions_toward_the_rare_class():
    X, y = make_classification(400, weights=[0.9, 0.1], random_state=0, class_sep=0.5)
    kw = {"hidden_layer_sizes": (8,), "max_iter": 30, "random_state": 0}
    plain = _quiet_fit(MLPClassifier(**kw), X, y)
    balanced = _quiet_fit(MLPClassifier(class_weight="balanced", **kw), X, y)
    assert (balanced.predict(X) == 1).sum() > (plain.predict(X) == 1).sum()


def test_dropout_and_batch_norm_train_and_predict_deterministically(digits):
    X, y = digits
    kw = {"max_iter": 20, "random_state": 0, "learning_rate_init": 0.01}
    clf = _quiet_fit(MLPClassifier((32,), dropout=0.2, batch_norm=True, **kw), X, y)
    assert clf.score(X, y) > 0.9
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))
    names = [type(m).__name__ for m in clf.module_]
    assert names == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]


def test_l1_drives_weights_toward_zero(regression):
    X, y = regression
    kw = {"hidden_layer_sizes": (16,), "max_iter": 40, "random_state": 0, "learning_rate_init": 0.01}
    plain, sparse = _quiet_fit(MLPRegressor(**kw), X, y), _quiet_fit(MLPRegressor(l1=5.0, **kw), X, y)
    assert np.abs(sparse.coefs_[0]).sum() < 0.5 * np.abs(plain.coefs_[0]).sum()


def test_explicit_validation_data_records_scores_and_losses(digits):
    X, y = digits
    clf = _quiet_fit(MLPClassifier((10,), max_iter=4, random_state=0), X[:400], y[:400], X_val=X[400:], y_val=y[400:])
    assert len(clf.validation_scores_) == len(clf.validation_loss_curve_) == 4
    assert clf.validation_scores_[-1] == pytest.approx(clf.score(X[400:], y[400:]))
    assert clf.history_[:, "valid_loss"] == clf.validation_loss_curve_
    with pytest.raises(ValueError, match="both X_val and y_val"):
        clf.fit(X, y, X_val=X)


def test_restore_best_weights_true_restores_the_lowest_training_loss(digits):
    X, y = digits
    kw = {"solver": "sgd", "learning_rate_init": 2.0, "max_iter": 12, "random_state": 0, "n_iter_no_change": 100}
    clf = _quiet_fit(MLPClassifier((10,), restore_best_weights=True, **kw), X, y)
    best = int(np.argmin(clf.loss_curve_))
    again = _quiet_fit(MLPClassifier((10,), **{**kw, "max_iter": best + 1}), X, y)
    np.testing.assert_allclose(clf.coefs_[0], again.coefs_[0])


def test_user_callbacks_run_each_epoch(digits):
    class Count(callbacks.Callback):
        def __init__(self):
            self.epochs = 0

        def on_epoch_end(self, trainer):
            self.epochs += 1

    counter = Count()
    _quiet_fit(MLPClassifier((5,), max_iter=3, callbacks=[counter]), *digits)
    assert counter.epochs == 3


def test_early_stopping_callback_restarts_with_each_fit(digits):
    X, y = digits
    stopper = callbacks.EarlyStopping(monitor="train_loss", patience=1, min_delta=10.0)
    clf = MLPClassifier((5,), max_iter=20, callbacks=[stopper], random_state=0)
    clf.fit(X, y)
    assert clf.n_iter_ == 2 and stopper.stopped_epoch_ == 2
    clf.fit(X, y)  # a fresh fit: the callback's state from the first fit is forgotten
    assert clf.n_iter_ == 2 and stopper.stopped_epoch_ == 2


# ------------------------------------------------------------------ errors that lose nothing
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_gets_scikit_learns_error(digits, bad, sparse):
    X, y = digits
    Xbad = X.copy()
    Xbad[5, 7] = bad
    Xbad = sp.csr_matrix(Xbad) if sparse else Xbad
    for ours, theirs in ((MLPClassifier, sknn.MLPClassifier), (MLPRegressor, sknn.MLPRegressor)):
        with pytest.raises(ValueError) as want:
            theirs(max_iter=1).fit(Xbad, y)
        with pytest.raises(ValueError) as got:
            ours(max_iter=1).fit(Xbad, y)
        assert str(got.value) == str(want.value)
        fitted = _quiet_fit(ours(hidden_layer_sizes=(5,), max_iter=1, random_state=0), X, y)
        with pytest.raises(ValueError) as got:
            fitted.predict(Xbad)
        assert "Input X contains" in str(got.value)


def test_finite_input_whose_sum_overflows_is_accepted():
    X = np.full((4, 3), 3e38, np.float32)  # every row sums past float32's largest value
    X[::2] *= -1
    clf = _quiet_fit(MLPRegressor(hidden_layer_sizes=(2,), max_iter=1, random_state=0), X / 1e36, np.arange(4.0))
    clf.predict(X)  # finite entries: no error, whatever the sum of a row


def test_bad_inputs_raise_clear_errors_and_keep_the_fitted_model(digits):
    X, y = digits
    clf = _quiet_fit(MLPClassifier((5,), max_iter=2, random_state=0), X, y)
    proba = clf.predict_proba(X)
    Xnan = X.copy()
    Xnan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(Xnan, y)
    with pytest.raises(ValueError, match="infinity"):
        MLPRegressor().fit(X, np.where(y == 0, np.inf, y))
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :10])
    with pytest.raises(ValueError, match="'nope'"):
        clf.set_params(backend="nope").fit(X, y)
    with pytest.raises(ValueError, match="cupy"):
        clf.set_params(backend="cupy").fit(X, y) if "cupy" not in CPU_BACKENDS else None
    with pytest.raises(ValueError, match="alpha"):
        MLPClassifier(alpha=-1).fit(X, y)
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.1).fit(X[:8], y[:8])
    with pytest.raises(ValueError, match="greater or equal to the number of classes"):  # scikit-learn's check first
        MLPClassifier(early_stopping=True, validation_fraction=0.1).fit(X[:8], y[:8] % 2)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)


# ------------------------------------------------------------------ persistence
@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_pickle_round_trip_predicts_identically(dump, digits, tmp_path, backend):
    X, y = digits
    clf = _quiet_fit(MLPClassifier((10,), max_iter=3, random_state=0, backend=backend.name), X, y)
    if dump == "pickle":
        loaded = pickle.loads(pickle.dumps(clf))
    else:
        joblib.dump(clf, tmp_path / "m.joblib")
        loaded = joblib.load(tmp_path / "m.joblib")
    assert loaded.backend_ == clf.backend_ and loaded.module_.backend.name == backend.name
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    loaded.partial_fit(X, y)  # training resumes with the restored optimizer state
    assert loaded.n_iter_ == 1


def test_clone_is_unfitted_and_keeps_params():
    clf = MLPClassifier((7,), alpha=0.1, backend="numpy", dropout=0.1)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "module_")
