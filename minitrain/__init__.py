"""minitrain: train neural networks on interchangeable array backends (NumPy, Numba)."""

from . import (
    augment,
    callbacks,
    data,
    functional,
    init,
    io,
    losses,
    models,
    nn,
    optim,
    preprocessing,
    random,
    schedules,
    testing,
    training,
)
from .autograd import Tensor, enable_grad, is_grad_enabled, no_grad, tensor
from .backend import get_backend, list_backends, register_backend, set_backend, use_backend
from .estimators import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor
from .io import load, save
from .random import manual_seed

__version__ = "0.1.0"

__all__ = [
    "MLPClassifier",
    "MLPRegressor",
    "NeuralNetClassifier",
    "NeuralNetRegressor",
    "callbacks",
    "data",
    "training",
    "Tensor",
    "augment",
    "__version__",
    "enable_grad",
    "functional",
    "get_backend",
    "init",
    "io",
    "is_grad_enabled",
    "list_backends",
    "load",
    "losses",
    "manual_seed",
    "models",
    "nn",
    "no_grad",
    "optim",
    "preprocessing",
    "random",
    "save",
    "register_backend",
    "schedules",
    "set_backend",
    "tensor",
    "testing",
    "use_backend",
]
