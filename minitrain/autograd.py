"""Tensor and the tape: each differentiable op records one node with a backward closure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from .backend import Backend, get_backend

_grad_enabled: ContextVar[bool] = ContextVar("minitrain_grad_enabled", default=True)

BackwardFn = Callable[[Any], tuple[Any, ...]]


def is_grad_enabled() -> bool:
    """Whether ops record the tape in this context.

    Returns
    -------
    bool
        False inside :func:`no_grad` (unless an :func:`enable_grad` block is nested in it), else True.

    Examples
    --------
    >>> import minitrain as mt
    >>> mt.is_grad_enabled()
    True
    >>> with mt.no_grad():
    ...     mt.is_grad_enabled()
    False
    """
    return _grad_enabled.get()


@contextmanager
def no_grad() -> Iterator[None]:
    """Context manager under which ops record nothing (inference, optimizer updates).

    Examples
    --------
    >>> import minitrain as mt
    >>> x = mt.tensor([1.0, 2.0], requires_grad=True)
    >>> with mt.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """
    token = _grad_enabled.set(False)
    try:
        yield
    finally:
        _grad_enabled.reset(token)


@contextmanager
def enable_grad() -> Iterator[None]:
    """Context manager that turns recording back on inside a ``no_grad`` block.

    Examples
    --------
    >>> import minitrain as mt
    >>> x = mt.tensor([1.0, 2.0], requires_grad=True)
    >>> with mt.no_grad():
    ...     with mt.enable_grad():
    ...         y = x * 2
    ...     z = x * 2
    >>> y.requires_grad, z.requires_grad
    (True, False)
    """
    token = _grad_enabled.set(True)
    try:
        yield
    finally:
        _grad_enabled.reset(token)


def _default_dtype(data: Any) -> Any:
    """float32 for Python floats and lists of them; arrays keep their dtype."""
    if hasattr(data, "dtype"):
        return None
    return np.float32 if np.asarray(data).dtype.kind == "f" else None


class Tensor:
    """An array of a backend, with an optional gradient and the node that produced it.

    Parameters
    ----------
    data : array_like
        Values; Python floats and lists become float32, arrays keep their dtype.
    requires_grad : bool, default=False
        Whether ``backward`` should compute a gradient for this tensor.
    backend : str or Backend, optional
        Where the array lives; the current backend by default.
    dtype : dtype, optional
        Convert to this dtype.

    Examples
    --------
    >>> import minitrain as mt
    >>> x = mt.tensor([[1.0, 2.0]], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    array([[2., 4.]], dtype=float32)
    """

    __slots__ = ("__weakref__", "_backward", "_parents", "backend", "data", "grad", "requires_grad")
    __array_priority__ = 1000  # NumPy defers binary ops with a Tensor to the Tensor

    def __init__(self, data: Any, requires_grad: bool = False, backend: Any = None, dtype: Any = None) -> None:
        be = get_backend(backend)
        if isinstance(data, Tensor):
            data = data.data if data.backend is be else data.numpy()
        if dtype is None:
            dtype = _default_dtype(data)
        self.data = be.asarray(data, dtype=dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.backend: Backend = be
        self.requires_grad = bool(requires_grad)
        self.grad: Any = None
        self._parents: tuple[Tensor, ...] = ()
        self._backward: BackwardFn | None = None

    @classmethod
    def _make(
        cls, data: Any, backend: Backend, parents: tuple[Tensor, ...] = (), backward: BackwardFn | None = None
    ) -> Tensor:
        """Fast internal constructor: ``data`` is already a backend array; records a node if asked."""
        t = object.__new__(Tensor)
        t.data = data
        t.backend = backend
        t.grad = None
        if backward is not None and _grad_enabled.get() and any(p.requires_grad for p in parents):
            t.requires_grad = True
            t._parents = parents
            t._backward = backward
        else:
            t.requires_grad = False
            t._parents = ()
            t._backward = None
        return t

    # ---------------------------------------------------------------- array-like
    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the data."""
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return self.data.ndim

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(self.data.size)

    @property
    def dtype(self) -> Any:
        """Data type of the elements."""
        return self.data.dtype

    @property
    def is_leaf(self) -> bool:
        """True for tensors not produced by a recorded op."""
        return self._backward is None

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (copied from the device if needed)."""
        return self.backend.to_numpy(self.data)

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.numpy().reshape(()).item()

    def __float__(self) -> float:
        return float(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, cut from the graph."""
        return Tensor._make(self.data, self.backend)

    def requires_grad_(self, flag: bool = True) -> Tensor:
        """Set ``requires_grad`` in place on a leaf; returns self."""
        if not self.is_leaf:
            raise RuntimeError("requires_grad_ can only change leaf tensors; use detach() first")
        self.requires_grad = bool(flag)
        return self

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = f", dtype={self.dtype}"
        if self.requires_grad:
            extra += ", requires_grad=True"
        if self.backend.name != "numpy":
            extra += f", backend={self.backend.name!r}"
        return f"tensor({body}{extra})"

    # ---------------------------------------------------------------- autograd
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``grad`` that requires one.

        Parameters
        ----------
        grad : array_like, optional
            Upstream gradient, same shape as self; defaults to 1 for a one-element tensor.
        retain_graph : bool, default=False
            Keep the recorded nodes so ``backward`` can run again over the same graph.
        """
        backward(self, grad, retain_graph=retain_graph)


def _accumulate_leaf(t: Tensor, g: Any) -> None:
    if t.grad is None:
        t.grad = g.copy()
    else:
        t.grad += g
        if getattr(t, "_grad_zero", False):
            t._grad_zero = False  # a Parameter's gradient is no longer known to be zero


def _topological(root: Tensor) -> list[Tensor]:
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        for p in t._parents:
            if p.requires_grad and id(p) not in seen:
                stack.append((p, False))
    return order


def backward(root: Tensor, grad: Any = None, retain_graph: bool = False) -> None:
    """Run reverse-mode differentiation from ``root``; see ``Tensor.backward``.

    Parameters
    ----------
    root : Tensor
        The output to differentiate; it must require grad.
    grad : array_like, optional
        Upstream gradient of ``root``'s shape; defaults to 1 for a one-element tensor.
    retain_graph : bool, default=False
        Keep the recorded nodes so the graph can be differentiated again.

    Raises
    ------
    RuntimeError
        If ``root`` does not require grad, or its graph was released by an earlier call.
    ValueError
        If ``grad`` is missing for a tensor of several elements, or has the wrong shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain.autograd import backward
    >>> x = mt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> backward(x * x, grad=[1.0, 1.0, 0.5])  # a vector-Jacobian product
    >>> x.grad.tolist()
    [2.0, 4.0, 3.0]
    """
    if not root.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require grad (no recorded graph)")
    be = root.backend
    if grad is None:
        if root.size != 1:
            raise ValueError(f"backward() needs a grad argument for a non-scalar tensor of shape {root.shape}")
        grad = be.xp.ones(root.data.shape, dtype=root.dtype)
    else:
        grad = be.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=root.dtype)
        if tuple(grad.shape) != root.shape:
            raise ValueError(f"grad has shape {tuple(grad.shape)}, expected {root.shape}")
    grads: dict[int, Any] = {id(root): grad}
    for t in reversed(_topological(root)):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        fn = t._backward
        if fn is None:
            _accumulate_leaf(t, g)
            continue
        parents = t._parents
        for p, pg in zip(parents, fn(g)):
            if pg is None or not p.requires_grad:
                continue
            key = id(p)
            prev = grads.get(key)
            grads[key] = pg if prev is None else prev + pg
        if not retain_graph:
            t._backward = _released
            t._parents = ()
    del grads


def _released(grad: Any) -> tuple[Any, ...]:
    raise RuntimeError(
        "trying to backward through the graph a second time; pass retain_graph=True to the first backward()"
    )


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, backend: Any = None) -> Tensor:
    """Create a tensor on the current (or given) backend.

    Examples
    --------
    >>> import minitrain as mt
    >>> mt.tensor([1, 2, 3]).dtype
    dtype('int64')
    >>> mt.tensor([1.0, 2.0]).dtype
    dtype('float32')
    """
    return Tensor(data, requires_grad=requires_grad, backend=backend, dtype=dtype)
