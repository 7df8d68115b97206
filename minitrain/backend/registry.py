"""Backend discovery over the ``minitrain.backends`` entry-point group, lazy and tolerant."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from .base import Backend
from .context import current, reset, set_current

ENTRY_POINT_GROUP = "minitrain.backends"
#: Preference of ``"auto"``: the first usable of these wins.
AUTO_ORDER = ("cupy", "numba", "numpy")
_BUILTIN = {"numpy": "minitrain.backend.numpy:NumpyBackend"}

_lock = threading.RLock()
_targets: dict[str, Any] | None = None  # name -> "module:attr" string or Backend subclass
_classes: dict[str, type[Backend] | None] = {}
_reasons: dict[str, str] = {}
_instances: dict[tuple[str, int | None], Backend] = {}


@dataclass(frozen=True)
class BackendInfo:
    """One registered backend: its name, whether it can run here, and why not.

    :func:`list_backends` returns them.

    Parameters
    ----------
    name : str
        What ``get_backend`` takes.
    available : bool
        Whether the backend can run here.
    reason : str
        Why not ('' when available).

    Examples
    --------
    >>> import minitrain as mt
    >>> info = next(i for i in mt.list_backends() if i.name == "numpy")
    >>> info.available, str(info)
    (True, 'numpy: available')
    >>> str(mt.backend.BackendInfo("gpu", False, "no CUDA device"))
    'gpu: unavailable (no CUDA device)'
    """

    name: str
    available: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {'available' if self.available else 'unavailable (' + self.reason + ')'}"


def _discover() -> dict[str, Any]:
    global _targets
    with _lock:
        if _targets is None:
            found: dict[str, Any] = dict(_BUILTIN)
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                found.setdefault(ep.name, ep.value)
            _targets = found
        return _targets


def register_backend(name: str, target: Any) -> None:
    """Register a backend by class or ``"module:Class"`` string, without an entry point.

    Parameters
    ----------
    name : str
        Name users pass to ``get_backend``; must not contain ':'.
    target : type or str
        A ``Backend`` subclass, or where to import it from.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain.backend import NumpyBackend, unregister_backend
    >>> class MyBackend(NumpyBackend):
    ...     name = "mine"
    >>> mt.register_backend("mine", MyBackend)
    >>> mt.nn.Linear(3, 2, backend="mine").backend.name
    'mine'
    >>> unregister_backend("mine")
    """
    if ":" in name:
        raise ValueError(f"backend name {name!r} must not contain ':'")
    with _lock:
        _discover()[name] = target
        _classes.pop(name, None)
        _reasons.pop(name, None)
        for key in [k for k in _instances if k[0] == name]:
            del _instances[key]


def unregister_backend(name: str) -> None:
    """Forget a backend registered with ``register_backend`` (or found as an entry point).

    Parameters
    ----------
    name : str
        Unknown names are ignored.

    Examples
    --------
    >>> from minitrain.backend import get_backend, register_backend, unregister_backend
    >>> register_backend("reference", "minitrain.backend.numpy:NumpyBackend")  # imported on first use
    >>> type(get_backend("reference")).__name__
    'NumpyBackend'
    >>> unregister_backend("reference")
    >>> get_backend("reference")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: unknown backend 'reference'; registered backends: ...
    """
    with _lock:
        _discover().pop(name, None)
        _classes.pop(name, None)
        _reasons.pop(name, None)
        for key in [k for k in _instances if k[0] == name]:
            del _instances[key]


def _load(name: str) -> type[Backend] | None:
    """Import a backend's class once; on failure remember why and return None."""
    with _lock:
        if name in _classes:
            return _classes[name]
        target = _discover()[name]
        cls: type[Backend] | None = None
        try:
            if isinstance(target, str):
                module, _, attr = target.partition(":")
                cls = getattr(importlib.import_module(module), attr)
            else:
                cls = target
            if not (isinstance(cls, type) and issubclass(cls, Backend)):
                raise TypeError(f"{target!r} is not a minitrain Backend subclass")
            ok, reason = cls.is_available()
            if not ok:
                _reasons[name] = reason or "is_available() returned False"
                cls = None
        except Exception as exc:  # a broken plugin is reported, never fatal
            _reasons[name] = f"failed to load {target!r}: {type(exc).__name__}: {exc}"
            cls = None
        _classes[name] = cls
        return cls


def list_backends() -> list[BackendInfo]:
    """Every registered backend, with whether it is available here and why not.

    Examples
    --------
    >>> import minitrain
    >>> any(b.name == "numpy" and b.available for b in minitrain.list_backends())
    True
    """
    infos = []
    for name in sorted(_discover(), key=lambda n: (n != "numpy", n)):
        cls = _load(name)
        infos.append(BackendInfo(name, cls is not None, "" if cls is not None else _reasons[name]))
    return infos


def _status_lines() -> str:
    return "; ".join(str(info) for info in list_backends())


def _auto_name() -> str:
    for name in AUTO_ORDER:
        if name in _discover() and _load(name) is not None:
            return name
    return "numpy"


def _parse(spec: str) -> tuple[str, int | None]:
    name, sep, dev = spec.strip().partition(":")
    if not sep:
        return name, None
    try:
        return name, int(dev)
    except ValueError:
        raise ValueError(f"bad backend spec {spec!r}: the part after ':' must be a device index") from None


def get_backend(name: str | Backend | None = None) -> Backend:
    """Return a backend instance.

    Parameters
    ----------
    name : str, Backend or None
        ``None`` gives the current backend (``use_backend``/``set_backend``, else the
        ``MINITRAIN_BACKEND`` environment variable, else ``"auto"``). ``"auto"`` picks cupy when a
        GPU is usable, else numba when installed, else numpy. ``"cupy:1"`` names a device.

    Raises
    ------
    ValueError
        If the name is unknown or the backend cannot run here; the message lists every backend
        and its status.

    Examples
    --------
    >>> import minitrain as mt
    >>> be = mt.get_backend("numpy")
    >>> be.name, be.device, be is mt.get_backend("numpy")  # one instance per name and device
    ('numpy', 'cpu', True)
    >>> with mt.use_backend("numpy"):
    ...     mt.get_backend().name
    'numpy'
    """
    if isinstance(name, Backend):
        return name
    if name is None:
        cur = current()
        if cur is not None:
            return cur
        from_env = os.environ.get("MINITRAIN_BACKEND", "").strip()
        if from_env:
            try:
                return get_backend(from_env)
            except ValueError as exc:
                raise ValueError(f"the environment variable MINITRAIN_BACKEND={from_env!r}: {exc}") from None
        name = "auto"
    if not isinstance(name, str):
        raise TypeError(f"backend must be a name (str) or a Backend, got {type(name).__name__}")
    base, device = _parse(name)
    if base == "auto":
        base = _auto_name()
    key = (base, 0 if device is None else device)
    with _lock:
        inst = _instances.get(key)
        if inst is not None:
            return inst
        if base not in _discover():
            raise ValueError(f"unknown backend {base!r}; registered backends: {_status_lines()}")
        cls = _load(base)
        if cls is None:
            raise ValueError(
                f"backend {base!r} is not available: {_reasons[base]}; registered backends: {_status_lines()}"
            )
        inst = cls(device=device)
        _instances[key] = inst
        return inst


def set_backend(name: str | Backend) -> Backend:
    """Make ``name`` the current backend of this context (thread or task); returns it.

    Parameters
    ----------
    name : str or Backend
        As for :func:`get_backend`.

    Returns
    -------
    Backend

    Examples
    --------
    >>> import contextvars
    >>> import minitrain as mt
    >>> ctx = contextvars.copy_context()  # a context of its own, so the example leaves the session's alone
    >>> ctx.run(mt.set_backend, "numpy").name
    'numpy'
    >>> ctx.run(lambda: mt.tensor([1.0]).backend.name)
    'numpy'
    """
    backend = get_backend(name)
    set_current(backend)
    return backend


@contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Context manager: ``name`` is the current backend inside the block (this thread/task only).

    Examples
    --------
    >>> import minitrain
    >>> with minitrain.use_backend("numpy") as be:
    ...     print(be.name)
    numpy
    """
    backend = get_backend(name)
    token = set_current(backend)
    try:
        yield backend
    finally:
        reset(token)
