"""An LSTM classifies noisy waves, sine, square or sawtooth, given as sequences of shape (n, T, 1).

Each sample is one wave of a random period (8 to 24 steps), phase and amplitude, plus Gaussian noise, over 48 time
steps: the network must tell the shape of the wave whatever its frequency and position.
:class:`minitrain.models.RecurrentNet` (an LSTM, its last hidden state, a Linear layer) learns it through
``NeuralNetClassifier``, which takes the sequences as they are. The training batches are augmented (``augment=``):
shifted in time by up to a fifth of their length (a roll: the waves are periodic) and given a little more noise
(about neutral on this data: ``--no-augment`` compares). Gradients are clipped (``optimizer__clip_grad_norm``),
which keeps the LSTM's training steady, and the learning rate is annealed along a cosine. A line per epoch, then the
validation and test accuracies (about 0.98).

    python examples/sequence_lstm.py [--backend numpy] [--epochs 40] [--samples 1500] [--no-augment] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from minitrain import augment
from minitrain.callbacks import LRScheduler
from minitrain.estimators import NeuralNetClassifier
from minitrain.models import RecurrentNet

WAVES = ("sine", "square", "sawtooth")


def make_waves(
    n_samples: int, n_steps: int = 48, noise: float = 0.3, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy waves of random period, phase and amplitude, with their kind as the label.

    Parameters
    ----------
    n_samples : int
    n_steps : int, default=48
    noise : float, default=0.3
        Standard deviation of the Gaussian noise added (the amplitudes lie in [0.5, 1.5]).
    rng : numpy.random.Generator, optional

    Returns
    -------
    X : ndarray of shape (n_samples, n_steps, 1), float32
    y : ndarray of shape (n_samples,)
        Indices into ``WAVES``.
    """
    rng = np.random.default_rng() if rng is None else rng
    y = rng.integers(0, len(WAVES), n_samples)
    period = rng.uniform(8.0, 24.0, (n_samples, 1))
    cycle = (np.arange(n_steps)[None, :] / period + rng.uniform(0.0, 1.0, (n_samples, 1))) % 1.0
    shapes = np.stack([np.sin(2 * np.pi * cycle), np.where(cycle < 0.5, 1.0, -1.0), 2.0 * cycle - 1.0])
    X = shapes[y, np.arange(n_samples)] * rng.uniform(0.5, 1.5, (n_samples, 1))
    X += rng.normal(0.0, noise, X.shape)
    return X[:, :, None].astype(np.float32), y


def main(argv: list[str] | None = None) -> float:
    """Generate the waves, train, print the progress, the validation and the test accuracy; return the latter."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", help="numpy, numba or auto (default)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--samples", type=int, default=1500, help="training samples (20 %% of them validate)")
    parser.add_argument("--no-augment", action="store_true", help="train on the sequences as they are")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    X_train, y_train = make_waves(args.samples, rng=rng)
    X_test, y_test = make_waves(600, rng=rng)
    print(f"{len(X_train)} training and {len(X_test)} test sequences of shape {X_train.shape[1:]}: {', '.join(WAVES)}")
    clf = NeuralNetClassifier(
        module=RecurrentNet,
        module__kind="lstm",
        module__hidden_size=32,
        lr=1e-2,
        optimizer__clip_grad_norm=1.0,
        max_epochs=args.epochs,
        batch_size=32,
        train_split=0.2,
        augment=None if args.no_augment else [augment.TimeShift(0.2), augment.GaussianNoise(0.05)],
        callbacks=[LRScheduler("CosineAnnealingLR", T_max=args.epochs)],
        backend=args.backend,
        random_state=args.seed,
        verbose=True,
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    print(f"validation accuracy {clf.history_[-1, 'valid_score']:.4f}")
    accuracy = float(clf.score(X_test, y_test))
    per_class = [float(np.mean(clf.predict(X_test[y_test == k]) == k)) for k in range(len(WAVES))]
    print(f"test accuracy {accuracy:.4f}  (" + ", ".join(f"{w} {a:.2f}" for w, a in zip(WAVES, per_class)) + ")")
    print(f"backend {clf.backend_}, {elapsed:.1f} s")
    return accuracy


if __name__ == "__main__":
    main()
