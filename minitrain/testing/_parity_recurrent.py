"""Parity cases of the LSTM and GRU step kernels: ``PARITY[kernel]`` is a function of one ``Ctx``."""

from __future__ import annotations

from collections.abc import Callable
from itertools import product
from typing import Any

import numpy as np

from ._ctx import LAYOUTS, Ctx, put

#: (batch, hidden) sizes: one unit, odd sizes, a batch larger than the SIMD width, an empty batch.
SIZES = ((1, 1), (7, 5), (33, 17), (0, 4))


def _keyword_outs(c: Ctx, kernel: str, label: str, args: list[Any], outs: dict[str, Any], names: tuple) -> None:
    """Run with keyword outputs, ``outs[keyword] = (source, result index)``: a new buffer or an aliased argument."""
    for layout in LAYOUTS:
        ref = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]
        shapes = [
            r.shape for r in getattr(c.ref, kernel)(*[np.copy(a) if isinstance(a, np.ndarray) else a for a in ref])
        ]
        ref_kw = {k: ref[s] if isinstance(s, int) else np.empty(shapes[j], c.dt) for k, (s, j) in outs.items()}
        want = getattr(c.ref, kernel)(*ref, **ref_kw)
        spec = " ".join(f"{k}={'argument ' + str(s) if isinstance(s, int) else 'new'}" for k, (s, _) in outs.items())
        with c.check(f"{kernel} {label} {layout} {spec}"):
            mine = [put(c.be, a, layout) for a in args]
            kw = {
                k: mine[s] if isinstance(s, int) else c.be.alloc(shapes[j], c.dt, fill=None)
                for k, (s, j) in outs.items()
            }
            got = getattr(c.be, kernel)(*mine, **kw)
            assert len(got) == len(want), f"returned {len(got)} values, expected {len(want)}"
            for k, (_, j) in outs.items():
                assert got[j] is kw[k], f"with {k}= given, the kernel must write into it and return it as {names[j]}"
            for name, g, w in zip(names, got, want):
                c.close(name, g, w)


def _lstm_step(c: Ctx) -> None:
    for n, h in SIZES:
        args, names = [c.randn(n, 4 * h, scale=2.0), c.randn(n, h)], ("h", "c", "acts")
        c.run("lstm_step", f"{n}x{h}", args, outs=(None, "alloc"), names=names)
        _keyword_outs(c, "lstm_step", f"{n}x{h}", args, {"out": ("new", 0), "out_c": ("new", 1)}, names)


def _lstm_step_backward(c: Ctx) -> None:
    for (n, h), grad_c in product(SIZES, (True, False)):
        c_prev = c.randn(n, h)
        _, cell, acts = c.ref.lstm_step(c.randn(n, 4 * h, scale=2.0), c_prev)
        args = [c.randn(n, h), c.randn(n, h) if grad_c else None, acts, c_prev, cell]
        label, names = f"{n}x{h} grad_c={grad_c}", ("grad_gates", "grad_c_prev")
        c.run("lstm_step_backward", label, args, outs=(None, "alloc", 2), names=names)


def _gru_step(c: Ctx) -> None:
    for n, h in SIZES:
        args = [c.randn(n, 3 * h, scale=2.0), c.randn(n, 3 * h, scale=2.0), c.randn(n, h)]
        c.run("gru_step", f"{n}x{h}", args, outs=(None, "alloc"), names=("h", "acts"))


def _gru_step_backward(c: Ctx) -> None:
    for n, h in SIZES:
        gi, gh, h_prev = c.randn(n, 3 * h, scale=2.0), c.randn(n, 3 * h, scale=2.0), c.randn(n, h)
        _, acts = c.ref.gru_step(gi, gh, h_prev)
        args, names = [c.randn(n, h), acts, gh, h_prev], ("grad_gi", "grad_gh", "grad_h_prev")
        c.run("gru_step_backward", f"{n}x{h}", args, outs=(None, "alloc", 1), names=names)
        for outs in ({"out_gh": ("new", 1)}, {"out": (1, 0), "out_gh": (2, 1)}):
            _keyword_outs(c, "gru_step_backward", f"{n}x{h}", args, outs, names)


PARITY: dict[str, Callable[[Ctx], None]] = {
    "lstm_step": _lstm_step,
    "lstm_step_backward": _lstm_step_backward,
    "gru_step": _gru_step,
    "gru_step_backward": _gru_step_backward,
}
