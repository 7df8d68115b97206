"""Scale out on Dask (``pip install "minitrain[dask]"``; see ``docs/dask.md``). A search over a cluster needs no
helper: run scikit-learn's search inside ``joblib.parallel_config(backend="dask")``; workers resolve "auto" backends.

* :func:`fit_incremental`: ``partial_fit`` over a ``dask.array``, a ``dask.dataframe`` or a stream of ``(X, y)``
  chunks, one block in memory at a time, with validation on held-out blocks and early stopping.
* :class:`ThreadLimits` (a worker plugin) / :func:`limit_threads`: BLAS and Numba threads per worker process.

``import minitrain`` does not import this module, and this module imports dask only when given a dask collection.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from numbers import Integral, Real
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.metrics import check_scoring
from sklearn.utils import check_random_state

from .callbacks import History

__all__ = ["ThreadLimits", "fit_incremental", "limit_threads"]  # noqa: F822 (ThreadLimits: module __getattr__)

Chunk = tuple[Any, Any, Any]  # (X, y, sample_weight or None)


# ----------------------------------------------------------------------------------------------- thread limits
def _whole(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def limit_threads(threads: int = 1) -> dict[str, int]:
    """Limit this process's BLAS and Numba thread pools to ``threads`` threads each; returns the counts in effect.

    ``threads``: a machine's cores divided by (worker processes on it x threads per worker). BLAS (OpenBLAS, MKL,
    BLIS) through threadpoolctl, process-wide. Numba through ``NUMBA_NUM_THREADS``, which applies before Numba starts
    its threads (``numba.set_num_threads`` applies to the calling thread only, not to a worker's task threads);
    once they run, Numba keeps its count and a ``RuntimeWarning`` says how to start the workers instead.

    Examples
    --------
    >>> limit_threads(1)  # doctest: +SKIP
    {'blas': 1, 'numba': 1}
    """
    threads = _whole("threads", threads, 1)
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    blas = min((int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"), default=0)
    numba = sys.modules.get("numba")
    if numba is None or not getattr(sys.modules.get("numba.np.ufunc.parallel"), "_is_initialized", False):
        os.environ["NUMBA_NUM_THREADS"] = str(threads)  # read when Numba starts its threads
        if numba is not None:
            numba.config.reload_config()
        return {"blas": blas, "numba": threads}
    if numba.config.NUMBA_NUM_THREADS > threads:
        message = f"Numba's {numba.config.NUMBA_NUM_THREADS} threads already run in this process and keep running"
        hint = f"start the worker with NUMBA_NUM_THREADS={threads} (distributed.diagnostics.plugin.Environ)"
        warnings.warn(f"{message}; {hint} or register ThreadLimits before its first task", RuntimeWarning, stacklevel=2)
    return {"blas": blas, "numba": int(numba.config.NUMBA_NUM_THREADS)}


def _make_thread_limits() -> type:
    from distributed import WorkerPlugin

    class ThreadLimits(WorkerPlugin):
        """A ``distributed`` worker plugin: :func:`limit_threads` (``threads``, default 1) on every worker, present
        and future (``worker.minitrain_threads``: the counts). ``client.register_plugin(ThreadLimits(1))``."""

        name = "minitrain-thread-limits"

        def __init__(self, threads: int = 1) -> None:
            self.threads = _whole("threads", threads, 1)

        def setup(self, worker: Any) -> None:
            worker.minitrain_threads = limit_threads(self.threads)

    ThreadLimits.__module__, ThreadLimits.__qualname__ = __name__, "ThreadLimits"  # pickled by reference
    return ThreadLimits


def __getattr__(name: str) -> Any:
    """``ThreadLimits`` is built on first use: its base class comes from ``distributed``."""
    if name == "ThreadLimits":
        cls = globals()["ThreadLimits"] = _make_thread_limits()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------- block sources
def _is_dask(obj: Any) -> bool:
    """Whether ``obj`` is a dask collection (without importing dask: nothing is one unless dask is imported)."""
    dask = sys.modules.get("dask")
    return dask is not None and bool(dask.is_dask_collection(obj))


def _compute(*parts: Any) -> list[Any]:
    """``parts`` with the dask collections among them computed together (a read they share runs once)."""
    lazy = [i for i, p in enumerate(parts) if _is_dask(p)]
    out = list(parts)
    for i, value in zip(lazy, sys.modules["dask"].compute(*(parts[i] for i in lazy)) if lazy else (), strict=True):
        out[i] = value
    return out


def _rows(a: Any) -> float:
    shape = getattr(a, "shape", None)
    return float(shape[0]) if shape is not None and len(shape) else float(len(a))


class _Blocks:
    """Blocks of ``(X, y, sample_weight)``. An indexed source (``n`` blocks) computes block ``i`` on ``load(i)``; a
    stream's ``stream()`` yields a loader per chunk, in its own order. ``labels``: the (lazy) targets, if known."""

    def __init__(self, n: int | None, load: Callable[[int], Chunk] | None = None, stream: Any = None) -> None:
        self.n, self.load, self.labels, self.stream = n, load, None, stream

    @property
    def indexed(self) -> bool:
        return self.load is not None


def _as_chunk(item: Any, what: str, column: str | None = None) -> Chunk:
    """One chunk as ``(X, y, sample_weight)``: a tuple, or a DataFrame holding the target ``column``; a dask
    object (a Delayed, a partition) is computed first."""
    if _is_dask(item):
        (item,) = _compute(item)
    if hasattr(item, "columns") and not isinstance(item, (tuple, list)):
        if column is None:
            raise TypeError(f"{what} is a DataFrame: pass y=<name of its target column>")
        return item.drop(columns=[column]), item[column], None
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise TypeError(f"{what} must be an (X, y) or (X, y, sample_weight) tuple, not {type(item).__name__}")
    X, y, w = _compute(*item, *([None] if len(item) == 2 else []))
    if getattr(X, "ndim", 0) < 1 or not hasattr(y, "__len__") or _rows(X) != _rows(y):
        got = getattr(X, "shape", type(X).__name__)
        raise ValueError(f"{what}: X and y must be arrays with as many rows; got X of shape {got} and y {y!r:.60}")
    return X, y, w


def _dask_array_blocks(X: Any, y: Any, w: Any) -> _Blocks:
    if y is None:
        raise ValueError("y is required with a dask array X: the targets, as a dask or NumPy array")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has unknown chunk sizes: call X.compute_chunk_sizes(), or pass the dask DataFrame itself")
    X = X.rechunk({i: -1 for i in range(1, X.ndim)})  # a block holds whole rows
    bounds = np.cumsum((0, *X.chunks[0]))

    def blocks_of(a: Any, what: str) -> Callable[[int], Any]:
        if a is not None and a.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but {what} has {a.shape[0]} (compute_chunk_sizes if NaN)")
        if a is None or not _is_dask(a):
            a = None if a is None else np.asarray(a)
            return lambda i: None if a is None else a[bounds[i] : bounds[i + 1]]
        a = a.rechunk({0: X.chunks[0]})
        return lambda i: a.blocks[i]

    y_of, w_of = blocks_of(y, "y"), blocks_of(w, "sample_weight")
    blocks = _Blocks(X.numblocks[0], load=lambda i: tuple(_compute(X.blocks[i], y_of(i), w_of(i))))
    blocks.labels = y
    return blocks


def _dask_frame_blocks(X: Any, y: Any, w: Any) -> _Blocks:
    if isinstance(y, str):  # one computation per partition, split here
        blocks = _Blocks(X.npartitions, load=lambda i: _as_chunk(X.partitions[i], f"partition {i}", y))
        blocks.labels = X[y]
        return blocks
    if y is None:
        raise ValueError("y is required with a dask DataFrame X: a dask Series, or the name of the target column")
    for a, what in ((y, "y"), (w, "sample_weight")):
        if a is not None and (not _is_dask(a) or getattr(a, "npartitions", None) != X.npartitions):
            raise ValueError(f"{what} must be a dask Series with X's {X.npartitions} partitions (e.g. a column of it)")
    parts = lambda i: [None if a is None else a.partitions[i] for a in (X, y, w)]  # noqa: E731
    blocks = _Blocks(X.npartitions, load=lambda i: tuple(_compute(*parts(i))))
    blocks.labels = y
    return blocks


def _source(X: Any, y: Any, w: Any, epochs: int) -> _Blocks:
    if _is_dask(X) and hasattr(X, "blocks") and hasattr(X, "chunks"):
        return _dask_array_blocks(X, y, w)
    if _is_dask(X) and hasattr(X, "npartitions") and hasattr(X, "columns"):
        return _dask_frame_blocks(X, y, w)
    if _is_dask(X) or isinstance(X, (np.ndarray, str, bytes, dict)) or sp.issparse(X) or hasattr(X, "columns"):
        in_memory = isinstance(X, np.ndarray) or sp.issparse(X) or hasattr(X, "columns")
        hint = ": it is in memory, so estimator.fit(X, y) trains on it; to train block by block, wrap it (or an h5py,"
        hint = hint + " zarr or memmap array) as dask.array.from_array(X, chunks=(10_000, -1))" if in_memory else ""
        raise TypeError(
            "fit_incremental takes a dask array, a dask DataFrame, or an iterable (or a callable returning one) of "
            f"(X, y) chunks; got {type(X).__name__}{hint}"
        )
    if (y is not None and not isinstance(y, str)) or w is not None:
        raise ValueError("with an iterable of chunks, y and sample_weight come inside the chunks: (X, y[, w]) tuples")
    if not callable(X) and not isinstance(X, Iterable):
        raise TypeError(f"X must be a dask collection or an iterable of (X, y) chunks, got {type(X).__name__}")
    if not callable(X) and iter(X) is X and epochs > 1:
        raise TypeError(
            f"X is an iterator, which the first epoch uses up; for epochs={epochs} pass a list, or a callable that "
            "returns a new iterator each epoch (e.g. lambda: read_chunks(path))"
        )
    if not callable(X) and hasattr(X, "__len__") and hasattr(X, "__getitem__"):
        items = list(X)
        return _Blocks(len(items), load=lambda i: _as_chunk(items[i], f"chunk {i}", y))

    def stream() -> Iterator[Callable[[], Chunk]]:
        items = X() if callable(X) else X
        if not isinstance(items, Iterable):
            raise TypeError(f"the callable X must return an iterable of (X, y) chunks, got {type(items).__name__}")
        for k, item in enumerate(items):
            yield lambda item=item, k=k: _as_chunk(item, f"chunk {k}", y)

    return _Blocks(None, stream=stream)


# ----------------------------------------------------------------------------------------------- training
def _held_out(validation: Any, early_stopping: bool, source: _Blocks) -> int | Chunk:
    """How many blocks to hold out (0: none), or the given validation data as ``(X_val, y_val, w_val)``."""
    if isinstance(validation, (tuple, list)):
        return _as_chunk(tuple(validation), "validation")  # (X_val, y_val) or (X_val, y_val, sample_weight_val)
    number = isinstance(validation, Real) and not isinstance(validation, bool)
    if isinstance(validation, str) and validation == "auto":
        k = int(early_stopping)
    elif validation is None:
        k = 0
    elif number and isinstance(validation, Integral) and validation >= 1:
        k = int(validation)
    elif number and 0 < validation < 1 and source.indexed:
        k = max(1, int(np.ceil(validation * source.n)))
    else:
        raise ValueError(
            "validation must be 'auto', None, a number of blocks (int >= 1), a fraction of them (0 < float < 1; not "
            f"for a stream, whose length is unknown) or (X_val, y_val); got {validation!r}"
        )
    if early_stopping and k == 0:
        raise ValueError("early_stopping=True needs validation: validation=1 (a held-out block) or (X_val, y_val)")
    if source.indexed and k >= source.n:
        raise ValueError(f"validation holds out {k} of the {source.n} blocks; at least one must remain to train on")
    return k


def _classes(source: _Blocks) -> np.ndarray:
    labels = source.labels
    if labels is None or getattr(labels, "ndim", 1) != 1:
        raise ValueError(
            "pass classes= (every label, which partial_fit needs on its first call): fit_incremental reads one chunk "
            "at a time and cannot see every label of this input ahead"
        )
    if not _is_dask(labels):
        return np.unique(labels)
    if hasattr(labels, "unique"):  # a dask Series
        return np.unique(np.asarray(labels.unique().compute()))
    return np.unique(sys.modules["dask.array"].unique(labels).compute())


def _merge(chunks: list[Chunk]) -> Chunk:
    """Chunks concatenated into one ``(X, y, sample_weight)``."""

    def concat(parts: tuple[Any, ...]) -> Any:
        if any(p is None for p in parts):
            return None
        if any(sp.issparse(p) for p in parts):
            return sp.vstack(parts).tocsr()
        return sys.modules["pandas"].concat(parts) if all(hasattr(p, "iloc") for p in parts) else np.concatenate(parts)

    X, y, w = (concat(parts) for parts in zip(*chunks, strict=True))
    return X, y, w


def _chunk_loss(est: Any) -> float | None:
    """The training loss of the last ``partial_fit`` (``loss_``, else the last ``history_`` record's)."""
    loss = getattr(est, "loss_", None)
    if loss is None:
        records = getattr(getattr(est, "history_", None), "records", None)
        loss = records[-1].get("train_loss") if records else None
    return None if loss is None else float(loss)


@contextlib.contextmanager
def _whole_blocks(est: Any) -> Iterator[None]:
    """Switch off an estimator's own per-call split (the NeuralNets' ``train_split``) during the run."""
    split = est.get_params(deep=False).get("train_split")
    est.set_params(**({} if split is None else {"train_split": None}))
    try:
        yield
    finally:
        est.set_params(**({} if split is None else {"train_split": split}))


def fit_incremental(
    estimator: Any, X: Any, y: Any = None, *, epochs: int = 1, classes: Any = None, sample_weight: Any = None,
    shuffle_blocks: bool = True, validation: Any = "auto", scoring: Any = None, early_stopping: bool = False,
    n_iter_no_change: int = 5, tol: float = 1e-4, restore_best: bool = True, random_state: Any = None, verbose: int = 0,
) -> Any:  # fmt: skip
    """Train ``estimator`` with ``partial_fit`` on data larger than memory, one block in memory at a time.

    Each epoch calls ``partial_fit`` once per training block, then scores the validation data. Dask computes a
    block when it is needed (on the cluster if a ``distributed.Client`` is active, then shipped here): only that
    block and the validation data are ever in memory. Every row of a training block is trained on: the NeuralNets'
    own per-call split (``train_split``) is switched off during the run. As with ``partial_fit``, a fitted
    estimator continues; pass ``sklearn.base.clone(estimator)`` to start anew.

    Parameters
    ----------
    estimator : estimator with ``partial_fit``
        A minitrain estimator (the MLPs with solver 'adam' or 'sgd') or any scikit-learn one; trained in place.
    X : dask array of shape (n_samples, ...), dask DataFrame, or iterable of chunks
        A ``dask.array`` (blocks of rows), a ``dask.dataframe`` (partitions), or an iterable of ``(X, y)`` /
        ``(X, y, sample_weight)`` chunks (arrays, DataFrames with ``y`` naming the target column, or dask objects,
        computed when reached), or a callable returning such an iterable, called each epoch (a generator function
        reading files). Blocks of dask inputs and lists are shuffled; a stream is read in its order.
    y : dask array, array of shape (n_samples,), dask Series, str or None
        Targets of a dask ``X`` (rechunked to ``X``'s rows if needed), or the name of the target column of
        DataFrames; None when the chunks carry their targets.
    epochs : int, default=1
        Passes over the training blocks.
    classes : array-like, optional
        Every label, for a classifier's first ``partial_fit``. If omitted, computed from a dask ``y`` (a pass over
        the targets only); a stream needs it.
    sample_weight : dask array or dask Series of shape (n_samples,), optional
        Weights of a dask ``X``'s rows, passed to ``partial_fit`` with each block.
    shuffle_blocks : bool, default=True
        Visit the training blocks in a new random order each epoch.
    validation : 'auto', None, int, float or tuple, default='auto'
        Scored after each epoch: ``int`` blocks held out (never trained on; drawn at random, or a stream's first
        chunks, which it must yield in the same order each pass), a ``float`` fraction of the blocks, given
        ``(X_val, y_val)``, or None. 'auto': one block with ``early_stopping``, else none. It stays in memory.
    scoring : str or callable, optional
        The validation score (higher is better), as scikit-learn's ``scoring``; default ``estimator.score``.
    early_stopping : bool, default=False
        Stop once the score has not improved by ``tol`` for ``n_iter_no_change`` epochs (scikit-learn's rule).
    n_iter_no_change : int, default=5; tol : float, default=1e-4
    restore_best : bool, default=True
        With ``early_stopping``, end with the fitted state (weights, optimizer) of the best epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds which blocks are held out and the block order (the estimator's ``random_state`` seeds the rest).
    verbose : int, default=0
        1 prints a line per epoch (``*``: best so far), 2 also one per block.

    Returns
    -------
    estimator
        Trained; ``estimator.incremental_history_`` is a :class:`~minitrain.callbacks.History` with a record per
        epoch: ``epoch``, ``blocks``, ``samples``, ``duration`` (s), ``train_loss`` (mean over the blocks, if the
        estimator reports one), with validation ``valid_score`` and ``valid_score_best``.

    Raises
    ------
    TypeError
        In-memory arrays (use ``fit``), an iterator with ``epochs > 1``, an estimator without ``partial_fit``.
    ValueError
        Mismatched lengths, bad parameters, a classifier whose ``classes`` cannot be inferred.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from minitrain import MLPClassifier
    >>> from minitrain.dask import fit_incremental
    >>> X = da.random.default_rng(0).normal(size=(8000, 8), chunks=(1000, 8)).astype(np.float32)
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    >>> clf = fit_incremental(clf, X, y, epochs=4, validation=1, random_state=0)
    >>> len(clf.incremental_history_), clf.incremental_history_[-1, "valid_score"] > 0.95
    (4, True)

    Chunks from a generator function (one call per epoch; files, a database...), stopping early on the first chunk:

    >>> def chunks():
    ...     for seed in range(6):
    ...         Xc = np.random.default_rng(seed).normal(size=(1000, 8)).astype(np.float32)
    ...         yield Xc, (Xc[:, 0] > 0).astype(np.int64)
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    >>> clf = fit_incremental(clf, chunks, epochs=30, classes=[0, 1], early_stopping=True, n_iter_no_change=2)
    >>> clf.incremental_history_[-1, "epoch"] < 30, clf.score(*next(chunks())) > 0.95
    (True, True)
    """
    epochs, verbose = _whole("epochs", epochs, 1), _whole("verbose", int(verbose), 0)
    n_iter_no_change = _whole("n_iter_no_change", n_iter_no_change, 1)
    if not isinstance(tol, Real) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if not hasattr(estimator, "partial_fit") or not hasattr(estimator, "get_params"):
        hint = " (the MLPs have it with solver='adam' or 'sgd')" if hasattr(estimator, "solver") else ""
        raise TypeError(f"fit_incremental trains with partial_fit, which {type(estimator).__name__} lacks{hint}")
    if estimator.get_params(deep=False).get("early_stopping") is True:
        raise ValueError(
            f"{type(estimator).__name__}(early_stopping=True) cannot train with partial_fit; set it to False and pass "
            "early_stopping=True to fit_incremental, which stops on held-out blocks"
        )
    if classes is not None and not is_classifier(estimator):
        raise ValueError(f"classes is for classifiers; {type(estimator).__name__} is not one")
    source = _source(X, y, sample_weight, epochs)
    run = _Run(estimator, source, _held_out(validation, bool(early_stopping), source), random_state, verbose)
    run.shuffle = bool(shuffle_blocks)
    if is_classifier(estimator) and not hasattr(estimator, "classes_"):
        run.classes = _classes(source) if classes is None else classes
    run.scorer = check_scoring(estimator, scoring=scoring) if run.validating else None
    best, best_state, stale = -np.inf, None, 0
    history = estimator.incremental_history_ = History()
    skip = {*estimator.get_params(deep=False), "incremental_history_"}  # what a snapshot of the fitted state leaves
    with _whole_blocks(estimator):
        for epoch in range(1, epochs + 1):
            record = run.epoch(epoch)
            if run.scorer is not None:
                score = record["valid_score"]
                stale = stale + 1 if not score >= best + tol else 0  # scikit-learn's rule; NaN: no improvement
                record["valid_score_best"] = improved = bool(score > best)
                if improved and early_stopping and restore_best:
                    best_state = copy.deepcopy({k: v for k, v in vars(estimator).items() if k not in skip})
                best = score if improved else best
            history.new_epoch(**record)
            if verbose:
                shown = "".join(f", {k} {record[k]:.4g}" for k in ("train_loss", "valid_score") if k in record)
                star = " *" if record.get("valid_score_best") else ""
                print(f"epoch {epoch}/{epochs}: {record['samples']} samples{shown}{star}, {record['duration']:.1f} s")
            if early_stopping and stale >= n_iter_no_change:
                break
    if best_state is not None and not history[-1]["valid_score_best"]:
        vars(estimator).update(best_state)
    return estimator


class _Run:
    """One ``fit_incremental`` run: the validation data, the block order, and an epoch of ``partial_fit`` calls."""

    def __init__(self, est: Any, source: _Blocks, held: int | Chunk, random_state: Any, verbose: int) -> None:
        self.est, self.source, self.verbose, self.shuffle = est, source, verbose, True
        self.rng = check_random_state(random_state)
        self.classes: Any = None  # every label, for the first partial_fit
        self.scorer: Any = None
        self.valid: Chunk | None = held if isinstance(held, tuple) else None
        self.k = 0 if isinstance(held, tuple) else held  # blocks (a stream's first chunks) held out
        self.held_blocks: list[int] = []
        if self.k and source.indexed:
            self.held_blocks = sorted(int(i) for i in self.rng.choice(source.n, size=self.k, replace=False))
            self.valid = _merge([source.load(i) for i in self.held_blocks])

    @property
    def validating(self) -> bool:
        return self.valid is not None or self.k > 0

    def _plan(self) -> Iterator[tuple[bool, Callable[[], Chunk]]]:
        """``(held out, loader)`` of each block of an epoch, in the order of the visit."""
        if not self.source.indexed:
            return ((pos < self.k, load) for pos, load in enumerate(self.source.stream()))
        order = [i for i in range(self.source.n) if i not in self.held_blocks]
        if self.shuffle:
            self.rng.shuffle(order)
        return ((False, lambda i=i: self.source.load(i)) for i in order)

    def epoch(self, epoch: int) -> dict[str, Any]:
        start, n_blocks, n_samples, losses, collected = time.perf_counter(), 0, 0, [], []
        for held_out, load in self._plan():
            if held_out:
                if epoch == 1:  # a stream's first chunks: the validation data, kept from the first pass
                    collected.append(load())
                continue
            Xb, yb, wb = load()
            rows = int(_rows(Xb))
            if rows == 0:
                continue
            kwargs: dict[str, Any] = {} if wb is None else {"sample_weight": wb}
            if self.classes is not None:
                kwargs["classes"] = self.classes
            self.est.partial_fit(Xb, yb, **kwargs)
            self.classes = None  # the first call only
            n_blocks, n_samples, loss = n_blocks + 1, n_samples + rows, _chunk_loss(self.est)
            if loss is not None:
                losses.append((loss, rows))
            if self.verbose >= 2:
                print(f"  block {n_blocks}: {rows} samples, loss {loss}")
        if collected:
            self.valid = _merge(collected)
        if n_blocks == 0:
            raise ValueError(f"epoch {epoch} found no training data: every block was empty or held out")
        record: dict[str, Any] = {"epoch": epoch, "blocks": n_blocks, "samples": n_samples}
        if losses:
            record["train_loss"] = float(sum(v * r for v, r in losses) / sum(r for _, r in losses))
        if self.scorer is not None:
            if self.valid is None:
                raise ValueError(f"the stream gave no more than the {self.k} chunk(s) held out for validation")
            Xv, yv, wv = self.valid
            kw = {} if wv is None else {"sample_weight": wv}
            record["valid_score"] = float(self.scorer(self.est, Xv, yv, **kw))
        record["duration"] = time.perf_counter() - start
        return record
