"""``vexp`` and ``vtanh``: an exponential and a tanh that LLVM vectorizes, for the Numba kernels (float32, float64).

Numba compiles ``np.exp`` / ``math.exp`` to a call of the C library's scalar ``exp`` per element: no SIMD
without Intel's SVML, which this LLVM build cannot use. ``vexp`` is written with operations LLVM vectorizes
(FMA, floor, integer shifts, a bit cast): Cody-Waite range reduction ``x = n ln2 + r`` with ``|r| <= ln2 / 2``,
the Taylor polynomial of ``e**r`` (degree 7 in float32, 13 in float64: truncation below a tenth of an ulp),
and ``2**n`` built from exponent bits in two factors, so results that are subnormal (down to ``x`` of about
-103.9 in float32, -745.1 in float64) or overflow to infinity come out as they should. NaN stays NaN,
``-inf`` gives 0 and ``inf`` gives ``inf``.

``vtanh``: for ``|x| < 0.55`` the odd Taylor polynomial of tanh (10 terms in float32, 22 in float64), else
``1 - 2 / (exp(2|x|) + 1)`` with the sign of ``x`` (no cancellation there: the quotient is at most 0.5); both
are computed and one is selected arithmetically (the polynomial at ``min(|x|, 0.55)``, so it stays finite),
and the sign copied from ``x``; LLVM vectorizes it.

Accuracy (``tests/test_numba_vmath.py``): ``vexp`` within 1.2 ulp of the exact result in float32 and 1 ulp
in float64, ``vtanh`` within 1.6 ulp, over their whole ranges (NumPy's SIMD ``exp`` and ``tanh`` are not
correctly rounded either). Per element, ``vexp`` measured faster than libm's ``exp`` through Numba, and both
faster than NumPy's ``np.exp`` / ``np.tanh``, in float32 and float64 (figures in docs/performance.md).

Numba's on-disk cache keys a kernel by its own source file: after editing this module during development,
clear the kernels' on-disk cache (``_cache`` says where it lives), or they keep the old code.
An installed release is unaffected: installing rewrites every source file.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

_LOG2E = 1.0 / math.log(2.0)
# ln 2 split so that n * hi is exact for the n that occur (Cody-Waite); hi + lo rounds to ln 2
_LN2_HI32, _LN2_LO32 = 0.693359375, -2.12194440e-4
_LN2_HI64, _LN2_LO64 = 6.93145751953125e-1, 1.42860682030941723212e-6
_TAYLOR32 = tuple(1.0 / math.factorial(k) for k in range(7, -1, -1))  # highest degree first, for Horner
_TAYLOR64 = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))


def _tanh_series(terms: int) -> tuple[float, ...]:
    """Coefficients of x, x**3, ... of tanh's Taylor series, highest first (from t' = 1 - t**2)."""
    a: list[float] = [1.0]
    for k in range(1, terms):
        a.append(-sum(a[i] * a[k - 1 - i] for i in range(k)) / (2 * k + 1))
    return tuple(reversed(a))


_TANH_SMALL = 0.55
_TANH32, _TANH64 = _tanh_series(10), _tanh_series(22)


def _horner(coeffs: tuple[float, ...], single: bool) -> Any:
    """An inlined njit ``p(t)``: the polynomial with ``coeffs`` (highest degree first) by Horner's rule, written
    out term by term (a loop over a long constant tuple is not unrolled, and then not vectorized)."""
    cast = "np.float32" if single else ""
    lines = [f"    p = {cast}({coeffs[0]!r})"] + [f"    p = p * t + {cast}({c!r})" for c in coeffs[1:]]
    namespace: dict[str, Any] = {"np": np}
    exec("def p(t):\n" + "\n".join(lines) + "\n    return p\n", namespace)
    return njit(inline="always", fastmath={"contract"})(namespace["p"])


_exp_poly32, _exp_poly64 = _horner(_TAYLOR32, True), _horner(_TAYLOR64, False)
_tanh_poly32, _tanh_poly64 = _horner(_TANH32, True), _horner(_TANH64, False)


@intrinsic
def _bits_to_f32(typingctx: Any, bits: Any) -> Any:
    """Reinterpret an int32 as a float32 (an LLVM bit cast)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _bits_to_f64(typingctx: Any, bits: Any) -> Any:
    """Reinterpret an int64 as a float64 (an LLVM bit cast)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@njit(inline="always", fastmath={"contract"})
def _exp32(x: float) -> float:
    f = np.float32
    x = min(max(x, f(-104.0)), f(89.0))  # beyond: 0 or inf anyway; keeps the exponent bits in range (NaN stays)
    n = np.floor(x * f(_LOG2E) + f(0.5))
    r = (x - n * f(_LN2_HI32)) - n * f(_LN2_LO32)
    p = _exp_poly32(r)
    k = np.int32(n)
    k1 = k >> np.int32(1)  # 2**k as two normal factors: k down to -150 (subnormal results) and up to 128 (inf)
    k2 = k - k1
    return p * _bits_to_f32((k1 + np.int32(127)) << np.int32(23)) * _bits_to_f32((k2 + np.int32(127)) << np.int32(23))


@njit(inline="always", fastmath={"contract"})
def _exp64(x: float) -> float:
    x = min(max(x, -746.0), 710.0)
    n = np.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI64) - n * _LN2_LO64
    p = _exp_poly64(r)
    k = np.int64(n)
    k1 = k >> np.int64(1)
    k2 = k - k1
    return p * _bits_to_f64((k1 + np.int64(1023)) << np.int64(52)) * _bits_to_f64((k2 + np.int64(1023)) << np.int64(52))


@njit(inline="always", fastmath={"contract"})
def _tanh32(x: float) -> float:
    f = np.float32
    ax = abs(x)
    small = min(ax, f(_TANH_SMALL))  # the polynomial stays finite; NaN gives the other form's NaN below
    p = _tanh_poly32(small * small) * small
    q = f(1.0) - f(2.0) / (_exp32(ax + ax) + f(1.0))
    w = f(ax < f(_TANH_SMALL))  # a select without branches (a branch keeps Numba's inliner from working)
    return math.copysign(w * p + (f(1.0) - w) * q, x)


@njit(inline="always", fastmath={"contract"})
def _tanh64(x: float) -> float:
    ax = abs(x)
    small = min(ax, _TANH_SMALL)
    p = _tanh_poly64(small * small) * small
    q = 1.0 - 2.0 / (_exp64(ax + ax) + 1.0)
    w = np.float64(ax < _TANH_SMALL)
    return math.copysign(w * p + (1.0 - w) * q, x)


def _by_width(single: Any, double: Any) -> Any:
    """Numba overload body: ``single`` for a float32 argument, ``double`` for other floats."""

    def typer(x):  # type: ignore[no-untyped-def]  # unannotated, as Numba compares it with the lambdas
        if isinstance(x, types.Float):
            return (lambda x: single(x)) if x.bitwidth == 32 else (lambda x: double(x))
        return None

    return typer


def vexp(x):  # type: ignore[no-untyped-def]  # unannotated, as Numba compares it with the overload's lambdas
    """``exp(x)`` for a float32 or float64 scalar, in its type (compiled in njit code; NumPy's exp in Python)."""
    return np.exp(x)


def vtanh(x):  # type: ignore[no-untyped-def]
    """``tanh(x)`` for a float32 or float64 scalar, in its type (compiled in njit code; NumPy's tanh in Python)."""
    return np.tanh(x)


overload(vexp, inline="always")(_by_width(_exp32, _exp64))
overload(vtanh, inline="always")(_by_width(_tanh32, _tanh64))
