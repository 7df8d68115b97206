"""Every registered backend against the conformance suite, and the kernels against the math."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minitrain.backend import ACTIVATIONS, KERNELS, NumpyBackend
from minitrain.backend.base import NEEDS_PREACTIVATION
from minitrain.testing import check_backend, conformance_cases

CASES = conformance_cases()
DTYPES = ("float32", "float64")
TOL = {"float32": {"rtol": 2e-6, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-13}}


def put(be, values, dtype="float64"):
    """A backend array from host values, always a copy."""
    return be.asarray(np.array(values, dtype=dtype))


def host(be, x):
    return np.asarray(be.to_numpy(x))


# ------------------------------------------------------------------------------------------ the suite
@pytest.mark.parametrize(("name", "case"), CASES, ids=[name for name, _ in CASES])
def test_conformance_case(backend, name, case):
    case(backend, NumpyBackend())


def test_check_backend_passes_as_a_whole(backend):
    check_backend(backend)


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_has_a_parity_case_per_dtype(kernel):
    names = {name for name, _ in CASES}
    assert {f"parity/{kernel}[{dtype}]" for dtype in DTYPES} <= names


def test_conformance_cases_reject_unknown_dtypes():
    with pytest.raises(ValueError, match="float16"):
        conformance_cases(dtypes=("float16",))


# ------------------------------------------------------------------------------------------ gemm
@pytest.mark.parametrize(
    ("trans_a", "trans_b", "a", "b", "expected"),
    [
        (False, False, [[1, 2], [3, 4]], [[5, 6], [7, 8]], [[19, 22], [43, 50]]),
        (True, False, [[1, 3], [2, 4]], [[5, 6], [7, 8]], [[19, 22], [43, 50]]),
        (False, True, [[1, 2], [3, 4]], [[5, 7], [6, 8]], [[19, 22], [43, 50]]),
        (False, False, [[1, 2, 3]], [[1], [0], [-1]], [[-2]]),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_known_products(backend, trans_a, trans_b, a, b, expected, dtype):
    got = backend.gemm(put(backend, a, dtype), put(backend, b, dtype), trans_a=trans_a, trans_b=trans_b)
    assert host(backend, got).dtype == dtype
    np.testing.assert_array_equal(host(backend, got), expected)


# ------------------------------------------------------------------------------------------ activations
TEXTBOOK = {
    "identity": lambda z, a: z,
    "relu": lambda z, a: z if z > 0 else 0.0,
    "leaky_relu": lambda z, a: z if z > 0 else a * z,
    "elu": lambda z, a: z if z > 0 else a * (math.exp(z) - 1.0),
    "gelu": lambda z, a: 0.5 * z * (1.0 + math.erf(z / math.sqrt(2.0))),
    "gelu_tanh": lambda z, a: 0.5 * z * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3))),
    "sigmoid": lambda z, a: 1.0 / (1.0 + math.exp(-z)),
    "tanh": lambda z, a: math.tanh(z),
    "softplus": lambda z, a: math.log1p(math.exp(z)),
}
GRID = np.linspace(-4.0, 4.0, 40)  # an even count: no point on the kink at 0


def test_textbook_table_covers_every_activation():
    assert set(TEXTBOOK) == set(ACTIVATIONS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_act_matches_textbook_formula(backend, name, dtype):
    expected = [TEXTBOOK[name](float(z), 0.2) for z in GRID.astype(dtype)]
    got = host(backend, backend.act(put(backend, GRID, dtype), name, alpha=0.2))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, **TOL[dtype])


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "tanh", "elu", "gelu", "relu"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_act_is_stable_at_large_magnitudes(backend, name, dtype):
    z = np.array([-80.0, -30.0, 30.0, 80.0])
    got = host(backend, backend.act(put(backend, z, dtype), name, alpha=1.0))
    expected = [TEXTBOOK[name](v, 1.0) for v in z]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("name", ["leaky_relu", "elu"])
def test_act_applies_alpha(backend, name):
    got = host(backend, backend.act(put(backend, [-1.0, 2.0]), name, alpha=0.5))
    np.testing.assert_allclose(got, [TEXTBOOK[name](-1.0, 0.5), 2.0], rtol=1e-12)


def test_act_accepts_sklearn_aliases(backend):
    z = put(backend, [-1.0, 0.5])
    np.testing.assert_array_equal(host(backend, backend.act(z, "logistic")), host(backend, backend.act(z, "sigmoid")))
    np.testing.assert_array_equal(host(backend, backend.act(z, None)), [-1.0, 0.5])


def test_act_rejects_unknown_activation(backend):
    with pytest.raises(ValueError, match="swish"):
        backend.act(put(backend, [1.0]), "swish")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_act_backward_matches_finite_differences(backend, name):
    h = 1e-6
    z = put(backend, GRID)
    y = backend.act(z, name, alpha=0.2)
    numeric = (
        host(backend, backend.act(put(backend, GRID + h), name, alpha=0.2))
        - host(backend, backend.act(put(backend, GRID - h), name, alpha=0.2))
    ) / (2 * h)
    upstream = np.random.default_rng(0).standard_normal(GRID.shape)
    z_arg = z if name in NEEDS_PREACTIVATION else None
    got = host(backend, backend.act_backward(put(backend, upstream), y, z_arg, name, alpha=0.2))
    np.testing.assert_allclose(got, upstream * numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_affine_act_is_act_of_affine_map(backend, name):
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((5, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    y, _ = backend.affine_act(put(backend, x), put(backend, w), put(backend, b), name, alpha=0.2)
    expected = np.vectorize(lambda v: TEXTBOOK[name](v, 0.2))(x @ w.T + b)
    np.testing.assert_allclose(host(backend, y), expected, rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------------------------------ losses
def test_softmax_cross_entropy_two_class_example(backend):
    logits = np.array([[1.0, 2.0], [0.5, -0.5]])
    loss, grad = backend.softmax_cross_entropy(put(backend, logits), put(backend, [1, 0], "int64"))
    expected = [math.log(math.exp(1) + math.exp(2)) - 2.0, math.log(math.exp(0.5) + math.exp(-0.5)) - 0.5]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(host(backend, loss), expected, rtol=1e-12)
    np.testing.assert_allclose(host(backend, grad), p - np.eye(2)[[1, 0]], rtol=1e-12, atol=1e-15)


def _logsumexp_loss(logits, q, weight):
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    w = np.ones(logits.shape[1]) if weight is None else weight
    return -(w * q * logp).sum(axis=1)


@pytest.mark.parametrize("probs", [False, True], ids=["index", "probability"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_softmax_cross_entropy_matches_formula_and_finite_differences(backend, probs, weighted, smoothing):
    rng = np.random.default_rng(2)
    n, c = 5, 4
    logits = rng.standard_normal((n, c)) * 2
    target = rng.dirichlet(np.ones(c), size=n) if probs else rng.integers(0, c, n)
    weight = rng.uniform(0.5, 2.0, c) if weighted else None
    q = target if probs else np.eye(c)[target]
    q = q * (1 - smoothing) + smoothing / c
    be_target = put(backend, target, "float64" if probs else "int64")
    be_weight = None if weight is None else put(backend, weight)

    def total(lg):
        loss, _ = backend.softmax_cross_entropy(
            put(backend, lg), be_target, weight=be_weight, label_smoothing=smoothing
        )
        return host(backend, loss).sum()

    loss, grad = backend.softmax_cross_entropy(
        put(backend, logits), be_target, weight=be_weight, label_smoothing=smoothing
    )
    np.testing.assert_allclose(host(backend, loss), _logsumexp_loss(logits, q, weight), rtol=1e-12)
    numeric = np.zeros_like(logits)
    for idx in np.ndindex(*logits.shape):
        e = np.zeros_like(logits)
        e[idx] = 1e-6
        numeric[idx] = (total(logits + e) - total(logits - e)) / 2e-6
    np.testing.assert_allclose(host(backend, grad), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_is_stable_for_huge_logits(backend, dtype):
    loss, grad = backend.softmax_cross_entropy(put(backend, [[1000.0, -1000.0]], dtype), put(backend, [1], "int64"))
    np.testing.assert_allclose(host(backend, loss), [2000.0], rtol=1e-6)
    np.testing.assert_allclose(host(backend, grad), [[1.0, -1.0]], atol=1e-6)


@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_sigmoid_cross_entropy_matches_formula_and_finite_differences(backend, pos_weight):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((4, 3)) * 2
    t = rng.uniform(size=(4, 3))
    pw = 1.0 if pos_weight is None else pos_weight
    sig = 1 / (1 + np.exp(-z))
    expected = -(pw * t * np.log(sig) + (1 - t) * np.log(1 - sig))
    be_pw = None if pos_weight is None else put(backend, pos_weight)
    loss, grad = backend.sigmoid_cross_entropy(put(backend, z), put(backend, t), pos_weight=be_pw)
    np.testing.assert_allclose(host(backend, loss), expected, rtol=1e-12)

    def total(v):
        return host(backend, backend.sigmoid_cross_entropy(put(backend, v), put(backend, t), pos_weight=be_pw)[0])

    numeric = (total(z + 1e-6) - total(z - 1e-6)) / 2e-6  # elementwise loss: one probe for all elements
    np.testing.assert_allclose(host(backend, grad), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_cross_entropy_is_stable_for_huge_logits(backend, dtype):
    loss, grad = backend.sigmoid_cross_entropy(
        put(backend, [100.0, -100.0, 100.0], dtype), put(backend, [0, 0, 1], dtype)
    )
    np.testing.assert_allclose(host(backend, loss), [100.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(host(backend, grad), [1.0, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_is_squared_error_and_its_gradient(backend, dtype):
    loss, grad = backend.mse(put(backend, [1.0, -2.0, 0.5], dtype), put(backend, [0.0, 1.0, 0.5], dtype))
    assert host(backend, loss).dtype == dtype and host(backend, grad).dtype == dtype
    np.testing.assert_array_equal(host(backend, loss), [1.0, 9.0, 0.0])
    np.testing.assert_array_equal(host(backend, grad), [2.0, -6.0, 0.0])


# ------------------------------------------------------------------------------------------ dropout
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_scales_kept_elements_by_inverse_keep_probability(backend, dtype):
    x = put(backend, np.full(4000, 3.0), dtype)
    y, mask = backend.dropout(x, 0.25, backend.generator(0))
    m = host(backend, mask)
    assert set(np.unique(m).tolist()) == {0.0, float(np.dtype(dtype).type(4 / 3))}
    np.testing.assert_allclose(host(backend, y), 3.0 * m, rtol=1e-6)
    assert abs((m != 0).mean() - 0.75) < 0.03


# ------------------------------------------------------------------------------------------ batchnorm
def _bn_axes(x):
    return (0, *range(2, x.ndim))


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
def test_batchnorm_training_normalizes_with_batch_stats_and_updates_running_stats(backend, shape):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape) * 3 + 1
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    bshape = (1, 3) + (1,) * (len(shape) - 2)
    axes = _bn_axes(x)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    n = x.size // 3
    expected = (x - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5) * gamma.reshape(bshape)
    expected += beta.reshape(bshape)
    be_rm, be_rv = put(backend, rm), put(backend, rv)
    y, _, _ = backend.batchnorm(put(backend, x), put(backend, gamma), put(backend, beta), be_rm, be_rv, momentum=0.2)
    np.testing.assert_allclose(host(backend, y), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(backend, be_rm), 0.8 * rm + 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(host(backend, be_rv), 0.8 * rv + 0.2 * var * n / (n - 1), rtol=1e-12)


def test_batchnorm_eval_uses_running_stats_and_leaves_them_unchanged(backend):
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    rm, rv = np.array([1.0, 2.0]), np.array([4.0, 16.0])
    be_rm, be_rv = put(backend, rm), put(backend, rv)
    y, _, _ = backend.batchnorm(put(backend, x), None, None, be_rm, be_rv, training=False, eps=0.0)
    np.testing.assert_allclose(host(backend, y), [[0.0, 0.0], [1.0, 1.0]], rtol=1e-12)
    np.testing.assert_array_equal(host(backend, be_rm), rm)
    np.testing.assert_array_equal(host(backend, be_rv), rv)


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4)])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_batchnorm_backward_matches_finite_differences(backend, shape, training, affine):
    rng = np.random.default_rng(5)
    c = shape[1]
    x = rng.standard_normal(shape)
    gamma = rng.uniform(0.5, 2, c) if affine else None
    beta = rng.standard_normal(c) if affine else None
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    r = rng.standard_normal(shape)

    def f(xv, gv, bv):
        stats = (put(backend, rm), put(backend, rv)) if not training else (None, None)
        g = None if gv is None else put(backend, gv)
        b = None if bv is None else put(backend, bv)
        y, xhat, inv_std = backend.batchnorm(put(backend, xv), g, b, *stats, training=training)
        return float((host(backend, y) * r).sum()), xhat, inv_std

    def numeric(index):
        args = [x, gamma, beta]
        out = np.zeros_like(args[index])
        for idx in np.ndindex(*out.shape):
            for sign in (1, -1):
                probe = [None if a is None else a.copy() for a in args]
                probe[index][idx] += sign * 1e-6
                out[idx] += sign * f(*probe)[0] / 2e-6
        return out

    _, xhat, inv_std = f(x, gamma, beta)
    g = None if gamma is None else put(backend, gamma)
    dx, dgamma, dbeta = backend.batchnorm_backward(put(backend, r), xhat, inv_std, g, training=training)
    np.testing.assert_allclose(host(backend, dx), numeric(0), rtol=1e-5, atol=1e-7)
    if affine:
        np.testing.assert_allclose(host(backend, dgamma), numeric(1), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(host(backend, dbeta), numeric(2), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------ optimizers
def _sgd(p, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, l1=0.0):
    buf = 0.0
    for t, g in enumerate(grads, 1):
        g = g + weight_decay * p + l1 * math.copysign(1.0, p)
        if momentum:
            buf = g if t == 1 else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p -= lr * g
    return p


def _adam(p, grads, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    m = v = 0.0
    for t, g in enumerate(grads, 1):
        if decoupled:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p -= lr * (m / (1 - beta1**t)) / (math.sqrt(v / (1 - beta2**t)) + eps)
    return p


def _rmsprop(p, grads, lr, alpha=0.99, eps=1e-8, momentum=0.0, centered=False):
    sq = avg_g = buf = 0.0
    for g in grads:
        sq = alpha * sq + (1 - alpha) * g * g
        avg_g = alpha * avg_g + (1 - alpha) * g
        denom = math.sqrt(sq - avg_g**2 if centered else sq) + eps
        buf = momentum * buf + g / denom
        p -= lr * (buf if momentum else g / denom)
    return p


def _adagrad(p, grads, lr, lr_decay=0.0, eps=1e-10):
    s = 0.0
    for t, g in enumerate(grads, 1):
        s += g * g
        p -= lr / (1 + (t - 1) * lr_decay) * g / (math.sqrt(s) + eps)
    return p


GRADS = [0.5, -0.25, 1.0]
OPTIMIZER_CASES = [
    ("sgd_step", ("buf",), {}, _sgd),
    ("sgd_step", ("buf",), {"momentum": 0.9}, _sgd),
    ("sgd_step", ("buf",), {"momentum": 0.9, "dampening": 0.5}, _sgd),
    ("sgd_step", ("buf",), {"momentum": 0.9, "nesterov": True}, _sgd),
    ("sgd_step", ("buf",), {"weight_decay": 0.1, "l1": 0.05}, _sgd),
    ("adam_step", ("m", "v"), {}, _adam),
    ("adam_step", ("m", "v"), {"beta1": 0.5, "beta2": 0.9, "eps": 1e-3}, _adam),
    ("adam_step", ("m", "v"), {"weight_decay": 0.1}, _adam),
    ("adam_step", ("m", "v"), {"weight_decay": 0.1, "decoupled": True}, _adam),
    ("rmsprop_step", ("sq", None, None), {}, _rmsprop),
    ("rmsprop_step", ("sq", "buf", None), {"momentum": 0.9}, _rmsprop),
    ("rmsprop_step", ("sq", None, "avg"), {"centered": True}, _rmsprop),
    ("rmsprop_step", ("sq", "buf", "avg"), {"centered": True, "momentum": 0.5, "alpha": 0.9}, _rmsprop),
    ("adagrad_step", ("s",), {}, _adagrad),
    ("adagrad_step", ("s",), {"lr_decay": 0.5, "eps": 1e-3}, _adagrad),
]


@pytest.mark.parametrize(
    ("kernel", "states", "opts", "textbook"), OPTIMIZER_CASES, ids=[f"{c[0]}-{c[2]}" for c in OPTIMIZER_CASES]
)
def test_optimizer_step_matches_textbook_update(backend, kernel, states, opts, textbook):
    param = put(backend, [1.0])
    bufs = [None if s is None else put(backend, [0.0]) for s in states]
    for step, g in enumerate(GRADS, 1):
        kw = dict(opts, lr=0.1) if kernel == "rmsprop_step" else dict(opts, lr=0.1, step=step)
        getattr(backend, kernel)(param, put(backend, [g]), *bufs, **kw)
    np.testing.assert_allclose(host(backend, param), [textbook(1.0, GRADS, 0.1, **opts)], rtol=1e-12)


def test_sgd_first_step_by_hand(backend):
    param = put(backend, [1.0, -1.0])
    backend.sgd_step(param, put(backend, [0.5, 0.5]), put(backend, [0.0, 0.0]), lr=0.1, step=1)
    np.testing.assert_allclose(host(backend, param), [0.95, -1.05], rtol=1e-15)


@pytest.mark.parametrize(
    ("grad", "max_norm", "norm_type", "norm", "clipped"),
    [
        ([3.0, 4.0], 1.0, 2.0, 5.0, [0.6, 0.8]),
        ([3.0, 4.0], 10.0, 2.0, 5.0, [3.0, 4.0]),
        ([3.0, -4.0], 2.0, math.inf, 4.0, [1.5, -2.0]),
        ([3.0, -4.0], 14.0, 1.0, 7.0, [3.0, -4.0]),
        ([3.0, -4.0], 3.5, 1.0, 7.0, [1.5, -2.0]),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_by_hand(backend, grad, max_norm, norm_type, norm, clipped, dtype):
    g = put(backend, grad, dtype)
    total = backend.clip_grad_norm(g, max_norm, norm_type=norm_type)
    assert total == pytest.approx(norm, rel=1e-6)
    assert host(backend, g).dtype == dtype
    np.testing.assert_allclose(host(backend, g), clipped, rtol=1e-5)


def test_clip_grad_value_by_hand(backend):
    g = put(backend, [-3.0, 0.5, 2.0, -0.25])
    backend.clip_grad_value(g, 1.0)
    np.testing.assert_array_equal(host(backend, g), [-1.0, 0.5, 1.0, -0.25])
