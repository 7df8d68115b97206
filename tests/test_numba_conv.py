"""The Numba convolution and pooling overrides (``minitrain_numba._conv``) against the NumPy reference.

The conformance suite covers the kernels' parity in general; these tests pin what is specific to the Numba
implementation: the kernels really run (and the fallback really does not), the literal 2x2/3x3 pooling paths
and the generic one, unit and non-unit strides of the unsigned-index copies, windows partly or wholly in
padding, and the reference's NaN/inf behaviour that the max pooling kernel reproduces branch by branch.
"""

from __future__ import annotations

import numpy as np
import pytest

from minitrain.backend import get_backend

pytest.importorskip("numba")
pytest.importorskip("minitrain_numba")
from minitrain_numba import _conv

DTYPES = ("float32", "float64")
#: float32 dweight sums 50k products at the CNN's shapes: both sides round differently (the GEMM's grid differs).
TOL = {"float32": {"rtol": 1e-4, "atol": 1e-4}, "float64": {"rtol": 1e-12, "atol": 1e-12}}
POOLS = ("maxpool2d", "avgpool2d")


@pytest.fixture
def nb():
    return get_backend("numba")


@pytest.fixture
def ref():
    return get_backend("numpy")


def rand(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def close(got, want, dtype):
    if got is None or want is None:
        assert got is None and want is None
        return
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, equal_nan=True, **TOL[str(dtype)])


def pool_all(be, x, kw):
    """Forward and backward of both poolings: a dict of every result."""
    y, am = be.maxpool2d(x, **kw)
    g = rand(y.shape, x.dtype, seed=5)
    ya = be.avgpool2d(x, **kw)
    return {
        "max": y,
        "argmax": am,
        "max_dx": be.maxpool2d_backward(g, am, x.shape, **kw),
        "avg": ya,
        "avg_dx": be.avgpool2d_backward(g, x.shape, **kw),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("xs", "ws", "stride", "padding"),
    [
        ((64, 1, 28, 28), (32, 1, 3, 3), 1, 1),  # the small CNN's layers
        ((4, 32, 14, 14), (64, 32, 3, 3), 1, 1),
        ((3, 2, 11, 9), (4, 2, 3, 3), 2, 1),  # non-unit stride: the strided copy and scatter
        ((2, 3, 10, 12), (5, 3, 5, 2), (1, 3), (3, 0)),  # padding beyond half the kernel, wide stride
        ((2, 2, 5, 5), (3, 2, 1, 1), 2, 2),  # rows and columns wholly in padding
    ],
)
def test_conv2d_and_backward_match_the_reference(nb, ref, dtype, xs, ws, stride, padding):
    x, w, b = rand(xs, dtype, 1), rand(ws, dtype, 2), rand(ws[:1], dtype, 3)
    kw = {"stride": stride, "padding": padding}
    y = nb.conv2d(x, w, b, **kw)
    close(y, ref.conv2d(x, w, b, **kw), dtype)
    close(nb.conv2d(x, w, None, **kw), ref.conv2d(x, w, None, **kw), dtype)
    g = rand(y.shape, dtype, 4)
    for need in (True, False):
        got = nb.conv2d_backward(g, x, w, need_input_grad=need, **kw)
        want = ref.conv2d_backward(g, x, w, need_input_grad=need, **kw)
        for a, e in zip(got, want, strict=True):
            close(a, e, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "kernel", "stride", "padding"),
    [
        ((4, 3, 28, 28), 2, 2, 0),  # literal 2x2, disjoint
        ((2, 3, 9, 9), 3, 2, 1),  # literal 3x3, overlapping, padded
        ((2, 3, 9, 9), 3, 1, 1),
        ((2, 2, 9, 10), (4, 3), (2, 3), (2, 1)),  # the generic path
        ((1, 2, 12, 13), 12, 1, 0),  # 144 offsets: int32 argmax
        ((2, 2, 3, 4), 1, 1, 1),  # border windows wholly in padding: max -inf, gradient dropped
    ],
)
def test_pooling_matches_the_reference(nb, ref, dtype, shape, kernel, stride, padding):
    x = rand(shape, dtype)
    x[..., 1, :] = np.round(x[..., 1, :])  # ties: the first max must win
    x[0, 0, 0, 0] = x[0, 0, 0, 1]
    kw = {"kernel_size": kernel, "stride": stride, "padding": padding}
    got, want = pool_all(nb, x, kw), pool_all(ref, x, kw)
    assert got["argmax"].dtype == want["argmax"].dtype
    np.testing.assert_array_equal(got["argmax"], want["argmax"])
    np.testing.assert_array_equal(got["max"], want["max"])
    for key in ("max_dx", "avg", "avg_dx"):
        close(got[key], want[key], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", [2, 3, (2, 3)])
def test_maxpool_nan_and_inf_follow_the_reference(nb, ref, dtype, kernel):
    x = rand((2, 2, 8, 9), dtype)
    x[0, 0, 0, 1] = np.nan  # NaN after the first offset
    x[0, 0, 2, 2] = np.nan  # NaN first in a window
    x[0, 1, 4, 4:6] = np.inf
    x[1, 0, :3, :3] = -np.inf  # real -inf: ties with padding
    x[1, 1, 5, 5] = np.nan
    kw = {"kernel_size": kernel, "stride": 2, "padding": 1}
    y, am = nb.maxpool2d(x, **kw)
    y_ref, am_ref = ref.maxpool2d(x, **kw)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)
    g = rand(y.shape, dtype, 7)
    g[0, 0, 1, 1], g[1, 1, 0, 2], g[0, 1, 2, 0] = np.nan, np.inf, -np.inf  # the reference spreads grad * 0
    bad = am.copy()
    bad[0, 0, 0, 0], bad[1, 1, 1, 1] = -1, 100  # offsets outside the window route nothing
    with np.errstate(invalid="ignore"):  # the reference's inf * 0 (maxpool2d_backward is the reference's here)
        for a, e in ((am, am_ref), (bad, bad)):
            close(nb.maxpool2d_backward(g, a, x.shape, **kw), ref.maxpool2d_backward(g, e, x.shape, **kw), dtype)


def test_conv_skips_input_no_window_covers(nb, ref):
    """An inf in a column no window reads (stride 2 on an even width) stays out of dweight, as in the reference."""
    x, w = rand((2, 2, 6, 6), "float64"), rand((3, 2, 3, 3), "float64")
    x[:, :, :, -1] = np.inf
    y = nb.conv2d(x, w, None, stride=2)
    assert np.isfinite(y).all()
    g = rand(y.shape, "float64", 1)
    for a, e in zip(nb.conv2d_backward(g, x, w, stride=2), ref.conv2d_backward(g, x, w, stride=2), strict=True):
        close(a, e, "float64")


def test_non_contiguous_inputs_match_the_reference(nb, ref):
    x = rand((6, 5, 3, 2), "float32").transpose(3, 2, 1, 0)  # (2, 3, 5, 6), F-ordered
    w = rand((3, 3, 3, 4), "float32").transpose(3, 2, 0, 1)[:, :, ::-1]  # (4, 3, 3, 3), strided
    y = nb.conv2d(x, w, None, padding=1)
    close(y, ref.conv2d(x, w, None, padding=1), "float32")
    g = rand(y.shape[::-1], "float32").T  # non-contiguous grad
    for a, e in zip(nb.conv2d_backward(g, x, w, padding=1), ref.conv2d_backward(g, x, w, padding=1), strict=True):
        close(a, e, "float32")
    kw = {"kernel_size": 2, "stride": 1, "padding": 1}
    got, want = pool_all(nb, x, kw), pool_all(ref, x, kw)
    np.testing.assert_array_equal(got.pop("argmax"), want.pop("argmax"))
    for key, value in got.items():
        close(value, want[key], "float32")


@pytest.fixture
def no_kernels(monkeypatch):
    """Make any call into the Numba convolution kernels fail: what runs must be the reference."""

    def refuse():
        raise AssertionError("a Numba conv kernel ran where the reference should have")

    monkeypatch.setattr(_conv, "_ck", refuse)


def test_unsupported_dtypes_and_mixes_fall_back_to_the_reference(nb, ref, no_kernels):
    x16, w16 = rand((2, 2, 6, 6), "float16"), rand((3, 2, 3, 3), "float16")
    close(nb.conv2d(x16, w16, None, padding=1), ref.conv2d(x16, w16, None, padding=1), "float32")
    x32, w64 = rand((2, 2, 6, 6), "float32"), rand((3, 2, 3, 3), "float64")
    close(nb.conv2d(x32, w64, None), ref.conv2d(x32, w64, None), "float32")
    b64 = rand((3,), "float64")
    w32 = w64.astype("float32")
    close(nb.conv2d(x32, w32, b64), ref.conv2d(x32, w32, b64), "float32")
    g = rand(ref.conv2d(x32, w64, None).shape, "float64")
    for a, e in zip(nb.conv2d_backward(g, x32, w64), ref.conv2d_backward(g, x32, w64), strict=True):
        close(a, e, "float64")
    for name in POOLS:
        got, want = getattr(nb, name)(x16), getattr(ref, name)(x16)
        for a, e in zip(got if name == "maxpool2d" else [got], want if name == "maxpool2d" else [want], strict=True):
            np.testing.assert_array_equal(a, e)
    ints = np.arange(72).reshape(2, 1, 6, 6)
    np.testing.assert_array_equal(nb.maxpool2d(ints)[0], ref.maxpool2d(ints)[0])
    y, am = ref.maxpool2d(x16)
    close(nb.maxpool2d_backward(y, am, x16.shape), ref.maxpool2d_backward(y, am, x16.shape), "float32")
    close(nb.avgpool2d_backward(y, x16.shape), ref.avgpool2d_backward(y, x16.shape), "float32")


def test_empty_batch_falls_back_to_the_reference(nb, ref, no_kernels):
    x, w = np.zeros((0, 2, 5, 5), "float32"), rand((3, 2, 3, 3), "float32")
    assert nb.conv2d(x, w, None, padding=1).shape == ref.conv2d(x, w, None, padding=1).shape == (0, 3, 5, 5)


def test_supported_calls_run_the_numba_kernels(nb, monkeypatch):
    calls = []
    real = _conv._ck()

    class Spy:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(real, name)

    monkeypatch.setattr(_conv, "_ck", Spy)
    x, w = rand((2, 2, 6, 6), "float32"), rand((3, 2, 3, 3), "float32")
    y = nb.conv2d(x, w, None, padding=1)
    nb.conv2d_backward(y, x, w, padding=1)
    p, am = nb.maxpool2d(x)
    nb.maxpool2d_backward(p, am, x.shape)
    nb.avgpool2d_backward(nb.avgpool2d(x), x.shape)
    assert calls == [
        "im2col", "onp_to_nop", "nop_to_onp", "im2col", "col2im",
        "maxpool", "avgpool", "avgpool_backward",
    ]  # fmt: skip
