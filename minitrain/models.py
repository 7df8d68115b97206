"""Ready-made networks for the NeuralNet estimators: a small CNN for images, a recurrent net for sequences.

Both are ``nn.Sequential`` subclasses built from the sizes an estimator passes (``n_features``, ``n_outputs`` and
``input_shape``, the shape of one sample), so ``NeuralNetClassifier(module=SmallCNN, module__channels=(8, 16))``
works and every setting can be tuned with ``module__*`` in a grid search. Their first layer is a
:class:`~minitrain.nn.Reshape`, so they take flat samples as well as shaped ones.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

from . import nn

__all__ = ["RecurrentNet", "SmallCNN"]


def _image_shape(n_features: int, input_shape: Sequence[int] | None) -> tuple[int, int, int]:
    """``(channels, height, width)`` of one sample: ``input_shape`` with 3 (or 2: one channel) entries, else flat
    samples of a square number of values as one square channel."""
    shape = (n_features,) if input_shape is None else tuple(int(s) for s in input_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
        shape = (1, side, side)
    if len(shape) != 3:
        raise ValueError(
            f"SmallCNN needs images: input_shape (channels, height, width), got {shape}; for flat samples pass "
            "module__input_shape=(channels, height, width)"
        )
    if math.prod(shape) != n_features:
        raise ValueError(f"SmallCNN: input_shape {shape} holds {math.prod(shape)} values, the samples {n_features}")
    return shape  # type: ignore[return-value]


class SmallCNN(nn.Sequential):
    """A small convolutional network for images: blocks of Conv2d (same padding), BatchNorm2d, ReLU and 2x2
    max pooling, then Flatten, Dropout and a Linear output layer.

    Parameters
    ----------
    n_features : int
        Values per sample (``prod(input_shape)``).
    n_outputs : int
        Outputs (classes, or regression targets).
    input_shape : tuple of int, optional
        One sample's shape, ``(channels, height, width)`` (or ``(height, width)``: one channel). None, or flat
        samples ``(n_features,)``, takes one square channel when ``n_features`` is a square (64 -> 1 x 8 x 8).
    channels : sequence of int, default=(16, 32)
        Output channels of each convolution block.
    kernel_size : int, default=3
    dropout : float, default=0.0
        Dropout before the output layer.
    batch_norm : bool, default=True
        BatchNorm2d after each convolution.
    dtype : str, default='float32'
    backend : str or Backend, optional

    Examples
    --------
    >>> import numpy as np
    >>> net = SmallCNN(64, 10, channels=(4, 8), backend="numpy")
    >>> net(np.zeros((2, 64), dtype=np.float32)).shape, net(np.zeros((2, 1, 8, 8), dtype=np.float32)).shape
    ((2, 10), (2, 10))
    """

    def __init__(
        self, n_features: int, n_outputs: int, input_shape: Sequence[int] | None = None,
        channels: Sequence[int] = (16, 32), kernel_size: int = 3, dropout: float = 0.0, batch_norm: bool = True,
        dtype: str = "float32", backend: Any = None,
    ) -> None:  # fmt: skip
        c, h, w = _image_shape(n_features, input_shape)
        channels = (channels,) if isinstance(channels, int) else tuple(channels)
        if not channels or any(int(k) < 1 for k in channels):
            raise ValueError(f"SmallCNN: channels must hold positive numbers, got {channels!r}")
        k, pad = int(kernel_size), int(kernel_size) // 2
        layers: list[nn.Module] = [nn.Reshape(c, h, w, backend=backend)]
        for out in channels:
            layers.append(nn.Conv2d(c, int(out), k, padding=pad, bias=not batch_norm, dtype=dtype, backend=backend))
            c, h, w = int(out), h + 2 * pad - k + 1, w + 2 * pad - k + 1
            if h < 1 or w < 1:
                raise ValueError(f"SmallCNN: kernel_size={k} is too large for images of {input_shape}")
            if batch_norm:
                layers.append(nn.BatchNorm2d(c, dtype=dtype, backend=backend))
            layers.append(nn.ReLU(backend=backend))
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2, backend=backend))
                h, w = h // 2, w // 2
        layers.append(nn.Flatten(backend=backend))
        if dropout:
            layers.append(nn.Dropout(dropout, backend=backend))
        layers.append(nn.Linear(c * h * w, n_outputs, dtype=dtype, backend=backend))
        super().__init__(*layers, backend=backend)


class RecurrentNet(nn.Sequential):
    """A recurrent network for sequences: (an Embedding,) LSTM or GRU layers, the last step's hidden state, Dropout
    and a Linear output layer (many-to-one: a classifier or regressor of whole sequences).

    Parameters
    ----------
    n_features : int
        Values per sample (``prod(input_shape)``).
    n_outputs : int
    input_shape : tuple of int, optional
        One sample's shape: ``(n_steps, n_features_per_step)``; ``(n_steps,)`` (or None) is one feature per step,
        or token ids with ``num_embeddings``.
    kind : {'lstm', 'gru'}, default='lstm'
    hidden_size : int, default=64
    num_layers : int, default=1
    bidirectional : bool, default=False
        Also read the sequences backwards; the output layer sees both directions.
    dropout : float, default=0.0
        Dropout between recurrent layers and before the output layer.
    num_embeddings : int, optional
        Vocabulary size: samples are integer token ids ``(n_steps,)``, embedded in ``embedding_dim`` features.
    embedding_dim : int, default=32
    dtype : str, default='float32'
    backend : str or Backend, optional

    Examples
    --------
    >>> import numpy as np
    >>> net = RecurrentNet(20, 3, input_shape=(10, 2), kind="gru", hidden_size=8, backend="numpy")
    >>> net(np.zeros((4, 10, 2), dtype=np.float32)).shape
    (4, 3)
    """

    def __init__(
        self, n_features: int, n_outputs: int, input_shape: Sequence[int] | None = None, kind: str = "lstm",
        hidden_size: int = 64, num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0,
        num_embeddings: int | None = None, embedding_dim: int = 32, dtype: str = "float32", backend: Any = None,
    ) -> None:  # fmt: skip
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}.get(str(kind).lower())
        if rnn is None:
            raise ValueError(f"RecurrentNet: kind must be 'lstm' or 'gru', got {kind!r}")
        shape = (n_features,) if input_shape is None else tuple(int(s) for s in input_shape)
        layers: list[nn.Module] = []
        if num_embeddings is not None:
            if len(shape) != 1:
                raise ValueError(f"RecurrentNet: token ids come as samples of shape (n_steps,), got {shape}")
            layers.append(nn.Embedding(int(num_embeddings), int(embedding_dim), dtype=dtype, backend=backend))
            size = int(embedding_dim)
        else:
            steps, size = (shape[0], 1) if len(shape) == 1 else (shape[0], math.prod(shape[1:]))
            layers.append(nn.Reshape(steps, size, backend=backend))
        options = {"bidirectional": True} if bidirectional else {}
        if bidirectional and "bidirectional" not in inspect.signature(rnn).parameters:
            raise ValueError(f"RecurrentNet: this minitrain's {rnn.__name__} has no bidirectional=True")
        layers.append(
            rnn(size, int(hidden_size), int(num_layers), batch_first=True, dropout=dropout if num_layers > 1 else 0.0,
                dtype=dtype, backend=backend, **options)
        )  # fmt: skip
        layers.append(nn.LastStep(backend=backend))
        if dropout:
            layers.append(nn.Dropout(dropout, backend=backend))
        width = int(hidden_size) * (2 if bidirectional else 1)
        layers.append(nn.Linear(width, n_outputs, dtype=dtype, backend=backend))
        super().__init__(*layers, backend=backend)
