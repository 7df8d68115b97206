"""Layers and models: ``Module`` and its building blocks (PyTorch's names)."""

from .activation import ELU, GELU, Activation, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Softplus, Tanh
from .containers import Flatten, Identity, Residual, Sequential
from .conv import AvgPool2d, Conv2d, MaxPool2d
from .dropout import Dropout
from .flat import FlatBuffer, Parameter, flatten_parameters
from .linear import Linear
from .module import Module
from .norm import BatchNorm1d, BatchNorm2d
from .recurrent import GRU, LSTM, LastStep

__all__ = [
    "ELU",
    "GELU",
    "Activation",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "FlatBuffer",
    "Flatten",
    "GRU",
    "Identity",
    "LSTM",
    "LastStep",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MaxPool2d",
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
