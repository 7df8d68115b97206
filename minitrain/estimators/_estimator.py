"""The estimator core that the MLP and NeuralNet estimators share.

:class:`NetEstimator` runs every ``fit`` / ``partial_fit``: backend resolution, fresh start or continuation
(``warm_start``, ``partial_fit``), input validation that leaves the estimator as it was when anything is invalid,
building the network or moving it (with its optimizer's state) to another backend, the optimizer, ``backend_``,
the ``Trainer`` run and its history, batched prediction, and pickles that load without the backend they were
fitted on. What differs between the families (scikit-learn's exact rules and losses for the MLPs, routed
``module__`` / ``optimizer__`` parameters for the NeuralNets) lives in each estimator's own file.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils import assert_all_finite
from sklearn.utils.validation import column_or_1d, validate_data

from .. import nn
from ..augment import RandomSource, as_transform
from ..autograd import Tensor, no_grad
from ..backend import Backend, get_backend, list_backends
from ..callbacks import History
from ..data import ArrayDataset
from ._arrays import wrap_array_methods

PREDICT_BATCH = 8192


def resolve_backend(backend: Any) -> Backend:
    """The backend an estimator fits on: ``"auto"`` defers to ``use_backend`` / ``MINITRAIN_BACKEND`` / auto."""
    if isinstance(backend, Backend):
        return backend
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a backend name (str) or a Backend, got {type(backend).__name__}")
    return get_backend(None if backend == "auto" else backend)


#: The floating dtypes the estimators train in (every backend computes in both).
TRAINING_DTYPES = ("float32", "float64")


def resolve_dtype(dtype: Any, X: Any) -> np.dtype:
    """``None`` keeps float32 input float32 and makes anything else float64 (scikit-learn's rule); otherwise one of
    ``TRAINING_DTYPES`` (ValueError for any other)."""
    if dtype is None:
        return np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in TRAINING_DTYPES:
        raise ValueError(
            f"dtype={dtype!r} is not supported: the estimators train in {' or '.join(map(repr, TRAINING_DTYPES))} "
            "(or None: float32 input stays float32, anything else trains in float64)"
        )
    return dt


def validate_xy(est: Any, X: Any, y: Any, reset: bool, **kwargs: Any) -> tuple[Any, Any]:
    """scikit-learn's ``validate_data`` as the MLPs call it: float32/float64 (sparse allowed) X, 1-D y when it
    has one column; ``kwargs`` go to ``validate_data`` (e.g. ``y_numeric=True``)."""
    if kwargs.get("y_numeric"):
        check_numeric_targets(est, y)
    X, y = validate_data(
        est, X, y, accept_sparse=["csr", "csc"], multi_output=True, dtype=(np.float64, np.float32), reset=reset,
        ensure_all_finite=False, **kwargs,
    )  # fmt: skip
    check_finite(est, X)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    return X, y


def check_numeric_targets(est: Any, y: Any) -> None:
    """Raise a ValueError naming the problem when a regressor's ``y`` holds strings or other non-numbers."""
    y = np.asarray(y) if not sp.issparse(y) else y
    if y.dtype.kind == "O":
        try:
            np.asarray(y, dtype=np.float64)
            return
        except (TypeError, ValueError):
            pass
    elif y.dtype.kind not in "US":
        return
    values = [v.item() if isinstance(v, np.generic) else v for v in np.ravel(y)]
    kinds = sorted({type(v).__name__ for v in values})
    example = next((v for v in values if isinstance(v, (str, bytes))), values[0])
    raise ValueError(
        f"{type(est).__name__} needs numeric targets y, but y holds {' and '.join(kinds)} values such as "
        f"{example!r}. For class labels use a classifier (MLPClassifier, NeuralNetClassifier); otherwise convert "
        "the targets to numbers."
    )


def validate_x(est: Any, X: Any) -> Any:
    """scikit-learn's ``validate_data`` of prediction input: float32/float64 (sparse allowed), features as fitted."""
    X = validate_data(
        est, X, accept_sparse=["csr", "csc"], reset=False, dtype=(np.float64, np.float32), ensure_all_finite=False
    )
    check_finite(est, X)
    return X


def sample_input(est: Any, X: Any, reset: bool) -> tuple[Any, tuple[int, ...] | None]:
    """The NeuralNets' X before scikit-learn's ``validate_data``, which takes 2-D X only: dense X of more dimensions
    (images ``(n, C, H, W)``, sequences ``(n, T, F)``) as the 2-D view ``(n, prod(shape))`` with the shape of one
    sample, which :func:`sample_output` gives back (None for 2-D X). Without ``reset``, the shape of the samples must
    be the fitted ``input_shape_`` (a ValueError naming it otherwise), and a network taking token ids integer X."""
    if isinstance(X, (list, tuple)):
        try:
            arr = np.asarray(X)
        except ValueError:  # ragged: scikit-learn says what is wrong
            arr = None
        X = arr if arr is not None and arr.ndim > 2 else X
    shape = None
    if not sp.issparse(X) and getattr(X, "ndim", 2) > 2 and hasattr(X, "reshape"):
        shape = tuple(int(d) for d in X.shape[1:])
        X = X.reshape(X.shape[0], int(np.prod(shape)))
    if reset:
        return X, shape
    name, expected = type(est).__name__, getattr(est, "input_shape_", None)
    if expected is not None and (len(expected) > 1 or shape is not None) and shape != tuple(expected):
        got = shape if shape is not None else tuple(getattr(X, "shape", (0, "?"))[1:])
        want = ", ".join(map(str, expected))
        raise ValueError(
            f"X has samples of shape {got}, but {name} was fitted on samples of shape {tuple(expected)}: pass X of "
            f"shape (n_samples, {want})"
        )
    if est.__dict__.get("_tokens") and not (isinstance(X, np.ndarray) and X.dtype.kind in "iu"):
        raise ValueError(
            f"{name}'s network takes token ids (it has an Embedding): pass X as an integer array, got "
            f"{getattr(X, 'dtype', type(X).__name__)}"
        )
    return X, shape


def sample_dtype(X: Any) -> Any:
    """The dtype NeuralNets validate ``X`` with: integer arrays stay integer (token ids, or features the network
    casts), anything else becomes float32 / float64."""
    return None if isinstance(X, np.ndarray) and X.dtype.kind in "iu" else (np.float64, np.float32)


def sample_output(est: Any, X: Any, shape: tuple[int, ...] | None, reset: bool) -> Any:
    """The NeuralNets' X after ``validate_data``: checked finite, its samples' shape recorded as ``input_shape_``
    (``reset``) and given back."""
    if X.dtype.kind == "f":
        check_finite(est, X)
    if reset:
        est.input_shape_ = shape if shape is not None else (int(X.shape[1]),)
    return X if shape is None else X.reshape(X.shape[0], *shape)


def validate_samples(est: Any, X: Any, y: Any, reset: bool, **kwargs: Any) -> tuple[Any, Any]:
    """The NeuralNets' ``validate_data``: as :func:`validate_xy`, for X of any number of dimensions (see
    :func:`sample_input`) and integer X kept integer. ``n_features_in_`` is the number of values of one sample
    (``prod(input_shape_)``), as for the same data flattened; ``input_shape_`` the shape of one sample."""
    X, shape = sample_input(est, X, reset)
    if kwargs.get("y_numeric"):
        check_numeric_targets(est, y)
    X, y = validate_data(
        est, X, y, accept_sparse=["csr", "csc"], multi_output=True, dtype=sample_dtype(X), reset=reset,
        ensure_all_finite=False, **kwargs,
    )  # fmt: skip
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    return sample_output(est, X, shape, reset), y


def validate_samples_x(est: Any, X: Any) -> Any:
    """Prediction input of the NeuralNets: as :func:`validate_x`, with samples shaped as fitted."""
    X, shape = sample_input(est, X, reset=False)
    X = validate_data(est, X, accept_sparse=["csr", "csc"], reset=False, dtype=sample_dtype(X), ensure_all_finite=False)
    return sample_output(est, X, shape, reset=False)


def check_finite(est: Any, X: Any) -> None:
    """scikit-learn's check that float ``X`` holds no NaN or infinity, with its error messages.

    The fast pass is one BLAS matrix-vector product, ``X @ 1``, whose sum is finite when every entry is (and
    for finite entries, unless it overflows: then the entries are checked one by one); it runs at every
    ``partial_fit`` and costs about half of scikit-learn's single-threaded ``X.sum()``.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum of finite entries is no error
        if not sp.issparse(X) and X.ndim == 2 and X.size and np.isfinite((X @ np.ones(X.shape[1], X.dtype)).sum()):
            return
        assert_all_finite(X, input_name="X", estimator_name=type(est).__name__)


def forward_numpy(module: Any, X: Any, dtype: np.dtype, batch: int = PREDICT_BATCH) -> np.ndarray:
    """``module(X)`` in eval mode without gradients, in chunks, as a NumPy array."""
    be = module.backend
    was_training = module.training
    module.eval()
    chunks = []
    try:
        with be.context(), no_grad():
            for start in range(0, X.shape[0], batch):
                part = X[start : start + batch]
                part = part.toarray() if sp.issparse(part) else part
                out = module(Tensor._make(be.asarray(np.asarray(part, dtype=dtype)), be))
                chunks.append(be.to_numpy(out.data))
    finally:
        module.train(was_training)
    if not chunks:
        return np.empty((0,), dtype=dtype)
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


class NetEstimator(BaseEstimator):
    """The fit core of every minitrain estimator (see the module docstring); subclasses implement the hooks.

    ``_fit`` calls, in order: ``_validate_fit(X, y, sample_weight, first=..., incremental=..., **kwargs)``, which
    returns the validated data as the subclass likes it; on a fresh start ``_initialize(data, backend)``, which
    builds ``module_`` and resets the fitted attributes, else ``_check_continuation(data)``; then
    ``_make_optimizer()`` when an optimizer is needed (``_continues_optimizer(incremental)`` says whether the one
    there carries on), and last ``_train(data, incremental)``. A subclass sets ``_portable`` to the attributes
    holding modules that pickles keep on NumPy.
    """

    _portable: tuple[str, ...] = ("module_", "_augment_source")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        wrap_array_methods(cls)  # CuPy in, CuPy out

    # ------------------------------------------------------------------ the fit core
    def _fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, incremental: bool = False, resume_from: Any = None,
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        be = resolve_backend(self.backend)  # before touching any fitted state: a bad backend loses nothing
        first = not hasattr(self, "module_") or not (self.warm_start or incremental)
        saved = dict(self.__dict__)
        try:
            if resume_from is not None:
                self._adopt_checkpoint(resume_from, be)
                first = False
            data = self._validate_fit(X, y, sample_weight, first=first, incremental=incremental, **kwargs)
            if first:
                self.__dict__.pop("_optimizer_state", None)
                self.__dict__.pop("_augment_source", None)
                self.optimizer_, self.history_ = None, History()
                self._initialize(data, be)
            else:
                self._check_continuation(data)
                self._move_to(be)
            self._prepare_optimizer(incremental)
        except BaseException:  # invalid input or parameters: the estimator stays as it was
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        self.backend_ = be.spec
        self._train(data, incremental)
        return self

    def _check_continuation(self, data: Any) -> None:
        """Raise if ``data`` does not fit the network being continued."""

    def _continues_optimizer(self, incremental: bool) -> bool:
        """Whether a continued fit keeps the optimizer's state (True), or starts a new optimizer (False)."""
        return True

    def _move_to(self, be: Backend) -> None:
        """Move the fitted modules to ``be``; the optimizer is rebuilt there from its state."""
        if self.module_.backend is be:
            return
        if self.optimizer_ is not None:
            self._optimizer_state = self.optimizer_.state_dict()
            self.optimizer_ = None
        for name in self._portable:
            value = getattr(self, name, None)
            if isinstance(value, nn.Module):
                value.to(be)

    def _adopt_checkpoint(self, path: Any, be: Backend) -> None:
        """Take the fitted state of the estimator in a checkpoint (``minitrain.callbacks.Checkpoint``): the next
        training run continues that one (``_resuming``: the loop's position). Parameters stay this estimator's."""
        from ..io import load

        saved = load(path, backend=be)
        est = saved.get("estimator") if isinstance(saved, dict) else None
        if type(est) is not type(self) or "trainer" not in saved:
            held = type(est if est is not None else saved).__name__
            raise ValueError(f"{path} is not a checkpoint of a {type(self).__name__} (it holds a {held})")
        params = {*self._get_param_names(), "_kwargs"}
        self.__dict__.update({k: v for k, v in est.__dict__.items() if k not in params})
        for mine, theirs in zip(self._param_callbacks(self), self._param_callbacks(est), strict=False):
            if type(mine) is type(theirs):  # callbacks given as parameters continue from their saved state
                mine.__dict__.update(theirs.__dict__)
        self._resuming = saved["trainer"]

    @staticmethod
    def _param_callbacks(est: Any) -> list[Any]:
        return [cb[1] if isinstance(cb, tuple) else cb for cb in (getattr(est, "callbacks", None) or ())]

    def _prepare_optimizer(self, incremental: bool) -> None:
        keep = self._continues_optimizer(incremental) or "_resuming" in self.__dict__
        state = self.__dict__.pop("_optimizer_state", None)
        if self.optimizer_ is None or not keep:
            self.optimizer_ = self._make_optimizer()
            if state is not None and keep and self.optimizer_ is not None:
                self.optimizer_.load_state_dict(state)

    @property
    def _dtype(self) -> np.dtype:
        """The floating dtype the network computes in: its parameters' (else the input's, at the first fit)."""
        params = self.module_.parameters()
        return np.dtype(params[0].dtype) if params else self._input_dtype

    @property
    def _x_dtype(self) -> np.dtype:
        """The dtype of the network's input: int64 for token ids (``_tokens``), else its floating dtype."""
        return np.dtype(np.int64) if self.__dict__.get("_tokens") else self._dtype

    def _dataset(self, X: Any, y: Any, sample_weight: Any) -> ArrayDataset:
        """``X``, ``y`` and the weights on the network's backend, in its dtype."""
        return ArrayDataset(X, y, sample_weight, backend=self.module_.backend, dtype=self._dtype, x_dtype=self._x_dtype)

    def _augmentation(self) -> tuple[Any, Any]:
        """``(transform, generator)`` for the ``Trainer``: a fresh copy of ``augment`` (class-index targets of
        ``n_outputs_`` classes for ``Mixup``) and the generator it draws from, owned by the estimator (made at the
        first training run that augments; kept by continued fits); or (None, None).

        The generator's seed comes from ``random_state`` without drawing from ``_random_state`` (from a copy of it),
        so the split and the shuffles are those of the same fit without augmentation."""
        aug = as_transform(getattr(self, "augment", None), num_classes=self.n_outputs_)
        if aug is None:
            return None, None
        be = self.module_.backend
        source = self.__dict__.get("_augment_source")
        if source is None:
            seed = None
            if self.random_state is not None:
                peek = int(copy.deepcopy(self._random_state).randint(np.iinfo(np.int32).max))
                seed = int(np.random.SeedSequence([peek, 0x61756720]).generate_state(1, np.uint32)[0])
            source = self._augment_source = RandomSource(seed, backend=be)
        elif source.backend is not be:
            source.to(be)
        return aug, source.generator

    def _run_trainer(self, trainer: Any, train: ArrayDataset, valid: ArrayDataset | None, epochs: int) -> int:
        """Run ``epochs`` more epochs; returns how many completed. An epoch that failed or was interrupted leaves
        no record in ``history_``."""
        trainer.epoch = start = len(self.history_)
        resuming = self.__dict__.pop("_resuming", None)
        if resuming is not None:  # a checkpoint's run: the epochs it had left
            trainer.restore_loop_state(resuming)
            epochs = max(epochs - int(resuming["fit_epochs"]), 0)
        try:
            trainer.fit(train, valid, epochs=epochs)
        finally:
            records = self.history_.records
            if len(records) > start and "train_loss" not in records[-1]:
                records.pop()
        return len(self.history_) - start

    def _network_outputs(self, X: Any) -> np.ndarray:
        """The network's outputs for validated ``X``, as NumPy, shape (n_samples, n_outputs)."""
        return forward_numpy(self.module_, X, self._x_dtype).reshape(X.shape[0], -1)

    # ------------------------------------------------------------------ pickles
    def __getstate__(self) -> dict[str, Any]:
        """The fitted modules on NumPy (loadable without the backend they were fitted on), the optimizer as its
        ``state_dict`` (rebuilt when training resumes), no trainer."""
        state = dict(super().__getstate__())
        for name in self._portable:
            value = state.get(name)
            if isinstance(value, nn.Module) and value.backend.name != "numpy":
                state[name] = copy.deepcopy(value).to("numpy")
        opt = state.get("optimizer_")
        if opt is not None:
            state["optimizer_"] = None
            state["_optimizer_state"] = opt.state_dict()
        state.pop("_trainer", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Moves the modules back to ``backend_`` when it can run here; otherwise they stay on NumPy."""
        super().__setstate__(state)
        spec = self.__dict__.get("backend_")
        module = self.__dict__.get("module_")
        if not spec or module is None or spec == module.backend.spec:
            return
        info = {i.name: i for i in list_backends()}.get(spec.partition(":")[0])
        if info is None or not info.available:
            return
        try:
            be = get_backend(spec)
        except (ValueError, RuntimeError):  # e.g. a device this machine does not have
            return
        for name in self._portable:
            value = self.__dict__.get(name)
            if isinstance(value, nn.Module):
                value.to(be)
