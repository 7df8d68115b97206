"""Test machinery (host-side, NumPy): finite-difference ``gradcheck`` and the backend suite ``check_backend``."""

from __future__ import annotations

import ast
import inspect
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from itertools import product
from typing import Any

import numpy as np

from . import functional as F
from .autograd import Tensor, no_grad
from .backend import ACTIVATIONS, KERNELS, Backend, NumpyBackend, get_backend
from .backend.base import NEEDS_PREACTIVATION

__all__ = ["TOLERANCES", "check_backend", "conformance_cases", "gradcheck"]

#: Relative tolerance of the parity checks per dtype, of ``|expected| + max(|expected|, 1)`` per array.
TOLERANCES = {"float32": 1e-5, "float64": 1e-12}
#: Methods besides the kernels whose signatures an override must keep.
PROTOCOL_METHODS = ("is_available", "synchronize", "asarray", "to_numpy", "alloc", "seed")

_SHAPES = ((1, 1), (7, 13), (33, 65), (0, 5))
_LAYOUTS = ("contiguous", "transposed", "strided")
_OPTIM_SIZES = (1, 1000, 4099)


# ---------------------------------------------------------------------------------------- gradcheck
def gradcheck(
    fn: Callable[..., Tensor],
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    backend: Any = None,
    seed: int = 0,
) -> bool:
    """Compare the autograd gradients of ``fn`` with central finite differences.

    Inputs become float64 Tensors that require grad. The output (any shape) is reduced to the scalar
    ``sum(fn(*inputs) * R)`` with a fixed random ``R``, so every output element is checked: its
    gradient by ``backward`` against central differences on every element of every input.

    Parameters
    ----------
    fn : callable
        Takes one Tensor per input and returns a Tensor.
    *inputs : array_like or Tensor
        Points at which to check the gradient (copied, converted to float64).
    eps, atol, rtol : float, default=1e-6, 1e-5, 1e-3
        Finite-difference step; an element passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    backend : str or Backend, optional
        Where to run ``fn``; the current backend by default.
    seed : int, default=0
        Seed of the random output weights ``R``.

    Returns
    -------
    bool
        True when every element of every gradient matches; otherwise AssertionError names the input,
        its worst element, and the analytic and numeric values.

    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import functional as F
    >>> from minitrain.testing import gradcheck
    >>> gradcheck(lambda x: F.tanh(x) * 2.0, np.linspace(-1.0, 1.0, 5))
    True
    """
    be = get_backend(backend)
    host = [np.array(x.numpy() if isinstance(x, Tensor) else x, dtype=np.float64) for x in inputs]
    leaves = [Tensor(be.asarray(h), requires_grad=True, backend=be) for h in host]
    out = fn(*leaves)
    if not isinstance(out, Tensor) or out.dtype.kind != "f":
        raise TypeError(f"gradcheck: fn must return a floating-point Tensor, got {out!r:.80}")
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    if out.requires_grad:
        F.sum(F.mul(out, Tensor(be.asarray(weights), backend=be))).backward()

    def value(arrays: list[np.ndarray]) -> float:
        with no_grad():
            y = fn(*[Tensor(be.asarray(a), backend=be) for a in arrays])
        return float(np.sum(np.asarray(y.numpy(), dtype=np.float64) * weights))

    probe = [h.copy() for h in host]
    for i, (t, h) in enumerate(zip(leaves, host)):
        a = np.zeros(h.shape) if t.grad is None else np.array(be.to_numpy(t.grad), dtype=np.float64)
        if a.shape != h.shape:
            raise AssertionError(f"gradcheck: gradient of input {i} has shape {a.shape}, expected {h.shape}")
        a, numeric, flat = a.reshape(-1), np.zeros(h.size), probe[i].reshape(-1)
        for j in range(h.size):
            x0 = flat[j]
            for sign in (1.0, -1.0):
                flat[j] = x0 + sign * eps
                numeric[j] += sign * value(probe) / (2.0 * eps)
            flat[j] = x0
        excess = np.nan_to_num(np.abs(a - numeric) - (atol + rtol * np.abs(numeric)), nan=np.inf)
        if (excess > 0).any():
            k = int(np.argmax(excess))
            where = tuple(int(w) for w in np.unravel_index(k, h.shape))
            raise AssertionError(
                f"gradcheck: gradient of input {i} (shape {h.shape}) is wrong at {int((excess > 0).sum())} of "
                f"{h.size} elements; worst at index {where}: analytic {a[k]:.10g}, numeric {numeric[k]:.10g} "
                f"(|diff| {abs(a[k] - numeric[k]):.3g} > atol {atol:g} + rtol {rtol:g} * |numeric|)"
            )
    return True


def _put(be: Backend, h: Any, layout: str = "contiguous") -> Any:
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


class _Ctx:
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
        for layout, out in product(how.get("layouts", _LAYOUTS), how.get("outs", (None,))):
            ref = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]
            want = getattr(self.ref, kernel)(*ref, **(dict(kw, out=ref[out]) if isinstance(out, int) else kw))
            want, result = want if isinstance(want, tuple) else (want,), None
            with self.check(f"{kernel} {label} {layout}" + ("" if out is None else f" out={out}")):
                mine, my_kw = [_put(self.be, a, layout) for a in args], {k: _put(self.be, v) for k, v in kw.items()}
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


def _protocol(c: _Ctx) -> None:
    be, api = c.be, ("asarray", "matmul", "exp", "zeros", "float32", "float64")
    for label, get, ok in (
        ("name, device: str", lambda: (be.name, be.device), lambda v: all(isinstance(x, str) and x for x in v)),
        ("xp has NumPy's API", lambda: be.xp, lambda v: all(hasattr(v, f) for f in api)),
        ("is_available() is (True, str)", be.is_available, lambda v: v[0] is True and isinstance(v[1], str)),
        ("cls.is_available() is (True, str)", type(be).is_available, lambda v: v[0] is True),
        ("synchronize() returns None", be.synchronize, lambda v: v is None),
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
    with c.check("seed(s) reproduces rng draws; another seed differs"):
        draws = []
        for s in (42, 42, 43):
            be.seed(s)
            draws.append(c.host(be.asarray(be.rng.random((16,)))))
        assert np.array_equal(draws[0], draws[1]), "two draws after seed(42) differ"
        assert not np.array_equal(draws[0], draws[2]), "seed(43) draws the same numbers as seed(42)"
        assert np.all((draws[0] >= 0) & (draws[0] < 1)), f"rng.random() outside [0, 1): {draws[0]!r}"


def _signatures(c: _Ctx) -> None:
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
# The parity check of kernel ``k`` is the function ``_k`` (optimizer steps: ``_optimizer(k)``).
def _gemm(c: _Ctx) -> None:
    for (m, k, n), ta, tb in product(((1, 1, 1), (7, 13, 5), (33, 65, 17), (0, 4, 3), (4, 0, 3)), *[(False, True)] * 2):
        args = [c.randn(*((k, m) if ta else (m, k))), c.randn(*((n, k) if tb else (k, n)))]
        kw = {"trans_a": ta, "trans_b": tb}
        c.run("gemm", f"{m}x{k}x{n} trans_a={ta} trans_b={tb}", args, kw, outs=(None, "alloc"))


def _act(c: _Ctx) -> None:
    for shape, name, alpha in product(_SHAPES, ACTIVATIONS, (0.01, 0.3)):
        args, kw = [c.randn(*shape, scale=2.0), name], {"alpha": alpha}
        c.run("act", f"{name} alpha={alpha} {shape}", args, kw, outs=(None, "alloc", 0), after=[0])


def _affine_act(c: _Ctx) -> None:
    for (n, i, o), name, bias in product(((1, 1, 1), (7, 13, 5), (33, 65, 17), (0, 4, 3)), ACTIVATIONS, (True, False)):
        args = [c.randn(n, i), c.randn(o, i), c.randn(o) if bias else None, name]
        label = f"{name} {n}x{i}->{o} bias={bias}"
        c.run("affine_act", label, args, {"alpha": 0.2}, layouts=_LAYOUTS[:2], outs=(None, "alloc"), names=("y", "z"))


def _act_backward(c: _Ctx) -> None:
    for shape, name, alpha in product(_SHAPES, ACTIVATIONS, (0.01, 0.3)):
        z, g = c.randn(*shape, scale=2.0), c.randn(*shape)
        args = [g, c.ref.act(z, name, alpha=alpha), z if name in NEEDS_PREACTIVATION else None, name]
        c.run("act_backward", f"{name} alpha={alpha} {shape}", args, {"alpha": alpha}, outs=(None, "alloc"))


def _softmax_cross_entropy(c: _Ctx) -> None:
    for (n, k), probs, weighted, smooth in product((*_SHAPES, (4, 2)), (False, True), (False, True), (0.0, 0.1)):
        target = c.rng.dirichlet(np.ones(k), size=n).astype(c.dt) if probs else c.rng.integers(0, k, size=n)
        kw = {"weight": c.uniform(0.5, 2.0, k) if weighted else None, "label_smoothing": smooth}
        label = f"{n}x{k} {'probability' if probs else 'index'} targets weight={weighted} smoothing={smooth}"
        c.run("softmax_cross_entropy", label, [c.randn(n, k, scale=3.0), target], kw, names=("loss", "grad"))


def _sigmoid_cross_entropy(c: _Ctx) -> None:
    for shape, soft, pos in product(_SHAPES, (False, True), ("none", "per class", "scalar")):
        target = (c.rng.uniform(size=shape) if soft else c.rng.integers(0, 2, size=shape)).astype(c.dt)
        pos_weight = {"none": None, "per class": c.uniform(0.5, 3.0, shape[1]), "scalar": np.array(2.5, c.dt)}[pos]
        args, label = [c.randn(*shape, scale=3.0), target], f"{shape} soft={soft} pos_weight={pos}"
        c.run("sigmoid_cross_entropy", label, args, {"pos_weight": pos_weight}, names=("loss", "grad"))


def _mse(c: _Ctx) -> None:
    for shape in (*_SHAPES, (11,), (2, 3, 4)):
        c.run("mse", str(shape), [c.randn(*shape), c.randn(*shape)], names=("loss", "grad"))


def _dropout(c: _Ctx) -> None:
    be, same_generator = c.be, isinstance(c.be.rng, np.random.Generator)
    for shape, p, layout, out in product(_SHAPES, (0.0, 0.3, 1.0), _LAYOUTS[:2], (False, True)):
        x = c.randn(*shape)
        with c.check(f"dropout p={p} {shape} {layout} out={out}"):
            xb, buf = _put(be, x, layout), be.alloc(shape, c.dt, fill=None) if out else None
            be.seed(1234)
            y, mask = be.dropout(xb, p, out=buf)
            assert not out or y is buf, "with out= given, the kernel must write into out and return it"
            m = c.close("mask", mask, c.host(mask), exact=True)
            scale = float(np.dtype(c.dt).type(1.0 / (1.0 - p))) if p < 1 else 0.0
            assert np.all((m == 0) | (m == scale)), f"mask values must be 0 or 1/(1-p) = {scale}: {np.unique(m)[:5]}"
            assert p not in (0.0, 1.0) or np.all(m == (p == 0.0)), "p=0 must keep every element, p=1 drop every one"
            c.close("y = x * mask", y, x * m)
            be.seed(1234)
            assert np.array_equal(c.host(be.dropout(xb, p)[1]), m), "seed(s) then dropout gives another mask"
            if same_generator:  # a NumPy Generator must draw masks exactly as the reference does
                c.ref.seed(1234)
                c.close("mask (NumPy Generator, same seed as the reference)", mask, c.ref.dropout(x, p)[1], True)
    for p in (0.1, 0.5, 0.9):
        with c.check(f"dropout keep fraction p={p}"):
            be.seed(7)
            kept = float(np.mean(c.host(be.dropout(be.alloc((200, 500), c.dt, fill=1.0), p)[1]) != 0))
            assert abs(kept - (1.0 - p)) < 0.01, f"kept {kept:.4f} of 100000 elements, expected {1.0 - p:.2f}"


def _dropout_backward(c: _Ctx) -> None:
    for shape in _SHAPES:
        mask = (c.rng.uniform(size=shape) > 0.3).astype(c.dt) * np.dtype(c.dt).type(1 / 0.7)
        c.run("dropout_backward", str(shape), [c.randn(*shape), mask], outs=(None, "alloc"))


def _batchnorm(c: _Ctx) -> None:
    shapes = ((7, 13), (33, 5), (2, 1), (4, 5, 6), (3, 2, 1), (2, 3, 4, 5))
    for shape, training, stats, affine in product(shapes, (True, False), (True, False), ("gb", "", "g", "b")):
        k, x = shape[1], c.randn(*shape, scale=2.0) + np.dtype(c.dt).type(0.5)
        gamma, beta = c.uniform(0.5, 2.0, k) if "g" in affine else None, c.randn(k) if "b" in affine else None
        rm, rv = (c.randn(k), c.uniform(0.5, 2.0, k)) if stats else (None, None)
        kw, label = {"training": training, "momentum": 0.3, "eps": 1e-3}, f"{shape} training={training} running={stats}"
        args, names = [x, gamma, beta, rm, rv], ("y", "xhat", "inv_std")
        c.run("batchnorm", f"{label} affine={affine or 'none'}", args, kw, names=names, after=[3, 4])


def _batchnorm_backward(c: _Ctx) -> None:
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


def _optimizer(kernel: str) -> Callable[[_Ctx], None]:
    def case(c: _Ctx) -> None:
        states, option_sets = _STATES[kernel], _OPTIONS[kernel]
        takes_step = "step" in inspect.signature(getattr(Backend, kernel)).parameters
        for size, spec in product(_OPTIM_SIZES, option_sets.split("|")):
            opts = {k: ast.literal_eval(v) for k, v in (kv.split("=") for kv in spec.split())}
            names = ["param"] + [s if "?" not in s or opts.get(s.split("?")[1]) else None for s in states.split()]
            bufs = [c.randn(size)] + [None if n is None else np.zeros(size, c.dt) for n in names[1:]]
            mine = [_put(c.be, b) for b in bufs]
            with c.check(f"{kernel} size={size} {opts}"):
                for step in range(1, 6):
                    kw, g = dict(opts, lr=0.01, **({"step": step} if takes_step else {})), c.randn(size)
                    getattr(c.ref, kernel)(bufs[0], g, *bufs[1:], **kw)
                    getattr(c.be, kernel)(mine[0], _put(c.be, g), *mine[1:], **kw)
                    for name, m, b in zip(names, mine, bufs):
                        if name is not None and step in (1, 5):
                            c.close(f"{name} after step {step}", m, b)

    return case


def _clip_grad_norm(c: _Ctx) -> None:
    for size, norm_type, factor in product(_OPTIM_SIZES, (2.0, 1.0, math.inf), (2.0, 0.5)):
        g = c.randn(size)
        args = [g, float(np.linalg.norm(g.astype(np.float64), ord=norm_type)) * factor]
        label = f"size={size} norm_type={norm_type} max_norm={'above' if factor > 1 else 'below'} the norm"
        res = c.run("clip_grad_norm", label, args, {"norm_type": norm_type}, layouts=["strided"], names=(), after=[0])
        if res is not None:
            (total,), (want,) = res
            with c.check(f"clip_grad_norm {label}: returned norm"):
                ok = isinstance(total, float) and abs(total - want) <= TOLERANCES[c.dt] * want
                assert ok, f"{total!r}, expected the Python float {want!r} (rtol {TOLERANCES[c.dt]:g})"


def _clip_grad_value(c: _Ctx) -> None:
    for size, clip in product(_OPTIM_SIZES, (0.5, 10.0)):
        c.run("clip_grad_value", f"size={size} clip={clip}", [c.randn(size, scale=2.0), clip], names=(), after=[0])


_PARITY: dict[str, Callable[[_Ctx], None]] = {k: globals()[f"_{k}"] for k in KERNELS if f"_{k}" in globals()}
_PARITY.update({k: _optimizer(k) for k in _OPTIONS})


def _case(body: Callable[[_Ctx], None], dtype: str, seed: int, backend: Backend, reference: Backend) -> None:
    body(ctx := _Ctx(backend, reference, dtype, seed))
    ctx.finish()


# ---------------------------------------------------------------------------------------- public API
def conformance_cases(dtypes: Sequence[str] = ("float32", "float64")) -> list[tuple[str, Callable[..., None]]]:
    """The cases of ``check_backend``, one ``(name, check)`` pair each, for pytest to parametrize.

    ``check(backend, reference)`` runs one case against the NumPy ``reference`` and raises AssertionError
    listing every failed check. Names: ``protocol``, ``signatures``, ``parity/<kernel>[<dtype>]``.

    Parameters
    ----------
    dtypes : sequence of str, default=("float32", "float64")
        Floating dtypes the parity cases run in.

    Examples
    --------
    >>> from minitrain.testing import conformance_cases
    >>> names = [name for name, _ in conformance_cases()]
    >>> "parity/gemm[float32]" in names and "signatures" in names
    True
    """
    dts = [str(np.dtype(d)) for d in dtypes]
    if not set(dts) <= set(TOLERANCES):
        raise ValueError(f"dtypes must be among {', '.join(TOLERANCES)}, got {list(dtypes)}")
    missing = [k for k in KERNELS if k not in _PARITY]
    if missing:
        raise RuntimeError(f"minitrain.testing has no parity check for kernels {missing}")
    cases = [("protocol", partial(_case, _protocol, "float64", 0)), ("signatures", partial(_case, _signatures, "", 0))]
    return cases + [
        (f"parity/{k}[{d}]", partial(_case, _PARITY[k], d, zlib.crc32(f"{k}{d}".encode())))
        for k in KERNELS
        for d in dts
    ]


def check_backend(backend: Any, *, dtypes: Sequence[str] = ("float32", "float64")) -> None:
    """Run the conformance and parity suite on a backend; raise one AssertionError listing all failures.

    Checks the protocol (attributes, ``asarray``/``to_numpy``, ``alloc``, seeded ``rng``), that overrides
    keep the signatures of ``Backend`` and add no public methods, and every kernel of ``KERNELS`` against
    the NumPy reference on odd shapes, empty batches and non-contiguous inputs, with every option.
    Reseeds the backend's generator (a NumPy ``Generator`` must draw dropout masks like the reference).

    Parameters
    ----------
    backend : str or Backend
        The backend to check (an instance, or a registered name).
    dtypes : sequence of str, default=("float32", "float64")
        Floating dtypes the parity cases run in.

    Examples
    --------
    >>> from minitrain.testing import check_backend
    >>> check_backend("numpy", dtypes=("float64",))
    """
    be = get_backend(backend)
    cases, failures = conformance_cases(dtypes), []
    for name, case in cases:
        try:
            case(be, NumpyBackend())
        except Exception as exc:  # collect every failing case
            failures.append(f"[{name}] {exc if isinstance(exc, AssertionError) else f'raised {exc!r}'}")
    if failures:
        summary = f"backend {be.name!r} ({type(be).__name__}) failed {len(failures)} of {len(cases)} conformance cases"
        raise AssertionError(summary + ":\n" + "\n".join(failures))
