"""Shared machinery of the parity cases: one ``Ctx`` per case, layouts, tolerances."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import product
from typing import Any

import numpy as np

from ..backend import Backend

#: Relative tolerance of the parity checks per dtype, of ``|expected| + max(|expected|, 1)`` per array.
TOLERANCES = {"float32": 1e-5, "float64": 1e-12}

SHAPES = ((1, 1), (7, 13), (33, 65), (0, 5))
LAYOUTS = ("contiguous", "transposed", "strided")
OPTIM_SIZES = (1, 1000, 4099)


def put(be: Backend, h: Any, layout: str = "contiguous") -> Any:
    """A copy of host array ``h`` on ``be`` (kernels may write in place): contiguous, transposed or strided."""
    if not isinstance(h, np.ndarray):
        return h
    if layout == "contiguous" or h.ndim == 0:
        return be.asarray(np.array(h, copy=True))
    if layout == "transposed":
        return be.asarray(np.array(h.T, order="C", copy=True)).T
    big = np.zeros((*h.shape[:-1], 2 * h.shape[-1]), dtype=h.dtype)
    big[..., ::2] = h
    return be.asarray(big)[..., ::2]


class Ctx:
    """One case: backend, reference, dtype, data generator; collects failed checks and raises them together."""

    def __init__(self, be: Backend, ref: Backend, dtype: str, seed: int = 0) -> None:
        self.be, self.ref, self.dt, self.rng = be, ref, dtype, np.random.default_rng(seed)
        self.failures: list[str] = []

    @contextmanager
    def check(self, label: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:  # every failure is reported, not just the first
            self.failures.append(f"{label}: {exc if isinstance(exc, AssertionError) else f'raised {exc!r}'}")

    def finish(self) -> None:
        listed, more = self.failures[:20], [f"... and {len(self.failures) - 20} more"]
        if self.failures:
            listed += more if len(self.failures) > 20 else []
            raise AssertionError(f"{len(self.failures)} failed check(s):\n  " + "\n  ".join(listed))

    def randn(self, *shape: int, scale: float = 1.0) -> np.ndarray:
        return (self.rng.standard_normal(shape) * scale).astype(self.dt)

    def uniform(self, low: float, high: float, *shape: int) -> np.ndarray:
        return self.rng.uniform(low, high, shape).astype(self.dt)

    def host(self, x: Any) -> np.ndarray:
        return np.array(self.be.to_numpy(x), copy=True)

    def close(self, what: str, got: Any, want: Any, exact: bool = False, dtype: str | None = None) -> np.ndarray:
        """Assert the backend array ``got`` keeps the dtype and matches the host array ``want``."""
        dtype = dtype or self.dt
        if got is None:
            raise AssertionError(f"{what}: got None, expected an array of shape {np.shape(want)}")
        g, w = self.host(got), np.asarray(want)
        if g.dtype != np.dtype(dtype) or g.shape != w.shape:
            raise AssertionError(f"{what}: {g.dtype} {g.shape}, expected {dtype} {w.shape} (kernels keep the dtype)")
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        rtol = 0.0 if exact else TOLERANCES[dtype]
        scale = max(1.0, float(np.max(np.abs(np.where(np.isfinite(w64), w64, 0.0)), initial=0.0)))
        err = np.nan_to_num(np.abs(g64 - w64), nan=np.inf)
        bad = ~((g64 == w64) | (np.isnan(g64) & np.isnan(w64)) | (err <= rtol * (np.abs(w64) + scale)))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[np.argmax(err[bad])])
            rule = "exactly" if exact else f"within rtol={rtol:g} (of |expected| + max(|expected|, 1))"
            raise AssertionError(
                f"{what}: {int(bad.sum())} of {g.size} elements differ from the reference {rule} in {dtype}; "
                f"worst at {idx}: got {g64[idx]!r}, expected {w64[idx]!r}"
            )
        return g

    def run(self, kernel: str, label: str, args: list[Any], kw: dict[str, Any] | None = None, **how: Any) -> Any:
        """Run ``kernel`` on reference and backend and compare, for every layout and out mode in ``how``.

        ``how``: ``layouts`` of the backend's arrays; ``outs``: None, ``"alloc"`` or the index of the argument
        to write into; output ``names``; ``after``: arguments compared after the call (in-place updates).
        Returns the last ``(got, want)``, or None when a check failed.
        """
        kw, result = kw or {}, None
        for layout, out in product(how.get("layouts", LAYOUTS), how.get("outs", (None,))):
            ref = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]
            want = getattr(self.ref, kernel)(*ref, **(dict(kw, out=ref[out]) if isinstance(out, int) else kw))
            want, result = want if isinstance(want, tuple) else (want,), None
            with self.check(f"{kernel} {label} {layout}" + ("" if out is None else f" out={out}")):
                mine, my_kw = [put(self.be, a, layout) for a in args], {k: put(self.be, v) for k, v in kw.items()}
                if out is not None:
                    buf = self.be.alloc(want[0].shape, self.dt, fill=None) if out == "alloc" else mine[out]
                    my_kw["out"] = buf
                got = getattr(self.be, kernel)(*mine, **my_kw)
                got = got if isinstance(got, tuple) else (got,)
                assert len(got) == len(want), f"returned {len(got)} values, expected {len(want)}"
                assert out is None or got[0] is buf, "with out= given, the kernel must write into out and return it"
                for name, g, w in zip(how.get("names", ("result",)), got, want):
                    assert w is not None or g is None, f"{name}: expected None, got {type(g).__name__}"
                    if w is not None:
                        self.close(name, g, w)
                for i in how.get("after", ()):
                    if ref[i] is not None:
                        self.close(f"argument {i} after the call", mine[i], ref[i])
                result = got, want
        return result
