"""Transfer learning on scikit-learn's digits: a CNN pretrained on digits 0-4 learns digits 5-9 from a few samples.

Pretrain a small CNN on the digits 0-4, save it (``mt.save``), load it (``mt.load``), replace its head by a new
Linear layer for the five new classes, and fine-tune it on a few labelled samples per class of the digits 5-9
with its convolutional layers frozen (``frozen=["features"]``). Then fine-tune it again, this time unfreezing the
convolutional layers halfway (``Unfreeze``) with a smaller learning rate of their own (``optimizer__param_groups``).
Both are compared, on the rest of the digits 5-9, with the same network trained from scratch on the same samples.
A single draw of a few samples is a noisy yardstick, so this is repeated for several draws and the means compared.
The fewer the labelled samples, the more the pretrained body helps: with 20 per class, training from scratch
catches up.

    python examples/transfer_learning.py [--backend numpy] [--per-class 5] [--draws 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import minitrain as mt
from minitrain import nn
from minitrain.callbacks import Unfreeze
from minitrain.estimators import NeuralNetClassifier


class DigitsCNN(nn.Module):
    """Two convolutions (``features``, the body) over the 8x8 images, then a Linear layer (``head``) to the classes.

    The body keeps a 4x4 map of 32 channels (one pooling): general enough to serve digits it was not trained on.
    ``n_features`` (64 pixels) and ``n_classes`` are filled in by the estimator.
    """

    def __init__(self, n_features: int = 64, n_classes: int = 5, dtype: str = "float32", backend: Any = None) -> None:
        super().__init__(backend)
        side = self.side = round(n_features**0.5)
        if side * side != n_features or side % 2:
            raise ValueError(f"DigitsCNN needs square images of an even side, got {n_features} pixels")
        kw = {"dtype": dtype, "backend": backend}
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, init="he_uniform", **kw), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, init="he_uniform", **kw), nn.ReLU(), nn.Flatten(), backend=backend,
        )  # fmt: skip
        self.head = nn.Linear(32 * (side // 2) ** 2, n_classes, **kw)

    def forward(self, x: Any) -> mt.Tensor:
        """Logits of shape (n_samples, n_classes) for ``x`` of shape (n_samples, side * side)."""
        x = x if isinstance(x, mt.Tensor) else mt.tensor(x, backend=self.backend)
        return self.head(self.features(x.reshape(x.shape[0], 1, self.side, self.side)))


def pretrain_and_save(X: np.ndarray, y: np.ndarray, path: pathlib.Path, backend: str, seed: int) -> None:
    """Train a DigitsCNN on (X, y) and save the network to ``path``."""
    pretrained = NeuralNetClassifier(
        DigitsCNN, lr=3e-3, max_epochs=40, batch_size=32, train_split=None, backend=backend, random_state=seed
    ).fit(X, y)
    digits = "".join(map(str, sorted(set(y.tolist()))))
    print(f"pretrained on {len(y)} images of the digits {digits} (backend {pretrained.backend_}): ", end="")
    print(f"training accuracy {pretrained.score(X, y):.4f}")
    mt.save(pretrained.module_, path)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Pretrain, save, load, fine-tune and train from scratch; print the test accuracies and return their means."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", help="numpy, numba or auto (default)")
    parser.add_argument("--per-class", type=int, default=5, help="labelled samples per new class")
    parser.add_argument("--draws", type=int, default=5, help="draws of the labelled samples to average over")
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the fine-tuning and scratch runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    old, new = y < 5, y >= 5
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "digits_0_4.safetensors"
        pretrain_and_save(X[old], y[old], path, args.backend, args.seed)
        network = mt.load(path, classes=[DigitsCNN])  # our own class: load() imports no code it is not given

    lr = 1e-2
    variants: dict[str, dict[str, Any]] = {
        "transfer, body frozen": {"frozen": ["features"]},
        "transfer, body unfrozen halfway": {
            "frozen": ["features"],
            "callbacks": [Unfreeze(at_epoch=args.epochs // 2 + 1)],
            "optimizer__param_groups": [("features.*", {"lr": lr / 10})],
        },
        "from scratch": {},
    }
    scores: dict[str, list[float]] = {name: [] for name in variants}
    n_test = new.sum() - 5 * args.per_class
    print(f"digits 5-9: {args.per_class} labelled samples per class, the others ({n_test}) to test")
    for draw in range(args.draws):
        seed = args.seed + draw
        X_few, X_test, y_few, y_test = train_test_split(
            X[new], y[new], train_size=5 * args.per_class, stratify=y[new], random_state=seed
        )
        with mt.random.seeded(seed):  # a new head for the digits 5-9 (the old one knows 0-4)
            network.head = nn.Linear(network.head.in_features, 5, backend=network.backend)
        common = {"lr": lr, "max_epochs": args.epochs, "batch_size": 32, "train_split": None, "random_state": seed}
        for name, params in variants.items():
            module = DigitsCNN if name == "from scratch" else network  # an instance is copied by each fit
            est = NeuralNetClassifier(module, backend=args.backend, **common, **params).fit(X_few, y_few)
            scores[name].append(float(est.score(X_test, y_test)))
            if draw == 0 and name == "transfer, body frozen":
                print(est.module_.summary())
        print(f"draw {draw}: " + ", ".join(f"{name} {s[-1]:.4f}" for name, s in scores.items()))
    means = {name: float(np.mean(s)) for name, s in scores.items()}
    for name, mean in means.items():
        print(f"{name:<32} mean test accuracy {mean:.4f}")
    print(f"total time {time.perf_counter() - start:.1f} s")
    return means


if __name__ == "__main__":
    main()
