"""RandomizedSearchCV over a pipeline on a Dask cluster, against the same search with n_jobs=1.

A StandardScaler + minitrain MLPClassifier pipeline, on a few hundred thousand synthetic rows, searched on a
``distributed.LocalCluster`` (one worker process per core, one thread each) or on a running cluster. Needs the
``dask`` extra: ``pip install "minitrain[dask]"``.

Run::

    python examples/dask_search.py                                # a LocalCluster on this machine
    python examples/dask_search.py --scheduler tcp://10.0.0.5:8786  # a running cluster (see docs/dask.md)
    python examples/dask_search.py --rows 20000 --layouts 2x1,1x2,2x1:2 --repeats 3  # compare worker layouts

Prints the dashboard link, the best parameters, and the wall time on the cluster against ``n_jobs=1``.
``--layouts`` times the search on LocalClusters of ``WORKERSxTHREADS[:TASK_THREADS]`` (task threads: BLAS and
Numba threads per worker process, default cores / (workers x threads)), interleaved with ``n_jobs=1`` runs.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import RandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from minitrain import MLPClassifier


def make_search(args: argparse.Namespace) -> RandomizedSearchCV:
    mlp = MLPClassifier(max_iter=args.max_iter, random_state=0, backend=args.backend, dtype="float32")
    space = {
        "mlp__hidden_layer_sizes": [(32,), (64,), (64, 32)],
        "mlp__alpha": loguniform(1e-5, 1e-2),
        "mlp__learning_rate_init": loguniform(1e-3, 1e-2),
        "mlp__batch_size": [128, 256],
    }
    pipe = Pipeline([("scale", StandardScaler()), ("mlp", mlp)])
    return RandomizedSearchCV(pipe, space, n_iter=args.candidates, cv=args.cv, random_state=0)


def quiet() -> None:
    """Hide the ConvergenceWarning of every fit stopped at max_iter (run in this process and on each worker)."""
    warnings.filterwarnings("ignore", category=ConvergenceWarning)


def start_cluster(workers: int, threads: int, task_threads: int | None = None) -> tuple:
    """A LocalCluster of worker processes, its client, and ThreadLimits so that workers share the cores."""
    from distributed import Client, LocalCluster

    from minitrain.dask import ThreadLimits

    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=":0")
    client = Client(cluster)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    client.register_plugin(ThreadLimits(task_threads or max(1, cores // (workers * threads))))
    client.run(quiet)
    return cluster, client


def timed_fit(search: RandomizedSearchCV, X: np.ndarray, y: np.ndarray, client=None) -> float:
    """Wall time of ``search.fit``: on ``client``'s cluster through joblib's dask backend, else with n_jobs=1."""
    import joblib

    start = time.perf_counter()
    if client is None:
        search.fit(X, y)
    else:
        with joblib.parallel_config(backend="dask", client=client):
            search.fit(X, y)
    return time.perf_counter() - start


def compare_layouts(args: argparse.Namespace, X: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """Median wall time of the search per layout, ``n_jobs=1`` included, repeats interleaved."""
    clusters = {}
    for spec in args.layouts.split(","):
        shape, _, task = spec.partition(":")
        workers, threads = (int(v) for v in shape.split("x"))
        clusters[spec] = start_cluster(workers, threads, int(task) if task else None)
    try:
        warm = make_search(args).set_params(n_iter=1, cv=2)
        for _, client in clusters.values():  # workers import minitrain and load the compiled kernels once
            timed_fit(clone(warm), X[:2000], y[:2000], client)
        times: dict[str, list[float]] = {"n_jobs=1": [], **{spec: [] for spec in clusters}}
        for _ in range(args.repeats):
            times["n_jobs=1"].append(timed_fit(make_search(args), X, y))
            for spec, (_, client) in clusters.items():
                times[spec].append(timed_fit(make_search(args), X, y, client))
        for spec, values in times.items():
            print(f"{spec:>9}: median {np.median(values):6.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
        return times
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000, help="synthetic samples (default 300000)")
    parser.add_argument("--candidates", type=int, default=6, help="parameter settings sampled (default 6)")
    parser.add_argument("--cv", type=int, default=3, help="cross-validation folds (default 3)")
    parser.add_argument("--max-iter", type=int, default=5, help="epochs per fit (default 5)")
    parser.add_argument("--backend", default="auto", help="minitrain backend of the MLP (default: each worker's auto)")
    parser.add_argument("--scheduler", help="address of a running scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: cores)")
    parser.add_argument("--layouts", help="compare LocalCluster layouts, e.g. 2x1,1x2,2x1:2 (see above)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per layout with --layouts (default 3)")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the n_jobs=1 search")
    parser.add_argument("--quick", action="store_true", help="a small search on 3000 rows (for tests)")
    args = parser.parse_args(argv)
    quiet()
    if args.quick:
        args.rows, args.candidates, args.cv, args.max_iter, args.repeats = 3000, 2, 2, 3, 1
    X, y = make_classification(
        n_samples=args.rows, n_features=20, n_informative=10, n_classes=3, random_state=0
    )  # fmt: skip
    X = X.astype(np.float32)
    if args.layouts:
        return {"times": compare_layouts(args, X, y)}

    if args.scheduler:
        from distributed import Client

        cluster, client = None, Client(args.scheduler)
        client.run(quiet)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        cluster, client = start_cluster(min(args.workers or cores, 2 if args.quick else cores), 1)
    try:
        print(f"dashboard: {client.dashboard_link}")
        workers = client.scheduler_info()["workers"].values()
        print(f"cluster: {len(workers)} workers, {sum(w['nthreads'] for w in workers)} threads")
        search = make_search(args)
        elapsed = timed_fit(search, X, y, client)
        n_fits = args.candidates * args.cv
        print(f"searched {args.candidates} candidates x {args.cv} folds on {args.rows} rows in {elapsed:.1f} s")
        print("best parameters:", search.best_params_)
        print(f"best cross-validated accuracy: {search.best_score_:.4f} ({n_fits} fits)")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    result = {"search": search, "seconds": elapsed}
    if not args.skip_baseline:
        baseline = make_search(args)
        result["baseline_seconds"] = local = timed_fit(baseline, X, y)
        same = baseline.best_params_ == search.best_params_
        print(f"n_jobs=1: {local:.1f} s; the cluster was {local / elapsed:.2f}x as fast; same best parameters: {same}")
    return result


if __name__ == "__main__":
    main()
