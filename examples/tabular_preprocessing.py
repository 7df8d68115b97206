"""Missing values and outliers: a tuned scikit-learn pipeline with IQRClipper in front of minitrain's MLPClassifier.

scikit-learn's breast cancer data (569 tumours, 30 measurements) are corrupted as real data often are: 10 % of
the values go missing (NaN) and 3 % become gross errors, 20 to 50 times their value, in the training and the
test data alike. One ``Pipeline``: :class:`minitrain.preprocessing.IQRClipper` (outliers clipped to Tukey's
fences, or set to NaN), scikit-learn's ``SimpleImputer`` (median) and ``StandardScaler``, and minitrain's
``MLPClassifier``. The clipper comes first so that ``strategy='nan'`` hands its outliers to the imputer; it
ignores NaN when it learns its fences. ``GridSearchCV`` tunes the clipper's ``factor`` and ``strategy`` and the
MLP's ``alpha`` (5-fold, stratified). The same search without the clipper (``'passthrough'``), and the pipeline
on the clean data, show what the clipper buys: a table of cross-validated and test accuracies.

    python examples/tabular_preprocessing.py [--backend numpy] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from minitrain import MLPClassifier
from minitrain.preprocessing import IQRClipper


def corrupt(X: np.ndarray, rng: np.random.Generator, missing: float = 0.1, outliers: float = 0.03) -> np.ndarray:
    """A copy of ``X`` with a fraction ``outliers`` of its values multiplied by 20 to 50, then a fraction
    ``missing`` of them set to NaN (chosen independently, uniformly over the whole array).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    rng : numpy.random.Generator
    missing, outliers : float, default=0.1, 0.03

    Returns
    -------
    ndarray of shape (n_samples, n_features)
    """
    X = np.array(X, dtype=np.float64)
    wild = rng.random(X.shape) < outliers
    X[wild] *= rng.uniform(20.0, 50.0, wild.sum())
    X[rng.random(X.shape) < missing] = np.nan
    return X


def make_search(backend: str = "auto", clip: bool = True, seed: int = 0) -> GridSearchCV:
    """The grid search over the pipeline, unfitted; ``clip=False`` replaces the clipper by ``'passthrough'``.

    Parameters
    ----------
    backend : str, default='auto'
    clip : bool, default=True
    seed : int, default=0
        ``random_state`` of the MLP and of the folds.

    Returns
    -------
    GridSearchCV
    """
    mlp = MLPClassifier(
        hidden_layer_sizes=(32,), learning_rate_init=3e-3, max_iter=200, tol=1e-3, dtype="float32",
        backend=backend, random_state=seed,
    )  # fmt: skip
    pipe = Pipeline(
        [
            ("clip", IQRClipper() if clip else "passthrough"),
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("mlp", mlp),
        ]
    )
    grid: dict[str, list] = {"mlp__alpha": [1e-4, 1e-1]}
    if clip:
        grid.update({"clip__factor": [1.5, 3.0], "clip__strategy": ["clip", "nan"]})
    return GridSearchCV(pipe, grid, cv=StratifiedKFold(5, shuffle=True, random_state=seed))


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the three searches and print a table; return the test accuracy of each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", help="numpy, numba or auto (default)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the corruption, the MLP and the folds")
    args = parser.parse_args(argv)

    X, y = load_breast_cancer(return_X_y=True)
    X_dirty = corrupt(X, np.random.default_rng(args.seed))
    print(f"{X.shape[0]} samples, {X.shape[1]} features; {np.isnan(X_dirty).mean():.1%} missing values")
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=0)
    runs = {
        "corrupted, IQRClipper": (X_dirty, True),
        "corrupted, no clipper": (X_dirty, False),
        "clean, IQRClipper": (X, True),
    }
    rows, scores = [], {}
    for name, (data, clip) in runs.items():
        start = time.perf_counter()
        search = make_search(args.backend, clip, args.seed).fit(data[train], y[train])
        scores[name] = float(search.score(data[test], y[test]))
        n = len(search.cv_results_["params"])
        best = {k.split("__", 1)[1]: v for k, v in search.best_params_.items()}
        rows.append((name, search.best_score_, scores[name], best))
        print(f"{name}: {n} candidates x 5 folds in {time.perf_counter() - start:.1f} s, best {best}")
    backend = search.best_estimator_[-1].backend_
    print(f"\n{'data, pipeline':<24}{'validation (CV)':>16}{'test':>8}   (accuracy, backend {backend})")
    for name, cv, test_score, _ in rows:
        print(f"{name:<24}{cv:>16.4f}{test_score:>8.4f}")
    return scores


if __name__ == "__main__":
    main()
