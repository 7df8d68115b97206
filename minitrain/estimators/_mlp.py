"""``BaseMLP``: what MLPClassifier and MLPRegressor share on top of the estimator core: scikit-learn's
network, solvers, update rules, validation split and stopping."""

from __future__ import annotations

import contextlib
import warnings
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import scipy.optimize
from sklearn.base import _fit_context, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from .. import random
from ..backend import Backend
from ..data import train_valid_split
from ..training import NonFiniteLossError, Trainer
from ._estimator import NetEstimator, resolve_dtype, validate_x
from ._mlp_losses import output_activation, output_loss
from ._mlp_network import build_network, linear_layers
from ._mlp_solvers import SklearnOptimizerView, SklearnRules, make_optimizer
from ._mlp_step import MLPStep

_STOCHASTIC = ("sgd", "adam")
#: scikit-learn's sentence when its MLP's weights become non-finite; ours adds what happened and what to do.
NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain large values and need to be preprocessed."
)


class BaseMLP(NetEstimator):
    """Shared implementation; use :class:`MLPClassifier` or :class:`MLPRegressor`."""

    _parameter_constraints: ClassVar[dict] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "backend": [str, Backend],
        "dtype": [None, str, type, np.dtype],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "batch_norm": ["boolean"],
        "l1": [Interval(Real, 0, None, closed="left")],
        "restore_best_weights": ["boolean", StrOptions({"auto"})],
        "callbacks": [list, tuple, None],
        "augment": [None, callable, list, tuple],
    }

    def __init__(
        self,
        hidden_layer_sizes: Any,
        activation: str,
        *,
        solver: Any, alpha: Any, batch_size: Any, learning_rate: Any, learning_rate_init: Any, power_t: Any,
        max_iter: Any, shuffle: Any, random_state: Any, tol: Any, verbose: Any, warm_start: Any, momentum: Any,
        nesterovs_momentum: Any, early_stopping: Any, validation_fraction: Any, beta_1: Any, beta_2: Any, epsilon: Any,
        n_iter_no_change: Any, max_fun: Any, backend: Any, dtype: Any, dropout: Any, batch_norm: Any, l1: Any,
        restore_best_weights: Any, callbacks: Any, augment: Any,
    ) -> None:  # fmt: skip
        """scikit-learn's parameters, stored as given (validated in ``fit``); the subclasses set the defaults."""
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.l1 = l1
        self.restore_best_weights = restore_best_weights
        self.callbacks = callbacks
        self.augment = augment

    # ------------------------------------------------------------------ fitted attributes as NumPy views
    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices, ``coefs_[i]`` of shape (units in layer i, units in layer i + 1)."""
        check_is_fitted(self, "module_")
        be = self.module_.backend
        return [be.to_numpy(lin.weight.data).T for lin in linear_layers(self.module_)]

    @coefs_.setter
    def coefs_(self, values: list[Any]) -> None:
        for lin, value in zip(linear_layers(self.module_), values, strict=True):
            lin.weight.data[...] = lin.backend.asarray(np.asarray(value, dtype=lin.weight.dtype).T)

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, ``intercepts_[i]`` of shape (units in layer i + 1,)."""
        check_is_fitted(self, "module_")
        return [lin.backend.to_numpy(lin.bias.data) for lin in linear_layers(self.module_)]

    @intercepts_.setter
    def intercepts_(self, values: list[Any]) -> None:
        for lin, value in zip(linear_layers(self.module_), values, strict=True):
            lin.bias.data[...] = lin.backend.asarray(np.asarray(value, dtype=lin.bias.dtype))

    @property
    def _optimizer(self) -> SklearnOptimizerView:
        """scikit-learn's ``_optimizer`` as code written for its MLP reads it (``learning_rate`` and the solver's
        settings): a view of ``optimizer_``, the optimizer that trains here."""
        if self.solver not in _STOCHASTIC or (
            self.__dict__.get("optimizer_") is None and "_optimizer_state" not in self.__dict__
        ):
            raise AttributeError(f"{type(self).__name__} has no _optimizer: fit it with solver 'sgd' or 'adam' first")
        return SklearnOptimizerView(self)

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, X_val: Any = None, y_val: Any = None,
        resume_from: Any = None,
    ) -> BaseMLP:  # fmt: skip
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
            Each sample's weight in the loss. Negative weights are accepted, as scikit-learn accepts them.
        X_val, y_val : array-like, optional
            Validation data used instead of a ``validation_fraction`` split: scores and losses on it are
            recorded every epoch (``validation_scores_``, ``validation_loss_curve_``) and drive early
            stopping when ``early_stopping=True``.
        resume_from : str or path-like, optional
            A checkpoint that :class:`minitrain.callbacks.Checkpoint` wrote while this estimator's fit ran: that
            fit continues from there (its weights, optimizer, random streams, history and counters), on the same
            data, as if it had never stopped.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False, X_val=X_val, y_val=y_val, resume_from=resume_from)

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    # ------------------------------------------------------------------ the estimator core's hooks
    def _validate_fit(
        self, X: Any, y: Any, sample_weight: Any, *, first: bool, incremental: bool, X_val: Any = None,
        y_val: Any = None,
    ) -> dict[str, Any]:  # fmt: skip
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not all(isinstance(s, Integral) and not isinstance(s, bool) for s in sizes):
            raise ValueError(f"hidden_layer_sizes must hold whole numbers of units, got {self.hidden_layer_sizes!r}")
        if any(s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        if (X_val is None) != (y_val is None):
            raise ValueError("pass both X_val and y_val, or neither")
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self.augment is not None and self.solver not in _STOCHASTIC:
            raise ValueError(f"augment needs a stochastic solver ('sgd' or 'adam'), not solver={self.solver!r}")
        X, y = self._validate_input(X, y, incremental, reset=first)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        sample_weight = self._class_weighted(y, sample_weight)
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        val = None
        if X_val is not None:
            X_val, y_val_fit = self._validate_input(X_val, y_val, incremental=True, reset=False)
            y_val_labels = np.asarray(y_val) if is_classifier(self) else y_val_fit
            val = (X_val, y_val_fit.reshape(len(y_val_fit), -1), y_val_labels)
        self.__dict__.pop("_y_labels", None)  # the labels the classifier kept for its class weights
        if "_resuming" not in self.__dict__:  # a resumed fit continues the checkpoint's stream
            self._random_state = check_random_state(self.random_state)  # per call, as in scikit-learn
        return {"X": X, "y": y, "sample_weight": sample_weight, "val": val, "sizes": sizes}

    def _check_continuation(self, data: dict[str, Any]) -> None:
        if data["y"].shape[1] != self.n_outputs_:
            raise ValueError(f"y has {data['y'].shape[1]} outputs but the model was fitted with {self.n_outputs_}")

    def _continues_optimizer(self, incremental: bool) -> bool:
        return incremental  # a warm-started fit starts a new optimizer, as scikit-learn's does

    def _make_optimizer(self) -> Any:
        return make_optimizer(self, self.module_) if self.solver in _STOCHASTIC else None

    def _train(self, data: dict[str, Any], incremental: bool) -> None:
        if self.solver in _STOCHASTIC:
            self._fit_stochastic(data, incremental)
        else:
            self._fit_lbfgs(data["X"], data["y"], data["sample_weight"])

    def _class_weighted(self, y: Any, sample_weight: Any) -> Any:
        return sample_weight

    def _initialize(self, data: dict[str, Any], be: Backend) -> None:
        X, y = data["X"], data["y"]
        layer_units = [X.shape[1], *data["sizes"], y.shape[1]]
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        with random.seeded(0) if self.random_state is not None else contextlib.nullcontext():
            self.module_ = build_network(self, layer_units, be, resolve_dtype(self.dtype, X), self._random_state)
        if self.random_state is not None and any(True for _ in self.module_.named_generators()):
            # dropout masks: the network's own generators, seeded from random_state, continue across calls
            self.module_.seed_generators(int(self._random_state.randint(np.iinfo(np.int32).max)))
        if self.solver in _STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_, self.validation_loss_curve_ = [], []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = self.validation_loss_curve_ = None
                self.best_validation_score_ = None

    def _fit_stochastic(self, data: dict[str, Any], incremental: bool) -> None:
        resuming = "_resuming" in self.__dict__
        X, y, sample_weight = data["X"], data["y"], data["sample_weight"]
        validating = self.early_stopping or data["val"] is not None
        sw_val = None
        if data["val"] is not None:
            X_val, y_val_fit, y_val = data["val"]
            X_train, y_train, sw_train = X, y, sample_weight
        elif self.early_stopping:
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            rs = self._random_state
            if resuming:  # the split the checkpointed fit drew
                rs = np.random.RandomState()
                rs.set_state(self._split_state)
            else:
                self._split_state = rs.get_state(legacy=False)
            X_train, X_val, y_train, y_val_fit, sw_train, sw_val = train_valid_split(
                X, y, sample_weight, valid_size=self.validation_fraction, random_state=rs, stratify=stratify
            )
            y_val = self._label_binarizer.inverse_transform(y_val_fit) if is_classifier(self) else y_val_fit
        else:
            X_train, y_train, sw_train = X, y, sample_weight
        if validating and self.validation_scores_ is None:
            self.validation_scores_, self.validation_loss_curve_ = [], []
        n = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=4
                )
            batch_size = int(np.clip(self.batch_size, 1, n))
        module = self.module_
        if not resuming:
            self.n_iter_ = 0  # per call, as in scikit-learn (t_ keeps counting)
        rules = SklearnRules(self, n, validating, incremental, resuming)
        out_act = self.out_activation_

        def criterion(out, yb, wb, wsum):
            return output_loss(out, yb, wb, wsum, out_act)

        valid = self._dataset(X_val, y_val_fit, sw_val) if validating else None

        def score(_):
            return self._score(X_val, y_val, sample_weight=sw_val)

        augment, generator = self._augmentation()  # augmented batches train through autograd, not the fused step
        trainer = Trainer(
            module, criterion, self.optimizer_, batch_size=batch_size, shuffle=self.shuffle and "chained",
            callbacks=[self.history_, rules, *self._user_callbacks()], random_state=self._random_state,
            score_fn=score if validating else None, penalty=self._penalty_fn(), estimator=self,
            forward_backward=MLPStep.for_module(module, out_act) if augment is None else None, augment=augment,
            augment_generator=generator,
        )  # fmt: skip
        if not incremental and not resuming:  # each fit starts the callbacks afresh; partial_fit continues them
            for cb in self._user_callbacks():
                cb.initialize()
        epochs = 1 if incremental else self.max_iter
        try:
            self._run_trainer(trainer, self._dataset(X_train, y_train, sw_train), valid, epochs)
        except NonFiniteLossError as exc:
            if not self.early_stopping:  # scikit-learn raises here, keeping non-finite weights; ours are finite
                raise NonFiniteLossError(f"{NON_FINITE} {exc}") from exc
            # scikit-learn carries on and restores its best weights; training has nowhere to go from here
            warnings.warn(
                f"Training diverged ({exc.what} at epoch {exc.epoch}) and stopped; the model keeps its best weights "
                f"(validation score {self.best_validation_score_:.6g}). Scale the inputs (e.g. StandardScaler) or "
                "lower the learning rate.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _user_callbacks(self) -> list[Any]:
        return [cb[1] if isinstance(cb, tuple) else cb for cb in (self.callbacks or ())]

    def _penalty_fn(self) -> Any:
        """Sets the weights group's L2 / L1 strengths for a batch and returns the penalty's value."""
        alpha, l1 = float(self.alpha), float(self.l1)
        opt = self.optimizer_
        group = opt.param_groups[0]
        wbuf = next(fb for fb, g in opt._flat_groups if g is group)
        xp = self.module_.backend.xp

        def penalty(wsum: float) -> float:
            group["weight_decay"] = alpha / wsum
            group["l1"] = l1 / wsum
            value = 0.0
            if alpha:
                value += 0.5 * alpha * float(xp.dot(wbuf.data, wbuf.data)) / wsum
            if l1:
                value += l1 * float(xp.abs(wbuf.data).sum()) / wsum
            return value

        return penalty

    def _fit_lbfgs(self, X: Any, y: Any, sample_weight: Any) -> None:
        """scipy's L-BFGS-B over the flat vector of the trainable parameters (frozen ones stay as they are)."""
        module = self.module_
        be = module.backend
        (fb,) = module.flat_parameters()
        data = self._dataset(X, y, sample_weight)
        wsum = float(X.shape[0] if sample_weight is None else np.sum(sample_weight))
        starts, trainable, offset = [], [], 0
        weights = {id(lin.weight) for lin in linear_layers(module)}
        for p in fb.params:
            if id(p) in weights:
                starts.append((offset, offset + p.size))
            trainable.append(np.full(p.size, p.requires_grad))
            offset += p.size
        free = np.flatnonzero(np.concatenate(trainable))  # the entries L-BFGS moves
        alpha, l1, dtype, out_act = float(self.alpha), float(self.l1), self._dtype, self.out_activation_
        module.train()
        point = be.to_numpy(fb.data).astype(np.float64)  # the whole vector: frozen entries and L-BFGS's

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            point[free] = x
            fb.data[...] = be.asarray(point.astype(dtype))
            fb.zero_grad()
            total = 0.0
            for xb, yb, wb, _ in data.batches(8192):
                loss = output_loss(module(xb), yb, wb, wsum, out_act)
                loss.backward()
                total += float(loss.data)
            for a, b in starts:
                w = fb.data[a:b]
                total += (0.5 * alpha * float(w @ w) + l1 * float(abs(w).sum())) / wsum
                fb.grad[a:b] += (alpha / wsum) * w + (l1 / wsum) * be.xp.sign(w)
            return total, be.to_numpy(fb.grad).astype(np.float64)[free]

        opts = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        callback = None
        if self.verbose:
            it = iter(range(1, self.max_iter + 1))

            def callback(intermediate_result: Any) -> None:
                print(f"Iteration {next(it)}, loss = {intermediate_result.fun:.8f}")

        x0 = point.copy()
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging solve is reported below
            res = scipy.optimize.minimize(fun, x0[free], method="L-BFGS-B", jac=True, options=opts, callback=callback)
        fb.data[...] = be.asarray(x0.astype(dtype))  # scipy's last evaluation left its own point there
        if res.status != 0:
            warnings.warn(
                f"lbfgs failed to converge after {res.nit} iteration(s) (status={res.status}):\n{res.message}\n\n"
                "Increase the number of iterations to improve the convergence (max_iter=%d).\nYou might also want"
                " to scale the data as shown in:\n    https://scikit-learn.org/stable/modules/preprocessing.html"
                % self.max_iter,
                ConvergenceWarning,
                stacklevel=3,
            )
        if not np.isfinite(res.x).all():
            raise NonFiniteLossError(
                f"{NON_FINITE} L-BFGS ended on non-finite weights; the model keeps the weights it had before this "
                "fit. Scale the inputs (e.g. StandardScaler) or raise alpha."
            )
        self.n_iter_ = min(res.nit, self.max_iter)
        self.loss_ = float(res.fun)
        x0[free] = res.x
        fb.data[...] = be.asarray(x0.astype(dtype))

    # ------------------------------------------------------------------ predict
    def _forward(self, X: Any, check_input: bool = True) -> np.ndarray:
        """Output-layer activations for ``X`` as a NumPy array of shape (n_samples, n_outputs)."""
        if check_input:
            X = validate_x(self, X)
        return output_activation(self._network_outputs(X), self.out_activation_)

    def _score_with_function(self, X: Any, y: Any, sample_weight: Any, score_function: Any) -> float:
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
