"""Parity cases of the extension ``mlp_loss_grad`` (the MLP estimators' fused step): a dense stack's loss and
gradients on one batch, as the estimators run it on a backend (its extension where it applies, else the reference
composition of its kernels), against the reference composition on NumPy."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise, product
from typing import Any

import numpy as np

from ..backend import ACTIVATIONS
from ..estimators._mlp_losses import OUTPUTS
from ..estimators._mlp_step import reference_loss_grad
from ._ctx import Ctx

# (features, hidden sizes, outputs): one layer, two, three (with a 1-wide hidden layer), one output
NETS = ((5, (), 3), (6, (4,), 3), (7, (5, 1), 2), (3, (4,), 1))


def _target(c: Ctx, output: str, probs: bool, n: int, k: int) -> np.ndarray:
    if output == "softmax":
        return c.rng.dirichlet(np.ones(k), size=n).astype(c.dt) if probs else c.rng.integers(0, k, size=n)
    if output == "logistic":
        return (c.rng.random((n, k)) < 0.5).astype(c.dt)
    return c.uniform(0.0, 3.0, n, k) if output == "exp" else c.randn(n, k)


def _net(c: Ctx, n_in: int, hidden: tuple[int, ...], n_out: int, column_major: bool) -> tuple[list, list]:
    sizes = (n_in, *hidden, n_out)
    weights = [c.randn(o, i, scale=0.7) for i, o in pairwise(sizes)]
    weights = [np.asfortranarray(w) if column_major else w for w in weights]
    return weights, [c.randn(o, scale=0.3) for o in sizes[1:]]


def _run(be: Any, weights: list, args: tuple, kw: dict, workspace: dict | None) -> tuple[float, list, list]:
    """Run the step on ``be`` with gradient buffers laid out like the weights; return (loss, dW, db)."""
    ws = [be.asarray(w) for w in weights]
    gws = [be.asarray(np.full_like(w, np.nan)) for w in weights]  # written, never read
    gbs = [be.alloc((w.shape[0],), w.dtype, fill=np.nan) for w in weights]
    bs = [be.asarray(b) for b in kw.pop("biases")]
    x, target, *rest = (be.asarray(a) if isinstance(a, np.ndarray) else a for a in args)
    call = (x, target, ws, bs, *rest)
    kw = {**kw, "weight_grads": gws, "bias_grads": gbs, "workspace": workspace}
    fast = be.extension("mlp_loss_grad")
    loss = NotImplemented if fast is None else fast(be, *call, **kw)
    if loss is NotImplemented:
        loss = reference_loss_grad(be, *call, **kw)
    return loss, gws, gbs


def _grid(dt: str) -> list[tuple[tuple, str, str, bool]]:
    """(net, hidden activation, output, probability targets): every hidden activation and every output, each on
    a few depths, without the full product (a compiled backend may build one kernel per combination)."""
    acts = ("relu", "tanh", "sigmoid", "leaky_relu", "identity", "gelu")  # gelu: a backend may defer to the reference
    assert set(acts) <= set(ACTIVATIONS)
    two, one, three, single = NETS[1], NETS[0], NETS[2], NETS[3]
    grid = [(two, act, "softmax", False) for act in acts] if dt == "float32" else [(two, "relu", "softmax", False)]
    grid += [(two, "relu", out, probs) for out in OUTPUTS for probs in (False, True) if probs or out != "softmax"]
    grid += [(one, "relu", "softmax", False), (three, "relu", "softmax", False), (single, "tanh", "identity", False)]
    return grid


def _mlp_loss_grad(c: Ctx) -> None:
    rows_kinds = ("none", "perm", "repeat")
    for i, ((n_in, hidden, n_out), act, output, probs) in enumerate(_grid(c.dt)):
        for weighted, rows_kind in product((False, True), rows_kinds):
            column_major = (i + rows_kinds.index(rows_kind)) % 2 == 0  # Linear's layout, and row-major weights
            n_all = 9
            x, target = c.randn(n_all, n_in), _target(c, output, probs, n_all, n_out)
            sw = c.uniform(0.5, 2.0, n_all) if weighted else None
            rows = {"none": None, "perm": c.rng.permutation(n_all)[:7], "repeat": np.array([3, 3, 0, 8, 1])}[rows_kind]
            weights, biases = _net(c, n_in, hidden, n_out, column_major)
            acts = [act] * len(hidden) + ["identity"]
            label = f"{n_in}-{'-'.join(map(str, hidden))}-{n_out} {act} {output} probs={probs} rows={rows_kind}"
            kw = {"rows": rows, "sample_weight": sw, "alphas": [0.2] * len(acts)}
            with c.check(f"mlp_loss_grad {label} weighted={weighted} column_major={column_major}"):
                want = _run(c.ref, weights, (x, target, acts, output), {**kw, "biases": biases}, None)
                workspace: dict = {}
                for call in range(2):  # the second call reuses the workspace the first one filled
                    got = _run(c.be, weights, (x, target, acts, output), {**kw, "biases": biases}, workspace)
                    c.close(f"loss (call {call + 1})", np.asarray(got[0], c.dt), np.asarray(want[0], c.dt))
                    for k, (g, w) in enumerate(zip(got[1] + got[2], want[1] + want[2])):
                        name = f"weight_grads[{k}]" if k < len(weights) else f"bias_grads[{k - len(weights)}]"
                        c.close(f"{name} (call {call + 1})", g, c.ref.to_numpy(w))
    with c.check("mlp_loss_grad: mixed hidden activations and an activated output layer"):
        weights, biases = _net(c, 6, (5, 4), 3, True)
        x, target = c.randn(9, 6), c.randn(9, 3)
        for acts in (["relu", "tanh", "identity"], ["relu", "relu", "sigmoid"]):
            want = _run(c.ref, weights, (x, target, acts, "identity"), {"biases": biases}, None)
            got = _run(c.be, weights, (x, target, acts, "identity"), {"biases": biases}, {})
            c.close(f"loss {acts}", np.asarray(got[0], c.dt), np.asarray(want[0], c.dt))
            for g, w in zip(got[1] + got[2], want[1] + want[2]):
                c.close(f"gradient {acts}", g, c.ref.to_numpy(w))
    with c.check("mlp_loss_grad: a row index out of bounds raises IndexError"):
        weights, biases = _net(c, 3, (4,), 2, True)
        try:
            _run(c.be, weights, (c.randn(5, 3), c.randn(5, 2), ["relu", "identity"], "identity"),
                 {"rows": np.array([0, 5]), "biases": biases}, {})  # fmt: skip
        except IndexError:
            pass
        else:
            raise AssertionError("rows=[0, 5] on 5 samples did not raise IndexError")


PARITY: dict[str, Callable[[Ctx], None]] = {"mlp_loss_grad": _mlp_loss_grad}
