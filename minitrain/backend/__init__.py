"""Backends: the array module and named kernels everything above runs on."""

from .base import ACTIVATIONS, KERNELS, Backend, Geometry2d, canonical_activation, geometry2d
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
    "Geometry2d",
    "NumpyBackend",
    "canonical_activation",
    "geometry2d",
    "get_backend",
    "list_backends",
    "register_backend",
    "set_backend",
    "unregister_backend",
    "use_backend",
]
