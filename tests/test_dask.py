"""minitrain on Dask: searches on a cluster of worker processes equal to n_jobs=1, workers resolving their own
backend and limiting their threads, small pickles, and fit_incremental on data larger than its memory budget."""

from __future__ import annotations

import importlib.util
import pathlib
import pickle
import sys
import tracemalloc

import numpy as np
import pytest

dask = pytest.importorskip("dask", reason='needs the dask extra: pip install "minitrain[dask]"')
distributed = pytest.importorskip("distributed", reason='needs the dask extra: pip install "minitrain[dask]"')

import cloudpickle  # noqa: E402  (a dependency of distributed)
import dask.array as da  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import joblib  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import loguniform  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from minitrain import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor, use_backend  # noqa: E402
from minitrain.dask import ThreadLimits, fit_incremental  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module

RNG = np.random.default_rng(0)
X_SMALL = RNG.normal(size=(300, 6)).astype(np.float32)
Y_SMALL = (X_SMALL[:, 0] + X_SMALL[:, 1] > 0).astype(np.int64)
TEACHER = np.random.default_rng(1).normal(size=32).astype(np.float32)


@pytest.fixture(scope="module")
def client():
    """One cluster for the module: 2 worker processes with one thread each (starting one takes seconds)."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    )
    with distributed.Client(cluster, set_as_default=False) as c:
        yield c
    cluster.close()


def _scores(search):
    keys = sorted(k for k in search.cv_results_ if k.startswith("split") or k == "mean_test_score")
    return {k: search.cv_results_[k] for k in keys}


# ---------------------------------------------------------------------------------------- searches on a cluster
def test_grid_search_on_the_cluster_equals_n_jobs_1(client):
    grid = {"hidden_layer_sizes": [(4,), (16,)], "alpha": [1e-4, 1.0]}
    search = GridSearchCV(MLPClassifier(max_iter=30, learning_rate_init=0.01, random_state=0), grid, cv=3)
    local = clone(search).fit(X_SMALL, Y_SMALL)
    with client.as_current(), joblib.parallel_config(backend="dask"):
        search.fit(X_SMALL, Y_SMALL)
    assert search.best_params_ == local.best_params_
    for key, values in _scores(local).items():
        np.testing.assert_array_equal(_scores(search)[key], values, err_msg=key)
    assert len(set(_scores(search)["mean_test_score"])) > 1  # the candidates differ: the comparison means something


def test_randomized_search_over_a_pipeline_on_the_cluster_equals_n_jobs_1(client):
    pipe = Pipeline([("scale", StandardScaler()), ("net", NeuralNetClassifier(max_epochs=4, random_state=0))])
    space = {"net__lr": loguniform(1e-3, 1e-1), "net__module__hidden": [(4,), (16,)]}
    search = RandomizedSearchCV(pipe, space, n_iter=4, cv=2, random_state=0)
    local = clone(search).fit(X_SMALL, Y_SMALL)
    with client.as_current(), joblib.parallel_config(backend="dask"):
        search.fit(X_SMALL, Y_SMALL)
    assert search.best_params_ == local.best_params_
    for key, values in _scores(local).items():
        np.testing.assert_array_equal(_scores(search)[key], values, err_msg=key)


def _fit_where_auto_means(est, X, y, name):
    """Fit on a worker whose own default backend is ``name`` (its MINITRAIN_BACKEND, for this task only)."""
    import os

    old = os.environ.get("MINITRAIN_BACKEND")
    os.environ["MINITRAIN_BACKEND"] = name
    try:
        return est.fit(X, y)
    finally:
        os.environ.pop("MINITRAIN_BACKEND") if old is None else os.environ.update(MINITRAIN_BACKEND=old)


def test_each_worker_resolves_backend_auto_itself(client):
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)  # backend="auto"
    with use_backend("numpy"):  # the client's choice, which must not travel with the estimator
        assert clone(est).fit(X_SMALL, Y_SMALL).backend_ == "numpy"
        fitted = client.submit(_fit_where_auto_means, est, X_SMALL, Y_SMALL, "numba", pure=False).result()
    assert fitted.backend_ == "numba" and fitted.backend == "auto" and est.backend == "auto"
    assert fitted.score(X_SMALL, Y_SMALL) > 0.5  # loaded here on the backend it was fitted on


def _pools():
    from threadpoolctl import threadpool_info

    import minitrain.backend  # noqa: F401  (workers import it as the tasks do)

    return {lib["user_api"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_thread_limits_plugin_sets_every_workers_blas_and_numba_threads(client):
    client.register_plugin(ThreadLimits(threads=1))
    seen = client.run(lambda dask_worker: dask_worker.minitrain_threads)
    assert len(seen) == 2 and all(v == {"blas": 1, "numba": 1} for v in seen.values()), seen
    assert all(v == {"blas": 1} for v in client.run(_pools).values())
    assert set(client.run(lambda: __import__("os").environ["NUMBA_NUM_THREADS"]).values()) == {"1"}
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        ThreadLimits(threads=0)


LIMITS_IN_A_FRESH_PROCESS = """
import sys, warnings
import minitrain, minitrain.dask
assert "dask" not in sys.modules and "distributed" not in sys.modules, "import minitrain must stay cheap"
import numba
numba.get_num_threads()  # Numba's threads start (2 of them: NUMBA_NUM_THREADS=2)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    print(minitrain.dask.limit_threads(1), [str(w.message)[:40] for w in caught])
"""


def test_limit_threads_sets_blas_and_warns_when_numba_threads_already_run():
    import os
    import subprocess

    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", LIMITS_IN_A_FRESH_PROCESS], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "{'blas': 1, 'numba': 2} [\"Numba's 2 threads already run in this" in done.stdout


# ---------------------------------------------------------------------------------------- small pickles
@pytest.mark.parametrize(
    "make",
    [
        lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0),
        lambda: MLPRegressor(hidden_layer_sizes=(16,), max_iter=2, random_state=0),
        lambda: NeuralNetClassifier(module__hidden=(16,), max_epochs=2, random_state=0),
        lambda: NeuralNetRegressor(module__hidden=(16,), max_epochs=2, random_state=0),
    ],
    ids=["MLPClassifier", "MLPRegressor", "NeuralNetClassifier", "NeuralNetRegressor"],
)
def test_estimators_pickle_to_their_weights_plus_a_few_bytes_per_sample(make):
    X = RNG.normal(size=(20000, 8)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    assert len(pickle.dumps(make())) < 1500  # what a search ships to a worker
    small, large = (pickle.dumps(make().fit(X[:n], y[:n])) for n in (2000, 20000))
    assert (len(large) - len(small)) / 18000 <= 2.5  # kept validation split: 2 bytes per sample up to 65536
    n_params = sum(p.size for p in pickle.loads(large).module_.parameters())
    assert len(small) < 3 * 4 * n_params + 30_000  # weights, Adam's two moments, generators, and the split
    for handle in (b"minitrain_numba", b"CPUDispatcher", b"cupy"):  # no kernels or device handles in pickles
        assert handle not in large


# ---------------------------------------------------------------------------------------- fit_incremental
N_BLOCKS, BLOCK_ROWS, N_FEATURES = 24, 4000, 32


def _teacher_block(block_id, rows=BLOCK_ROWS):
    X = np.random.default_rng(1000 + block_id).normal(size=(rows, N_FEATURES)).astype(np.float32)
    return X, (X @ TEACHER > 0).astype(np.int64)


def _lazy_teacher(calls):
    """X and y as dask arrays of N_BLOCKS blocks, each generated on demand (and counted in ``calls``)."""

    def make(block_info=None):
        calls.append(block_info[None]["chunk-location"][0])
        return _teacher_block(calls[-1])[0]

    X = da.map_blocks(make, chunks=((BLOCK_ROWS,) * N_BLOCKS, (N_FEATURES,)), dtype=np.float32)
    return X, (X @ da.from_array(TEACHER) > 0).astype(np.int64)


def test_fit_incremental_trains_on_more_data_than_its_memory_budget_as_well_as_fit_in_memory():
    calls, budget, epochs = [], 4 * 2**20, 3
    X, y = _lazy_teacher(calls)
    assert X.nbytes > 2.5 * budget
    make = lambda: MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0)  # noqa: E731
    tracemalloc.start()
    try:
        with dask.config.set(scheduler="sync"):
            est = fit_incremental(make(), X, y, epochs=epochs, classes=[0, 1], validation=1, random_state=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < budget, f"peak {peak / 2**20:.1f} MiB"
    assert len(calls) == 1 + epochs * (N_BLOCKS - 1)  # y's blocks compute with X's: each block once per epoch
    assert len(set(calls)) == N_BLOCKS
    X_test, y_test = _teacher_block(999, rows=5000)
    in_memory = make().set_params(max_iter=epochs).fit(*map(np.concatenate, zip(*map(_teacher_block, range(24)))))
    assert est.score(X_test, y_test) > 0.95
    assert abs(est.score(X_test, y_test) - in_memory.score(X_test, y_test)) < 0.02
    assert est.incremental_history_[:, "samples"] == [(N_BLOCKS - 1) * BLOCK_ROWS] * epochs


def test_fit_incremental_computes_blocks_on_the_cluster(client):
    X, y = _lazy_teacher([])
    with client.as_current():
        est = fit_incremental(MLPClassifier(hidden_layer_sizes=(8,), random_state=0), X[:16000], y[:16000])
    assert est.incremental_history_[-1, "blocks"] == 4 and list(est.classes_) == [0, 1]


def _chunks(n=6, rows=1000):
    return [_teacher_block(i, rows) for i in range(n)]


@pytest.mark.parametrize("kind", ["list", "generator function", "delayed", "dataframe chunks", "parquet"])
def test_fit_incremental_reads_chunks_from_any_iterable(kind, tmp_path):
    frames = [pd.DataFrame(Xc).assign(label=yc).rename(columns=str) for Xc, yc in _chunks()]
    X, y, extra = {
        "list": (_chunks(), None, {}),
        "generator function": (lambda: iter(_chunks()), None, {}),
        "delayed": ([dask.delayed(_teacher_block)(i, 1000) for i in range(6)], None, {}),
        "dataframe chunks": (frames, "label", {}),
        "parquet": (None, "label", {}),
    }[kind]
    if kind == "parquet":  # a dataset on disk, read one partition at a time; classes come from its label column
        dd.from_pandas(pd.concat(frames, ignore_index=True), npartitions=6).to_parquet(tmp_path)
        X = dd.read_parquet(tmp_path)
    else:
        extra = {"classes": [0, 1]}
    est = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    est = fit_incremental(est, X, y, epochs=4, validation=1, random_state=0, **extra)
    assert est.incremental_history_[:, "blocks"] == [5] * 4
    assert est.incremental_history_[-1, "valid_score"] > 0.9


def test_early_stopping_stops_and_keeps_the_best_epochs_weights():
    scores, weights = iter([0.5, 0.8, 0.7, 0.79, 0.6, 0.9]), []

    def scorer(est, X, y):
        weights.append([w.copy() for w in est.coefs_])
        return next(scores)

    est = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    est = fit_incremental(
        est, _chunks(), epochs=6, classes=[0, 1], scoring=scorer, early_stopping=True, n_iter_no_change=2, tol=0.01
    )
    assert est.incremental_history_[:, "valid_score"] == [0.5, 0.8, 0.7, 0.79]  # 2 epochs without +0.01: stop
    assert est.incremental_history_[:, "valid_score_best"] == [True, True, False, False]
    for got, best in zip(est.coefs_, weights[1], strict=True):
        np.testing.assert_array_equal(got, best)
    assert not np.array_equal(weights[1][0], weights[3][0])
    kept = fit_incremental(clone(est), _chunks(), epochs=3, classes=[0, 1], validation=1, early_stopping=False)
    assert len(kept.incremental_history_) == 3


def test_a_neuralnet_trains_on_every_row_of_each_block_and_keeps_its_train_split():
    X, y = _lazy_teacher([])
    est = NeuralNetClassifier(module__hidden=(8,), random_state=0)  # train_split=0.2
    fit_incremental(est, X[:8000], y[:8000], epochs=2, validation=None)
    assert est.train_split == 0.2 and not hasattr(est, "_split_")
    assert [r["samples"] for r in est.incremental_history_] == [8000, 8000]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((X_SMALL, Y_SMALL), {}, TypeError, "it is in memory, so estimator.fit"),
        ((iter(_chunks(2)),), {"epochs": 2, "classes": [0, 1]}, TypeError, "pass a list, or a callable"),
        ((da.ones((100, 2), chunks=50), np.zeros(99)), {}, ValueError, "X has 100 rows but y has 99"),
        ((da.ones((100, 2), chunks=50),), {}, ValueError, "y is required"),
        ((da.ones((100, 2), chunks=50), da.zeros(100)), {"validation": 2}, ValueError, "at least one must remain"),
        ((da.ones((100, 2), chunks=50), da.zeros(100)), {"validation": None, "early_stopping": True}, ValueError,
         "early_stopping=True needs validation"),
        ((da.ones((100, 2), chunks=50), da.zeros(100)), {"validation": "all"}, ValueError, "validation must be"),
        ((da.ones((100, 2), chunks=50), da.zeros(100)), {"epochs": 0}, ValueError, "epochs must be a whole number"),
        ((_chunks(2),), {}, ValueError, "pass classes="),
        (([(X_SMALL, Y_SMALL[:5])],), {"classes": [0, 1]}, ValueError, "chunk 0: X and y must be arrays"),
        (([X_SMALL],), {"classes": [0, 1]}, TypeError, r"chunk 0 must be an \(X, y\)"),
        ((_chunks(2), Y_SMALL), {"classes": [0, 1]}, ValueError, "y and sample_weight come inside the chunks"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_what_to_do(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_incremental(MLPClassifier(hidden_layer_sizes=(4,)), *args, **kwargs)


@pytest.mark.parametrize(
    ("est", "error", "match"),
    [
        (MLPClassifier(solver="lbfgs"), TypeError, "partial_fit, which MLPClassifier lacks"),
        (MLPClassifier(early_stopping=True), ValueError, "set it to False and pass early_stopping=True"),
        (MLPRegressor(), ValueError, "classes is for classifiers"),
    ],
)
def test_estimators_that_cannot_train_incrementally_are_refused(est, error, match):
    with pytest.raises(error, match=match):
        fit_incremental(est, _chunks(2), classes=[0, 1])


def test_dask_ml_incremental_wraps_minitrain_estimators():
    wrappers = pytest.importorskip("dask_ml.wrappers", reason="dask-ml is not installed (optional)")
    X, y = _lazy_teacher([])
    inc = wrappers.Incremental(NeuralNetClassifier(module__hidden=(8,), train_split=None, random_state=0))
    inc.fit(X[:16000], y[:16000], classes=[0, 1])
    assert inc.score(*map(da.from_array, _teacher_block(999))) > 0.9


# ---------------------------------------------------------------------------------------- the example
def test_the_dask_search_example_runs_quick(capsys):
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "dask_search.py"
    spec = importlib.util.spec_from_file_location("dask_search", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--quick"])
    out = capsys.readouterr().out
    assert "dashboard: http" in out and "cluster: 2 workers, 2 threads" in out
    assert "best parameters: {" in out and "same best parameters: True" in out, out
    assert result["search"].best_score_ > 0.5
