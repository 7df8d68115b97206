"""MLPClassifier and MLPRegressor: drop-ins for ``sklearn.neural_network``'s classes."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted

from ._estimator import validate_xy
from ._mlp import BaseMLP

_COMMON = """
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        Units in each hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers.
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        'lbfgs' runs scipy's L-BFGS-B on the flat parameter vector (honouring ``max_fun``).
    alpha : float, default=0.0001
        L2 penalty on the weights (not the intercepts), divided by the samples (or summed weights) of a batch.
    batch_size : int or 'auto', default='auto'
        'auto' is ``min(200, n_samples)``; unused by 'lbfgs'.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule of the 'sgd' solver.
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start, momentum,
    nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As in scikit-learn, with the same defaults and meanings.
    backend : str or Backend, default='auto'
        Where to train: 'numpy', 'numba' or any registered backend ('name:1' names its device 1); 'auto' follows
        ``use_backend`` / ``MINITRAIN_BACKEND`` and otherwise picks the fastest available backend. Resolved in
        ``fit``; ``backend_`` records it.
    dtype : str or None, default=None
        Floating type of the weights; None keeps float32 input float32 and trains anything else in float64,
        as scikit-learn does. 'float32' is faster.
    dropout : float, default=0.0
        Dropout probability after each hidden layer while training.
    batch_norm : bool, default=False
        Batch normalization before each hidden activation.
    l1 : float, default=0.0
        L1 penalty on the weights, scaled like ``alpha``.
    restore_best_weights : bool or 'auto', default='auto'
        'auto' restores the best-validation-score weights with ``early_stopping`` (scikit-learn's
        behaviour); True also restores the lowest-training-loss weights without it; False never restores.
    callbacks : list of Callback or (name, Callback), default=None
        Extra :mod:`minitrain.callbacks` run by the stochastic solvers.
    augment : transform, callable, list of them or None, default=None
        Augmentation of the training batches (:mod:`minitrain.augment`: ``GaussianNoise``, ``RandomMasking``,
        ``Mixup``, ...), with the stochastic solvers only; never applied to validation data or predictions. Its
        random numbers come from a generator of the estimator's own, seeded from ``random_state`` and continued by
        ``partial_fit`` and warm starts. Augmented batches train through the autograd step (the same loss and
        gradients as the fused one); without ``augment`` nothing changes.
"""

_ATTRIBUTES = """
    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_, coefs_, intercepts_,
    n_iter_, n_layers_, n_outputs_, out_activation_, n_features_in_, feature_names_in_
        As in scikit-learn; ``coefs_`` and ``intercepts_`` are NumPy arrays of the same shapes.
    validation_loss_curve_ : list of float or None
        Loss on the validation data after each epoch (without the penalty), beside ``validation_scores_``.
    history_ : History
        One record per epoch (train_loss, valid_loss, valid_score, lr, duration).
    module_ : Module
        The trained network (logits out); ``backend_`` names where it lives.
"""


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = f"""Multi-layer perceptron classifier: ``sklearn.neural_network.MLPClassifier`` on minitrain backends.

    Every scikit-learn parameter keeps its name, default and meaning; the extra ones are off by default.

    Parameters
    ----------{_COMMON}    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, multiplied into ``sample_weight``.
{_ATTRIBUTES}    classes_ : ndarray or list of ndarray
        Class labels.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from minitrain import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001, batch_size="auto",
        learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
        random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
        early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
        max_fun=15000, backend="auto", dtype=None, dropout=0.0, batch_norm=False, class_weight=None, l1=0.0,
        restore_best_weights="auto", callbacks=None, augment=None,
    ) -> None:  # fmt: skip
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t,
            max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, backend=backend, dtype=dtype,
            dropout=dropout, batch_norm=batch_norm, l1=l1, restore_best_weights=restore_best_weights,
            callbacks=callbacks, augment=augment,
        )  # fmt: skip
        self.class_weight = class_weight

    loss = "log_loss"

    def _out_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, Any]:
        X, y = validate_xy(self, X, y, reset)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous call to fit."
                        f" Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        self._y_labels = y
        return X, self._one_hot(y)

    def _one_hot(self, y: Any) -> np.ndarray:
        """``LabelBinarizer.transform(y)`` as booleans; multiclass labels (all in ``classes_``) without its
        label-type checks and sparse detour (this runs at every ``partial_fit``)."""
        lb = self._label_binarizer
        classes = lb.classes_
        self._codes_of = None
        if lb.y_type_ == "multiclass" and y.ndim == 1 and len(classes) > 2:
            codes = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
            if np.array_equal(classes[codes], y):
                onehot = np.take(np.eye(len(classes), dtype=bool), codes, axis=0)  # faster than a comparison
                self._codes_of = (onehot, codes)  # for _dataset: the indices of these rows
                return onehot
        return lb.transform(y).astype(bool)

    def _dataset(self, X: Any, y: Any, sample_weight: Any) -> Any:
        """The training data; one-hot multiclass targets become class indices, which the softmax loss takes
        as they are (the same loss and gradient, bit for bit): a batch gathers one integer per sample instead
        of a row of ``n_classes`` floats."""
        known, self._codes_of = getattr(self, "_codes_of", None), None
        if self.out_activation_ == "softmax" and y.ndim == 2 and y.dtype == bool:
            y = known[1] if known is not None and known[0] is y else y.argmax(axis=1)
        return super()._dataset(X, y, sample_weight)

    def _class_weighted(self, y: Any, sample_weight: Any) -> Any:
        if self.class_weight is None:
            return sample_weight
        cw = compute_sample_weight(self.class_weight, self.__dict__.pop("_y_labels"))
        return cw if sample_weight is None else sample_weight * cw

    def predict(self, X: Any) -> np.ndarray:
        """Predict class labels for ``X`` of shape (n_samples, n_features)."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        y_pred = self._forward(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        return self._score_with_function(X, y, sample_weight=sample_weight, score_function=accuracy_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> MLPClassifier:
        """Update the model with one epoch over the given data (``classes`` needed on the first call)."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of each class, shape (n_samples, n_classes), in the order of ``classes_``."""
        check_is_fitted(self)
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return np.vstack([1 - y_pred, y_pred]).T if y_pred.ndim == 1 else y_pred

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of ``predict_proba``."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = f"""Multi-layer perceptron regressor: ``sklearn.neural_network.MLPRegressor`` on minitrain backends.

    Parameters
    ----------
    loss : {{'squared_error', 'poisson'}}, default='squared_error'
        Half squared error with an identity output, or half Poisson deviance with an exponential output.{_COMMON}
{_ATTRIBUTES}
    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), solver="lbfgs", random_state=0).fit(X, np.sin(3 * X).ravel())
    >>> reg.score(X, np.sin(3 * X).ravel()) > 0.95
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
        batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
        shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
        nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
        epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend="auto", dtype=None, dropout=0.0,
        batch_norm=False, l1=0.0, restore_best_weights="auto", callbacks=None, augment=None,
    ) -> None:  # fmt: skip
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t,
            max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, backend=backend, dtype=dtype,
            dropout=dropout, batch_norm=batch_norm, l1=l1, restore_best_weights=restore_best_weights,
            callbacks=callbacks, augment=augment,
        )  # fmt: skip
        self.loss = loss

    def _out_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, Any]:
        X, y = validate_xy(self, X, y, reset, y_numeric=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(f"loss='poisson' needs non-negative targets y; got a minimum of {float(np.min(y))!r}")
        return X, y

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, shape (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        y_pred = self._forward(X, check_input=check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def _score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        return self._score_with_function(X, y, sample_weight=sample_weight, score_function=r2_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Update the model with one epoch over the given data."""
        return self._fit(X, y, sample_weight, incremental=True)
