"""Preprocessing scikit-learn lacks, as scikit-learn transformers: outliers by the interquartile range.

For everything scikit-learn has, use its own transformers in a ``Pipeline`` in front of an estimator:
``StandardScaler``, ``RobustScaler``, ``SimpleImputer``, ``KNNImputer``, ``OneHotEncoder``, ``ColumnTransformer``...
This module adds :class:`IQRClipper` (clip outliers, or mark them missing for an imputer that follows) and
:func:`drop_outliers` (remove outlier rows before fitting).

Why dropping rows is a function, not a pipeline step: a scikit-learn transformer returns one row per input row,
and a ``Pipeline`` passes ``y`` (and ``sample_weight``) to the next step unchanged, so no step can remove
training samples; scikit-learn has no resampling convention yet (SLEP005 was not adopted, and metadata routing
passes metadata, it cannot change it). So :func:`drop_outliers` filters ``X`` and ``y`` together before ``fit``,
and ``IQRClipper(strategy="drop")`` offers ``fit_resample`` (the sampler API of imbalanced-learn, whose
``Pipeline`` calls it while fitting only and skips it when predicting); its ``transform`` refuses rather than
silently keep the outliers.

Examples
--------
>>> import numpy as np
>>> from sklearn.impute import SimpleImputer
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> X = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]])
>>> make_pipeline(IQRClipper(strategy="nan"), SimpleImputer(strategy="median"), StandardScaler()).fit_transform(
...     X).round(2).ravel().tolist()
[-1.5, -0.5, 0.5, 1.5, 0.0]
"""

from __future__ import annotations

import warnings
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, _fit_context
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import FLOAT_DTYPES, check_is_fitted, validate_data

__all__ = ["IQRClipper", "drop_outliers"]


def _quartiles(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-column first and third quartiles, NaN ignored (NaN for a column of NaN only); sparse columns count their
    implicit zeros."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: its quartiles are NaN
        if not sp.issparse(X):
            q = np.nanpercentile(X, [25, 75], axis=0) if X.shape[0] else np.full((2, X.shape[1]), np.nan)
            return q[0], q[1]
        X = X.tocsc()
        q = np.empty((2, X.shape[1]))
        for j in range(X.shape[1]):
            stored = X.data[X.indptr[j] : X.indptr[j + 1]]
            column = np.concatenate([stored, np.zeros(X.shape[0] - stored.size, dtype=stored.dtype)])
            q[:, j] = np.nanpercentile(column, [25, 75])
    return q[0], q[1]


class IQRClipper(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Treat values outside ``[Q1 - factor * IQR, Q3 + factor * IQR]`` of their feature as outliers (Tukey's fences).

    ``fit`` learns each feature's quartiles ``Q1``, ``Q3`` (and ``IQR = Q3 - Q1``) on the training data, ignoring
    NaN. ``transform`` then, by ``strategy``:

    - ``'clip'``: clips every value into its feature's fences (NaN stays NaN);
    - ``'nan'``: replaces outliers with NaN, for an imputer that follows (``SimpleImputer``, ``KNNImputer``);
    - ``'drop'``: refuses: rows cannot be removed by a transformer (see the module's notes). Use
      ``fit_resample(X, y)``, which returns ``X`` and ``y`` without the rows that hold an outlier (in an
      imbalanced-learn ``Pipeline``, at fit time only), or :func:`drop_outliers`.

    Sparse input keeps its implicit zeros (they count in the quartiles): stored values are clipped or marked, and a
    feature whose fences exclude 0 while it has implicit zeros is an error (they would all change: pass dense X).

    Parameters
    ----------
    factor : float, default=1.5
        Width of the fences in interquartile ranges (1.5: Tukey's outliers; 3: far out).
    strategy : {'clip', 'nan', 'drop'}, default='clip'

    Attributes
    ----------
    quartiles_ : ndarray of shape (2, n_features)
        ``Q1`` and ``Q3`` of each feature (NaN for a feature without values).
    lower_, upper_ : ndarray of shape (n_features,)
        The fences.
    n_features_in_, feature_names_in_

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, np.nan], [4.0, 40.0], [50.0, 30.0]])
    >>> clipper = IQRClipper().fit(X)
    >>> clipper.upper_.tolist(), clipper.transform(X)[:, 0].tolist()
    ([7.0, 55.0], [1.0, 2.0, 3.0, 4.0, 7.0])
    >>> Xk, yk = IQRClipper(strategy="drop").fit_resample(X, np.arange(5))
    >>> yk.tolist()
    [0, 1, 2, 3]
    """

    _parameter_constraints: ClassVar[dict] = {
        "factor": [Interval(Real, 0, None, closed="left")],
        "strategy": [StrOptions({"clip", "nan", "drop"})],
    }

    def __init__(self, factor: float = 1.5, strategy: str = "clip") -> None:
        self.factor = factor
        self.strategy = strategy

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> IQRClipper:
        """Learn each feature's quartiles and fences from ``X`` of shape (n_samples, n_features); returns self."""
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan")
        q1, q3 = _quartiles(X)
        self.quartiles_ = np.vstack([q1, q3])
        self.lower_ = q1 - self.factor * (q3 - q1)
        self.upper_ = q3 + self.factor * (q3 - q1)
        return self

    def _validate(self, X: Any, copy: bool) -> Any:
        check_is_fitted(self)
        return validate_data(
            self, X, accept_sparse=["csr", "csc"], dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan", reset=False,
            copy=copy,
        )  # fmt: skip

    def _check_implicit_zeros(self, X: Any) -> None:
        """Raise if a feature of sparse ``X`` has implicit zeros outside its fences."""
        zero_out = (self.lower_ > 0) | (self.upper_ < 0)
        stored = np.bincount(X.indices, minlength=X.shape[1]) if X.format == "csr" else np.diff(X.indptr)
        bad = np.flatnonzero(zero_out & (stored < X.shape[0]))
        if bad.size:
            raise ValueError(
                f"IQRClipper: the fences of features {bad.tolist()} exclude 0, so their implicit zeros of sparse X "
                "are outliers and would all change; pass X as a dense array (X.toarray())"
            )

    def transform(self, X: Any) -> Any:
        """``X`` with its outliers clipped (``'clip'``) or set to NaN (``'nan'``); a new array of X's shape."""
        if self.strategy == "drop":
            raise ValueError(
                "IQRClipper(strategy='drop') removes rows, which a scikit-learn transformer cannot do (a Pipeline "
                "passes y unchanged): use minitrain.preprocessing.drop_outliers(X, y) before fitting, or fit_resample "
                "in an imbalanced-learn Pipeline; strategy='clip' or 'nan' work as pipeline steps"
            )
        X = self._validate(X, copy=True)
        if sp.issparse(X):
            self._check_implicit_zeros(X)
            cols = X.indices if X.format == "csr" else np.repeat(np.arange(X.shape[1]), np.diff(X.indptr))
            X.data[...] = self._apply(X.data, self.lower_[cols], self.upper_[cols])
            return X
        return self._apply(X, self.lower_[None, :], self.upper_[None, :])

    def _apply(self, values: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """``values`` (a copy, changed in place) with outliers clipped or NaN; NaN fences change nothing."""
        below, above = values < lower, values > upper
        if self.strategy == "nan":
            values[below | above] = np.nan
            return values
        np.copyto(values, np.broadcast_to(lower, values.shape).astype(values.dtype), where=below)
        np.copyto(values, np.broadcast_to(upper, values.shape).astype(values.dtype), where=above)
        return values

    def inlier_mask(self, X: Any) -> np.ndarray:
        """Boolean mask of shape (n_samples,): True for the rows of ``X`` without an outlier (NaN is none)."""
        X = self._validate(X, copy=False)
        if not sp.issparse(X):
            return ~((X < self.lower_) | (X > self.upper_)).any(axis=1)
        X = X.tocsr()
        cols = X.indices
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        out = (X.data < self.lower_[cols]) | (X.data > self.upper_[cols])
        bad = np.bincount(rows, weights=out, minlength=X.shape[0]) > 0
        zero_out = (self.lower_ > 0) | (self.upper_ < 0)  # features whose implicit zeros are outliers
        stored = np.bincount(rows, weights=zero_out[cols], minlength=X.shape[0])
        return ~(bad | (stored < zero_out.sum()))

    def fit_resample(self, X: Any, y: Any = None) -> tuple[Any, Any]:
        """Fit on ``X`` and return ``X`` and ``y`` without the rows holding an outlier (imbalanced-learn's sampler
        API); ``y`` None gives None."""
        keep = np.flatnonzero(self.fit(X).inlier_mask(X))
        return _safe_indexing(X, keep), None if y is None else _safe_indexing(y, keep)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = True
        return tags


def drop_outliers(X: Any, y: Any = None, *, factor: float = 1.5) -> tuple[Any, Any]:
    """``X`` and ``y`` without the rows that hold an outlier of :class:`IQRClipper` (``factor``) fitted on ``X``.

    Call it on the training data before ``fit`` (never on the data to predict: every sample needs a prediction);
    a function, not a pipeline step, because a scikit-learn Pipeline cannot remove samples (see the module notes).

    Parameters
    ----------
    X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
    y : array-like of shape (n_samples, ...), optional
    factor : float, default=1.5

    Returns
    -------
    X_kept, y_kept
        The rows kept, in the containers given (``y_kept`` is None without ``y``).

    Examples
    --------
    >>> import numpy as np
    >>> X, y = np.array([[1.0], [2.0], [3.0], [4.0], [90.0]]), np.array([0, 1, 0, 1, 1])
    >>> Xk, yk = drop_outliers(X, y)
    >>> Xk.ravel().tolist(), yk.tolist()
    ([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1])
    """
    return IQRClipper(factor=factor, strategy="drop").fit_resample(X, y)
