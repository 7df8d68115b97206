"""Convolution and pooling: kernels against naive loops and PyTorch, gradients, layers, learning digits."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest

import minitrain as mt
from minitrain import functional as F
from minitrain import losses, nn, optim
from minitrain.backend import NumpyBackend
from minitrain.backend.base import geometry2d
from minitrain.testing import check_backend, gradcheck

#: (x shape, (out_channels, kh, kw), stride, padding)
CONVS = [
    ((2, 3, 7, 6), (4, 3, 3), 1, 0),
    ((2, 2, 6, 7), (3, 3, 3), 1, 1),
    ((1, 2, 7, 5), (2, 3, 2), (2, 1), (1, 0)),
    ((2, 1, 5, 6), (3, 1, 1), 2, 0),
    ((1, 2, 4, 5), (2, 2, 3), (2, 3), (2, 1)),
    ((1, 2, 2, 5), (3, 1, 2), (10, 3), (3, 0)),  # windows in the padding only
]
#: (kernel_size, stride, padding) on inputs of shape (2, 3, 7, 6)
POOLS = [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 1)), (2, 1, 0), (4, 4, 2)]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def naive_conv2d(x, w, b, stride, padding):
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    o, _, kh, kw = w.shape
    ho, wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    y = np.zeros((x.shape[0], o, ho, wo))
    for n, k, i, j in product(range(x.shape[0]), range(o), range(ho), range(wo)):
        y[n, k, i, j] = np.sum(xp[n, :, i * sh : i * sh + kh, j * sw : j * sw + kw] * w[k]) + (0 if b is None else b[k])
    return y


def naive_pool2d(x, kernel_size, stride, padding, kind):
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = _pair(kernel_size if stride is None else stride)
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    ho, wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    y = np.zeros((*x.shape[:2], ho, wo))
    for n, c, i, j in product(range(x.shape[0]), range(x.shape[1]), range(ho), range(wo)):
        win = xp[n, c, i * sh : i * sh + kh, j * sw : j * sw + kw]
        y[n, c, i, j] = win.max() if kind == "max" else win.sum() / (kh * kw)
    return y


def distinct(rng, shape):
    """Values at least 0.05 apart, so finite differences never change which element is a window's max."""
    return (rng.permutation(math.prod(shape)).reshape(shape) * 0.05 - 1.0).astype(np.float64)


# ------------------------------------------------------------------------------------- forward vs loops
@pytest.mark.parametrize(("shape", "wshape", "stride", "padding"), CONVS)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_naive_loops(backend, rng, shape, wshape, stride, padding, bias):
    x, w = rng.standard_normal(shape), rng.standard_normal((wshape[0], shape[1], *wshape[1:]))
    b = rng.standard_normal(wshape[0]) if bias else None
    got = F.conv2d(mt.tensor(x), mt.tensor(w), None if b is None else mt.tensor(b), stride, padding)
    np.testing.assert_allclose(got.numpy(), naive_conv2d(x, w, b, stride, padding), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("kernel", "stride", "padding"), POOLS)
@pytest.mark.parametrize(("kind", "op"), [("max", F.max_pool2d), ("avg", F.avg_pool2d)])
def test_pools_match_naive_loops(backend, rng, kernel, stride, padding, kind, op):
    x = rng.standard_normal((2, 3, 7, 6)) - 3.0  # all negative: a padded zero must never win a max
    got = op(mt.tensor(x), kernel, stride, padding).numpy()
    np.testing.assert_allclose(got, naive_pool2d(x, kernel, stride, padding, kind), rtol=1e-12, atol=1e-12)


def test_float32_stays_float32_and_noncontiguous_input_is_read_right(backend, rng):
    x = rng.standard_normal((3, 2, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    xt = np.ascontiguousarray(x.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0)  # same values, Fortran order
    for op in (
        lambda t: F.conv2d(t, mt.tensor(w), padding=1),
        lambda t: F.max_pool2d(t, 2),
        lambda t: F.avg_pool2d(t, 2),
    ):
        a, b = op(mt.tensor(x)), op(mt.tensor(xt))
        assert a.dtype == np.float32 and b.dtype == np.float32
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


def test_max_pool_gradient_goes_to_the_first_of_tied_maxima(backend):
    x = mt.tensor(np.array([[[[1.0, 3.0], [3.0, 3.0]]]]), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [[0.0, 1.0], [0.0, 0.0]])


def test_max_pool_propagates_nan(backend):
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 0] = np.nan
    np.testing.assert_array_equal(np.isnan(F.max_pool2d(mt.tensor(x), 2).numpy()[0, 0]), [[True, False]])


def test_max_pool_over_more_than_128_offsets(backend, rng):
    x = distinct(rng, (2, 2, 12, 13))
    t = mt.tensor(x, requires_grad=True)
    y = F.max_pool2d(t, 12, stride=1)
    np.testing.assert_array_equal(y.numpy(), naive_pool2d(x, 12, 1, 0, "max"))
    y.sum().backward()
    want = np.zeros_like(x)
    for n, c, j in product(range(2), range(2), range(2)):
        i0, j0 = np.unravel_index(np.argmax(x[n, c, :, j : j + 12]), (12, 12))
        want[n, c, i0, j + j0] += 1.0
    np.testing.assert_array_equal(t.grad, want)


# ------------------------------------------------------------------------------------- gradients
def test_input_that_no_window_covers_does_not_reach_the_gradients(backend, rng):
    x, w = rng.standard_normal((2, 3, 7, 7)), rng.standard_normal((4, 3, 2, 2))
    dirty = x.copy()
    dirty[:, :, 6, :] = np.nan  # a 2x2 kernel with stride 2 never sees row 6 or column 6
    dirty[:, :, :, 6] = np.inf
    grads = []
    for data in (x, dirty):
        xt, wt = mt.tensor(data, requires_grad=True), mt.tensor(w, requires_grad=True)
        F.conv2d(xt, wt, None, stride=2).sum().backward()
        grads.append((xt.grad, wt.grad))
    np.testing.assert_array_equal(grads[1][0], grads[0][0])
    np.testing.assert_array_equal(grads[1][1], grads[0][1])
    assert not grads[0][0][:, :, 6, :].any() and not grads[0][0][:, :, :, 6].any()


@pytest.mark.parametrize(("shape", "wshape", "stride", "padding"), CONVS[1:4])
def test_conv2d_gradcheck(backend, rng, shape, wshape, stride, padding):
    x, w = rng.standard_normal(shape), rng.standard_normal((wshape[0], shape[1], *wshape[1:]))
    b = rng.standard_normal(wshape[0])
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding), x, w, b)
    assert gradcheck(lambda x, w: F.conv2d(x, w, None, stride, padding), x, w)


@pytest.mark.parametrize(("kernel", "stride", "padding"), POOLS)
@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
def test_pool_gradcheck(backend, rng, kernel, stride, padding, op):
    assert gradcheck(lambda x: op(x, kernel, stride, padding), distinct(rng, (2, 3, 7, 6)))


def test_first_layer_skips_the_input_gradient(backend, rng, monkeypatch):
    seen = []
    for name in ("conv2d_backward", "conv2d_act_pool_backward"):
        original = getattr(backend, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            seen.append((_name, kwargs["need_input_grad"]))
            return _original(*args, **kwargs)

        monkeypatch.setattr(backend, name, spy)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3))  # conv + relu run fused
    net(rng.standard_normal((2, 1, 7, 7)).astype(np.float32)).sum().backward()
    assert seen == [("conv2d_backward", True), ("conv2d_act_pool_backward", False)]  # last layer first
    assert all(p.grad is not None for p in net.parameters())


# ------------------------------------------------------------------------------------- PyTorch oracle
def _torch_check(torch, fn_mt, fn_torch, *arrays):
    mine = [mt.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, yt = fn_mt(*mine), fn_torch(*theirs)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = np.random.default_rng(5).standard_normal(y.shape)
    (y * mt.tensor(g)).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    for m, t in zip(mine, theirs):
        np.testing.assert_allclose(m.grad, t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("shape", "wshape", "stride", "padding"), CONVS)
def test_conv2d_forward_and_gradients_match_pytorch(backend, rng, shape, wshape, stride, padding):
    torch = pytest.importorskip("torch")
    x, w = rng.standard_normal(shape), rng.standard_normal((wshape[0], shape[1], *wshape[1:]))
    b = rng.standard_normal(wshape[0])
    tf = torch.nn.functional
    _torch_check(
        torch,
        lambda x, w, b: F.conv2d(x, w, b, stride, padding),
        lambda x, w, b: tf.conv2d(x, w, b, _pair(stride), _pair(padding)),
        x,
        w,
        b,
    )


@pytest.mark.parametrize(("kernel", "stride", "padding"), POOLS)
@pytest.mark.parametrize("ties", [False, True])
def test_pools_forward_and_gradients_match_pytorch(backend, rng, kernel, stride, padding, ties):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 7, 6)) - 1.0
    x = np.round(x) if ties else x  # ties: PyTorch routes the gradient to the first maximum
    tf = torch.nn.functional
    _torch_check(
        torch,
        lambda t: F.max_pool2d(t, kernel, stride, padding),
        lambda t: tf.max_pool2d(t, kernel, stride, padding),
        x,
    )
    _torch_check(
        torch,
        lambda t: F.avg_pool2d(t, kernel, stride, padding),
        lambda t: tf.avg_pool2d(t, kernel, stride, padding),
        x,
    )


# ------------------------------------------------------------------------------------- layers
def _cnn(backend, dtype="float32"):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=dtype, backend=backend),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10, dtype=dtype, backend=backend),
    )


def test_conv2d_parameters_have_pytorch_names_and_shapes(backend):
    conv = nn.Conv2d(3, 8, (3, 2), stride=2, padding=(1, 0))
    assert [(n, p.shape) for n, p in conv.named_parameters()] == [("weight", (8, 3, 3, 2)), ("bias", (8,))]
    assert [n for n, _ in nn.Conv2d(3, 8, 3, bias=False).named_parameters()] == ["weight"]
    assert conv(np.zeros((5, 3, 9, 6), dtype=np.float32)).shape == (5, 8, 5, 3)


def test_conv2d_auto_init_is_glorot_uniform_over_channels_times_kernel_area(backend):
    conv = nn.Conv2d(16, 32, 3)
    bound = math.sqrt(6.0 / (16 * 9 + 32 * 9))
    w = conv.weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(float(w.std()) - bound / math.sqrt(3.0)) < 0.05 * bound
    assert not conv.bias.numpy().any()
    he = nn.Conv2d(16, 32, 3, init="he_uniform").weight.numpy()
    assert np.abs(he).max() > bound * 1.3  # sqrt(6 / 144) vs sqrt(6 / 432)


def test_layer_reprs_read_like_pytorch(backend):
    assert repr(nn.Conv2d(1, 32, 3, padding=1)) == "Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
    assert repr(nn.Conv2d(2, 4, (3, 5), stride=2, bias=False)) == (
        "Conv2d(2, 4, kernel_size=(3, 5), stride=(2, 2), bias=False)"
    )
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2, padding=0)"
    assert repr(nn.AvgPool2d(3, stride=1, padding=1)) == "AvgPool2d(kernel_size=3, stride=1, padding=1)"
    assert repr(nn.BatchNorm2d(8)) == "BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True)"


def test_cnn_parameters_live_in_one_flat_buffer(backend):
    net = _cnn(backend)
    (fb,) = net.flat_parameters()
    assert fb.size == net.num_parameters() == 4 * 9 + 4 + 64 * 10 + 10
    fb.data[:] = 0.25
    assert float(net[0].weight.numpy().min()) == 0.25
    net(np.ones((2, 1, 8, 8), dtype=np.float32)).sum().backward()
    assert float(np.abs(backend.to_numpy(fb.grad[: 4 * 9])).sum()) > 0  # the conv weight's gradient is in it
    np.testing.assert_array_equal(backend.to_numpy(fb.grad[: 4 * 9]).reshape(4, 1, 3, 3), net[0].weight.grad)


def test_cnn_state_dict_round_trip(backend):
    mt.manual_seed(1)
    net, other = _cnn(backend), _cnn(backend)
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    assert not np.allclose(net(x).numpy(), other(x).numpy())
    state = net.state_dict()
    assert {k: v.shape for k, v in state.items()} == {
        "0.weight": (4, 1, 3, 3),
        "0.bias": (4,),
        "4.weight": (10, 64),
        "4.bias": (10,),
    }
    other.load_state_dict(state)
    np.testing.assert_array_equal(net(x).numpy(), other(x).numpy())


def test_sequential_cnn_runs_forward_and_backward(backend):
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 3),
    )
    y = net(np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32))
    assert y.shape == (5, 3) and y.dtype == np.float32
    F.cross_entropy(y, mt.tensor(np.array([0, 1, 2, 0, 1]))).backward()
    assert all(p.grad is not None and np.abs(p.grad).sum() > 0 for p in net.parameters())


def test_batchnorm2d_normalizes_each_channel_over_batch_and_space(backend, rng):
    bn = nn.BatchNorm2d(3)
    x = rng.normal(2.0, 3.0, size=(4, 3, 5, 6)).astype(np.float32)
    y = bn(mt.tensor(x)).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1.0, atol=1e-3)
    np.testing.assert_allclose(bn.running_mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    assert gradcheck(lambda t: F.batch_norm(t, None, None, training=True), x[:2, :, :3, :3])


def test_cnn_in_float64(backend):
    y = _cnn(backend, dtype="float64")(np.zeros((2, 1, 8, 8)))
    assert y.dtype == np.float64


# ------------------------------------------------------------------------------------- errors
def test_conv2d_rejects_wrong_ndim_and_channel_mismatch(backend):
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 3, H, W\), got shape \(3, 8, 8\)"):
        conv(np.zeros((3, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 3, H, W\), got shape \(2, 1, 8, 8\)"):
        conv(np.zeros((2, 1, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="input has 1 channels .* weight expects 3"):
        F.conv2d(mt.tensor(np.zeros((2, 1, 8, 8))), mt.tensor(np.zeros((4, 3, 3, 3))))
    with pytest.raises(ValueError, match=r"4 dimensions\), got shape \(8, 8\)"):
        F.max_pool2d(mt.tensor(np.zeros((8, 8))), 2)


def test_kernel_larger_than_the_input_and_bad_options_raise(backend):
    x = mt.tensor(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="kernel 5x5 does not fit the input height 4 with padding 0"):
        F.conv2d(x, mt.tensor(np.zeros((1, 1, 5, 5))))
    with pytest.raises(ValueError, match="padding 2 must be at most half the kernel size 3"):
        F.avg_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        F.max_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match="bias must have shape"):
        F.conv2d(x, mt.tensor(np.zeros((2, 1, 3, 3))), mt.tensor(np.zeros(3)))
    with pytest.raises(ValueError, match="kernel_size must be an int >= 1"):
        nn.Conv2d(1, 2, (3, 3, 3))


def test_parity_case_catches_a_maxpool_that_breaks_ties_toward_the_last_max():
    class LastMax(NumpyBackend):
        name = "lastmax"

        def maxpool2d(self, x, *, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)):
            y, argmax = super().maxpool2d(x, kernel_size=kernel_size, stride=stride, padding=padding)
            windows = self._pool_stack(x, geometry2d(x.shape, kernel_size, stride, padding), -np.inf)
            offsets = np.arange(len(windows))[:, None]
            last = (offsets * (windows == y.reshape(1, -1))).max(axis=0)
            return y, last.astype(argmax.dtype).reshape(argmax.shape)

    with pytest.raises(AssertionError, match=r"failed 1 of .*\n\[parity/maxpool2d\[float64\]\].*\n.*ties.*argmax"):
        check_backend(LastMax(), dtypes=("float64",))


# ------------------------------------------------------------------------------------- learning
def test_small_cnn_learns_digits(backend):
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    X, y = datasets.load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    X_train, X_test, y_train, y_test = model_selection.train_test_split(X, y, test_size=0.25, random_state=0)
    mt.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, init="he_uniform"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )
    opt, loss_fn, order = optim.Adam(net, lr=0.01), losses.CrossEntropyLoss(), np.random.default_rng(0)
    for _ in range(4):
        perm = order.permutation(len(X_train))
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss_fn(net(X_train[idx]), y_train[idx]).backward()
            opt.step()
    net.eval()
    with mt.no_grad():
        accuracy = float((net(X_test).numpy().argmax(axis=1) == y_test).mean())
    assert accuracy > 0.9, accuracy
