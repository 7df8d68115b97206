"""Training data on a backend: batches gathered into reused buffers, validation splits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import train_test_split

from .backend import get_backend


class ArrayDataset:
    """Samples ``X`` with targets ``y`` and optional ``sample_weight``, held on a backend.

    Dense ``X`` is copied to the backend once; sparse ``X`` stays on the host and each batch is
    densified on its way to the backend. Batches gathered in a shuffled order reuse one buffer per
    batch length, so an epoch allocates nothing per batch on the host backends. Samples may have any
    shape (tabular rows, sequences ``(T, F)``, images ``(C, H, W)``): batches keep it.

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_samples, ...)
    y : array-like of shape (n_samples, ...) or None
    sample_weight : array-like of shape (n_samples,) or None
    backend : str or Backend, optional
    dtype : dtype, default float32
        Floating dtype of ``X`` and ``sample_weight`` (and of ``y`` when it is floating).
    x_dtype : dtype, optional
        Dtype of ``X`` when it is not ``dtype``: an integer dtype keeps token ids (for an ``Embedding``) integers.

    Examples
    --------
    >>> import numpy as np
    >>> ds = ArrayDataset(np.arange(10.0).reshape(5, 2), np.arange(5), backend="numpy")
    >>> [(xb.shape, yb.tolist()) for xb, yb, _, _ in ds.batches(2)]
    [((2, 2), [0, 1]), ((2, 2), [2, 3]), ((1, 2), [4])]
    >>> tokens = ArrayDataset(np.arange(12).reshape(4, 3), backend="numpy", x_dtype="int64")
    >>> tokens.take(np.array([2, 0]))[0].tolist()
    [[6, 7, 8], [0, 1, 2]]
    """

    def __init__(
        self, X: Any, y: Any = None, sample_weight: Any = None, backend: Any = None, dtype: Any = "float32",
        x_dtype: Any = None,
    ) -> None:  # fmt: skip
        self.backend = be = get_backend(backend)
        self.dtype = np.dtype(dtype)
        self.sparse = sp.issparse(X)
        xdt = self.dtype if x_dtype is None else np.dtype(x_dtype)
        self.X = X.astype(xdt).tocsr() if self.sparse else be.asarray(np.asarray(X, dtype=xdt))
        self.n_samples = X.shape[0]
        self.y = None
        if y is not None:
            y = np.asarray(y)
            self.y = be.asarray(y.astype(self.dtype) if y.dtype.kind in "fb" else y)
        self._host_weight = None if sample_weight is None else np.asarray(sample_weight, self.dtype)
        self.sample_weight = None if sample_weight is None else be.asarray(self._host_weight)
        self._buffers: dict[tuple[str, int], Any] = {}

    def __len__(self) -> int:
        return self.n_samples

    def _gather(self, key: str, a: Any, idx: Any) -> Any:
        """Gather rows ``idx`` of ``a`` into a buffer reused across batches of the same length."""
        n = idx.shape[0]
        buf = self._buffers.get((key, n))
        if buf is None or buf.dtype != a.dtype:
            buf = self._buffers[(key, n)] = self.backend.alloc((n, *a.shape[1:]), a.dtype, fill=None)
        xp = self.backend.xp
        if xp is np:  # indices come from a permutation: 'clip' skips NumPy's slow checked path into `out`
            return np.take(a, idx, axis=0, out=buf, mode="clip")
        return xp.take(a, idx, axis=0, out=buf)

    def take(self, rows: slice | Any) -> tuple[Any, Any, Any]:
        """``(X_batch, y_batch, sample_weight_batch)`` of the samples ``rows``.

        ``rows`` is a slice (the samples in place, as views) or an integer index array, host or backend
        (the samples gathered into buffers reused across batches of the same length: consume a batch before
        taking the next). Sparse ``X`` is densified on its way to the backend. Missing parts are None.
        """
        be = self.backend
        if isinstance(rows, slice):
            xb = be.asarray(self.X[rows].toarray()) if self.sparse else self.X[rows]
            yb = None if self.y is None else self.y[rows]
            wb = None if self.sample_weight is None else self.sample_weight[rows]
            return xb, yb, wb
        if self.sparse:
            xb = be.asarray(self.X[be.to_numpy(rows)].toarray())
        idx = be.asarray(rows)
        if not self.sparse:
            xb = self._gather("X", self.X, idx)
        yb = None if self.y is None else self._gather("y", self.y, idx)
        wb = None if self.sample_weight is None else self._gather("w", self.sample_weight, idx)
        return xb, yb, wb

    def weight_sum(self, rows: slice | Any) -> float:
        """The summed sample weight of the samples ``rows`` (their number when there are no weights): from a host
        copy of the weights for a slice or host indices, so a device backend reads nothing back."""
        if self.sample_weight is None:
            if isinstance(rows, slice):
                return float(len(range(*rows.indices(self.n_samples))))
            return float(rows.shape[0])
        if isinstance(rows, slice) or type(rows) is np.ndarray:
            return float(self._host_weight[rows].sum(dtype=self.dtype))
        return float(self.sample_weight[rows].sum())

    def batches(self, batch_size: int, order: np.ndarray | None = None) -> Iterator[tuple[Any, Any, Any, float]]:
        """Yield ``(X_batch, y_batch, sample_weight_batch, weight_sum)`` over the samples.

        ``order`` (host integer array) visits the samples in that order; None visits them in
        place as slices, without copies. ``weight_sum`` is the batch's summed sample weight (its
        length when there are no weights). Yielded buffers are reused: consume a batch before
        asking for the next.
        """
        n = self.n_samples
        dev_order = None if order is None else self.backend.asarray(np.asarray(order, dtype=np.intp))
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            rows = slice(start, stop) if dev_order is None else dev_order[start:stop]
            xb, yb, wb = self.take(rows)
            host_rows = slice(start, stop) if order is None else np.asarray(order[start:stop], dtype=np.intp)
            yield xb, yb, wb, float(stop - start) if wb is None else self.weight_sum(host_rows)


def fingerprint(X: Any, y: Any = None) -> str:
    """A short digest that recognises the same data passed again: shapes, dtypes, 512 evenly spaced samples of
    ``X`` (dense or sparse) and all of ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(12.0).reshape(6, 2)
    >>> fingerprint(X, np.arange(6)) == fingerprint(X.copy(), np.arange(6)), fingerprint(X) == fingerprint(X + 1)
    (True, False)
    """
    h = hashlib.blake2b(digest_size=16)
    if sp.issparse(X):
        X = X.tocsr()
        h.update(repr(("sparse", X.shape, X.nnz, str(X.dtype))).encode())
        parts = [X.indptr, X.indices, X.data]
    else:
        X = np.asarray(X)
        h.update(repr((X.shape, str(X.dtype))).encode())
        parts = [X]
    for part in parts:
        n = part.shape[0] if part.ndim else 0
        sample = part if n <= 512 else part[np.linspace(0, n - 1, 512).astype(np.intp)]
        h.update(np.ascontiguousarray(sample).tobytes())
    if y is not None:
        y = np.asarray(y)
        h.update(repr((y.shape, str(y.dtype))).encode())
        h.update((np.ascontiguousarray(y) if y.dtype != object else np.asarray(y, dtype=str)).tobytes())
    return h.hexdigest()


def train_valid_split(
    *arrays: Any, valid_size: float | int, random_state: Any = None, stratify: Any = None,
    param: str = "validation_fraction",
) -> list[Any]:  # fmt: skip
    """Split arrays (None entries pass through as None) into train and validation parts.

    A thin wrapper over :func:`sklearn.model_selection.train_test_split` with a clear error when
    the validation part would hold fewer than 2 samples; ``param`` names the caller's parameter in it.

    Examples
    --------
    >>> import numpy as np
    >>> Xt, Xv, yt, yv, wt, wv = train_valid_split(np.zeros((10, 2)), np.arange(10), None, valid_size=0.2)
    >>> Xt.shape, Xv.shape, wt
    ((8, 2), (2, 2), None)
    """
    present = [a for a in arrays if a is not None]
    n = present[0].shape[0]
    n_valid = int(np.ceil(valid_size * n)) if isinstance(valid_size, float) else int(valid_size)
    split = None
    if n_valid >= 1 and n - n_valid >= 1:  # scikit-learn's own errors first (e.g. a class with one member)
        split = train_test_split(*present, test_size=valid_size, random_state=random_state, stratify=stratify)
    if split is None or n_valid < 2:
        raise ValueError(
            f"The validation set is too small: {n} samples with {param}={valid_size} give {n_valid} "
            f"validation samples (at least 2 are needed). Increase '{param}' or the size of your dataset."
        )
    parts = iter(split)
    out: list[Any] = []
    for a in arrays:
        out.extend((None, None) if a is None else (next(parts), next(parts)))
    return out
