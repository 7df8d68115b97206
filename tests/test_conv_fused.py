"""The fused conv -> activation -> max pooling block: the ``conv2d_act_pool`` kernel against the three kernels it
replaces, its gradients, and ``Sequential``'s fused plan against the modules run one by one (one step and training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minitrain as mt
from minitrain import functional as F
from minitrain import nn, optim
from minitrain.backend import NumpyBackend
from minitrain.backend.base import geometry2d
from minitrain.functional.conv_ops import conv2d_act_pool
from minitrain.testing import gradcheck

#: (x shape, (out_channels, kh, kw), stride, padding)
CONVS = [
    ((2, 3, 7, 6), (4, 3, 3), 1, 0),
    ((2, 2, 6, 7), (3, 3, 3), 1, 1),
    ((1, 2, 7, 5), (2, 3, 2), (2, 1), (1, 0)),
]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def distinct(rng, shape):
    """Values at least 0.05 apart, so finite differences never change which element is a window's max."""
    return (rng.permutation(math.prod(shape)).reshape(shape) * 0.05 - 1.0).astype(np.float64)


# ------------------------------------------------------------------------------------- conv -> act -> pool
#: (activation, pool) of the fused block; pools that leave rows and columns out (floor mode) included
BLOCKS = [("relu", (2, 2)), ("leaky_relu", (3, 2)), ("tanh", (1, 1)), ("identity", (2, 3)), ("sigmoid", 2)]


def _composed(be, x, w, b, conv, act, pool):
    a = be.act(be.conv2d(x, w, b, **conv), act)
    return (a, None) if pool in (1, (1, 1)) else be.maxpool2d(a, kernel_size=pool, stride=pool, padding=0)


@pytest.mark.parametrize(("shape", "wshape", "stride", "padding"), CONVS)
@pytest.mark.parametrize(("act", "pool"), BLOCKS)
def test_conv2d_act_pool_is_conv_then_act_then_pool(backend, rng, shape, wshape, stride, padding, act, pool):
    x, w = rng.standard_normal(shape), rng.standard_normal((wshape[0], shape[1], *wshape[1:]))
    b = rng.standard_normal(wshape[0])
    conv = {"stride": stride, "padding": padding}
    ho, wo = geometry2d(shape, wshape[1:], stride, padding)[6:]
    pool_hw = _pair(pool)
    if ho < pool_hw[0] or wo < pool_hw[1]:
        pytest.skip("the pool does not fit this conv's output")
    y, argmax = backend.conv2d_act_pool(x, w, b, activation=act, pool=pool, **conv)
    want_y, want_argmax = _composed(NumpyBackend(), x, w, b, conv, act, pool)
    np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-12)
    if want_argmax is None:
        assert argmax is None
    else:
        np.testing.assert_array_equal(argmax, want_argmax)
    g = rng.standard_normal(y.shape)
    ref = NumpyBackend()
    gy = ref.act_backward(g, want_y, None, act)
    if want_argmax is not None:
        gy = ref.maxpool2d_backward(gy, want_argmax, (shape[0], wshape[0], ho, wo), kernel_size=pool, stride=pool)
    block = {"activation": act, "pool": pool, **conv}
    for need in (True, False):
        got = backend.conv2d_act_pool_backward(g, x, w, y, argmax, need_input_grad=need, **block)
        want = ref.conv2d_backward(gy, x, w, need_input_grad=need, **conv)
        for a, e in zip(got, want, strict=True):
            assert (a is None) == (e is None)
            if e is not None:
                np.testing.assert_allclose(a, e, rtol=1e-11, atol=1e-11)


def test_numpy_conv2d_act_pool_is_bit_for_bit_the_three_kernels(rng):
    ref = NumpyBackend()
    x, w = rng.standard_normal((3, 2, 9, 8)).astype(np.float32), rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    for act, pool in BLOCKS:
        y, argmax = ref.conv2d_act_pool(x, w, None, padding=1, activation=act, pool=pool)
        want_y, want_argmax = _composed(ref, x, w, None, {"padding": 1}, act, pool)
        np.testing.assert_array_equal(y, want_y)
        assert argmax is want_argmax is None or np.array_equal(argmax, want_argmax)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "identity"])
@pytest.mark.parametrize("pool", [(2, 2), (3, 2), (1, 3)])
@pytest.mark.parametrize("channels", [1, 2])
def test_numpy_conv2d_act_pool_ties_and_nan_as_the_three_kernels(rng, act, pool, channels):
    # Integer values: windows tie often (ReLU's zeros above all), and NaN from the input reaches some windows. The
    # reference pools the GEMM's channels-last output (1 channel: columns gathered pool-offset-major, contiguous
    # windows; 2 channels: strided windows on the extended grid), and for ReLU applies it inside the pooling
    # (running max from max(w0, 0)): the same values and first-max argmax as the three kernels in turn.
    ref = NumpyBackend()
    x = rng.integers(-2, 3, (3, channels, 9, 8)).astype(np.float32)
    x[0, -1, 4, 3] = x[2, 0, 0, 0] = np.nan
    w = rng.integers(-1, 2, (12, channels, 3, 3)).astype(np.float32)
    b = rng.integers(-1, 2, 12).astype(np.float32)
    g = geometry2d(x.shape, (3, 3), 1, 1)
    assert (ref._block_tiles(x, w, g, pool) is not None) == (channels == 1)
    y, argmax = ref.conv2d_act_pool(x, w, b, padding=1, activation=act, pool=pool)
    want_y, want_argmax = _composed(ref, x, w, b, {"padding": 1}, act, pool)
    assert np.isnan(want_y).any() and (want_y == 0).any()
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(argmax, want_argmax)


@pytest.mark.parametrize(("shape", "stride", "padding"), [((2, 1, 7, 6), 1, 0), ((2, 1, 9, 7), (2, 1), (1, 0))])
@pytest.mark.parametrize(("act", "pool"), [("relu", (2, 2)), ("tanh", (3, 2)), ("identity", (2, 3))])
def test_numpy_conv2d_act_pool_pool_offset_major_columns(rng, shape, stride, padding, act, pool):
    # Fewer columns (c * kh * kw) than output channels: the reference gathers them pool-offset-major, so that each
    # pool offset is a contiguous block of GEMM rows; the values and gradients are those of the three kernels.
    ref = NumpyBackend()
    x, w, b = rng.standard_normal(shape), rng.standard_normal((6, 1, 2, 2)), rng.standard_normal(6)
    conv = {"stride": stride, "padding": padding}
    g = geometry2d(shape, (2, 2), stride, padding)
    assert ref._block_tiles(x, w, g, pool) is not None
    y, argmax = ref.conv2d_act_pool(x, w, b, activation=act, pool=pool, **conv)
    want_y, want_argmax = _composed(ref, x, w, b, conv, act, pool)
    np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(argmax, want_argmax)
    grad = rng.standard_normal(y.shape)
    gy = ref.act_backward(grad, y, None, act)
    gy = ref.maxpool2d_backward(gy, argmax, (2, 6, g.ho, g.wo), kernel_size=pool, stride=pool)
    for need in (True, False):
        got = ref.conv2d_act_pool_backward(
            grad, x, w, y, argmax, need_input_grad=need, activation=act, pool=pool, **conv
        )
        want = ref.conv2d_backward(gy, x, w, need_input_grad=need, **conv)
        for a, e in zip(got, want, strict=True):
            assert (a is None) == (e is None)
            if e is not None:
                np.testing.assert_allclose(a, e, rtol=1e-11, atol=1e-11)


def test_conv2d_act_pool_rejects_activations_whose_backward_needs_the_input(backend):
    x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match="gelu.*use conv2d and act"):
        backend.conv2d_act_pool(x, w, None, activation="gelu")


@pytest.mark.parametrize(("act", "pool"), BLOCKS)
def test_conv2d_act_pool_gradcheck(backend, rng, act, pool):
    x, w, b = distinct(rng, (2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 3)) * 0.3, rng.standard_normal(3)

    def block(x, w, b):
        return conv2d_act_pool(x, w, b, (1, 1), (1, 1), act, 0.01, _pair(pool))

    assert gradcheck(block, x, w, b)


def _block_net(pool_module):
    mt.manual_seed(3)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), pool_module, nn.Conv2d(4, 5, 3), nn.LeakyReLU(0.2))


@pytest.mark.parametrize(
    "pool",
    [((2,), {}), (((2, 3),), {}), ((2,), {"stride": 1}), ((3,), {"padding": 1}), ((2,), {"avg": True})],
    ids=["2x2", "2x3", "overlapping", "padded", "average"],
)
def test_sequential_fuses_conv_act_pool_with_the_same_values_and_gradients(backend, rng, pool):
    """Fused (disjoint max pooling) or not (overlapping, padded, average), a Sequential computes what its modules
    compute one by one."""
    args, kw = pool
    pool = nn.AvgPool2d(*args) if kw.pop("avg", False) else nn.MaxPool2d(*args, **kw)
    x = rng.standard_normal((3, 2, 9, 10)).astype(np.float32)
    net = _block_net(pool)
    mods = list(net)
    fused = net(x)
    fused.sum().backward()
    fused_grads = [p.grad.copy() for p in net.parameters()]
    net.zero_grad()
    h = mt.tensor(x)
    for m in mods:
        h = m(h)
    h.sum().backward()
    np.testing.assert_allclose(fused.numpy(), h.numpy(), rtol=1e-5, atol=1e-6)
    for a, e in zip(fused_grads, [p.grad for p in net.parameters()], strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)
    disjoint = isinstance(pool, nn.MaxPool2d) and pool.stride == pool.kernel_size and pool.padding == 0
    assert len(net._plan) == (2 if disjoint else 3)  # conv + relu (+ pool), conv + leaky relu


def test_fused_block_raises_what_the_modules_raise(backend):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(4))
    with pytest.raises(ValueError, match="max_pool2d: kernel 4x4 does not fit the input height 3"):
        net(np.zeros((1, 1, 5, 9), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d\(1, 2\) expects input of shape \(N, 1, H, W\)"):
        net(np.zeros((1, 2, 9, 9), np.float32))


def test_fused_block_follows_later_changes_of_the_pool(backend, rng):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    net(x)
    net[2].stride = 1  # overlapping windows now: the modules run one by one
    want = net[2](net[1](net[0](x)))
    np.testing.assert_allclose(net(x).numpy(), want.numpy(), rtol=1e-6)


def test_gelu_and_conv2d_subclasses_are_not_fused(backend, rng):
    class Scaled(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * 2.0

    for net in (nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU()), nn.Sequential(Scaled(1, 2, 3), nn.ReLU())):
        y = net(rng.standard_normal((1, 1, 5, 5)).astype(np.float32))
        assert len(net._plan) == 2 and y.shape == (1, 2, 3, 3)


class OneByOne(nn.Module):
    """The modules of a Sequential called in turn (no fused plan), sharing their parameters."""

    def __init__(self, seq):
        super().__init__()
        self.seq = seq

    def forward(self, x):
        h = mt.tensor(x) if not isinstance(x, mt.Tensor) else x
        for m in self.seq:
            h = m(h)
        return h


def _small_cnn():
    mt.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 3),
    )  # fmt: skip


def _train(model, params, X, y, steps=6):
    opt, losses = optim.Adam(params, lr=0.01), []
    for s in range(steps):
        idx = slice(8 * (s % 3), 8 * (s % 3) + 8)
        loss = F.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return losses


def test_training_through_the_fused_plan_follows_the_modules_one_by_one(backend, rng):
    X = rng.standard_normal((24, 1, 9, 9)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    fused, plain = _small_cnn(), _small_cnn()
    fused_losses = _train(fused, fused.parameters(), X, y)
    assert len(fused._plan) == 4  # two conv blocks, flatten, linear
    plain_losses = _train(OneByOne(plain), plain.parameters(), X, y)
    assert fused_losses[-1] < fused_losses[0]  # it learns
    np.testing.assert_allclose(fused_losses, plain_losses, rtol=1e-4)
    for a, e in zip(fused.parameters(), plain.parameters(), strict=True):
        np.testing.assert_allclose(a.numpy(), e.numpy(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(("act", "pool"), [("relu", (2, 2)), ("tanh", (1, 1)), ("leaky_relu", (3, 2))])
def test_numpy_conv2d_act_pool_in_chunks_of_images(rng, act, pool):
    # The channels-last GEMMs on the extended grid run over chunks of images (``conv_chunk_bytes`` of columns):
    # one image per chunk gives what one chunk of all gives, the weight gradient summed over the chunks.
    class OneImage(NumpyBackend):
        conv_chunk_bytes = 1

    ref, chunked = NumpyBackend(), OneImage()
    x, w, b = rng.standard_normal((3, 4, 8, 7)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    block = {"padding": 1, "activation": act, "pool": pool}
    assert ref._block_tiles(x, w, geometry2d(x.shape, (3, 3), 1, 1), _pair(pool)) is None
    got, want = chunked.conv2d_act_pool(x, w, b, **block), ref.conv2d_act_pool(x, w, b, **block)
    np.testing.assert_array_equal(got[0], want[0])
    assert (got[1] is None and want[1] is None) or np.array_equal(got[1], want[1])
    grad = rng.standard_normal(want[0].shape)
    for need in (True, False):
        got_g = chunked.conv2d_act_pool_backward(grad, x, w, *want, need_input_grad=need, **block)
        want_g = ref.conv2d_act_pool_backward(grad, x, w, *want, need_input_grad=need, **block)
        for a, e in zip(got_g, want_g, strict=True):
            assert (a is None) == (e is None)
            if e is not None:
                np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)
