"""A small transformer classifies synthetic sentences of token ids by which keywords they hold, and in what order.

Sentences are 5 to 20 tokens long, padded with the id 0 to 20 (X of integers, shape (n, 20)); ids 1 and 2 are
the keywords, the others filler words. The four classes: only keyword 1, only keyword 2, 1 then 2, 2 then 1 (a
quarter each: chance is 0.25). Telling the last two apart needs the order, which self-attention alone does not
see: the network adds a learned position embedding to the token embedding. The network is an ``nn.Module``
subclass: ``nn.Embedding(padding_idx=0)`` for tokens and positions, one ``nn.TransformerEncoderLayer`` (batch
first) whose attention ignores the padding (``src_key_padding_mask``), the mean over the real tokens, and an
``nn.Linear`` layer. ``NeuralNetClassifier`` keeps integer X as token ids because the network has an Embedding.
A line per epoch, then the validation and test accuracies (about 0.99).

    python examples/text_attention.py [--backend numpy] [--epochs 12] [--samples 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import minitrain as mt
from minitrain import nn
from minitrain.callbacks import LRScheduler
from minitrain.estimators import NeuralNetClassifier

CLASSES = ("only 1", "only 2", "1 then 2", "2 then 1")
VOCAB_SIZE = 30  # 0: padding, 1 and 2: keywords, 3-29: filler words


def make_sentences(
    n_samples: int, max_len: int = 20, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Padded sentences of filler words holding one or both keywords, labelled by ``CLASSES``.

    Parameters
    ----------
    n_samples : int
    max_len : int, default=20
        Length of the padded rows; sentences have 5 to ``max_len`` tokens.
    rng : numpy.random.Generator, optional

    Returns
    -------
    X : ndarray of shape (n_samples, max_len), int64
        Token ids, 0 after the end of each sentence.
    y : ndarray of shape (n_samples,)
        Indices into ``CLASSES``.
    """
    rng = np.random.default_rng() if rng is None else rng
    y = rng.integers(0, len(CLASSES), n_samples)
    lengths = rng.integers(5, max_len + 1, n_samples)
    steps = np.arange(max_len)[None, :]
    X = np.where(steps < lengths[:, None], rng.integers(3, VOCAB_SIZE, (n_samples, max_len)), 0)
    # two distinct places in each sentence: the ranks of random keys among its real tokens
    keys = np.where(steps < lengths[:, None], rng.random((n_samples, max_len)), np.inf)
    first, second = np.argsort(keys, axis=1)[:, :2].T
    first, second = np.minimum(first, second), np.maximum(first, second)
    rows = np.arange(n_samples)
    X[rows, first] = np.where(y % 2 == 1, 2, 1)  # classes 1 and 3 (only 2, 2 then 1) start with keyword 2
    both = y >= 2
    X[rows[both], second[both]] = np.where(y[both] == 2, 2, 1)
    return X.astype(np.int64), y


class KeywordTransformer(nn.Module):
    """Token and position embeddings, a transformer encoder layer, a masked mean over the tokens, a Linear layer.

    Parameters
    ----------
    n_features : int
        Tokens per (padded) sentence; the estimator passes it.
    n_classes : int
        The estimator passes it.
    vocab_size : int, default=VOCAB_SIZE
    d_model : int, default=32
    nhead : int, default=4
    dim_feedforward : int, default=64
    dropout : float, default=0.1
    dtype : str, default='float32'
    backend : str or Backend, optional
    """

    def __init__(
        self, n_features: int, n_classes: int, vocab_size: int = VOCAB_SIZE, d_model: int = 32, nhead: int = 4,
        dim_feedforward: int = 64, dropout: float = 0.1, dtype: str = "float32", backend: Any = None,
    ) -> None:  # fmt: skip
        super().__init__(backend)
        kw = {"dtype": dtype, "backend": backend}
        self.tokens = nn.Embedding(vocab_size, d_model, padding_idx=0, **kw)
        self.positions = nn.Embedding(n_features, d_model, **kw)
        self.encoder = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True, **kw)
        self.head = nn.Linear(d_model, n_classes, **kw)

    def forward(self, x: Any) -> mt.Tensor:
        """Logits of shape (n, n_classes) for token ids ``x`` of shape (n, n_features)."""
        ids = x.data if isinstance(x, mt.Tensor) else self.backend.asarray(x)
        padding = ids == 0  # (n, T): True where there is no token
        h = self.tokens(ids) + self.positions(self.backend.xp.arange(ids.shape[1]))  # (n, T, d) + (T, d)
        h = self.encoder(h, src_key_padding_mask=padding)
        real = (~padding).astype(h.dtype)[:, :, None]
        return self.head((h * real).sum(axis=1) / real.sum(axis=1))


def main(argv: list[str] | None = None) -> float:
    """Generate the sentences, train, print the progress, the validation and the test accuracy; return the latter."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", help="numpy, numba or auto (default)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--samples", type=int, default=2000, help="training sentences (20 %% of them validate)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    X_train, y_train = make_sentences(args.samples, rng=rng)
    X_test, y_test = make_sentences(1000, rng=rng)
    print(f"{len(X_train)} training and {len(X_test)} test sentences of {X_train.shape[1]} token ids, e.g.")
    for k in range(3):
        print(f"  {X_train[k].tolist()} -> {CLASSES[y_train[k]]}")
    clf = NeuralNetClassifier(
        module=KeywordTransformer,
        lr=3e-3,
        max_epochs=args.epochs,
        batch_size=32,
        train_split=0.2,
        callbacks=[LRScheduler("CosineAnnealingLR", T_max=args.epochs)],
        backend=args.backend,
        random_state=args.seed,
        verbose=True,
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    print(f"{clf.module_.num_parameters()} parameters; validation accuracy {clf.history_[-1, 'valid_score']:.4f}")
    accuracy = float(clf.score(X_test, y_test))
    print(f"test accuracy {accuracy:.4f}  (chance 0.25; backend {clf.backend_}, {elapsed:.1f} s)")
    return accuracy


if __name__ == "__main__":
    main()
