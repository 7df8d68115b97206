"""``BaseNeuralNet``: what NeuralNetClassifier and NeuralNetRegressor share on top of the estimator core: any
network, skorch-like routed parameters, a held-out validation split, callbacks."""

from __future__ import annotations

import contextlib
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from .. import losses, nn, random
from ..backend import Backend
from ..callbacks.finetuning import select_parameters
from ..data import fingerprint, train_valid_split
from ..training import Trainer
from . import _neuralnet_build as build
from ._estimator import NetEstimator, forward_numpy, resolve_dtype, validate_samples_x


class BaseNeuralNet(NetEstimator):
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
        "frozen": [None, str, list, tuple],
        "augment": [None, callable, list, tuple],
    }
    _default_criterion: type = losses.MSELoss
    _portable = ("module_", "criterion_", "_augment_source")

    def __init__(
        self, module=None, criterion=None, optimizer="adam", lr=0.01, max_epochs=10, batch_size=128, train_split=0.2,
        callbacks=None, shuffle=True, backend="auto", dtype="float32", random_state=None, verbose=False,
        warm_start=False, frozen=None, augment=None, **kwargs,
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
        self.frozen = frozen
        self.augment = augment
        self._kwargs = kwargs  # routed parameters, checked in fit (scikit-learn validates nothing in __init__)

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters, routed ones included; ``deep`` adds ``callbacks__<name>__<param>`` of every callback."""
        params = super().get_params(deep=deep)
        kwargs = self.__dict__.get("_kwargs", {})
        params.update(kwargs)
        if deep:
            for name, cb in build.named_callbacks(self.callbacks, kwargs):
                if hasattr(cb, "get_params") and not isinstance(cb, type):
                    for key, value in cb.get_params(deep=True).items():
                        params.setdefault(f"callbacks__{name}__{key}", value)
        return params

    def set_params(self, **params: Any) -> BaseNeuralNet:
        """Set parameters: constructor ones and any ``module__*``, ``optimizer__*``, ``criterion__*`` or
        ``callbacks__*`` key (a callback's parameter set this way applies to the clone made in ``fit``)."""
        own, kwargs = set(self._get_param_names()), dict(self.__dict__.get("_kwargs", {}))
        for key in params:
            if key not in own and key not in kwargs and not key.startswith(build.PREFIXES):
                prefixes = ", ".join(build.PREFIXES)
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}. Valid parameters are: "
                    f"{sorted(self.get_params(deep=False))!r}, and routed ones starting with {prefixes}"
                )
        for key, value in params.items():
            if key in own:
                setattr(self, key, value)
            else:
                kwargs[key] = value
        self._kwargs = kwargs
        return self

    def _routed(self, prefix: str) -> dict[str, Any]:
        return build.routed(self._kwargs, prefix)

    def _validate_params(self) -> None:
        super()._validate_params()
        bad = sorted(k for k in self._kwargs if not k.startswith(build.PREFIXES) or not k.split("__")[-1])
        if bad:
            raise TypeError(
                f"{type(self).__name__} got unexpected parameter(s) {bad}; routed parameters look like "
                "module__hidden, optimizer__weight_decay, criterion__weight or callbacks__early_stopping__patience"
            )

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, X_val: Any = None, y_val: Any = None,
        resume_from: Any = None,
    ) -> BaseNeuralNet:  # fmt: skip
        """Train for ``max_epochs`` epochs (anew unless ``warm_start``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features) or array of shape (n_samples, ...)
            Samples of any shape the network takes: rows, sequences (n_samples, n_steps, n_features), images
            (n_samples, channels, height, width); integer token ids stay integers for a network with an Embedding.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
            Each sample's weight in the losses (and the validation score). Negative weights are accepted, as
            scikit-learn's MLP accepts them: a sample with a negative weight pushes the loss up.
        X_val, y_val : array-like, optional
            Validation data used instead of a ``train_split`` split (every sample of ``X`` is trained on).
        resume_from : str or path-like, optional
            A checkpoint that :class:`minitrain.callbacks.Checkpoint` wrote while this estimator's fit ran: that
            fit continues from there (weights, optimizer, callbacks, random streams, history), on the same data,
            up to ``max_epochs`` epochs in all, as if it had never stopped.

        Returns
        -------
        self

        Raises
        ------
        NonFiniteLossError
            If the training loss becomes NaN or infinite; the network keeps the weights of the last finite epoch.
        """
        return self._fit(X, y, sample_weight, incremental=False, X_val=X_val, y_val=y_val, resume_from=resume_from)

    # ------------------------------------------------------------------ the estimator core's hooks
    def _validate_fit(
        self, X: Any, y: Any, sample_weight: Any, *, first: bool, incremental: bool, classes: Any = None,
        X_val: Any = None, y_val: Any = None,
    ) -> dict[str, Any]:  # fmt: skip
        if (X_val is None) != (y_val is None):
            raise ValueError("pass both X_val and y_val, or neither")
        X, y = self._validate_xy(X, y, reset=first)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)  # negative ones too, as sklearn
        y_enc = self._encode_y(y, first, classes)
        if first:  # one stream of random numbers per training run: warm starts and partial_fit continue it
            self.__dict__.pop("_split_", None)
            self._random_state = rs = check_random_state(self.random_state)
            self._module_seed = None if self.random_state is None else int(rs.randint(np.iinfo(np.int32).max))
        if X_val is None:
            train, valid = self._split(X, y_enc, sample_weight, self._random_state)
        else:
            X_val, y_val = self._validate_xy(X_val, y_val, reset=False)
            train, valid = (X, y_enc, sample_weight), (X_val, self._encode_y(y_val, False, None), None)
        return {"X": X, "y_enc": y_enc, "train": train, "valid": valid}

    def _initialize(self, data: dict[str, Any], be: Backend) -> None:
        X, y_enc = data["X"], data["y_enc"]
        crit = self._default_criterion if self.criterion is None else self.criterion
        self.criterion_ = build.build_criterion(crit, self._routed("criterion"), be)
        self.n_outputs_ = self._module_outputs(y_enc)
        self._input_dtype = dtype = resolve_dtype(self.dtype, X)
        seed, routed = self.__dict__.pop("_module_seed", None), self._routed("module")
        shape = tuple(X.shape[1:])
        with contextlib.nullcontext() if seed is None else random.seeded(seed):  # weights and generators
            self.module_ = build.build_module(
                self.module, routed, int(np.prod(shape)), self.n_outputs_, be, dtype, input_shape=shape
            )
        if seed is not None:  # a module instance's generators too (it is copied with their state)
            self.module_.seed_generators(seed)
        self._tokens = X.dtype.kind in "iu" and build.takes_tokens(self.module_)
        out = forward_numpy(self.module_, X[:2], self._x_dtype)
        if out.shape != (min(2, X.shape[0]), self.n_outputs_):
            what = f"{shape[0]} features" if len(shape) == 1 else f"samples of shape {shape}"
            raise ValueError(
                f"the module maps {what} to outputs of shape {out.shape[1:]} per sample, but "
                f"{type(self).__name__} needs {self.n_outputs_} output(s) here; build it from the n_features / "
                "n_outputs (and input_shape) it is given (see the `module` parameter)"
            )
        for p in () if self.frozen is None else select_parameters(self.module_, self.frozen, "frozen"):
            p.requires_grad = False
        self.callbacks_ = build.build_callbacks(self)
        self.n_epochs_ = self.n_iter_ = 0

    def _check_continuation(self, data: dict[str, Any]) -> None:
        """Raise if ``y`` does not fit the network being continued (the classifier checks labels when encoding)."""

    def _make_optimizer(self) -> Any:
        return build.build_optimizer(self.optimizer, self.lr, self._routed("optimizer"), self.module_)

    def _train(self, data: dict[str, Any], incremental: bool) -> None:
        train, valid = data["train"], data["valid"]
        train_ds = self._dataset(train[0], self._targets(train[1]), train[2])
        valid_ds = score = None
        if valid is not None:
            valid_ds = self._dataset(valid[0], self._targets(valid[1]), valid[2])

            def score(_: Any) -> float:
                return self._valid_score(valid[0], valid[1], valid[2])

        augment, generator = self._augmentation()
        trainer = Trainer(
            self.module_, build.WeightedLoss(self.criterion_), self.optimizer_, batch_size=self.batch_size,
            callbacks=[self.history_, *(cb for _, cb in self.callbacks_)], shuffle=self.shuffle,
            random_state=self._random_state, score_fn=score, estimator=self, augment=augment,
            augment_generator=generator,
        )  # fmt: skip
        start = len(self.history_)
        try:
            self._run_trainer(trainer, train_ds, valid_ds, epochs=1 if incremental else self.max_epochs)
        finally:
            self.n_epochs_ = len(self.history_)
            self.n_iter_ = self.n_epochs_ - start

    def _split(self, X: Any, y: np.ndarray, sw: Any, rs: np.random.RandomState) -> tuple:
        """``((X, y, sw) to train on, (X, y, sw) to validate on or None)``. The split drawn for some data is kept
        (``_split_``): ``partial_fit`` and warm starts on the same data validate on the same samples, never on
        ones they trained on; other data (the next chunk of a stream) gets a split of its own."""
        split = self.train_split
        if split is None:
            return (X, y, sw), None
        key = fingerprint(X, y)
        kept = self.__dict__.get("_split_")
        if kept is not None and kept[0] == key:
            train_idx, valid_idx = kept[1], kept[2]
        elif isinstance(split, Real):
            stratify = self._stratify(y, int(np.ceil(split * X.shape[0])))
            train_idx, valid_idx = train_valid_split(
                np.arange(X.shape[0]), valid_size=float(split), random_state=rs, stratify=stratify, param="train_split"
            )
        else:
            train_idx, valid_idx = next(iter(split.split(X, y)), (None, None))
            if train_idx is None or len(train_idx) == 0 or len(valid_idx) == 0:
                raise ValueError(f"train_split={split!r} gave no split with both training and validation samples")
        index = np.min_scalar_type(max(X.shape[0] - 1, 0))  # 1-4 bytes per sample in pickles, not int64's 8
        self._split_ = (key, np.asarray(train_idx).astype(index), np.asarray(valid_idx).astype(index))

        def part(idx: Any) -> tuple:
            return tuple(None if a is None else _safe_indexing(a, idx) for a in (X, y, sw))

        return part(train_idx), part(valid_idx)

    def _stratify(self, y: np.ndarray, n_valid: int) -> Any:
        return None

    def _valid_score(self, X: Any, y: np.ndarray, sw: Any) -> float:
        """Accuracy / R² of the network on the validation part (NaN when its weights sum to zero or its outputs are
        not finite)."""
        if sw is not None and not sw.sum() > 0:
            return np.nan
        outputs = self._network_outputs(X)
        if not np.isfinite(outputs).all():
            return np.nan
        return float(self._score_outputs(y, outputs, sw))

    # ------------------------------------------------------------------ predict
    def _logits(self, X: Any) -> np.ndarray:
        """The network's outputs for ``X`` as float64, shape (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._network_outputs(validate_samples_x(self, X)).astype(np.float64)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
