"""Where random numbers come from: each model owns its generators, seeded from one stream.

Modules draw their initial weights (``minitrain.init``) and the seeds of their own generators (a ``Dropout``'s
masks) from the *current stream*: the stream of the innermost :func:`seeded` block of this thread (or task),
else the process's default stream, which :func:`manual_seed` reseeds. A module's generators live on its
backend (``Backend.generator``), are saved with it (pickling, ``copy.deepcopy``) and continue where they were
when a model is loaded again; no generator is shared through a backend, so two models training in two threads
never disturb each other. The estimators build their networks inside ``seeded(...)`` from their
``random_state``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

__all__ = ["host_generator", "manual_seed", "seeded", "spawn_seed"]

_lock = threading.Lock()
_default = {"stream": np.random.default_rng()}
_context: ContextVar[np.random.Generator | None] = ContextVar("minitrain_stream", default=None)


def manual_seed(seed: int) -> None:
    """Reseed the default stream: modules built afterwards, outside :func:`seeded`, start from it.

    Parameters
    ----------
    seed : int

    Examples
    --------
    >>> import minitrain as mt
    >>> mt.manual_seed(0)
    >>> a = mt.nn.Linear(3, 2).weight.numpy()
    >>> mt.manual_seed(0)
    >>> bool((mt.nn.Linear(3, 2).weight.numpy() == a).all())
    True
    """
    with _lock:
        _default["stream"] = np.random.default_rng(int(seed))


def host_generator() -> np.random.Generator:
    """The current stream (a NumPy ``Generator`` on the host): the innermost :func:`seeded` block's, else the
    default one.

    Returns
    -------
    numpy.random.Generator
        Drawing from it advances the current stream.

    Examples
    --------
    >>> from minitrain import random
    >>> with random.seeded(0) as stream:
    ...     random.host_generator() is stream
    True
    >>> with random.seeded(0):
    ...     random.host_generator().integers(0, 100, size=3).tolist()
    [85, 63, 51]
    """
    stream = _context.get()
    return _default["stream"] if stream is None else stream


@contextmanager
def seeded(seed: Any) -> Iterator[np.random.Generator]:
    """Make a stream seeded with ``seed`` the current one inside the block (this thread or task only).

    Parameters
    ----------
    seed : int, SeedSequence or None
        None draws fresh entropy: modules built in the block are independent of :func:`manual_seed`.

    Examples
    --------
    >>> import minitrain as mt
    >>> with mt.random.seeded(5):
    ...     a = mt.nn.Linear(3, 2).weight.numpy()
    >>> with mt.random.seeded(5):
    ...     b = mt.nn.Linear(3, 2).weight.numpy()
    >>> bool((a == b).all())
    True
    """
    token = _context.set(np.random.default_rng(seed))
    try:
        yield _context.get()
    finally:
        _context.reset(token)


def spawn_seed() -> int:
    """A new seed drawn from the current stream, for a generator of one's own.

    Returns
    -------
    int
        In ``[0, 2**63 - 1)``.

    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import random
    >>> with random.seeded(7):
    ...     a = np.random.default_rng(random.spawn_seed()).random()
    >>> with random.seeded(7):
    ...     b = np.random.default_rng(random.spawn_seed()).random()
    >>> a == b
    True
    """
    return int(host_generator().integers(0, 2**63 - 1))
