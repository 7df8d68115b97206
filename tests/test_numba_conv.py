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
from minitrain_numba._kernels import CODES as _CODES

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
    """Make any call into the Numba convolution and pooling kernels fail: what runs must be the reference."""

    def refuse():
        raise AssertionError("a Numba conv kernel ran where the reference should have")

    monkeypatch.setattr(_conv, "_ck", refuse)
    monkeypatch.setattr(_conv, "_cg", refuse)


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
    real_ck, real_cg = _conv._ck(), _conv._cg()

    class Spy:
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            if name == "kernels":
                return lambda code, pooled: calls.append(("kernels", code, pooled)) or real_cg.kernels(code, pooled)
            if name != "AVAILABLE":
                calls.append(name)
            return getattr(self.real, name)

    monkeypatch.setattr(_conv, "_ck", lambda: Spy(real_ck))
    monkeypatch.setattr(_conv, "_cg", lambda: Spy(real_cg))
    x, w = rand((2, 2, 6, 6), "float32"), rand((3, 2, 3, 3), "float32")
    y = nb.conv2d(x, w, None, padding=1)
    nb.conv2d_backward(y, x, w, padding=1)
    yb, ab = nb.conv2d_act_pool(x, w, None, padding=1, activation="tanh")
    nb.conv2d_act_pool_backward(yb, x, w, yb, ab, padding=1, activation="tanh")
    p, am = nb.maxpool2d(x)
    nb.maxpool2d_backward(p, am, x.shape)
    nb.avgpool2d_backward(nb.avgpool2d(x), x.shape)
    identity, tanh = _CODES["identity"], _CODES["tanh"]
    assert calls == [
        ("kernels", identity, False), ("kernels", identity, False), ("kernels", tanh, True), ("kernels", tanh, True),
        "maxpool", "avgpool", "avgpool_backward",
    ]  # fmt: skip


# ------------------------------------------------------------------------------------- conv -> act -> pool
#: (x shape, weight shape, stride, padding, pool): same convolutions (the shifted-run copies) with various
#: kernels and paddings, valid and strided ones (the row-by-row copies), pools that leave pixels out
BLOCKS = [
    ((64, 1, 28, 28), (32, 1, 3, 3), 1, 1, (2, 2)),  # the small CNN's layers
    ((8, 32, 14, 14), (64, 32, 3, 3), 1, 1, (2, 2)),
    ((3, 2, 9, 11), (4, 2, 5, 5), 1, 2, (2, 2)),
    ((3, 2, 9, 11), (4, 2, 3, 5), 1, (1, 2), (3, 2)),
    ((3, 3, 7, 7), (5, 3, 1, 1), 1, 0, (1, 1)),
    ((3, 2, 9, 10), (4, 2, 3, 3), 1, 0, (2, 3)),
    ((3, 2, 11, 9), (4, 2, 3, 3), 2, 1, (2, 2)),
    ((2, 3, 10, 12), (5, 3, 5, 2), (1, 3), (3, 0), (1, 1)),
    ((1, 2, 12, 13), (3, 2, 1, 1), 1, 0, (12, 12)),  # 144 offsets: int32 argmax
]


def block_all(be, x, w, b, stride, padding, pool, act="relu"):
    """The block's forward and both backward variants: a dict of every result."""
    kw = {"stride": stride, "padding": padding, "activation": act, "pool": pool}
    y, am = be.conv2d_act_pool(x, w, b, **kw)
    g = rand(y.shape, x.dtype, seed=9)
    out = {"y": y, "argmax": am}
    for need in (True, False):
        for name, v in zip(("dx", "dw", "db"), be.conv2d_act_pool_backward(g, x, w, y, am, need_input_grad=need, **kw)):
            out[f"{name} {need}"] = v
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("xs", "ws", "stride", "padding", "pool"), BLOCKS)
@pytest.mark.parametrize("driver", ["compiled", "python"])
def test_conv_blocks_match_the_reference(nb, ref, monkeypatch, dtype, xs, ws, stride, padding, pool, driver):
    """Both drivers (compiled GEMM calls, and the same passes around np.matmul), over several chunks."""
    monkeypatch.setattr(_conv, "CHUNK_BYTES", 1 << 16)  # several chunks, the last one partial
    if driver == "python":
        monkeypatch.setattr(_conv._cg(), "AVAILABLE", False)
    x, w, b = rand(xs, dtype, 1), rand(ws, dtype, 2), rand(ws[:1], dtype, 3)
    got, want = block_all(nb, x, w, b, stride, padding, pool), block_all(ref, x, w, b, stride, padding, pool)
    if want["argmax"] is None:
        assert got["argmax"] is None
    else:
        assert got["argmax"].dtype == want["argmax"].dtype
        np.testing.assert_array_equal(got["argmax"], want["argmax"])
    for key, value in want.items():
        if key != "argmax":
            close(got[key], value, dtype)
    kw = {"stride": stride, "padding": padding}
    y = nb.conv2d(x, w, b, **kw)
    close(y, ref.conv2d(x, w, b, **kw), dtype)
    g = rand(y.shape, dtype, 4)
    for a, e in zip(nb.conv2d_backward(g, x, w, **kw), ref.conv2d_backward(g, x, w, **kw), strict=True):
        close(a, e, dtype)


@pytest.mark.parametrize("act", ["relu", "identity", "leaky_relu"])
def test_conv_block_nan_and_inf_follow_the_reference(nb, ref, act):
    x, w = rand((2, 2, 8, 9), "float64"), rand((3, 2, 3, 3), "float64")
    b = np.array([0.0, np.inf, -np.inf])
    x[0, 0, 3, 3] = np.nan  # NaN in some windows of every channel
    x[1, 1, 0, 0] = np.inf
    kw = {"padding": 1, "activation": act, "pool": 2}
    with np.errstate(invalid="ignore"):
        (y, am), (y_ref, am_ref) = nb.conv2d_act_pool(x, w, b, **kw), ref.conv2d_act_pool(x, w, b, **kw)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)


def test_conv_block_rejects_what_it_cannot_take(nb, ref, no_kernels):
    x, w = rand((2, 2, 6, 6), "float32"), rand((3, 2, 3, 3), "float32")
    y, am = ref.conv2d_act_pool(x, w.astype("float64"), None)
    for got, want in zip(nb.conv2d_act_pool(x, w.astype("float64"), None), (y, am), strict=True):  # mixed dtypes
        np.testing.assert_array_equal(got, want)
    g = rand(y.shape, "float32")
    for got, want in zip(  # an argmax that is not an integer array
        nb.conv2d_act_pool_backward(g, x, w, y, am.astype("float32"), padding=0),
        ref.conv2d_act_pool_backward(g, x, w, y, am.astype("float32"), padding=0),
        strict=True,
    ):
        close(got, want, "float32")
    with pytest.raises(ValueError, match="gelu"):
        nb.conv2d_act_pool(x, w, None, activation="gelu")
