"""NeuralNetClassifier / NeuralNetRegressor: any network as a scikit-learn estimator, with skorch-like routing."""

from __future__ import annotations

import contextlib
import copy
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit, log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .. import losses, nn, random
from ..backend import Backend
from ..callbacks import History
from ..data import ArrayDataset, train_valid_split
from ..training import Trainer
from . import _neuralnet_core as core
from ._base import (
    PortableStateMixin,
    check_finite,
    forward_numpy,
    resolve_backend,
    resolve_dtype,
    validate_x,
    validate_xy,
)


class BaseNeuralNet(PortableStateMixin, BaseEstimator):
    """Shared implementation; use :class:`NeuralNetClassifier` or :class:`NeuralNetRegressor`."""

    _parameter_constraints: ClassVar[dict] = {
        "module": [None, nn.Module, callable],
        "criterion": [None, str, nn.Module, callable],
        "optimizer": [str, callable],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "train_split": [None, Interval(Real, 0, 1, closed="neither"), HasMethods(["split"])],
        "callbacks": [list, tuple, None],
        "shuffle": ["boolean"],
        "backend": [str, Backend],
        "dtype": [None, str, type, np.dtype],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }
    _default_criterion: type = losses.MSELoss

    def __init__(
        self, module=None, criterion=None, optimizer="adam", lr=0.01, max_epochs=10, batch_size=128, train_split=0.2,
        callbacks=None, shuffle=True, backend="auto", dtype="float32", random_state=None, verbose=False,
        warm_start=False, **kwargs,
    ) -> None:  # fmt: skip
        self.module = module
        self.criterion = criterion
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.train_split = train_split
        self.callbacks = callbacks
        self.shuffle = shuffle
        self.backend = backend
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self._kwargs = kwargs  # routed parameters, checked in fit (scikit-learn validates nothing in __init__)

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters, routed ones included; ``deep`` adds ``callbacks__<name>__<param>`` of every callback."""
        params = super().get_params(deep=deep)
        kwargs = self.__dict__.get("_kwargs", {})
        params.update(kwargs)
        if deep:
            for name, cb in core.named_callbacks(self.callbacks, kwargs):
                if hasattr(cb, "get_params") and not isinstance(cb, type):
                    for key, value in cb.get_params(deep=True).items():
                        params.setdefault(f"callbacks__{name}__{key}", value)
        return params

    def set_params(self, **params: Any) -> BaseNeuralNet:
        """Set parameters: constructor ones and any ``module__*``, ``optimizer__*``, ``criterion__*`` or
        ``callbacks__*`` key (a callback's parameter set this way applies to the clone made in ``fit``)."""
        own, kwargs = set(self._get_param_names()), dict(self.__dict__.get("_kwargs", {}))
        for key in params:
            if key not in own and key not in kwargs and not key.startswith(core.PREFIXES):
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}. Valid parameters are: "
                    f"{sorted(self.get_params(deep=False))!r}, and routed ones starting with {', '.join(core.PREFIXES)}"
                )
        for key, value in params.items():
            if key in own:
                setattr(self, key, value)
            else:
                kwargs[key] = value
        self._kwargs = kwargs
        return self

    def _routed(self, prefix: str) -> dict[str, Any]:
        return core.routed(self._kwargs, prefix)

    def _validate_params(self) -> None:
        super()._validate_params()
        bad = sorted(k for k in self._kwargs if not k.startswith(core.PREFIXES) or not k.split("__")[-1])
        if bad:
            raise TypeError(
                f"{type(self).__name__} got unexpected parameter(s) {bad}; routed parameters look like "
                "module__hidden, optimizer__weight_decay, criterion__weight or callbacks__early_stopping__patience"
            )

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> BaseNeuralNet:
        """Train for ``max_epochs`` epochs (anew unless ``warm_start``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
            Each sample's weight in the losses (and the validation score).

        Returns
        -------
        self

        Raises
        ------
        NonFiniteLossError
            If the training loss becomes NaN or infinite; the network keeps the weights of the last finite epoch.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool, classes: Any = None) -> BaseNeuralNet:
        be = resolve_backend(self.backend)  # before touching any fitted state: a bad backend loses nothing
        first = not hasattr(self, "module_") or not (self.warm_start or incremental)
        saved = dict(self.__dict__)
        try:
            train, valid, rs = self._prepare(X, y, sample_weight, be, first, classes)
        except BaseException:  # invalid input or parameters: the estimator stays as it was
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        self._train(train, valid, rs, epochs=1 if incremental else self.max_epochs)
        return self

    def _prepare(self, X: Any, y: Any, sample_weight: Any, be: Backend, first: bool, classes: Any) -> tuple:
        X, y = self._validate_xy(X, y, reset=first)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        y_enc = self._encode_y(y, first, classes)
        if first:  # one stream of random numbers per training run: warm starts and partial_fit continue it
            self._random_state = rs = check_random_state(self.random_state)
            self._module_seed = None if self.random_state is None else int(rs.randint(np.iinfo(np.int32).max))
        else:
            self._check_continuation(y_enc)
        rs = self._random_state
        split = self._split(X, y_enc, sample_weight, rs)
        if first:
            self._initialize(X, y_enc, be)
        elif self.module_.backend is not be:
            if self.optimizer_ is not None:
                self._optimizer_state = self.optimizer_.state_dict()
            self.module_.to(be)
            if isinstance(self.criterion_, nn.Module):
                self.criterion_.to(be)
            self.optimizer_ = None
        if self.optimizer_ is None:
            self.optimizer_ = core.build_optimizer(self.optimizer, self.lr, self._routed("optimizer"), self.module_)
            state = self.__dict__.pop("_optimizer_state", None)
            if state is not None:
                self.optimizer_.load_state_dict(state)
        self.backend_ = be.name if be.device in ("cpu", "0", 0) else f"{be.name}:{be.device}"
        return (*split, rs)

    def _initialize(self, X: Any, y_enc: np.ndarray, be: Backend) -> None:
        self.__dict__.pop("_optimizer_state", None)
        crit = self._default_criterion if self.criterion is None else self.criterion
        self.criterion_ = core.build_criterion(crit, self._routed("criterion"), be)
        self.n_outputs_ = self._module_outputs(y_enc)
        dtype = resolve_dtype(self.dtype, X)
        seed, routed = self.__dict__.pop("_module_seed", None), self._routed("module")
        with contextlib.nullcontext() if seed is None else random.seeded(seed):  # weights and generators
            self.module_ = core.build_module(self.module, routed, X.shape[1], self.n_outputs_, be, dtype)
        if seed is not None:  # a module instance's generators too (it is copied with their state)
            self.module_.seed_generators(seed)
        params = self.module_.parameters()
        self._dtype = np.dtype(params[0].dtype) if params else dtype
        out = forward_numpy(self.module_, X[:2], self._dtype)
        if out.shape != (min(2, X.shape[0]), self.n_outputs_):
            raise ValueError(
                f"the module maps {X.shape[1]} features to outputs of shape {out.shape[1:]} per sample, but "
                f"{type(self).__name__} needs {self.n_outputs_} output(s) here; build it from the n_features / "
                "n_outputs it is given (see the `module` parameter)"
            )
        self.optimizer_ = None
        self.history_ = History()
        self.callbacks_ = core.build_callbacks(self)
        self.n_epochs_ = self.n_iter_ = 0

    def _split(self, X: Any, y: np.ndarray, sw: Any, rs: np.random.RandomState) -> tuple:
        split = self.train_split
        if split is None:
            return (X, y, sw), None
        if isinstance(split, Real):
            stratify = self._stratify(y, int(np.ceil(split * X.shape[0])))
            Xt, Xv, yt, yv, wt, wv = train_valid_split(
                X, y, sw, valid_size=float(split), random_state=rs, stratify=stratify, param="train_split"
            )
            return (Xt, yt, wt), (Xv, yv, wv)
        train_idx, valid_idx = next(iter(split.split(X, y)), (None, None))
        if train_idx is None or len(train_idx) == 0 or len(valid_idx) == 0:
            raise ValueError(f"train_split={split!r} gave no split with both training and validation samples")

        def part(idx: Any) -> tuple:
            return tuple(None if a is None else _safe_indexing(a, idx) for a in (X, y, sw))

        return part(train_idx), part(valid_idx)

    def _stratify(self, y: np.ndarray, n_valid: int) -> Any:
        return None

    def _check_continuation(self, y_enc: np.ndarray) -> None:
        """Raise if ``y`` does not fit the network being continued (the classifier checks labels when encoding)."""

    def _valid_score(self, X: Any, y: np.ndarray, sw: Any) -> float:
        """Accuracy / R² of the network on the validation part (NaN when its weights sum to zero)."""
        if sw is not None and not sw.sum() > 0:
            return np.nan
        return float(self._score_outputs(y, forward_numpy(self.module_, X, self._dtype).reshape(X.shape[0], -1), sw))

    def _train(self, train: tuple, valid: tuple | None, rs: np.random.RandomState, epochs: int) -> None:
        be, dtype = self.module_.backend, self._dtype
        train_ds = ArrayDataset(train[0], self._targets(train[1]), train[2], backend=be, dtype=dtype)
        valid_ds = score = None
        if valid is not None:
            valid_ds = ArrayDataset(valid[0], self._targets(valid[1]), valid[2], backend=be, dtype=dtype)

            def score(_: Any) -> float:
                return self._valid_score(valid[0], valid[1], valid[2])

        trainer = Trainer(
            self.module_, core.WeightedLoss(self.criterion_), self.optimizer_, batch_size=self.batch_size,
            callbacks=[self.history_, *(cb for _, cb in self.callbacks_)], shuffle=self.shuffle, random_state=rs,
            score_fn=score, estimator=self,
        )  # fmt: skip
        trainer.epoch = start = len(self.history_)
        try:
            trainer.fit(train_ds, valid_ds, epochs=epochs)
        finally:
            records = self.history_.records
            if len(records) > start and "train_loss" not in records[-1]:
                records.pop()  # the epoch that failed or was interrupted
            self.n_epochs_ = len(records)
            self.n_iter_ = self.n_epochs_ - start

    # ------------------------------------------------------------------ predict
    def _logits(self, X: Any) -> np.ndarray:
        """The network's outputs for ``X`` as float64, shape (n_samples, n_outputs)."""
        check_is_fitted(self)
        X = validate_x(self, X)
        return forward_numpy(self.module_, X, self._dtype).astype(np.float64).reshape(X.shape[0], -1)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        crit = state.get("criterion_")
        if isinstance(crit, nn.Module) and crit.backend.name != "numpy":
            state["criterion_"] = copy.deepcopy(crit).to("numpy")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        crit, module = self.__dict__.get("criterion_"), self.__dict__.get("module_")
        if isinstance(crit, nn.Module) and module is not None and crit.backend is not module.backend:
            crit.to(module.backend)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class NeuralNetClassifier(ClassifierMixin, BaseNeuralNet):
    __doc__ = f"""A classifier training any network (``module``) on minitrain backends, skorch-style.

    Labels are encoded as class indices (``classes_``) for CrossEntropyLoss; with BCEWithLogitsLoss a binary problem
    uses one output (``predict_proba`` is its sigmoid) and more classes one-vs-rest outputs.
{core.PARAMS_DOC}    classes_ : ndarray of shape (n_classes,)

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
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=reset,
            ensure_all_finite=False,
        )  # fmt: skip
        check_finite(self, X)
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
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> NeuralNetClassifier:
        """One epoch over ``(X, y)``, continuing from the fitted state; ``classes`` (every label) on the first call."""
        if not hasattr(self, "module_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

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
{core.PARAMS_DOC}
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
        return validate_xy(self, X, y, reset, y_numeric=True)

    def _encode_y(self, y: np.ndarray, first: bool, classes: Any) -> np.ndarray:
        return np.asarray(y, dtype=np.float64).reshape(len(y), -1)

    def _module_outputs(self, y_enc: np.ndarray) -> int:
        return y_enc.shape[1]

    def _check_continuation(self, y_enc: np.ndarray) -> None:
        if y_enc.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y_enc.shape[1]} outputs but the model was fitted with {self.n_outputs_}")

    def _targets(self, y_enc: np.ndarray) -> np.ndarray:
        return y_enc

    def _score_outputs(self, y: np.ndarray, z: np.ndarray, sw: Any) -> float:
        return r2_score(y, z.astype(np.float64), sample_weight=sw)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> NeuralNetRegressor:
        """One epoch over ``(X, y)``, continuing from the fitted state (starting one on the first call)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, shape (n_samples,) for one output, else (n_samples, n_outputs)."""
        z = self._logits(X)
        return z.ravel() if self.n_outputs_ == 1 else z

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
