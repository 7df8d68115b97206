"""The NumPy backend: the reference every other backend is checked against."""

from __future__ import annotations

from .base import Backend


class NumpyBackend(Backend):
    """Reference backend: the base kernels over NumPy, unchanged.

    Examples
    --------
    >>> from minitrain.backend import get_backend
    >>> get_backend("numpy").name
    'numpy'
    """

    name = "numpy"
