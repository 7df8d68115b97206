"""The asv suite and the peer comparison: a broken benchmark fails the tests, not only the next benchmark run."""

from __future__ import annotations

import importlib
import inspect
import itertools
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "asv_benchmarks"
MODULES = ("bench_kernels", "bench_layers", "bench_estimators")


@pytest.fixture(scope="module")
def suite():
    sys.path.insert(0, str(BENCH))
    try:
        yield {m: importlib.import_module(f"benchmarks.{m}") for m in MODULES}
    finally:
        sys.path.remove(str(BENCH))


def _classes(suite):
    for name in MODULES:
        for cls_name, cls in vars(suite[name]).items():
            if inspect.isclass(cls) and cls.__module__ == suite[name].__name__ and hasattr(cls, "params"):
                yield f"{name}.{cls_name}", cls


def _methods(cls):
    return [m for m in dir(cls) if m.startswith(("time_", "peakmem_", "track_"))]


def test_asv_check_passes():
    cmd = [sys.executable, "-m", "asv", "check", "--python=same", f"--config={BENCH / 'asv.conf.json'}"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No problems found" in result.stdout


def test_every_benchmark_takes_the_backend_first(suite):
    from benchmarks.common import BACKENDS

    classes = dict(_classes(suite))
    assert len(classes) >= 9
    for name, cls in classes.items():
        assert cls.params[0] == BACKENDS and cls.param_names[0] == "backend", name
        assert _methods(cls), f"{name} has no time_/peakmem_/track_ method"


def test_a_missing_backend_is_skipped_with_its_reason(suite):
    from benchmarks.common import SkipNotImplemented, backend_or_skip

    with pytest.raises(SkipNotImplemented, match="'nosuch' is not installed"):
        backend_or_skip("nosuch")
    for _, cls in _classes(suite):
        rest = [p[0] for p in cls.params[1:]]
        with pytest.raises(NotImplementedError, match="nosuch"):  # asv skips NotImplementedError raised in setup
            cls().setup("nosuch", *rest)


def _run_once(cls, backend, *rest):
    bench = cls()
    bench.setup(backend, *rest)
    return {m: getattr(bench, m)(backend, *rest) for m in _methods(cls)}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("module", ["bench_kernels", "bench_layers"])
def test_kernel_and_layer_benchmarks_run(suite, module, backend):
    """Every kernel and layer benchmark runs once with each of its parameters' first values."""
    from benchmarks.common import backend_or_skip

    try:
        backend_or_skip(backend)
    except NotImplementedError as exc:
        pytest.skip(str(exc))
    for name, cls in _classes(suite):
        if name.startswith(module):
            for rest in itertools.islice(itertools.product(*cls.params[1:]), 1):
                for method, value in _run_once(cls, backend, *rest).items():
                    if method.startswith("track_"):
                        assert np.isfinite(value) and value > 0, f"{name}.{method}{rest}: {value!r}"


def test_estimator_benchmarks_measure_the_fit(suite, monkeypatch):
    """On digits (20 epochs here): a fitted model's accuracy, positive speeds, and the ratio against sklearn."""
    monkeypatch.setitem(suite["bench_estimators"].PARAMS, "digits", {"max_iter": 20})
    cls = suite["bench_estimators"].MLPClassifierFit
    results = _run_once(cls, "numpy", "digits")
    assert results["track_test_score"] > 0.9
    assert results["track_samples_per_second"] > 1000
    assert 0.1 < results["track_speedup_vs_sklearn"] < 20


def test_train_step_learns(suite):
    """The benchmarked step is a real training step: the loss of a fixed batch goes down."""
    from benchmarks.common import TrainStep, backend_or_skip, classification_data, mlp

    be = backend_or_skip("numpy")
    X, y = classification_data(64, 20, 3)
    step = TrainStep(mlp((20, 16, 3), be), X, y, be, lr=1e-2)
    first = float(step().item())
    for _ in range(30):
        last = float(step().item())
    assert last < 0.5 * first


def test_compare_trees_reports_the_new_tree_against_the_old_and_scikit_learn():
    cmd = [sys.executable, str(BENCH / "compare_trees.py"), str(ROOT), str(ROOT), "--what", "digits", "--rounds", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("digits, 1 interleaved rounds")
    assert [ln.split()[0] for ln in lines[1:4]] == ["old", "new", "sklearn"]
    assert all(float(ln.split()[1]) > 0 for ln in lines[1:4])
    assert "new / old per round" in lines[4] and "new / scikit-learn" in lines[5]
