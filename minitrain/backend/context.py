"""The one piece of global state: the current backend, as a ContextVar (safe across threads)."""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

_current: ContextVar[Any] = ContextVar("minitrain_backend", default=None)


def current() -> Any:
    """The backend set for this context, or None."""
    return _current.get()


def set_current(backend: Any) -> Token:
    """Set the backend of this context; returns a token for ``reset``."""
    return _current.set(backend)


def reset(token: Token) -> None:
    """Undo a ``set_current``."""
    _current.reset(token)
