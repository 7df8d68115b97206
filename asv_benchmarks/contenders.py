"""The workloads of ``peers.py`` and one epoch of each contender on them, written as each library's users write it.

A contender is ``make(X, y, workload) -> epoch``: everything is built in ``make``, and ``epoch()`` runs one
shuffled pass over ``X`` in batches of ``workload.batch``. Batches are gathered per step (``X[idx]``) by
every contender, as a data loader does, so no contender pays for a permuted copy of the whole data.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks.common import cnn, mlp, recurrent_classifier

Epoch = Callable[[], None]


@dataclass(frozen=True)
class Workload:
    """A network and its data: ``kind`` 'mlp' (``layers``), 'cnn' (1 x 28 x 28 images, 10 classes), or 'lstm' /
    'gru' (``layers`` = (seq_len, features, hidden, classes): batch-first sequences, the last step into a
    ``Linear``)."""

    name: str
    kind: str
    layers: tuple[int, ...]
    batch: int
    samples: int

    @property
    def flops_per_sample(self) -> int:
        """Forward + weight gradients of every layer, input gradients of all but the first (never needed)."""
        if self.kind == "mlp":
            pairs = list(itertools.pairwise(self.layers))
            return sum(4 * i * o for i, o in pairs) + sum(2 * i * o for i, o in pairs[1:])
        if self.kind in ("lstm", "gru"):  # per step: input and recurrent GEMMs, their weight grads, dh
            T, F, H, C = self.layers
            rows = (4 if self.kind == "lstm" else 3) * H
            return T * (4 * F * rows + 6 * H * rows) + 6 * H * C
        conv1, conv2 = 2 * 32 * 1 * 9 * 28 * 28, 2 * 64 * 32 * 9 * 14 * 14
        fc = 2 * 64 * 7 * 7 * 128 + 2 * 128 * 10
        return 2 * conv1 + 3 * conv2 + 3 * fc

    def data(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``samples`` float32 rows (or images) whose 10 classes a linear map separates, with noise."""
        rng = np.random.default_rng(seed)
        if self.kind in ("lstm", "gru"):  # classes a linear map of the sequence's mean and last step separates
            T, F, _, C = self.layers
            X = rng.standard_normal((self.samples, T, F), dtype=np.float32)
            feats = np.concatenate([X.mean(axis=1) * np.sqrt(T), X[:, -1]], axis=1)
            y = np.argmax(feats @ rng.standard_normal((2 * F, C)).astype(np.float32), axis=1).astype(np.int64)
            return X, y
        n_features = self.layers[0] if self.kind == "mlp" else 28 * 28
        X = rng.standard_normal((self.samples, n_features), dtype=np.float32)
        y = np.argmax(X @ rng.standard_normal((n_features, 10)).astype(np.float32), axis=1).astype(np.int64)
        return (X if self.kind == "mlp" else X.reshape(-1, 1, 28, 28)), y


WORKLOADS = {
    "mlp-256-128": Workload("MLP 784-256-128-10, batch 128", "mlp", (784, 256, 128, 10), 128, 60000),
    "mlp-512-256": Workload("MLP 784-512-256-10, batch 256", "mlp", (784, 512, 256, 10), 256, 60000),
    "cnn": Workload("CNN conv32-pool-conv64-pool-fc128 on 28x28, batch 64", "cnn", (), 64, 2048),
    "cnn-128": Workload("CNN conv32-pool-conv64-pool-fc128 on 28x28, batch 128", "cnn", (), 128, 2048),
    "lstm": Workload("LSTM 8-64, 50 steps, last -> Linear(64, 5), batch 128", "lstm", (50, 8, 64, 5), 128, 8192),
    "gru": Workload("GRU 8-64, 50 steps, last -> Linear(64, 5), batch 128", "gru", (50, 8, 64, 5), 128, 8192),
}


def _batches(n: int, batch: int, perm: np.ndarray) -> Any:
    return (perm[i : i + batch] for i in range(0, n, batch))


def sklearn_epoch(X: np.ndarray, y: np.ndarray, w: Workload, seed: int = 0) -> Epoch:
    """scikit-learn's ``MLPClassifier.partial_fit`` (one epoch per call; adam, no penalty or early stopping)."""
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=w.layers[1:-1], solver="adam", batch_size=w.batch, learning_rate_init=1e-3, alpha=0.0,
        shuffle=True, random_state=seed, tol=0.0, n_iter_no_change=10**9, early_stopping=False,
    )  # fmt: skip
    classes = np.arange(10)
    return lambda: clf.partial_fit(X, y, classes=classes)


def estimator_epoch(backend: str) -> Callable[..., Epoch]:
    """minitrain's ``MLPClassifier(backend=...).partial_fit``: the drop-in, with the same settings as sklearn's."""

    def make(X: np.ndarray, y: np.ndarray, w: Workload, seed: int = 0) -> Epoch:
        from minitrain import MLPClassifier

        clf = MLPClassifier(
            hidden_layer_sizes=w.layers[1:-1], solver="adam", batch_size=w.batch, learning_rate_init=1e-3, alpha=0.0,
            shuffle=True, random_state=seed, tol=0.0, n_iter_no_change=10**9, early_stopping=False, backend=backend,
        )  # fmt: skip
        classes = np.arange(10)
        return lambda: clf.partial_fit(X, y, classes=classes)

    return make


def torch_epoch(X: np.ndarray, y: np.ndarray, w: Workload, seed: int = 0) -> Epoch:
    """The same network in PyTorch CPU: shuffle, gather a batch, Adam."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    if w.kind == "mlp":
        mods: list[Any] = []
        for i, (a, b) in enumerate(itertools.pairwise(w.layers)):
            mods += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(w.layers) - 2 else [])
    elif w.kind in ("lstm", "gru"):
        mods = [_torch_recurrent(w.kind, *w.layers[1:])]
    else:
        mods = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU()]
        mods += [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)]
    model = nn.Sequential(*mods)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)

    def epoch() -> None:
        for idx in _batches(len(Xt), w.batch, torch.randperm(len(Xt), generator=gen)):
            loss = loss_fn(model(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return epoch


def _torch_recurrent(kind: str, features: int, hidden: int, classes: int) -> Any:
    """``nn.LSTM`` / ``nn.GRU`` (batch first), its last layer's final hidden state into a ``Linear``."""
    from torch import nn

    class RecurrentClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(features, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, x: Any) -> Any:
            _, h = self.rnn(x)
            return self.fc((h[0] if kind == "lstm" else h)[-1])

    return RecurrentClassifier()


def _minitrain_model(w: Workload, be: Any, seed: int) -> Any:
    if w.kind == "mlp":
        return mlp(w.layers, be, seed)
    if w.kind in ("lstm", "gru"):
        _, features, hidden, classes = w.layers
        return recurrent_classifier(w.kind, features, hidden, classes, be, seed)
    return cnn(be, seed)


def minitrain_epoch(backend: str) -> Callable[..., Epoch]:
    """The same network in minitrain on ``backend``: ``nn.Sequential``, ``optim.Adam``, ``F.cross_entropy``."""

    def make(X: np.ndarray, y: np.ndarray, w: Workload, seed: int = 0) -> Epoch:
        import minitrain as mt
        from minitrain import functional as F
        from minitrain import optim

        be = mt.get_backend(backend)
        model = _minitrain_model(w, be, seed)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        rng = np.random.default_rng(seed)

        def epoch() -> None:
            for idx in _batches(len(X), w.batch, rng.permutation(len(X))):
                loss = F.cross_entropy(model(mt.tensor(X[idx], backend=be)), be.asarray(y[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
            be.synchronize()

        return epoch

    return make


def gemm_ceiling_epoch(X: np.ndarray, y: np.ndarray, w: Workload, seed: int = 0) -> Epoch:
    """An MLP step's matmuls alone (forward, weight gradients, input gradients but the first's), no other work.

    Weights (out, in) stored column-major, as ``minitrain.nn.Linear`` stores them, so this stays the ceiling of
    minitrain's own step (row-major weights make the weight-gradient GEMMs slower here: docs/performance.md).
    """
    rng = np.random.default_rng(seed)
    pairs = itertools.pairwise(w.layers)
    ws = [np.asfortranarray(rng.standard_normal((o, i), dtype=np.float32) * 0.05) for i, o in pairs]
    acts = [np.empty((w.batch, o), np.float32) for o in w.layers[1:]]
    grads = [np.empty_like(a) for a in ws]
    deltas = [np.empty((w.batch, i), np.float32) for i in w.layers[1:-1]]

    def epoch() -> None:
        for s in range(0, len(X) - w.batch + 1, w.batch):
            h = X[s : s + w.batch]
            for wk, a in zip(ws, acts):
                np.matmul(h, wk.T, out=a)
                h = a
            d = acts[-1]
            for k in range(len(ws) - 1, -1, -1):
                np.matmul(d.T, acts[k - 1] if k else X[s : s + w.batch], out=grads[k])
                if k:
                    np.matmul(d, ws[k], out=deltas[k - 1])
                    d = deltas[k - 1]

    return epoch


def contenders(kind: str) -> dict[str, Callable[..., Epoch]]:
    """Every contender of a workload kind, in table order."""
    both = {
        "torch": torch_epoch,
        "minitrain-numpy": minitrain_epoch("numpy"),
        "minitrain-numba": minitrain_epoch("numba"),
    }
    if kind != "mlp":
        return both
    return {
        "sklearn": sklearn_epoch,
        **both,
        "minitrain-numba MLPClassifier": estimator_epoch("numba"),
        "gemm-only": gemm_ceiling_epoch,
    }


def available(name: str) -> str:
    """Why a contender cannot run here, or ''."""
    try:
        if name == "torch":
            import torch  # noqa: F401
        elif name.startswith("minitrain"):
            import minitrain as mt

            mt.get_backend(name.split()[0].split("-")[1])
    except (ImportError, ValueError) as exc:
        return str(exc).splitlines()[0]
    return ""


def quiet(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with warnings silenced (ConvergenceWarning of a one-epoch partial_fit)."""

    def run() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()

    return run
