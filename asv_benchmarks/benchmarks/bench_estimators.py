"""The scikit-learn estimators as users call them: fit time, peak memory, test score, speed against sklearn.

``digits``: scikit-learn's digits scaled to [0, 1], default parameters (up to 200 epochs of Adam).
``synthetic-784``: MNIST-shaped synthetic data (10000 x 784 train, 10 classes), hidden (256, 128),
batch 128, 3 epochs of Adam. ``track_speedup_vs_sklearn`` fits sklearn's ``MLPClassifier`` and ours
on the same float32 data in the same process, interleaved, and reports sklearn's median time over ours.
"""

from __future__ import annotations

import statistics
import time
import warnings

import numpy as np

from .common import BACKENDS, backend_or_skip, classification_data

DATASETS = ["digits", "synthetic-784"]
#: Estimator parameters per dataset (both libraries get the same).
PARAMS: dict[str, dict] = {
    "digits": {},
    "synthetic-784": {
        "hidden_layer_sizes": (256, 128),
        "batch_size": 128,
        "max_iter": 3,
        "tol": 0.0,
        "n_iter_no_change": 10**6,
    },
}


def _data(dataset: str) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if dataset == "digits":
        X, y = load_digits(return_X_y=True)
        X = (X / 16.0).astype(np.float32)
    else:
        X, y = classification_data(12000, 784)
    return tuple(train_test_split(X, y, test_size=1 / 6 if dataset != "digits" else 0.25, random_state=0, stratify=y))


def _estimator(dataset: str, backend: str | None) -> object:
    kw = PARAMS[dataset]
    if backend is None:
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(random_state=0, **kw)
    from minitrain import MLPClassifier

    return MLPClassifier(random_state=0, backend=backend, **kw)


def _fit(est: object, X: np.ndarray, y: np.ndarray) -> object:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


class MLPClassifierFit:
    """``minitrain.MLPClassifier(backend=...)`` on digits and on MNIST-shaped synthetic data."""

    params = (BACKENDS, DATASETS)
    param_names = ["backend", "dataset"]
    number, repeat, warmup_time, rounds = 1, (2, 3, 8.0), 0.0, 1
    timeout = 600

    def setup(self, backend, dataset):
        backend_or_skip(backend)
        self.Xtr, self.Xte, self.ytr, self.yte = _data(dataset)
        _fit(_estimator(dataset, backend), self.Xtr[:256], self.ytr[:256])  # compile / load caches

    def time_fit(self, backend, dataset):
        _fit(_estimator(dataset, backend), self.Xtr, self.ytr)

    def peakmem_fit(self, backend, dataset):
        _fit(_estimator(dataset, backend), self.Xtr, self.ytr)

    def track_test_score(self, backend, dataset):
        return _fit(_estimator(dataset, backend), self.Xtr, self.ytr).score(self.Xte, self.yte)

    track_test_score.unit = "accuracy"

    def track_samples_per_second(self, backend, dataset):
        est = _estimator(dataset, backend)
        t0 = time.perf_counter()
        _fit(est, self.Xtr, self.ytr)
        return len(self.Xtr) * est.n_iter_ / (time.perf_counter() - t0)

    track_samples_per_second.unit = "samples/s"

    def track_speedup_vs_sklearn(self, backend, dataset):
        times: dict[str | None, list[float]] = {None: [], backend: []}
        for r in range(3):
            for who in (None, backend) if r % 2 == 0 else (backend, None):
                est = _estimator(dataset, who)
                t0 = time.perf_counter()
                _fit(est, self.Xtr, self.ytr)
                times[who].append(time.perf_counter() - t0)
        return statistics.median(times[None]) / statistics.median(times[backend])

    track_speedup_vs_sklearn.unit = "x sklearn"
