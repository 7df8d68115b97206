"""The Numba backend plugin: cheap import, availability, parity, kernels really used, cache and threads."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minitrain.backend import Backend, NumpyBackend, get_backend
from minitrain.testing import check_backend

numba = pytest.importorskip("numba")
minitrain_numba = pytest.importorskip("minitrain_numba")
from minitrain_numba import _jit, _kernels, _optim  # noqa: E402

DTYPES = ("float32", "float64")


@pytest.fixture
def nb():
    return get_backend("numba")


def run_python(code: str, tmp_path, **env: str) -> str:
    """Run ``code`` in a fresh interpreter with its own Numba cache directory; return its stdout."""
    full_env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), **env}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def rand(shape, dtype, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


# ------------------------------------------------------------------------------------------ plugin
def test_plugin_imports_without_importing_numba(tmp_path):
    out = run_python(
        """
        import sys
        import minitrain_numba
        be = minitrain_numba.NumbaBackend()
        print("numba" in sys.modules)
        import numpy as np
        be.mse(np.ones(3), np.zeros(3))
        print("numba" in sys.modules)
        """,
        tmp_path,
    )
    assert out.split() == ["False", "True"]


def test_is_available_explains_a_missing_numba(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    ok, reason = minitrain_numba.NumbaBackend.is_available()
    assert not ok
    assert "numba is not installed" in reason and "pip install numba" in reason


def test_is_available_explains_a_broken_numba(monkeypatch):
    import builtins

    real = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "numba":
            raise OSError("libllvmlite.so: cannot open shared object file")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    ok, reason = minitrain_numba.NumbaBackend.is_available()
    assert not ok and "OSError: libllvmlite.so" in reason and "pip install --force-reinstall numba" in reason


def test_registered_as_numba(nb):
    assert type(nb).__name__ == "NumbaBackend" and nb.name == "numba"
    assert nb.is_available() == (True, "")


@pytest.mark.slow
def test_check_backend_passes():
    check_backend(get_backend("numba"))


# ------------------------------------------------------------------------------------------ kernels used
def _calls(dtype):
    """(kernel, args, kwargs) of every override, on contiguous arrays of ``dtype``."""
    x, w, b = rand((5, 4), dtype), rand((3, 4), dtype, 1), rand(3, dtype, 2)
    y = np.maximum(rand((5, 3), dtype, 3), 0)
    p = [rand(7, dtype, s) for s in range(2)] + [np.abs(rand(7, dtype, s)) + 1 for s in (2, 3)] + [np.zeros(7, dtype)]
    return [
        ("act", (x, "relu"), {}),
        ("act", (x, "gelu"), {"out": np.empty_like(x)}),
        ("affine_act", (x, w, b, "relu"), {}),
        ("affine_act", (x, w, None, "gelu"), {}),
        ("act", (x, "tanh"), {}),
        ("affine_act", (x, w, b, "gelu_tanh"), {}),
        ("act_backward", (y, y, None, "relu"), {}),
        ("softmax_cross_entropy", (x, np.array([0, 1, 2, 3, 0])), {"label_smoothing": 0.1}),
        ("softmax_cross_entropy", (x, np.full((5, 4), 0.25, dtype)), {}),
        ("sigmoid_cross_entropy", (x, (x > 0).astype(dtype)), {"pos_weight": np.full(4, 2.0, dtype)}),
        ("mse", (x, x[::-1].copy()), {}),
        ("dropout", (x, 0.5, np.random.default_rng(3)), {}),
        ("batchnorm", (x, None, None, np.zeros(4, dtype), np.ones(4, dtype)), {}),
        ("batchnorm_backward", (x, x, np.ones(4, dtype), None), {}),
        ("sgd_step", (p[0], p[1], p[2]), {"lr": 0.1, "step": 2, "momentum": 0.9, "nesterov": True}),
        ("adam_step", (p[0], p[1], p[2], p[3]), {"lr": 0.1, "step": 2, "weight_decay": 0.1, "decoupled": True}),
        ("rmsprop_step", (p[0], p[1], p[2], p[3], p[4]), {"lr": 0.1, "momentum": 0.9, "centered": True}),
        ("rmsprop_step", (p[0], p[1], p[2], None, None), {"lr": 0.1}),
        ("rmsprop_step", (p[0], p[1], p[2], None, None), {"lr": 0.1, "weight_decay": 0.1, "l1": 0.01}),
        ("gru_step_backward", (x, np.abs(rand((5, 12), dtype, 4)) % 1, rand((5, 12), dtype, 5), x[::-1].copy()), {}),
        ("gru_step", (rand((5, 12), dtype, 4), rand((5, 12), dtype, 5), x), {}),
        ("lstm_step", (rand((5, 16), dtype, 4), x), {"out_c": x.copy()}),
        ("lstm_step_backward", (x, x[::-1].copy(), np.abs(rand((5, 16), dtype, 4)) % 1, x * 2, x * 3), {}),
        ("lstm_step_backward", (x, None, np.abs(rand((5, 16), dtype, 4)) % 1, x * 2, x * 3), {}),
        ("bias_act_backward", (y, y, None, "relu"), {"bias_grad": np.empty(3, dtype)}),
        ("adagrad_step", (p[0], p[1], p[2]), {"lr": 0.1, "step": 3, "l1": 0.01}),
        ("clip_grad_norm", (p[1], 0.5), {}),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
def test_overrides_run_numba_kernels_not_the_reference(nb, monkeypatch, dtype):
    def fell_back(*args, **kwargs):
        raise AssertionError("the NumPy reference ran")

    calls = _calls(dtype)
    for name in {c[0] for c in calls}:
        monkeypatch.setattr(Backend, name, fell_back)
    for name, args, kwargs in calls:
        getattr(nb, name)(*[a.copy() if isinstance(a, np.ndarray) else a for a in args], **kwargs)
    assert (numba.types.Array(numba.from_dtype(np.dtype(dtype)), 1, "C"),) * 4 in [
        s[:4] for s in _optim.adam.serial.signatures
    ]


@pytest.mark.parametrize("dtype", DTYPES)
def test_overrides_match_the_reference(nb, dtype):
    ref, tol = NumpyBackend(), {"float32": 1e-5, "float64": 1e-12}[dtype]
    for name, args, kwargs in _calls(dtype):
        mine = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        theirs = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        if name == "dropout":  # two generators with the same seed
            mine[2], theirs[2] = nb.generator(3), ref.generator(3)
        got, want = getattr(nb, name)(*mine, **kwargs), getattr(ref, name)(*theirs, **kwargs)
        got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        for g, w in [*zip(got, want), *zip(mine, theirs)]:  # results, then arguments updated in place
            if isinstance(g, np.ndarray):
                np.testing.assert_allclose(g, w, rtol=tol, atol=tol * max(1.0, np.abs(w).max()), err_msg=name)


# ------------------------------------------------------------------------------------------ layouts, dtypes
@pytest.mark.parametrize("dtype", DTYPES)
def test_act_into_a_strided_view_writes_through(nb, dtype):
    big = rand((6, 10), dtype, scale=2.0)
    view = big[:, ::2]
    want = np.where(view > 0, view, 0.2 * view)
    result = nb.act(view, "leaky_relu", alpha=0.2, out=view)
    assert result is view
    np.testing.assert_allclose(big[:, ::2], want, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_act_on_transposed_inputs_into_a_non_contiguous_out(nb, dtype):
    x, w, b = rand((4, 6), dtype).T.copy().T, rand((6, 5), dtype, 1).T, rand(5, dtype, 2)
    out = np.zeros((5, 4), dtype).T
    y, z = nb.affine_act(x, w, b, "relu", out=out)
    assert y is out and z is None
    np.testing.assert_allclose(out, np.maximum(x @ w.T + b, 0), rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_act_backward_of_transposed_arrays(nb, dtype):
    g, y = rand((3, 7), dtype).T, rand((3, 7), dtype, 1).T
    got = nb.act_backward(g, y, None, "sigmoid")
    np.testing.assert_allclose(got, g * y * (1 - y), rtol=1e-6)


def test_float64_kernels_compute_in_float64(nb):
    x = np.array([[1e-10, 2.0, -3.0]])
    loss, grad = nb.softmax_cross_entropy(x, np.array([0]))
    assert loss.dtype == grad.dtype == np.float64
    want = -(1e-10 - np.log(np.exp(x).sum()))
    assert loss[0] == pytest.approx(want, rel=1e-14)


def test_unpickled_arrays_still_use_the_kernels(nb, monkeypatch):
    monkeypatch.setattr(Backend, "adam_step", None)  # the reference would fail: the kernel must run
    p, g, m, v = (
        pickle.loads(pickle.dumps(a))
        for a in (np.ones(5, np.float32), np.ones(5, np.float32), *[np.zeros(5, np.float32)] * 2)
    )
    nb.adam_step(p, g, m, v, lr=0.1, step=1)
    np.testing.assert_allclose(p, 0.9, rtol=1e-6)


_DECAYING = {  # optimizer step: its state arguments (after p and g), then its options
    "sgd_step": (1, {"lr": 0.1, "step": 2, "momentum": 0.9}),
    "adam_step": (2, {"lr": 0.1, "step": 3}),
    "rmsprop_step": (3, {"lr": 0.1, "momentum": 0.9, "centered": True}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(_DECAYING))
def test_decaying_state_is_flushed_to_zero_not_left_subnormal(nb, name, dtype):
    """A zero gradient decays optimizer state into the subnormal range, where it stays (``4 * 2**-149 * 0.9``
    rounds back to itself in float32) and makes every later step slow on Intel CPUs: the kernels store zero
    there instead. The reference keeps the subnormals; the two agree to ``tiny``. NaN state stays NaN."""
    info = np.finfo(dtype)
    start = np.array([1.0005 * info.tiny, 4 * info.smallest_subnormal, info.tiny, np.nan], dtype)
    n_state, kwargs = _DECAYING[name]
    args = [np.ones(4, dtype), np.zeros(4, dtype), *[start.copy() for _ in range(n_state)]]
    theirs = [a.copy() for a in args]
    getattr(nb, name)(*args, **kwargs)
    getattr(NumpyBackend(), name)(*theirs, **kwargs)
    for mine, ref in zip(args[2:], theirs[2:]):
        assert np.count_nonzero((ref != 0) & (np.abs(ref) < info.tiny)) == 3  # what the state decays to
        np.testing.assert_array_equal(mine, [0, 0, 0, np.nan])
        np.testing.assert_allclose(mine, ref, rtol=0, atol=info.tiny)
    np.testing.assert_allclose(args[0], theirs[0], rtol=1e-6)


def test_other_dtypes_fall_back_to_the_reference(nb):
    x = np.array([[-1.0, 2.0]], dtype=np.float16)
    assert nb.act(x, "relu").dtype == np.float16
    np.testing.assert_array_equal(nb.act(x, "relu"), [[0.0, 2.0]])


def test_out_of_range_class_index_raises(nb):
    with pytest.raises(IndexError, match="out of bounds"):
        nb.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))


def test_negative_class_index_counts_from_the_end_like_numpy(nb):
    x = rand((2, 3), "float64")
    got = nb.softmax_cross_entropy(x, np.array([-1, 0]))
    want = NumpyBackend().softmax_cross_entropy(x, np.array([2, 0]))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)


def test_dropout_draws_the_reference_mask(nb):
    x = rand((50, 40), "float32")
    ref = NumpyBackend()
    y, mask = nb.dropout(x, 0.3, nb.generator(11))
    y_ref, mask_ref = ref.dropout(x, 0.3, ref.generator(11))
    np.testing.assert_array_equal(mask, mask_ref)
    np.testing.assert_array_equal(y, y_ref)


# ------------------------------------------------------------------------------------------ threads
def test_small_work_runs_serial_without_starting_the_threading_layer(tmp_path):
    out = run_python(
        """
        import numba, numpy as np, minitrain as mt
        from minitrain import nn, optim, functional as F
        with mt.use_backend("numba"):
            model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))
            opt = optim.Adam(model.parameters())
            loss = F.cross_entropy(model(mt.tensor(np.ones((8, 20), np.float32))), np.zeros(8, np.int64))
            loss.backward()
            opt.step()
        try:
            numba.threading_layer()
            print("started")
        except ValueError:
            print("not-started")
        print(numba.get_num_threads())
        """,
        tmp_path,
        NUMBA_NUM_THREADS="2",
    )
    assert out.split() == ["not-started", "2"]


def test_kernel_picks_the_variant_by_work(monkeypatch):
    calls = []
    k = _jit.Kernel(lambda *a: None)
    monkeypatch.setattr(_jit.Kernel, "serial", property(lambda self: lambda *a: calls.append("serial")))
    monkeypatch.setattr(_jit.Kernel, "parallel", property(lambda self: lambda *a: calls.append("parallel")))
    monkeypatch.setattr(_jit, "_state", {"launched_pid": os.getpid(), "parallel_ok": True})
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 2)
    k(_jit.PARALLEL_MIN - 1)
    k(_jit.PARALLEL_MIN)
    monkeypatch.setattr(_jit, "_state", {"launched_pid": os.getpid() + 1, "parallel_ok": True})  # a forked child
    k(_jit.PARALLEL_MIN)
    monkeypatch.setattr(_jit, "_state", {"launched_pid": 0, "parallel_ok": False})  # e.g. the workqueue layer
    k(_jit.PARALLEL_MIN)
    assert calls == ["serial", "parallel", "serial", "serial"]


@pytest.mark.slow
def test_parallel_variant_matches_and_a_forked_child_runs_serial(tmp_path):
    out = run_python(
        """
        import multiprocessing as mp, numpy as np, minitrain as mt
        from minitrain_numba import _optim

        def run(seed):
            be = mt.get_backend("numba")
            r = np.random.default_rng(seed)
            p, g = r.standard_normal(5000), r.standard_normal(5000)
            m, v = np.zeros(5000), np.zeros(5000)
            for step in (1, 2, 3):
                be.adam_step(p, g, m, v, lr=0.01, step=step, weight_decay=0.1)
            return p

        parent = run(0)
        print(_optim.adam._parallel is not None)
        ref = mt.get_backend("numpy")
        r = np.random.default_rng(0)
        p, g = r.standard_normal(5000), r.standard_normal(5000)
        m, v = np.zeros(5000), np.zeros(5000)
        for step in (1, 2, 3):
            ref.adam_step(p, g, m, v, lr=0.01, step=step, weight_decay=0.1)
        print(np.allclose(parent, p, rtol=1e-13, atol=0))
        with mp.get_context("fork").Pool(1) as pool:
            child = pool.apply(run, (0,))
        print(np.array_equal(child, parent))
        """,
        tmp_path,
        MINITRAIN_NUMBA_PARALLEL_MIN="1000",
    )
    assert out.split() == ["True", "True", "True"]


# ------------------------------------------------------------------------------------------ cache
_CACHE_PROBE = """
    import numpy as np, minitrain as mt
    from minitrain_numba import _optim
    p, g = np.ones(10, np.float32), np.full(10, 0.5, np.float32)
    mt.get_backend("numba").adam_step(p, g, np.zeros(10, np.float32), np.zeros(10, np.float32), lr=0.1, step=1)
    stats = _optim.adam.serial.stats
    print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), round(float(p[0]), 6))
"""


def test_compiled_kernels_are_cached_on_disk(tmp_path):
    assert run_python(_CACHE_PROBE, tmp_path).split() == ["0", "1", "0.9"]
    assert run_python(_CACHE_PROBE, tmp_path).split() == ["1", "0", "0.9"]


def test_a_cache_from_another_numba_version_recompiles(tmp_path):
    run_python(_CACHE_PROBE, tmp_path)
    indexes = list((tmp_path / "cache").rglob("*.nbi"))
    assert indexes
    for index in indexes:
        with open(index, "rb") as f:
            pickle.load(f)  # the numba version that wrote it
            rest = f.read()
        with open(index, "wb") as f:
            pickle.dump("0.0.1-another-numba", f, protocol=-1)
            f.write(rest)
    assert run_python(_CACHE_PROBE, tmp_path).split() == ["0", "1", "0.9"]


def test_kernels_compile_in_memory_where_no_cache_location_is_writable():
    namespace: dict = {}
    exec("def twice(a):\n    for i in range(a.size):\n        a[i] *= 2\n", namespace)  # no source file to cache
    k = _jit.Kernel(namespace["twice"])
    a = np.arange(4.0)
    k(a.size, a)
    np.testing.assert_array_equal(a, [0.0, 2.0, 4.0, 6.0])


def test_activation_kernels_are_made_once_per_code():
    relu = _kernels.activation_kernel("act", _kernels.CODES["relu"])
    assert _kernels.activation_kernel("act", _kernels.CODES["relu"]) is relu
    assert _kernels.activation_kernel("act", _kernels.CODES["elu"]) is not relu


@pytest.mark.parametrize("dtype", DTYPES)
def test_recurrent_steps_in_place_match_the_reference(nb, dtype):
    """The aliasing the reference allows: the cell state updated in place, gate gradients over the activations."""
    ref, tol = NumpyBackend(), {"float32": 1e-5, "float64": 1e-12}[dtype]
    gates, c_prev = rand((6, 20), dtype, 1) * 2, rand((6, 5), dtype, 2)
    want_h, want_c, want_acts = ref.lstm_step(gates.copy(), c_prev.copy())
    mine_c = c_prev.copy()
    h, c, acts = nb.lstm_step(gates.copy(), mine_c, out_c=mine_c)
    assert c is mine_c
    for got, want in ((h, want_h), (c, want_c), (acts, want_acts)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    grad_h, grad_c = rand((6, 5), dtype, 3), rand((6, 5), dtype, 4)
    want_d, want_gc = ref.lstm_step_backward(grad_h, grad_c, want_acts.copy(), c_prev, want_c)
    d, gc = nb.lstm_step_backward(grad_h, grad_c, acts, c_prev, c, out=acts)
    assert d is acts
    np.testing.assert_allclose(d, want_d, rtol=tol, atol=tol)
    np.testing.assert_allclose(gc, want_gc, rtol=tol, atol=tol)
