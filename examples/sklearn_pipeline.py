"""GridSearchCV over a scikit-learn pipeline ending in minitrain's MLPClassifier, with the backend searched too.

Run: ``python examples/sklearn_pipeline.py``. Prints the best parameters, the held-out test accuracy and the
mean fit time of each backend in the search.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from minitrain import MLPClassifier, list_backends


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a one-candidate-per-backend grid (for tests)")
    args = parser.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    X[rng.random(X.shape) < 0.02] = np.nan  # a few missing pixels for the imputer to fill
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)

    backends = [b.name for b in list_backends() if b.available]
    pipe = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("mlp", MLPClassifier(early_stopping=True, random_state=0, dtype="float32")),
        ]
    )
    grid = {
        "mlp__hidden_layer_sizes": [(64,)] if args.quick else [(64,), (128,)],
        "mlp__alpha": [1e-4] if args.quick else [1e-4, 1e-2],
        "mlp__backend": backends,
    }
    search = GridSearchCV(pipe, grid, cv=3, n_jobs=2)
    start = time.perf_counter()
    search.fit(X_train, y_train)
    print(f"searched {len(search.cv_results_['params'])} candidates x 3 folds in {time.perf_counter() - start:.1f} s")
    print("best parameters:", search.best_params_)
    print(f"best cross-validated accuracy: {search.best_score_:.4f}")
    accuracy = search.score(X_test, y_test)
    print(f"test accuracy: {accuracy:.4f}")
    fit_times = search.cv_results_["mean_fit_time"]
    for name in backends:
        picked = [t for t, p in zip(fit_times, search.cv_results_["params"]) if p["mlp__backend"] == name]
        print(f"backend {name:>6}: mean fit time {np.mean(picked):.3f} s per fold")
    return accuracy


if __name__ == "__main__":
    main()
