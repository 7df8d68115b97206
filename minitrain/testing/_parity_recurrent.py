"""Parity cases of the LSTM and GRU step and sequence kernels: ``PARITY[kernel]`` is a function of one ``Ctx``."""

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


#: (steps, batch, hidden) of the sequence kernels: one step of one unit, odd sizes, more rows than the SIMD
#: width, an empty batch.
SEQUENCES = ((1, 1, 1), (3, 7, 5), (4, 33, 17), (2, 0, 4))


def _maybe(c: Ctx, given: bool, *shape: int, scale: float = 1.0) -> np.ndarray | None:
    return c.randn(*shape, scale=scale) if given else None


def _lstm_sequence(c: Ctx) -> None:
    for (t, n, h), given in product(SEQUENCES, (True, False)):
        args = [c.randn(t, n, 4 * h, scale=2.0), c.randn(4 * h, h, scale=0.5), _maybe(c, given, 4 * h)]
        args += [_maybe(c, given, n, h), _maybe(c, not given, n, h)]  # h0 without c0 and c0 without h0
        label, names = f"{t}x{n}x{h} bias={given}", ("h", "c", "acts")
        c.run("lstm_sequence", label, args, outs=(None, "alloc"), names=names)
        _keyword_outs(c, "lstm_sequence", label, args, {"out": ("new", 0), "out_c": ("new", 1)}, names)


def _lstm_sequence_backward(c: Ctx) -> None:
    for (t, n, h), given, need_h0 in product(SEQUENCES, (True, False), (True, False)):
        w_hh, c0 = c.randn(4 * h, h, scale=0.5), _maybe(c, given, n, h)
        _, cell, acts = c.ref.lstm_sequence(c.randn(t, n, 4 * h, scale=2.0), w_hh, None, c.randn(n, h), c0)
        args = [c.randn(t, n, h), _maybe(c, given, n, h), acts, w_hh, c0, cell]
        label, names = (
            f"{t}x{n}x{h} grad_c={given} need_h0={need_h0}",
            ("grad_gates", "grad_bias", "grad_h0", "grad_c0"),
        )
        c.run("lstm_sequence_backward", label, args, {"need_h0": need_h0}, outs=(None, "alloc", 2), names=names)


def _gru_sequence(c: Ctx) -> None:
    for (t, n, h), given in product(SEQUENCES, (True, False)):
        args = [c.randn(t, n, 3 * h, scale=2.0), c.randn(3 * h, h, scale=0.5), _maybe(c, given, 3 * h)]
        args += [_maybe(c, not given, 3 * h), _maybe(c, given, n, h)]
        label, names = f"{t}x{n}x{h} b_ih={given}", ("h", "acts", "gh_n")
        c.run("gru_sequence", label, args, outs=(None, "alloc"), names=names)
        _keyword_outs(c, "gru_sequence", label, args, {"out": ("new", 0), "out_gh_n": ("new", 2)}, names)


def _gru_sequence_backward(c: Ctx) -> None:
    for (t, n, h), need_h0 in product(SEQUENCES, (True, False)):
        w_hh = c.randn(3 * h, h, scale=0.5)
        hs, acts, gh_n = c.ref.gru_sequence(c.randn(t, n, 3 * h, scale=2.0), w_hh, None, c.randn(3 * h), c.randn(n, h))
        args, names = (
            [c.randn(t, n, h), acts, gh_n, w_hh, hs],
            ("grad_gi", "grad_gh", "grad_b_ih", "grad_b_hh", "grad_h0"),
        )
        label = f"{t}x{n}x{h} need_h0={need_h0}"
        c.run("gru_sequence_backward", label, args, {"need_h0": need_h0}, outs=(None, "alloc", 1), names=names)
        if need_h0:
            for outs in ({"out_gh": ("new", 1)}, {"out": (1, 0), "out_gh": ("new", 1)}):
                _keyword_outs(c, "gru_sequence_backward", label, args, outs, names)


PARITY: dict[str, Callable[[Ctx], None]] = {
    "lstm_step": _lstm_step,
    "lstm_step_backward": _lstm_step_backward,
    "gru_step": _gru_step,
    "gru_step_backward": _gru_step_backward,
    "lstm_sequence": _lstm_sequence,
    "lstm_sequence_backward": _lstm_sequence_backward,
    "gru_sequence": _gru_sequence,
    "gru_sequence_backward": _gru_sequence_backward,
}
