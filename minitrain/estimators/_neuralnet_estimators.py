"""NeuralNetClassifier and NeuralNetRegressor: any network as a scikit-learn estimator."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, log_softmax, softmax
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from .. import losses
from . import _neuralnet_build as build
from ._estimator import sample_dtype, sample_input, sample_output, validate_samples
from ._neuralnet import BaseNeuralNet


class NeuralNetClassifier(ClassifierMixin, BaseNeuralNet):
    __doc__ = f"""A classifier training any network (``module``) on minitrain backends, skorch-style.

    Labels are encoded as class indices (``classes_``) for CrossEntropyLoss; with BCEWithLogitsLoss a binary problem
    uses one output (``predict_proba`` is its sigmoid) and more classes one-vs-rest outputs.
{build.PARAMS_DOC}    classes_ : ndarray of shape (n_classes,)

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from minitrain import callbacks
    >>> from minitrain.estimators import NeuralNetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NeuralNetClassifier(module__hidden=(16,), max_epochs=60, lr=0.05, random_state=0,
    ...                           callbacks=[callbacks.EarlyStopping(patience=10)]).fit(X, y)
    >>> clf.score(X, y) > 0.9, clf.history_[-1, "epoch"] == clf.n_epochs_
    (True, True)
    """

    _default_criterion = losses.CrossEntropyLoss

    def _validate_xy(self, X: Any, y: Any, reset: bool) -> tuple[Any, Any]:
        X, shape = sample_input(self, X, reset)
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], dtype=sample_dtype(X), reset=reset, ensure_all_finite=False
        )
        X = sample_output(self, X, shape, reset)
        check_classification_targets(y)
        return X, y

    def _encode_y(self, y: np.ndarray, first: bool, classes: Any) -> np.ndarray:
        if first:
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if len(unknown):
            raise ValueError(
                f"y has labels {unknown.tolist()} that are not in classes_ {self.classes_.tolist()}; pass every label "
                "in `classes` on the first partial_fit call, or fit anew (warm_start=False)"
            )
        return np.searchsorted(self.classes_, y)

    def _bce(self) -> bool:
        return isinstance(self.criterion_, losses.BCEWithLogitsLoss)

    def _module_outputs(self, y_enc: np.ndarray) -> int:
        n = len(self.classes_)
        return 1 if n == 2 and self._bce() else n

    def _targets(self, y_enc: np.ndarray) -> np.ndarray:
        if not self._bce():
            return y_enc.astype(np.int64)
        if self.n_outputs_ == 1:
            return y_enc.reshape(-1, 1).astype(np.float64)
        return np.eye(self.n_outputs_)[y_enc]

    def _stratify(self, y: np.ndarray, n_valid: int) -> Any:
        counts = np.bincount(y)
        counts = counts[counts > 0]
        ok = counts.min() >= 2 and len(counts) <= min(n_valid, len(y) - n_valid)
        return y if ok else None

    def _indices(self, z: np.ndarray) -> np.ndarray:
        if z.shape[1] == 1 and len(self.classes_) == 2:
            return (z[:, 0] > 0).astype(np.intp)
        return z.argmax(axis=1)

    def _score_outputs(self, y: np.ndarray, z: np.ndarray, sw: Any) -> float:
        return accuracy_score(y, self._indices(z), sample_weight=sw)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None, *, X_val: Any = None, y_val: Any = None
    ) -> NeuralNetClassifier:
        """One epoch over ``(X, y)``, continuing from the fitted state; ``classes`` (every label) on the first call;
        ``X_val``, ``y_val``: validation data instead of a ``train_split`` split."""
        if not hasattr(self, "module_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes, X_val=X_val, y_val=y_val)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels, shape (n_samples,)."""
        indices = self._indices(self._logits(X))
        return self.classes_[indices]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in the order of ``classes_``."""
        return self._proba(self._logits(X))

    def _proba(self, z: np.ndarray) -> np.ndarray:
        if z.shape[1] == 1 and len(self.classes_) == 2:
            p = expit(z[:, 0])
            return np.column_stack([1.0 - p, p])
        if self._bce():
            p = expit(z)
            return p / p.sum(axis=1, keepdims=True)
        return softmax(z, axis=1)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of ``predict_proba`` (computed stably from the logits for softmax outputs)."""
        z = self._logits(X)
        if self._bce() or len(self.classes_) != self.n_outputs_:
            with np.errstate(divide="ignore"):
                return np.log(self._proba(z))
        return log_softmax(z, axis=1)


class NeuralNetRegressor(RegressorMixin, BaseNeuralNet):
    __doc__ = f"""A regressor training any network (``module``) on minitrain backends, skorch-style.

    Supports several outputs: y of shape (n_samples, n_outputs) trains a network with n_outputs outputs.
{build.PARAMS_DOC}
    Examples
    --------
    >>> import numpy as np
    >>> from minitrain.estimators import NeuralNetRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = NeuralNetRegressor(module__hidden=(32,), max_epochs=100, batch_size=32, train_split=None,
    ...                          random_state=0).fit(X, np.sin(3 * X).ravel())
    >>> reg.score(X, np.sin(3 * X).ravel()) > 0.9
    True
    """

    def _validate_xy(self, X: Any, y: Any, reset: bool) -> tuple[Any, Any]:
        return validate_samples(self, X, y, reset, y_numeric=True)

    def _encode_y(self, y: np.ndarray, first: bool, classes: Any) -> np.ndarray:
        return np.asarray(y, dtype=np.float64).reshape(len(y), -1)

    def _module_outputs(self, y_enc: np.ndarray) -> int:
        return y_enc.shape[1]

    def _check_continuation(self, data: dict[str, Any]) -> None:
        n_outputs = data["y_enc"].shape[1]
        if n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs but the model was fitted with {self.n_outputs_}")

    def _targets(self, y_enc: np.ndarray) -> np.ndarray:
        return y_enc

    def _score_outputs(self, y: np.ndarray, z: np.ndarray, sw: Any) -> float:
        return r2_score(y, z.astype(np.float64), sample_weight=sw)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, X_val: Any = None, y_val: Any = None
    ) -> NeuralNetRegressor:
        """One epoch over ``(X, y)``, continuing from the fitted state (starting one on the first call); ``X_val``,
        ``y_val``: validation data instead of a ``train_split`` split."""
        return self._fit(X, y, sample_weight, incremental=True, X_val=X_val, y_val=y_val)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, shape (n_samples,) for one output, else (n_samples, n_outputs)."""
        z = self._logits(X)
        return z.ravel() if self.n_outputs_ == 1 else z

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
