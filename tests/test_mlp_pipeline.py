"""MLP estimators inside scikit-learn's machinery: pipelines, grid search, cross-validation, pandas output,
and quality against scikit-learn's MLP on its bundled datasets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import neural_network as sknn
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from minitrain import MLPClassifier, MLPRegressor, list_backends

CPU_BACKENDS = [i.name for i in list_backends() if i.available and i.name != "cupy"]


@pytest.fixture(scope="module")
def cancer_with_gaps():
    X, y = load_breast_cancer(return_X_y=True)
    X = X.copy()
    X[np.random.default_rng(0).random(X.shape) < 0.05] = np.nan
    return X, y


def _pipeline(**mlp_params):
    return Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()), ("mlp", MLPClassifier(**mlp_params))])


def test_grid_search_over_a_pipeline_with_backend_as_a_parameter(cancer_with_gaps):
    X, y = cancer_with_gaps
    grid = {
        "mlp__hidden_layer_sizes": [(8,), (16,)],
        "mlp__alpha": [1e-4, 1e-1],
        "mlp__backend": CPU_BACKENDS,
    }
    search = GridSearchCV(_pipeline(max_iter=60, random_state=0), grid, cv=3, n_jobs=2, error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert len(search.cv_results_["params"]) == 4 * len(CPU_BACKENDS)
    assert search.best_score_ > 0.93
    assert search.best_estimator_.named_steps["mlp"].backend_ == search.best_params_["mlp__backend"]
    # the same candidate scores the same on every backend (same initialization, same arithmetic up to rounding)
    by_candidate: dict = {}
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        key = (params["mlp__alpha"], params["mlp__hidden_layer_sizes"])
        by_candidate.setdefault(key, []).append(score)
    for scores in by_candidate.values():
        np.testing.assert_allclose(scores, scores[0], atol=0.01)


def test_cross_val_score_on_a_regressor_matches_sklearn():
    X, y = load_diabetes(return_X_y=True)
    params = {"hidden_layer_sizes": (16,), "solver": "lbfgs", "alpha": 10.0, "max_iter": 100, "random_state": 0}
    scores = {}
    for est in (MLPRegressor(**params), sknn.MLPRegressor(**params)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores[type(est).__module__] = cross_val_score(
                Pipeline([("scale", StandardScaler()), ("mlp", est)]), X, y / 100, cv=3
            )
    ours, theirs = scores.values()
    assert ours.shape == (3,) and ours.mean() > 0.3
    np.testing.assert_allclose(ours, theirs, atol=0.01)


def test_pandas_output_passes_feature_names_through(cancer_with_gaps):
    pd = pytest.importorskip("pandas")
    X, y = cancer_with_gaps
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    pipe = _pipeline(hidden_layer_sizes=(8,), max_iter=20, random_state=0).set_output(transform="pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(frame, y)
    mlp = pipe.named_steps["mlp"]
    assert list(mlp.feature_names_in_) == list(frame.columns)
    assert pipe.predict(frame).shape == y.shape
    with pytest.raises(ValueError, match="feature names"):
        mlp.predict(frame.iloc[:, ::-1])


# ------------------------------------------------------------------ quality against scikit-learn
def _split(loader):
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train).astype(np.float32), scaler.transform(X_test).astype(np.float32), y_train, y_test


@pytest.mark.parametrize(
    ("loader", "ours", "theirs"),
    [
        (load_digits, MLPClassifier, sknn.MLPClassifier),
        (load_breast_cancer, MLPClassifier, sknn.MLPClassifier),
        (load_diabetes, MLPRegressor, sknn.MLPRegressor),
    ],
    ids=["digits", "breast_cancer", "diabetes"],
)
def test_default_settings_score_within_one_point_of_sklearn(loader, ours, theirs):
    X_train, X_test, y_train, y_test = _split(loader)
    if loader is load_diabetes:
        y_train, y_test = y_train / 100.0, y_test / 100.0  # sklearn's default 200 epochs need scaled targets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = theirs(random_state=0).fit(X_train, y_train).score(X_test, y_test)
        score = ours(random_state=0).fit(X_train, y_train).score(X_test, y_test)
    assert score >= reference - 0.01, (score, reference)
