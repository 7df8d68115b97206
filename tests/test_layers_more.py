"""Adaptive pooling (global pooling), channel dropout (Dropout1d / Dropout2d), bidirectional and stacked LSTM / GRU:
gradients, the reference math, PyTorch, backends, state."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import minitrain as mt
from minitrain import functional as F
from minitrain import nn
from minitrain.backend import get_backend
from minitrain.testing import gradcheck


def _flat(*tensors):
    return F.concatenate([F.reshape(t, (-1,)) for t in tensors])


def _backward(out, seed=7):
    w = np.random.default_rng(seed).standard_normal(out.shape)
    F.sum(F.mul(out, mt.tensor(w, backend=out.backend))).backward()
    return w


def naive_adaptive(x, out, reduce):
    """PyTorch's adaptive pooling windows, one output at a time."""
    H, W = x.shape[-2:]
    y = np.empty((*x.shape[:-2], *out))
    for i in range(out[0]):
        for j in range(out[1]):
            hs, he = (i * H) // out[0], -(-(i + 1) * H // out[0])
            ws, we = (j * W) // out[1], -(-(j + 1) * W // out[1])
            y[..., i, j] = reduce(x[..., hs:he, ws:we], axis=(-2, -1))
    return y


SIZES = [((6, 4), (3, 2)), ((7, 5), (3, 4)), ((5, 5), (1, 1)), ((4, 6), (6, 9)), ((3, 7), (None, 3))]


# ------------------------------------------------------------------------------------------ adaptive pooling
@pytest.mark.parametrize(("size", "out"), SIZES)
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive_pools_match_naive_windows(backend, rng, size, out, kind):
    x = rng.standard_normal((2, 3, *size))
    full = tuple(s if o is None else o for s, o in zip(size, out))
    op, reduce = (F.adaptive_avg_pool2d, np.mean) if kind == "avg" else (F.adaptive_max_pool2d, np.max)
    got = op(mt.tensor(x), out)
    np.testing.assert_allclose(got.numpy(), naive_adaptive(x, full, reduce), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(op(mt.tensor(x[0]), out).numpy(), got.numpy()[0], rtol=1e-12)  # unbatched (C, H, W)


@pytest.mark.parametrize(("size", "out"), SIZES[:4])
def test_adaptive_pool_gradcheck(backend, rng, size, out):
    x = rng.standard_normal((2, 2, *size))
    assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, out), x, backend=backend)
    assert gradcheck(lambda t: F.adaptive_max_pool2d(t, out), x, backend=backend)


def test_adaptive_max_pool_indices_and_ties_go_to_the_first_maximum(backend):
    x = mt.tensor(np.array([[[[1.0, 3.0, 3.0], [3.0, 0.0, 2.0]]]]), requires_grad=True)
    y, idx = nn.AdaptiveMaxPool2d((1, 2), return_indices=True)(x)  # windows: columns 0-1 and 1-2
    np.testing.assert_array_equal(idx.numpy(), [[[[1, 1]]]])
    F.sum(y).backward()
    np.testing.assert_array_equal(x.grad, [[[[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]]])


def test_global_average_pooling_in_a_cnn(backend, rng):
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x = rng.standard_normal((5, 2, 9, 7)).astype(np.float32)
    y = net(x)
    assert y.shape == (5, 3) and y.dtype == np.float32
    np.testing.assert_allclose(net[2](net[1](net[0](x))).numpy()[..., 0, 0], net[1](net[0](x)).numpy().mean((2, 3)),
                               rtol=1e-5)  # fmt: skip
    _backward(y)
    assert all(np.abs(p.grad).max() > 0 for p in net.parameters())
    assert net(rng.standard_normal((1, 2, 12, 5)).astype(np.float32)).shape == (1, 3)  # any input size


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: nn.AdaptiveAvgPool2d(0), "output_size must be an int >= 1"),
        (lambda: nn.AdaptiveMaxPool2d((2, 2, 2)), "output_size"),
        (lambda: nn.AdaptiveAvgPool2d(2)(np.zeros((2, 3))), r"shape \(N, C, H, W\) or \(C, H, W\)"),
        (lambda: nn.Dropout2d(0.5)(np.zeros((2, 3))), "expected input with 4 dimensions"),
        (lambda: nn.Dropout1d(0.5)(np.zeros((2, 3, 4, 5))), "expected input with 3 dimensions"),
        (lambda: nn.Dropout2d(2.0), r"dropout probability must be in \[0, 1\]"),
    ],
)
def test_bad_input_says_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------------ channel dropout
@pytest.mark.parametrize(("cls", "shape"), [(nn.Dropout2d, (8, 16, 3, 4)), (nn.Dropout2d, (64, 3, 3)),
                                            (nn.Dropout1d, (8, 16, 5)), (nn.Dropout1d, (64, 5))])  # fmt: skip
def test_channel_dropout_zeros_whole_channels_and_scales_the_rest(backend, rng, cls, shape):
    drop = cls(0.25, seed=0)
    x = mt.tensor(rng.uniform(1.0, 2.0, shape).astype(np.float32), requires_grad=True)
    y = drop(x).numpy()
    spatial = tuple(range(x.ndim - (2 if cls is nn.Dropout2d else 1), x.ndim))
    dropped = (y == 0).all(axis=spatial)
    assert ((y != 0).all(axis=spatial) | dropped).all()  # each channel is dropped or kept whole
    assert abs(dropped.mean() - 0.25) < 0.12  # 128 channels
    factor = np.where(dropped, 0.0, 1 / 0.75).reshape(dropped.shape + (1,) * len(spatial))
    np.testing.assert_allclose(y, x.numpy() * factor, rtol=1e-6)
    w = _backward(cls(0.25, seed=0)(x))  # the same seed, the same mask
    np.testing.assert_allclose(x.grad, w * factor, rtol=1e-6)


def test_channel_dropout_is_identity_in_eval_and_follows_its_seed(backend, rng):
    x = rng.standard_normal((4, 6, 3, 3)).astype(np.float32)
    a, b, c = nn.Dropout2d(0.5, seed=1), nn.Dropout2d(0.5, seed=1), nn.Dropout2d(0.5, seed=2)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert not np.array_equal(a(x).numpy(), c(x).numpy())
    assert not np.array_equal(a(x).numpy(), a(x).numpy())  # the generator moves on
    t = mt.tensor(x)
    assert a.eval()(t) is t and nn.Dropout2d(0.0)(t) is t
    assert not nn.Dropout2d(1.0)(t).numpy().any()
    assert repr(a) == "Dropout2d(p=0.5)"


# ------------------------------------------------------------------------------------------ bidirectional RNNs
T, B, D, H = 4, 2, 3, 2


def test_bidirectional_parameters_have_pytorchs_names_and_order():
    lstm = nn.LSTM(D, H, num_layers=2, bidirectional=True, bias=False)
    assert [(n, p.shape) for n, p in lstm.named_parameters()] == [
        ("weight_ih_l0", (4 * H, D)),
        ("weight_hh_l0", (4 * H, H)),
        ("weight_ih_l0_reverse", (4 * H, D)),
        ("weight_hh_l0_reverse", (4 * H, H)),
        ("weight_ih_l1", (4 * H, 2 * H)),
        ("weight_hh_l1", (4 * H, H)),
        ("weight_ih_l1_reverse", (4 * H, 2 * H)),
        ("weight_hh_l1_reverse", (4 * H, H)),
    ]
    assert repr(nn.GRU(3, 4, bidirectional=True)) == "GRU(3, 4, bidirectional=True)"


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_bidirectional_gradcheck(backend, rng, kind):
    rnn = getattr(nn, kind)(D, H, num_layers=2, bidirectional=True, dtype="float64")
    names = [n for n, _ in rnn.named_parameters()][8:]  # the second layer's (the first's are checked against PyTorch)
    states = [rng.standard_normal((4, B, H)) for _ in range(2 if kind == "LSTM" else 1)]

    def fn(x, *rest):
        for n, p in zip(names, rest[len(states) :]):
            rnn._parameters[n] = p
        hx = tuple(rest[: len(states)]) if kind == "LSTM" else rest[0]
        out, hidden = rnn(x, hx)
        return _flat(out, *(hidden if kind == "LSTM" else (hidden,)))

    params = [rnn._parameters[n].numpy() for n in names]
    assert gradcheck(fn, rng.standard_normal((T, B, D)), *states, *params, backend=backend)


def test_reverse_direction_reads_the_sequence_backwards(backend, rng):
    bi, fwd, rev = nn.GRU(D, H, bidirectional=True), nn.GRU(D, H), nn.GRU(D, H)
    state = bi.state_dict()
    fwd.load_state_dict({k: v for k, v in state.items() if not k.endswith("_reverse")})
    rev.load_state_dict({k.removesuffix("_reverse"): v for k, v in state.items() if k.endswith("_reverse")})
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    out, h_n = bi(x)
    out_f, h_f = fwd(x)
    out_r, h_r = rev(x[::-1].copy())
    np.testing.assert_allclose(out.numpy(), np.concatenate([out_f.numpy(), out_r.numpy()[::-1]], -1), rtol=1e-6)
    np.testing.assert_allclose(h_n.numpy(), np.concatenate([h_f.numpy(), h_r.numpy()]), rtol=1e-6)


@pytest.mark.parametrize("batch_first", [False, True])
def test_last_step_of_a_bidirectional_layer_holds_both_final_states(backend, rng, batch_first):
    lstm = nn.LSTM(D, H, num_layers=2, bidirectional=True, batch_first=batch_first)
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D)).astype(np.float32)
    out, (h_n, _) = lstm(x)
    last = nn.LastStep(batch_first=batch_first)((out, (h_n, None)))
    seq = out.numpy() if batch_first else out.numpy().transpose(1, 0, 2)
    np.testing.assert_array_equal(last.numpy(), np.concatenate([seq[:, -1, :H], seq[:, 0, H:]], -1))
    np.testing.assert_array_equal(last.numpy(), np.concatenate([h_n.numpy()[-2], h_n.numpy()[-1]], -1))
    net = nn.Sequential(lstm, nn.LastStep(), nn.Linear(2 * H, 3))
    _backward(net(x))
    assert all(np.abs(p.grad).max() > 0 for p in net.parameters())


def test_unbatched_bidirectional_with_initial_state_and_dropout(backend, rng):
    gru = nn.GRU(D, H, num_layers=2, bidirectional=True, dropout=0.5)
    x, h0 = rng.standard_normal((T, D)).astype(np.float32), rng.standard_normal((4, H)).astype(np.float32)
    out, h_n = gru(x, h0)
    assert out.shape == (T, 2 * H) and h_n.shape == (4, H)
    assert not np.array_equal(gru(x, h0)[0].numpy(), gru(x, h0)[0].numpy())  # dropout between layers
    gru.eval()
    (out, h_n), (batched, h_batched) = gru(x, h0), gru(x[:, None], h0[:, None])
    np.testing.assert_allclose(out.numpy(), batched.numpy()[:, 0], rtol=1e-6)
    np.testing.assert_allclose(h_n.numpy(), h_batched.numpy()[:, 0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"h_0 has shape \(2, 2\), expected \(4, 2\)"):
        gru(x, h0[:2])


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize(("num_layers", "batch_first"), [(1, False), (2, True), (3, False)])
def test_bidirectional_matches_pytorch(backend, rng, kind, num_layers, batch_first):
    torch = pytest.importorskip("torch")
    ours = getattr(nn, kind)(D, H, num_layers, bidirectional=True, batch_first=batch_first, dtype="float64")
    theirs = getattr(torch.nn, kind)(D, H, num_layers, bidirectional=True, batch_first=batch_first,
                                     dtype=torch.float64)  # fmt: skip
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D))
    states = [rng.standard_normal((2 * num_layers, B, H)) for _ in range(2 if kind == "LSTM" else 1)]
    xs, hs = mt.tensor(x, requires_grad=True), [mt.tensor(s, requires_grad=True) for s in states]
    xt, ht = torch.tensor(x, requires_grad=True), [torch.tensor(s, requires_grad=True) for s in states]
    out, hidden = ours(xs, tuple(hs) if kind == "LSTM" else hs[0])
    out_t, hidden_t = theirs(xt, tuple(ht) if kind == "LSTM" else ht[0])
    mine, want = (out, *hidden) if kind == "LSTM" else (out, hidden), (out_t, *hidden_t) if kind == "LSTM" else (
        out_t, hidden_t)  # fmt: skip
    weights = [np.random.default_rng(i).standard_normal(o.shape) for i, o in enumerate(mine)]
    F.sum(_flat(*(F.mul(o, mt.tensor(w)) for o, w in zip(mine, weights)))).backward()
    sum((o * torch.from_numpy(w)).sum() for o, w in zip(want, weights)).backward()
    for m, w in zip(mine, want):
        np.testing.assert_allclose(m.numpy(), w.detach().numpy(), rtol=1e-10, atol=1e-12)
    for m, w in zip((xs, *hs), (xt, *ht)):
        np.testing.assert_allclose(m.grad, w.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs.get_parameter(name).grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("size", "out"), SIZES)
def test_adaptive_pools_match_pytorch(backend, rng, size, out):
    torch = pytest.importorskip("torch")
    x = np.round(rng.standard_normal((2, 3, *size)) * 2)  # ties: the gradient goes to the first maximum
    tf = torch.nn.functional
    for ours, theirs in (
        (F.adaptive_avg_pool2d, tf.adaptive_avg_pool2d),
        (F.adaptive_max_pool2d, tf.adaptive_max_pool2d),
    ):
        xm, xt = mt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, yt = ours(xm, out), theirs(xt, out)
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        w = _backward(y)
        (yt * torch.from_numpy(w)).sum().backward()
        np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    _, idx = F.adaptive_max_pool2d(mt.tensor(x), out, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), tf.adaptive_max_pool2d(torch.tensor(x), out, True)[1].numpy())


# ------------------------------------------------------------------------------------------ backends and state
def _layers(be, dtype="float32"):
    return {
        "avg_pool": (nn.AdaptiveAvgPool2d((3, None), backend=be), (2, 3, 7, 5)),
        "max_pool": (nn.AdaptiveMaxPool2d(2, backend=be), (2, 3, 7, 5)),
        "dropout2d": (nn.Dropout2d(0.3, backend=be, seed=4), (2, 5, 3, 3)),
        "lstm": (nn.LSTM(D, H, num_layers=2, bidirectional=True, dropout=0.2, dtype=dtype, backend=be), (T, B, D)),
        "gru": (nn.GRU(D, H, bidirectional=True, batch_first=True, dtype=dtype, backend=be), (B, T, D)),
    }


def _out(y):
    return y[0] if isinstance(y, tuple) else y


@pytest.mark.parametrize("name", ["avg_pool", "max_pool", "dropout2d", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_backend_gives_the_reference_forward_and_gradients(backend, name, dtype):
    results = []
    x = np.random.default_rng(0).standard_normal(_layers("numpy")[name][1]).astype(dtype)
    for be in (get_backend("numpy"), backend):
        with mt.random.seeded(5):
            layer = _layers(be, dtype)[name][0]
        xt = mt.tensor(x, requires_grad=True, backend=be)
        y = _out(layer(xt))  # in training: the same seed draws the same dropout masks on every CPU backend
        assert y.dtype == dtype
        _backward(y)
        results.append([y.numpy(), xt.grad, *(p.grad for p in layer.parameters())])
    tol = 1e-5 if dtype == "float32" else 1e-10
    for want, got in zip(*results):
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["avg_pool", "max_pool", "dropout2d", "lstm", "gru"])
def test_copies_moves_state_dicts_and_files_give_the_same_layer(backend, name, tmp_path):
    layer, shape = _layers(backend)[name]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    mt.save(layer, tmp_path / "layer.safetensors")
    fresh = _layers(backend)[name][0]
    fresh.load_state_dict(layer.state_dict())
    other = "numba" if backend.name == "numpy" else "numpy"
    copies = {
        "pickle": pickle.loads(pickle.dumps(layer)),
        "deepcopy": copy.deepcopy(layer),
        "load": mt.load(tmp_path / "layer.safetensors"),
        "to": copy.deepcopy(layer).to(other),
    }
    want = _out(layer(x)).numpy()  # the copies hold the generator's state from before this draw
    for how, clone in {**copies, "state_dict": fresh}.items():
        assert type(clone) is type(layer) and repr(clone) == repr(layer), how
        if how != "state_dict" or name not in ("dropout2d", "lstm"):  # a fresh layer has a generator of its own
            np.testing.assert_allclose(_out(clone(x)).numpy(), want, rtol=1e-5, atol=1e-6, err_msg=how)
        clone.eval()
        np.testing.assert_allclose(_out(clone(x)).numpy(), _out(layer.eval()(x)).numpy(), rtol=1e-5, atol=1e-6)
        layer.train()
    assert copies["to"].backend.name == other
