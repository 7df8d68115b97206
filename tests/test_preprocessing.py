"""IQRClipper and drop_outliers: Tukey's fences as a scikit-learn transformer, and outlier rows dropped before fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from minitrain.estimators import MLPClassifier
from minitrain.preprocessing import IQRClipper, drop_outliers

X = np.array([[1.0, -10.0], [2.0, 0.0], [3.0, 10.0], [4.0, 20.0], [5.0, 30.0], [100.0, -400.0]])
# column 0: Q1 2.25, Q3 4.75, IQR 2.5 -> fences [-1.5, 8.5]; column 1: Q1 -7.5, Q3 17.5, IQR 25 -> [-45, 55]
LOWER, UPPER = np.array([-1.5, -45.0]), np.array([8.5, 55.0])


@parametrize_with_checks([IQRClipper(), IQRClipper(factor=3.0, strategy="nan")])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_fences_are_tukeys_on_the_training_data():
    clipper = IQRClipper().fit(X)
    np.testing.assert_allclose(clipper.lower_, LOWER)
    np.testing.assert_allclose(clipper.upper_, UPPER)
    np.testing.assert_allclose(IQRClipper(factor=0.0).fit(X).upper_, [4.75, 17.5])


def test_clip_moves_outliers_onto_the_fences_and_leaves_the_rest():
    out = IQRClipper().fit(X).transform(X)
    assert out[5].tolist() == [8.5, -45.0] and np.array_equal(out[:5], X[:5])
    new = np.array([[-7.0, 60.0]])
    assert IQRClipper().fit(X).transform(new).tolist() == [[-1.5, 55.0]]


def test_nan_marks_outliers_missing_for_an_imputer_that_follows():
    out = IQRClipper(strategy="nan").fit_transform(X)
    assert np.isnan(out[5]).all() and not np.isnan(out[:5]).any()
    imputed = make_pipeline(IQRClipper(strategy="nan"), SimpleImputer(strategy="median")).fit_transform(X)
    assert imputed[5].tolist() == [3.0, 10.0]


def test_nan_in_the_input_is_ignored_by_the_quartiles_and_kept():
    with_nan = np.vstack([X, [[np.nan, np.nan]], [[np.nan, 5.0]]])
    clipper = IQRClipper().fit(with_nan)
    np.testing.assert_allclose(clipper.lower_[0], LOWER[0])
    out = clipper.transform(with_nan)
    assert np.isnan(out[6:, 0]).all() and out[7, 1] == 5.0
    assert np.isnan(IQRClipper().fit(np.full((3, 1), np.nan)).transform([[1e9]])).sum() == 0  # no fences: kept


def test_float32_stays_float32():
    assert IQRClipper().fit_transform(X.astype(np.float32)).dtype == np.float32


def test_pandas_output_and_feature_names():
    frame = pd.DataFrame(X, columns=["age", "income"])
    out = IQRClipper().set_output(transform="pandas").fit_transform(frame)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["age", "income"]
    assert out.iloc[5].tolist() == [8.5, -45.0]
    assert IQRClipper().fit(frame).get_feature_names_out().tolist() == ["age", "income"]


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_clips_its_stored_values_as_dense_input_would(fmt):
    dense = np.zeros((20, 3))
    dense[::3, 0], dense[1::4, 1], dense[5, 2] = np.arange(7.0), -np.arange(5.0), 99.0
    dense[0, 1] = -40.0
    for strategy in ("clip", "nan"):
        clipper = IQRClipper(factor=1.0, strategy=strategy)
        out = clipper.fit_transform(sp.csr_matrix(dense).asformat(fmt))
        assert sp.issparse(out)
        np.testing.assert_array_equal(out.toarray(), IQRClipper(factor=1.0, strategy=strategy).fit_transform(dense))


def test_sparse_input_whose_fences_exclude_zero_is_refused():
    X_sparse = sp.csr_matrix(np.array([[5.0], [6.0], [7.0], [8.0], [0.0]]))
    with pytest.raises(ValueError, match="exclude 0.*dense"):
        IQRClipper().fit(X_sparse).transform(X_sparse)


def test_drop_removes_outlier_rows_at_fit_time_only():
    y = np.arange(6)
    Xk, yk = IQRClipper(strategy="drop").fit_resample(X, y)
    assert Xk.tolist() == X[:5].tolist() and yk.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="drop_outliers"):
        IQRClipper(strategy="drop").fit(X).transform(X)


def test_drop_outliers_keeps_containers_and_aligns_y():
    frame = pd.DataFrame(X, columns=["a", "b"], index=list("uvwxyz"))
    Xk, yk = drop_outliers(frame, pd.Series(np.arange(6), index=frame.index), factor=1.5)
    assert isinstance(Xk, pd.DataFrame) and list(Xk.index) == list("uvwxy") and list(yk.index) == list("uvwxy")
    dense = np.vstack([X, np.zeros((4, 2))])
    Xs, none = drop_outliers(sp.csr_matrix(dense))
    assert none is None and sp.issparse(Xs) and np.array_equal(Xs.toarray(), drop_outliers(dense)[0])
    assert Xs.shape == (7, 2)
    implicit = sp.csr_matrix(np.array([[5.0], [6.0], [7.0], [8.0], [0.0]]))  # fences [2, 10]: its zero is out
    assert drop_outliers(implicit)[0].toarray().ravel().tolist() == [5.0, 6.0, 7.0, 8.0]
    assert drop_outliers(X, factor=100.0)[0].shape == (6, 2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_pipeline_tunes_the_fences_in_a_grid_search():
    rng = np.random.default_rng(0)
    Xc = rng.normal(size=(80, 3))
    yc = (Xc[:, 0] > 0).astype(int)
    Xc[::10] *= 50.0
    pipe = make_pipeline(IQRClipper(), StandardScaler(), MLPClassifier((8,), max_iter=30, random_state=0))
    search = GridSearchCV(pipe, {"iqrclipper__factor": [1.5, 3.0]}, cv=2).fit(Xc, yc)
    assert search.best_params_["iqrclipper__factor"] in (1.5, 3.0) and search.score(Xc, yc) > 0.6
