"""Parity cases of the dense kernels, and the protocol and signature checks.

The parity check of kernel ``k`` is ``PARITY[k]``, a function of one ``Ctx``.
"""

from __future__ import annotations

import ast
import inspect
import math
from collections.abc import Callable
from functools import partial
from itertools import product
from typing import Any

import numpy as np

from ..backend import ACTIVATIONS, KERNELS, Backend
from ..backend.base import NEEDS_PREACTIVATION
from ._ctx import LAYOUTS, OPTIM_SIZES, SHAPES, TOLERANCES, Ctx, put

#: Methods besides the kernels whose signatures an override must keep.
PROTOCOL_METHODS = ("is_available", "synchronize", "context", "asarray", "to_numpy", "alloc", "generator", "extension")


def protocol(c: Ctx) -> None:
    be, api = c.be, ("asarray", "matmul", "exp", "zeros", "float32", "float64")
    for label, get, ok in (
        ("name, device: str", lambda: (be.name, be.device), lambda v: all(isinstance(x, str) and x for x in v)),
        ("xp has NumPy's API", lambda: be.xp, lambda v: all(hasattr(v, f) for f in api)),
        ("is_available() is (True, str)", be.is_available, lambda v: v[0] is True and isinstance(v[1], str)),
        ("cls.is_available() is (True, str)", type(be).is_available, lambda v: v[0] is True),
        ("synchronize() returns None", be.synchronize, lambda v: v is None),
        ("context() is a context manager", be.context, lambda v: hasattr(v, "__enter__") and hasattr(v, "__exit__")),
    ):
        with c.check(label):
            value = get()
            assert ok(value), f"got {value!r}"
    samples = (c.rng.random((3, 4), np.float32), np.zeros((0, 3)), np.array(2.5), np.arange(5), np.eye(2, dtype=bool))
    rows = [(f"asarray round trip of {h.dtype} {h.shape}", partial(be.asarray, h), h) for h in samples]
    for label, make, want in (
        *rows,
        ("asarray round trip of a transposed view", partial(be.asarray, rows[0][2].T), rows[0][2].T),
        ("asarray(list)", lambda: be.asarray([[1.5, 2.5]]), np.array([[1.5, 2.5]])),
        ("asarray(x, dtype='float32')", lambda: be.asarray(np.array([1.25]), dtype="float32"), np.float32([1.25])),
        ("asarray(backend array)", lambda: be.asarray(be.asarray(np.arange(3.0))), np.arange(3.0)),
        ("alloc zeros, default dtype", lambda: be.alloc((3, 4)), np.zeros((3, 4), np.float32)),
        ("alloc int shape, fill=2.5", lambda: be.alloc(5, "float64", fill=2.5), np.full(5, 2.5)),
        ("alloc empty shape", lambda: be.alloc((2, 0), "float32", fill=1.0), np.ones((2, 0), np.float32)),
    ):
        with c.check(label):
            c.close(label, make(), want, exact=True, dtype=str(want.dtype))
    with c.check("alloc fill=None; to_numpy returns numpy.ndarray"):
        got = be.to_numpy(be.alloc((4, 3), "float64", fill=None))
        assert isinstance(got, np.ndarray) and (got.shape, got.dtype) == ((4, 3), np.float64), f"got {got!r}"
    with c.check("generator(s) reproduces draws; another seed differs; generators are independent"):
        draws = [c.host(be.asarray(be.generator(s).random((16,)))) for s in (42, 42, 43)]
        assert np.array_equal(draws[0], draws[1]), "two generators seeded with 42 draw different numbers"
        assert not np.array_equal(draws[0], draws[2]), "generator(43) draws the same numbers as generator(42)"
        assert np.all((draws[0] >= 0) & (draws[0] < 1)), f"random() outside [0, 1): {draws[0]!r}"
        a, b = be.generator(42), be.generator(42)
        first = c.host(be.asarray(a.random((8,))))
        be.generator(42).random((8,))  # draws of other generators leave `a` alone
        b.random((3,))
        assert not np.array_equal(c.host(be.asarray(a.random((8,)))), first), "a generator repeated its draws"
        for name in ("uniform", "normal", "integers"):
            assert callable(getattr(a, name, None)), f"generators need NumPy Generator's {name}()"


def signatures(c: Ctx) -> None:
    cls = type(c.be)

    def sig(fn: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, (type(p.default), p.default)) for p in inspect.signature(fn).parameters.values()]

    for name in (*PROTOCOL_METHODS, *KERNELS):
        with c.check(name):
            base, mine = inspect.getattr_static(Backend, name), inspect.getattr_static(cls, name, None)
            assert mine is not None, f"{cls.__name__} has no method {name!r}"
            if mine is not base:
                assert type(mine) is type(base), f"{cls.__name__}.{name} is a {type(mine)}, not a {type(base)}"
                got, want = inspect.signature(getattr(cls, name)), inspect.signature(getattr(Backend, name))
                assert sig(getattr(cls, name)) == sig(getattr(Backend, name)), (
                    f"kernel {name!r}: {cls.__name__}.{name}{got} does not keep the signature Backend.{name}{want} "
                    "(same parameter names, kinds and defaults)"
                )
    extra = [n for n in dir(cls) if not n.startswith("_") and n not in dir(Backend) and callable(getattr(cls, n))]
    with c.check("public methods"):
        assert not extra, f"{cls.__name__} adds public methods {', '.join(extra)}; prefix helpers with '_'"


# ---------------------------------------------------------------------------------------- parity cases
def _gemm(c: Ctx) -> None:
    for (m, k, n), ta, tb in product(((1, 1, 1), (7, 13, 5), (33, 65, 17), (0, 4, 3), (4, 0, 3)), *[(False, True)] * 2):
        args = [c.randn(*((k, m) if ta else (m, k))), c.randn(*((n, k) if tb else (k, n)))]
        kw = {"trans_a": ta, "trans_b": tb}
        c.run("gemm", f"{m}x{k}x{n} trans_a={ta} trans_b={tb}", args, kw, outs=(None, "alloc"))


def _act(c: Ctx) -> None:
    for shape, name, alpha in product(SHAPES, ACTIVATIONS, (0.01, 0.3)):
        args, kw = [c.randn(*shape, scale=2.0), name], {"alpha": alpha}
        c.run("act", f"{name} alpha={alpha} {shape}", args, kw, outs=(None, "alloc", 0), after=[0])


def _affine_act(c: Ctx) -> None:
    for (n, i, o), name, bias in product(((1, 1, 1), (7, 13, 5), (33, 65, 17), (0, 4, 3)), ACTIVATIONS, (True, False)):
        args = [c.randn(n, i), c.randn(o, i), c.randn(o) if bias else None, name]
        label = f"{name} {n}x{i}->{o} bias={bias}"
        c.run("affine_act", label, args, {"alpha": 0.2}, layouts=LAYOUTS[:2], outs=(None, "alloc"), names=("y", "z"))


def _act_backward(c: Ctx) -> None:
    for shape, name, alpha in product(SHAPES, ACTIVATIONS, (0.01, 0.3)):
        z, g = c.randn(*shape, scale=2.0), c.randn(*shape)
        args = [g, c.ref.act(z, name, alpha=alpha), z if name in NEEDS_PREACTIVATION else None, name]
        label = f"{name} alpha={alpha} {shape}"
        c.run("act_backward", label, args, {"alpha": alpha}, outs=(None, "alloc", 0), after=[0])


def _bias_act_backward(c: Ctx) -> None:
    for shape, name, alpha in product(SHAPES, ACTIVATIONS, (0.01, 0.3)):
        z, g = c.randn(*shape, scale=2.0), c.randn(*shape)
        args = [g, c.ref.act(z, name, alpha=alpha), z if name in NEEDS_PREACTIVATION else None, name]
        label = f"{name} alpha={alpha} {shape}"
        names = ("g", "bias_grad")
        c.run("bias_act_backward", label, args, {"alpha": alpha}, outs=(None, "alloc", 0), after=[0], names=names)
        with c.check(f"bias_act_backward {label} bias_grad=buffer"):
            buf = c.be.alloc((shape[1],), c.dt, fill=None)
            got = c.be.bias_act_backward(*[put(c.be, a) for a in args], alpha=alpha, bias_grad=buf)
            assert got[1] is buf, "with bias_grad= given, the kernel must write into it and return it"
            c.close("bias_grad", buf, c.ref.bias_act_backward(*args, alpha=alpha)[1])


def _softmax_cross_entropy(c: Ctx) -> None:
    for (n, k), probs, weighted, smooth in product((*SHAPES, (4, 2)), (False, True), (False, True), (0.0, 0.1)):
        target = c.rng.dirichlet(np.ones(k), size=n).astype(c.dt) if probs else c.rng.integers(0, k, size=n)
        kw = {"weight": c.uniform(0.5, 2.0, k) if weighted else None, "label_smoothing": smooth}
        label = f"{n}x{k} {'probability' if probs else 'index'} targets weight={weighted} smoothing={smooth}"
        c.run("softmax_cross_entropy", label, [c.randn(n, k, scale=3.0), target], kw, names=("loss", "grad"))


def _sigmoid_cross_entropy(c: Ctx) -> None:
    for shape, soft, pos in product(SHAPES, (False, True), ("none", "per class", "scalar")):
        target = (c.rng.uniform(size=shape) if soft else c.rng.integers(0, 2, size=shape)).astype(c.dt)
        pos_weight = {"none": None, "per class": c.uniform(0.5, 3.0, shape[1]), "scalar": np.array(2.5, c.dt)}[pos]
        args, label = [c.randn(*shape, scale=3.0), target], f"{shape} soft={soft} pos_weight={pos}"
        c.run("sigmoid_cross_entropy", label, args, {"pos_weight": pos_weight}, names=("loss", "grad"))


def _mse(c: Ctx) -> None:
    for shape in (*SHAPES, (11,), (2, 3, 4)):
        c.run("mse", str(shape), [c.randn(*shape), c.randn(*shape)], names=("loss", "grad"))


def _dropout(c: Ctx) -> None:
    be, same_generator = c.be, isinstance(c.be.generator(0), np.random.Generator)
    for shape, p, layout, out in product(SHAPES, (0.0, 0.3, 1.0), LAYOUTS[:2], (False, True)):
        x = c.randn(*shape)
        with c.check(f"dropout p={p} {shape} {layout} out={out}"):
            xb, buf = put(be, x, layout), be.alloc(shape, c.dt, fill=None) if out else None
            y, mask = be.dropout(xb, p, be.generator(1234), out=buf)
            assert not out or y is buf, "with out= given, the kernel must write into out and return it"
            m = c.close("mask", mask, c.host(mask), exact=True)
            scale = float(np.dtype(c.dt).type(1.0 / (1.0 - p))) if p < 1 else 0.0
            assert np.all((m == 0) | (m == scale)), f"mask values must be 0 or 1/(1-p) = {scale}: {np.unique(m)[:5]}"
            assert p not in (0.0, 1.0) or np.all(m == (p == 0.0)), "p=0 must keep every element, p=1 drop every one"
            c.close("y = x * mask", y, x * m)
            again = be.dropout(xb, p, be.generator(1234))[1]
            assert np.array_equal(c.host(again), m), "a generator with the same seed gives another mask"
            if same_generator:  # a NumPy Generator must draw masks exactly as the reference does
                want = c.ref.dropout(x, p, c.ref.generator(1234))[1]
                c.close("mask (NumPy Generator, same seed as the reference)", mask, want, True)
    for p in (0.1, 0.5, 0.9):
        with c.check(f"dropout keep fraction p={p}"):
            ones = be.alloc((200, 500), c.dt, fill=1.0)
            kept = float(np.mean(c.host(be.dropout(ones, p, be.generator(7))[1]) != 0))
            assert abs(kept - (1.0 - p)) < 0.01, f"kept {kept:.4f} of 100000 elements, expected {1.0 - p:.2f}"


def _dropout_backward(c: Ctx) -> None:
    for shape in SHAPES:
        mask = (c.rng.uniform(size=shape) > 0.3).astype(c.dt) * np.dtype(c.dt).type(1 / 0.7)
        c.run("dropout_backward", str(shape), [c.randn(*shape), mask], outs=(None, "alloc"))


def _batchnorm(c: Ctx) -> None:
    shapes = ((7, 13), (33, 5), (2, 1), (4, 5, 6), (3, 2, 1), (2, 3, 4, 5))
    for shape, training, stats, affine in product(shapes, (True, False), (True, False), ("gb", "", "g", "b")):
        k, x = shape[1], c.randn(*shape, scale=2.0) + np.dtype(c.dt).type(0.5)
        gamma, beta = c.uniform(0.5, 2.0, k) if "g" in affine else None, c.randn(k) if "b" in affine else None
        rm, rv = (c.randn(k), c.uniform(0.5, 2.0, k)) if stats else (None, None)
        kw, label = {"training": training, "momentum": 0.3, "eps": 1e-3}, f"{shape} training={training} running={stats}"
        args, names = [x, gamma, beta, rm, rv], ("y", "xhat", "inv_std")
        c.run("batchnorm", f"{label} affine={affine or 'none'}", args, kw, names=names, after=[3, 4])


def _batchnorm_backward(c: Ctx) -> None:
    for shape, training, affine in product(((7, 13), (2, 1), (4, 5, 6), (2, 3, 4, 5)), (True, False), (True, False)):
        gamma = c.uniform(0.5, 2.0, shape[1]) if affine else None
        _, xhat, inv_std = c.ref.batchnorm(c.randn(*shape), gamma, None, None, None, training=True)
        args, label = [c.randn(*shape), xhat, inv_std, gamma], f"{shape} training={training} gamma={affine}"
        c.run("batchnorm_backward", label, args, {"training": training}, names=("dx", "dgamma", "dbeta"))


#: Optimizer kernels: their state buffers ("name?option": passed as None unless that option is set) ...
_STATES = {"sgd_step": "buf", "adam_step": "exp_avg exp_avg_sq", "adagrad_step": "state_sum"}
_STATES["rmsprop_step"] = "square_avg buf?momentum grad_avg?centered"
#: ... and the option sets checked ("|" between sets, "key=value" pairs within one).
_OPTIONS = {
    "sgd_step": "|momentum=0.9|momentum=0.9 dampening=0.2|momentum=0.8 nesterov=True weight_decay=0.05 l1=0.01",
    "adam_step": "|beta1=0.8 beta2=0.99 eps=1e-6 weight_decay=0.05 l1=0.01|weight_decay=0.05 decoupled=True",
    "rmsprop_step": "|alpha=0.9 eps=1e-6 weight_decay=0.1 l1=0.1|momentum=0.9|centered=True|centered=True momentum=0.9",
    "adagrad_step": "|lr_decay=0.1 eps=1e-6|weight_decay=0.05 l1=0.01",
}


def _optimizer(kernel: str) -> Callable[[Ctx], None]:
    def case(c: Ctx) -> None:
        states, option_sets = _STATES[kernel], _OPTIONS[kernel]
        takes_step = "step" in inspect.signature(getattr(Backend, kernel)).parameters
        for size, spec in product(OPTIM_SIZES, option_sets.split("|")):
            opts = {k: ast.literal_eval(v) for k, v in (kv.split("=") for kv in spec.split())}
            names = ["param"] + [s if "?" not in s or opts.get(s.split("?")[1]) else None for s in states.split()]
            bufs = [c.randn(size)] + [None if n is None else np.zeros(size, c.dt) for n in names[1:]]
            mine = [put(c.be, b) for b in bufs]
            with c.check(f"{kernel} size={size} {opts}"):
                for step in range(1, 6):
                    kw, g = dict(opts, lr=0.01, **({"step": step} if takes_step else {})), c.randn(size)
                    getattr(c.ref, kernel)(bufs[0], g, *bufs[1:], **kw)
                    getattr(c.be, kernel)(mine[0], put(c.be, g), *mine[1:], **kw)
                    for name, m, b in zip(names, mine, bufs):
                        if name is not None and step in (1, 5):
                            c.close(f"{name} after step {step}", m, b)

    return case


def _clip_grad_norm(c: Ctx) -> None:
    for size, norm_type, factor in product(OPTIM_SIZES, (2.0, 1.0, math.inf), (2.0, 0.5)):
        g = c.randn(size)
        args = [g, float(np.linalg.norm(g.astype(np.float64), ord=norm_type)) * factor]
        label = f"size={size} norm_type={norm_type} max_norm={'above' if factor > 1 else 'below'} the norm"
        res = c.run("clip_grad_norm", label, args, {"norm_type": norm_type}, layouts=["strided"], names=(), after=[0])
        if res is not None:
            (total,), (want,) = res
            with c.check(f"clip_grad_norm {label}: returned norm"):
                ok = isinstance(total, float) and abs(total - want) <= TOLERANCES[c.dt] * want
                assert ok, f"{total!r}, expected the Python float {want!r} (rtol {TOLERANCES[c.dt]:g})"


def _clip_grad_value(c: Ctx) -> None:
    for size, clip in product(OPTIM_SIZES, (0.5, 10.0)):
        c.run("clip_grad_value", f"size={size} clip={clip}", [c.randn(size, scale=2.0), clip], names=(), after=[0])


PARITY: dict[str, Callable[[Ctx], None]] = {k: globals()[f"_{k}"] for k in KERNELS if f"_{k}" in globals()}
PARITY.update({k: _optimizer(k) for k in _OPTIONS})
