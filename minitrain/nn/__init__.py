"""Layers and models: ``Module`` and its building blocks (PyTorch's names)."""

from .activation import ELU, GELU, Activation, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Softplus, Tanh
from .attention import MultiheadAttention, TransformerEncoderLayer, generate_square_subsequent_mask
from .containers import Flatten, Identity, Residual, Sequential
from .conv import AvgPool2d, Conv2d, MaxPool2d
from .dropout import Dropout, Dropout1d, Dropout2d
from .embedding import Embedding
from .flat import FlatBuffer, Parameter, flatten_parameters
from .linear import Linear
from .module import Module
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from .recurrent import GRU, LSTM, LastStep
from .reshape import Reshape, Unflatten

__all__ = [
    "ELU",
    "GELU",
    "Activation",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Embedding",
    "FlatBuffer",
    "Flatten",
    "GRU",
    "Identity",
    "LSTM",
    "LastStep",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MaxPool2d",
    "Module",
    "MultiheadAttention",
    "Parameter",
    "ReLU",
    "Reshape",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "TransformerEncoderLayer",
    "Unflatten",
    "flatten_parameters",
    "generate_square_subsequent_mask",
]
