"""Layers and models: ``Module`` and its building blocks (PyTorch's names)."""

from .activation import ELU, GELU, Activation, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Softplus, Tanh
from .containers import Flatten, Identity, Residual, Sequential
from .dropout import Dropout
from .flat import FlatBuffer, Parameter, flatten_parameters
from .linear import Linear
from .module import Module
from .norm import BatchNorm1d

__all__ = [
    "ELU",
    "GELU",
    "Activation",
    "BatchNorm1d",
    "Dropout",
    "FlatBuffer",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "Module",
    "Parameter",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "flatten_parameters",
]
