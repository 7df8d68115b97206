"""``minitrain_numba._vmath``: the exponential and tanh LLVM vectorizes, their accuracy in ulps, special values."""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")
pytest.importorskip("minitrain_numba")
from minitrain_numba._vmath import vexp, vtanh  # noqa: E402


def _elementwise(fn):
    """A NumPy-style function of arrays that applies the njit-callable scalar ``fn`` in a compiled loop."""

    @numba.njit(cache=False, error_model="numpy")
    def loop(a, out):
        for i in range(a.size):
            out[i] = fn(a[i])

    def apply(a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a)
        loop(a, out)
        return out

    return apply


_vexp, _vtanh = _elementwise(vexp), _elementwise(vtanh)


@pytest.mark.parametrize(
    "dtype, lo, hi, max_ulp",
    [
        ("float32", -110.0, 95.0, 1.5),  # float64 exp rounded to float32 is the exact reference
        ("float32", -1.0, 1.0, 1.5),
        ("float64", -760.0, 720.0, 1.5),  # against libm's float64 exp (itself within 1 ulp)
        ("float64", -1.0, 1.0, 1.5),
    ],
)
def test_vexp_is_within_an_ulp_and_a_half_over_the_whole_range(dtype, lo, hi, max_ulp):
    a = np.linspace(lo, hi, 400_001, dtype=dtype)
    got = _vexp(a)
    assert got.dtype == np.dtype(dtype)
    with np.errstate(over="ignore"):
        exact = np.exp(a.astype(np.float64))
        want = exact.astype(dtype)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))  # overflow at the same place
    ulp = np.spacing(np.abs(want[finite])).astype(np.float64)
    err = np.abs(got[finite].astype(np.float64) - exact[finite]) / ulp
    assert err.max() <= max_ulp, f"worst {err.max():.2f} ulp at x={a[finite][err.argmax()]!r}"
    assert (got[finite] >= 0).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vexp_special_values(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, -1e4, 1e4, tiny], dtype=dtype)
    got = _vexp(x)
    np.testing.assert_array_equal(got[:2], [0.0, np.inf])
    assert np.isnan(got[2])
    np.testing.assert_array_equal(got[3:], [1.0, 1.0, 0.0, np.inf, 1.0])


def test_vexp_reaches_the_subnormals_and_overflows_where_exp_does():
    x = np.array([-103.0, -87.5, 88.7, 88.8], dtype=np.float32)
    with np.errstate(over="ignore"):
        want = np.exp(x.astype(np.float64)).astype(np.float32)
    got = _vexp(x)
    assert 0 < got[0] < np.finfo(np.float32).tiny  # subnormal, not flushed to zero
    np.testing.assert_allclose(got[:3], want[:3], rtol=2e-7)
    assert got[3] == np.inf == want[3]


def test_vexp_called_from_python_is_numpys_exp():
    assert vexp(np.float32(1.0)) == np.exp(np.float32(1.0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lo, hi", [(-30.0, 30.0), (-1.0, 1.0), (-1e-3, 1e-3), (0.54, 0.56), (-0.56, -0.54)])
def test_vtanh_is_within_an_ulp_and_a_half(dtype, lo, hi):
    a = np.linspace(lo, hi, 200_001, dtype=dtype)  # (0.54, 0.56): both sides of the switch between the two forms
    got = _vtanh(a)
    assert got.dtype == np.dtype(dtype)
    exact = np.tanh(a.astype(np.longdouble)).astype(np.float64)
    ulp = np.spacing(np.maximum(np.abs(exact.astype(dtype)), np.finfo(dtype).tiny)).astype(np.float64)
    err = np.abs(got.astype(np.float64) - exact) / ulp
    assert err.max() <= 1.6, f"worst {err.max():.2f} ulp at x={a[err.argmax()]!r}"
    np.testing.assert_array_equal(np.sign(got), np.sign(a))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vtanh_special_values(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 1e4], dtype=dtype)
    got = _vtanh(x)
    assert np.isnan(got[0])
    np.testing.assert_array_equal(got[1:], [1.0, -1.0, 0.0, -0.0, x[5], 1.0])
    assert np.signbit(got[4]) and not np.signbit(got[3])
