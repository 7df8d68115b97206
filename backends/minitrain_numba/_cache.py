"""Where this package's compiled kernels are cached on disk: a per-user directory, never beside the sources.

Numba's ``cache=True`` writes ``__pycache__/*.nbi|*.nbc`` next to the module: inside site-packages for a regular
install. pip leaves those files behind when it uninstalls the package, and the leftover
``minitrain_numba/__pycache__`` then shadows an editable install of it (a namespace package found first). So the
dispatchers made here keep their cache in ``NUMBA_CACHE_DIR`` when it is set (Numba's own rule, unchanged), else
in ``$XDG_CACHE_HOME/minitrain/numba`` (default: the platform's per-user cache directory, ``~/.cache`` on Linux),
one subdirectory per source directory; where neither is writable a kernel compiles in memory only.

Only functions defined in this package get this locator, and no Numba setting or class is modified: each
dispatcher gets its own cache object. Numba has no public hook for that, so this relies on
``numba.core.caching`` (``FunctionCache``, ``CompileResultCacheImpl._locator_classes``, ``_CacheLocator``,
``_SourceFileBackedLocatorMixin``, the user-provided locator) and on a dispatcher's ``_cache`` attribute; where
they are missing (another Numba version), kernels fall back to Numba's ``cache=True``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import numba

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def cache_root() -> str | None:
    """The directory holding this package's kernel caches when ``NUMBA_CACHE_DIR`` is unset (None: no home)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, empty or relative: the XDG spec says to use the default
        if sys.platform == "win32":
            base = os.environ.get("LOCALAPPDATA", "")
        elif sys.platform == "darwin":
            base = os.path.expanduser("~/Library/Caches")
        else:
            base = os.path.expanduser("~/.cache")
    if not os.path.isabs(base):  # no home directory to expand "~" with
        return None
    return os.path.join(base, "minitrain", "numba")


def _in_package(py_file: str) -> bool:
    return os.path.dirname(os.path.abspath(py_file)) == PACKAGE_DIR


@functools.cache
def _cache_classes() -> tuple[type, type] | None:
    """Our ``FunctionCache`` subclass and Numba's ``NullCache``; None where Numba's caching internals differ."""
    try:
        from numba.core import caching

        locator_base = caching._CacheLocator
        source_file_backed = caching._SourceFileBackedLocatorMixin
        user_provided = getattr(caching, "UserProvidedCacheLocator", None) or caching._UserProvidedCacheLocator
        function_cache, compile_result_impl = caching.FunctionCache, caching.CompileResultCacheImpl
        null_cache = caching.NullCache
    except (ImportError, AttributeError):
        return None

    class UserCacheLocator(source_file_backed, locator_base):
        """This package's functions, cached under ``cache_root()``."""

        def __init__(self, py_func: Any, py_file: str, root: str) -> None:
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = os.path.join(root, self.get_suitable_cache_subpath(py_file))

        def get_cache_path(self) -> str:
            return self._cache_path

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            root = cache_root()
            if root is None or not _in_package(py_file) or not os.path.exists(py_file):
                return None
            self = cls(py_func, py_file, root)
            try:
                self.ensure_cache_path()
            except OSError:  # the directory cannot be made, or is not writable
                return None
            return self

    class UserCacheImpl(compile_result_impl):
        _locator_classes = (user_provided, UserCacheLocator)

    class UserFunctionCache(function_cache):
        _impl_class = UserCacheImpl

    return UserFunctionCache, null_cache


def njit(fn: Callable[..., Any], **options: Any) -> Any:
    """``numba.njit(**options)(fn)`` with its compiled code cached on disk where a location is writable.

    Functions of this package are cached in ``NUMBA_CACHE_DIR`` or the per-user directory (``cache_root()``),
    others where Numba's ``cache=True`` puts them; with no writable location the kernel compiles in memory only.
    """
    classes = _cache_classes() if _in_package(fn.__code__.co_filename) else None
    dispatcher = numba.njit(**options)(fn)
    if not hasattr(dispatcher, "enable_caching"):  # NUMBA_DISABLE_JIT: the plain function
        return dispatcher
    try:
        if classes is not None and isinstance(getattr(dispatcher, "_cache", None), classes[1]):
            dispatcher._cache = classes[0](dispatcher.py_func)
        else:
            dispatcher.enable_caching()  # Numba's own locators
    except RuntimeError:  # no writable cache location: compile in memory only
        pass
    return dispatcher
