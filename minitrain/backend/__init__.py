"""Backends: the array module and named kernels everything above runs on."""

from .base import ACTIVATIONS, KERNELS, Backend, canonical_activation
from .numpy import NumpyBackend
from .registry import (
    BackendInfo,
    get_backend,
    list_backends,
    register_backend,
    set_backend,
    unregister_backend,
    use_backend,
)

__all__ = [
    "ACTIVATIONS",
    "KERNELS",
    "Backend",
    "BackendInfo",
    "NumpyBackend",
    "canonical_activation",
    "get_backend",
    "list_backends",
    "register_backend",
    "set_backend",
    "unregister_backend",
    "use_backend",
]
