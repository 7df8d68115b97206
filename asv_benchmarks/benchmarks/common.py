"""What every benchmark shares: the backend parameter, synthetic data, the models and one training step.

Every benchmark class takes the backend name as its first parameter (``BACKENDS``); ``backend_or_skip``
raises ``SkipNotImplemented`` for one that is not installed or cannot run here, so asv reports it as
skipped (n/a) instead of failing. Setup builds everything outside the timing; a timed call ends with
``backend.synchronize()`` so GPU work is inside the measurement.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

try:
    from asv_runner.benchmarks.mark import SkipNotImplemented
except ImportError:  # peers.py imports this module where asv is not installed; asv skips any NotImplementedError

    class SkipNotImplemented(NotImplementedError):  # type: ignore[no-redef]
        """The benchmark cannot run here."""


#: Backends every benchmark is parametrized over; the missing ones are skipped with their reason.
BACKENDS = ["numpy", "numba", "cupy"]
#: The MLP of the speed targets: 784-256-128-10, batch 128, Adam, float32.
MLP_LAYERS = (784, 256, 128, 10)
MLP_BATCH = 128


class Bench:
    """Timing defaults of the suite: one round of 2 to 10 samples (at most about 3 s) per parameter set.

    Setups call their kernels once (Numba compiles there), so a long warm-up buys nothing. Each round of
    each parameter set pays a process start and ``import minitrain``; one round keeps the default suite
    under 10 minutes on 2 cores (``asv run -a rounds=2`` for more).
    """

    rounds = 1
    repeat = (2, 10, 3.0)
    warmup_time = 0.1


def backend_or_skip(name: str) -> Any:
    """The backend ``name``, or ``SkipNotImplemented`` saying why it cannot run here."""
    from minitrain.backend import get_backend, list_backends

    info = next((i for i in list_backends() if i.name == name), None)
    if info is None:
        raise SkipNotImplemented(f"backend {name!r} is not installed")
    if not info.available:
        raise SkipNotImplemented(f"backend {name!r} is unavailable: {info.reason}")
    return get_backend(name)


def classification_data(n: int, n_features: int, n_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 samples whose ``n_classes`` classes a linear map separates, with noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features), dtype=np.float32)
    w = rng.standard_normal((n_features, n_classes)).astype(np.float32)
    y = np.argmax(X @ w + rng.standard_normal((n, n_classes), dtype=np.float32), axis=1)
    return X, y.astype(np.int64)


def mlp(layers: tuple[int, ...] = MLP_LAYERS, backend: Any = None, seed: int = 0) -> Any:
    """``Linear`` + ``ReLU`` blocks, a plain ``Linear`` last: the network users write."""
    import minitrain as mt
    from minitrain import nn

    mt.manual_seed(seed)
    mods: list[Any] = []
    for i, (a, b) in enumerate(itertools.pairwise(layers)):
        mods += [nn.Linear(a, b, backend=backend)] + ([nn.ReLU()] if i < len(layers) - 2 else [])
    return nn.Sequential(*mods, backend=backend)


def cnn(backend: Any = None, seed: int = 0) -> Any:
    """conv32-pool-conv64-pool-fc128-fc10 on 1 x 28 x 28 images (the small CNN of docs/performance.md)."""
    import minitrain as mt
    from minitrain import nn

    mt.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, backend=backend),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, backend=backend),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128, backend=backend),
        nn.ReLU(),
        nn.Linear(128, 10, backend=backend),
        backend=backend,
    )


def lstm_classifier(n_features: int = 32, hidden: int = 128, backend: Any = None, seed: int = 0) -> Any:
    """LSTM over (batch, time, features), its last step into a 10-class ``Linear``."""
    return recurrent_classifier("lstm", n_features, hidden, 10, backend, seed)


def recurrent_classifier(
    kind: str, n_features: int, hidden: int, n_classes: int, backend: Any = None, seed: int = 0
) -> Any:
    """``LSTM`` or ``GRU`` (``kind``) over (batch, time, features), its last step into a ``Linear``."""
    import minitrain as mt
    from minitrain import nn

    mt.manual_seed(seed)
    layer = nn.LSTM if kind == "lstm" else nn.GRU
    return nn.Sequential(
        layer(n_features, hidden, batch_first=True, backend=backend),
        nn.LastStep(),
        nn.Linear(hidden, n_classes, backend=backend),
        backend=backend,
    )


class TrainStep:
    """A training step (forward, cross-entropy, backward, Adam) on a fixed batch on the backend; returns the loss."""

    def __init__(self, model: Any, X: np.ndarray, y: np.ndarray, backend: Any, lr: float = 1e-3) -> None:
        import minitrain as mt
        from minitrain import optim

        self.model, self.be = model, backend
        self.opt = optim.Adam(model.parameters(), lr=lr)
        self.x, self.y = mt.tensor(backend.asarray(X), backend=backend), backend.asarray(y)

    def __call__(self) -> Any:
        from minitrain import functional as F

        loss = F.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.be.synchronize()
        return loss
