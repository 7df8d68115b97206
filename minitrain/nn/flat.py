"""Parameters as views into one contiguous buffer per dtype; gradients into a second one."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from ..autograd import Tensor
from ..backend import get_backend

_REQUIRES_GRAD = Tensor.requires_grad  # the slot that Parameter's property wraps
_VERSIONS = itertools.count(1)


class Parameter(Tensor):
    """A leaf tensor that a module trains; its gradient accumulates in place.

    Once flattened (by an optimizer or ``Module.flat_parameters``), ``data`` and ``grad`` are views
    into the model's flat buffers. After ``zero_grad`` the gradient is known to be zero, so the first
    gradient of the next backward pass may be written straight into it (e.g. by a ``Linear`` GEMM).
    Setting ``requires_grad = False`` freezes it: backward passes and optimizers leave it alone.

    Parameters
    ----------
    data : array_like
        Initial values (Python floats become float32; arrays keep their dtype).
    backend : str or Backend, optional
        The current backend by default.
    dtype : dtype, optional
        Convert to this dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> w = mt.nn.Parameter(np.full((2, 2), 3.0, dtype=np.float32))
    >>> w.requires_grad, w.is_leaf
    (True, True)
    >>> (w * w).sum().backward()
    >>> w.grad.tolist()
    [[6.0, 6.0], [6.0, 6.0]]
    >>> layer = mt.nn.Module()
    >>> layer.w = w  # assigning a Parameter to a module registers it
    >>> [name for name, _ in layer.named_parameters()]
    ['w']
    """

    __slots__ = ("_flat", "_grad_zero")
    #: Bumped whenever any Parameter's ``requires_grad`` changes: optimizers recompute what they update.
    requires_grad_version = 0

    def __init__(self, data: Any, backend: Any = None, dtype: Any = None) -> None:
        super().__init__(data, requires_grad=True, backend=backend, dtype=dtype)
        self._flat: FlatBuffer | None = None
        self._grad_zero = False

    @property
    def requires_grad(self) -> bool:
        """Whether backward passes compute this parameter's gradient and optimizers update it."""
        return _REQUIRES_GRAD.__get__(self, Parameter)

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        flag = bool(flag)
        try:
            changed = _REQUIRES_GRAD.__get__(self, Parameter) is not flag
        except AttributeError:  # being built or unpickled: no optimizer knows it yet
            changed = False
        _REQUIRES_GRAD.__set__(self, flag)
        if changed:
            Parameter.requires_grad_version = next(_VERSIONS)  # a new value, also when threads race

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # copies (pickle, deepcopy) do not share memory with the flat buffer: they leave it
        slots = (s for cls in type(self).__mro__ for s in getattr(cls, "__slots__", ()) if s != "__weakref__")
        state = {s: getattr(self, s) for s in slots if hasattr(self, s)}
        state["_flat"] = None
        state["_grad_zero"] = False
        return None, state


class FlatBuffer:
    """One contiguous ``data`` array and one ``grad`` array holding the given parameters.

    A buffer over parameters that already form a contiguous run of another buffer is a view into
    it (no copy, nobody rebound); otherwise the parameters are copied in and rebound, which makes
    the buffers they belonged to stale (``is_current()`` False).

    Parameters
    ----------
    params : tuple of Parameter
        Of one dtype and backend.
    parent : FlatBuffer, optional
        The buffer these parameters are a contiguous run of, starting at element ``start``: this one is a view.
    start : int, default=0

    Examples
    --------
    Build them with :func:`flatten_parameters` (or ``Module.flat_parameters``):

    >>> import minitrain as mt
    >>> net = mt.nn.Linear(3, 2)
    >>> (fb,) = net.flat_parameters()
    >>> fb.size, len(fb.params), fb.is_current()
    (8, 2, True)
    >>> fb.data[...] = 0  # the parameters are views into the buffer
    >>> float(abs(net.weight.numpy()).sum()), net.weight.shape
    (0.0, (2, 3))
    """

    def __init__(self, params: tuple[Parameter, ...], parent: FlatBuffer | None = None, start: int = 0) -> None:
        self.params = params
        self.backend = params[0].backend
        self.dtype = params[0].dtype
        self.size = 0
        for p in params:
            self.size += p.size
        self.parent = parent
        if parent is not None:
            self.data = parent.data[start : start + self.size]
            self.grad = parent.grad[start : start + self.size]
            return
        be = self.backend
        self.data = be.alloc((self.size,), self.dtype, fill=None)
        self.grad = be.alloc((self.size,), self.dtype)
        offset = 0
        for p in params:
            n = p.size
            order = _memory_order(p.data)  # kept: a column-major weight stays column-major in the buffer
            self.data[offset : offset + n] = p.data.reshape(-1, order=order)
            if p.grad is not None:
                self.grad[offset : offset + n] = p.grad.reshape(-1, order=order)
            p.data = self.data[offset : offset + n].reshape(p.shape, order=order)
            p.grad = self.grad[offset : offset + n].reshape(p.shape, order=order)
            p._flat = self
            offset += n

    @property
    def root(self) -> FlatBuffer:
        """The buffer that owns the memory (self, unless this is a view)."""
        return self if self.parent is None else self.parent.root

    def is_current(self) -> bool:
        """True while every parameter of this buffer still lives in it (not re-flattened or moved)."""
        root = self.root
        return all(p._flat is root for p in self.params)

    def zero_grad(self) -> None:
        """Zero every gradient with one fill."""
        self.grad.fill(0)
        for p in self.params:
            p._grad_zero = True

    def runs(self, keys: Sequence[Any]) -> list[tuple[FlatBuffer, int, int]]:
        """``(view, start, first)`` per longest run of consecutive parameters with equal keys (key None: left out):
        a view of the run, its offset in this buffer and the index of its first parameter.

        ``keys`` has one entry per parameter, e.g. a step count for those that train and None for the frozen.
        """
        out: list[tuple[FlatBuffer, int, int]] = []
        first = offset = run_offset = 0
        for i in range(len(self.params) + 1):
            if i == len(self.params) or keys[i] != keys[first]:
                if keys[first] is not None:
                    view = FlatBuffer(self.params[first:i], parent=self, start=run_offset)
                    out.append((view, run_offset, first))
                first, run_offset = i, offset
            if i < len(self.params):
                offset += self.params[i].size
        return out

    def __repr__(self) -> str:
        return f"FlatBuffer({len(self.params)} parameters, {self.size} {self.dtype} values on {self.backend.name})"


def _memory_order(a: Any) -> str:
    """'F' for an array stored column-major (and not also row-major), else 'C'."""
    return "F" if a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def _as_view(group: tuple[Parameter, ...]) -> FlatBuffer | None:
    """A view when ``group`` is a contiguous run, in order, of one current buffer."""
    root = group[0]._flat
    if root is None or not root.is_current():
        return None
    params = root.params
    try:
        start_index = next(i for i, p in enumerate(params) if p is group[0])
    except StopIteration:
        return None
    if tuple(params[start_index : start_index + len(group)]) != group:
        return None
    if start_index == 0 and len(group) == len(params):
        return root
    start = 0
    for p in params[:start_index]:
        start += p.size
    return FlatBuffer(group, parent=root, start=start)


def flatten_parameters(params: Iterable[Parameter]) -> list[FlatBuffer]:
    """Put parameters into flat buffers, one per dtype, reusing buffers that already fit.

    Parameters
    ----------
    params : iterable of Parameter
        Duplicates are dropped; order is kept.

    Returns
    -------
    list of FlatBuffer

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain.nn import flatten_parameters
    >>> net = mt.nn.Sequential(mt.nn.Linear(3, 4), mt.nn.Linear(4, 1))
    >>> buffers = flatten_parameters(net.parameters())
    >>> [(fb.size, len(fb.params), str(fb.dtype)) for fb in buffers]
    [(21, 4, 'float32')]
    >>> flatten_parameters(net.parameters())[0] is buffers[0]  # already flat: reused
    True
    >>> half = mt.nn.Parameter(np.zeros(3, dtype=np.float16))
    >>> [str(fb.dtype) for fb in flatten_parameters([*net.parameters(), half])]  # one buffer per dtype
    ['float32', 'float16']
    """
    seen: dict[int, Parameter] = {}
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"expected Parameters, got {type(p).__name__}")
        seen.setdefault(id(p), p)
    if not seen:
        raise ValueError("got an empty list of parameters")
    unique = list(seen.values())
    backends = {p.backend.name + str(p.backend.device) for p in unique}
    if len(backends) > 1:
        raise ValueError(f"parameters live on several backends ({sorted(backends)}); move the model with .to()")
    by_dtype: dict[Any, list[Parameter]] = {}
    for p in unique:
        by_dtype.setdefault(p.dtype, []).append(p)
    buffers = []
    for group in by_dtype.values():
        tup = tuple(group)
        buffers.append(_as_view(tup) or FlatBuffer(tup))
    return buffers


def move_parameters(params: Iterable[Parameter], backend: Any) -> None:
    """Copy parameters (and their gradients) to another backend, rebinding them in place."""
    be = get_backend(backend)
    for p in params:
        src = p.backend
        if src is be:
            continue
        p._flat = None
        p.data = be.asarray(src.to_numpy(p.data))
        p.grad = None if p.grad is None else be.asarray(src.to_numpy(p.grad))
        p.backend = be
