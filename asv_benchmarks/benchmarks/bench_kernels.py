"""The backend kernels one at a time, on the sizes of the models people train (float32).

Every setup calls its kernels once, so Numba compiles (or loads its cache) outside the timing.
"""

from __future__ import annotations

import numpy as np

from .common import BACKENDS, Bench, backend_or_skip


def _randn(be, *shape, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= np.float32(scale)
    return be.asarray(x)


class Gemm(Bench):
    """``gemm`` into a preallocated output: the MLP's forward GEMMs and a square one."""

    params = (BACKENDS, ["128x784x256", "128x256x128", "1024x1024x1024"])
    param_names = ["backend", "m x k x n"]

    def setup(self, backend, shape):
        self.be = be = backend_or_skip(backend)
        m, k, n = map(int, shape.split("x"))
        self.a, self.b = _randn(be, m, k), _randn(be, k, n, seed=1)
        self.out = be.alloc((m, n), "float32", fill=None)
        self.time_gemm(backend, shape)  # compile / warm up outside the timing

    def time_gemm(self, backend, shape):
        self.be.gemm(self.a, self.b, out=self.out)
        self.be.synchronize()


class AffineAct(Bench):
    """Bias and activation fused into the GEMM output (forward), and the activation's backward."""

    params = (BACKENDS, ["relu", "tanh", "gelu"])
    param_names = ["backend", "activation"]

    def setup(self, backend, activation):
        self.be = be = backend_or_skip(backend)
        self.x, self.w, self.bias = _randn(be, 128, 784), _randn(be, 256, 784, scale=0.05), _randn(be, 256)
        self.out = be.alloc((128, 256), "float32", fill=None)
        self.y, self.z = be.affine_act(self.x, self.w, self.bias, activation)
        self.g = _randn(be, 128, 256, seed=2)
        self.time_affine_act(backend, activation)
        self.time_act_backward(backend, activation)

    def time_affine_act(self, backend, activation):
        self.be.affine_act(self.x, self.w, self.bias, activation, out=self.out)
        self.be.synchronize()

    def time_act_backward(self, backend, activation):
        self.be.act_backward(self.g, self.y, self.z, activation, out=self.out)
        self.be.synchronize()


class SoftmaxCrossEntropy(Bench):
    """Loss and gradient of softmax cross-entropy in one pass."""

    params = (BACKENDS, ["128x10", "4096x100"])
    param_names = ["backend", "n x classes"]

    def setup(self, backend, shape):
        self.be = be = backend_or_skip(backend)
        n, c = map(int, shape.split("x"))
        self.logits = _randn(be, n, c, scale=3.0)
        self.target = be.asarray(np.random.default_rng(0).integers(0, c, n))
        self.time_softmax_cross_entropy(backend, shape)

    def time_softmax_cross_entropy(self, backend, shape):
        self.be.softmax_cross_entropy(self.logits, self.target)
        self.be.synchronize()


class OptimizerStep(Bench):
    """One optimizer step over a flat buffer of 1M or 10M parameters."""

    params = (BACKENDS, ["sgd_momentum", "adam", "rmsprop", "adagrad"], [1_000_000, 10_000_000])
    param_names = ["backend", "optimizer", "parameters"]

    def setup(self, backend, optimizer, n):
        self.be = be = backend_or_skip(backend)
        self.p, self.g = _randn(be, n), _randn(be, n, seed=1, scale=0.01)
        s1, s2 = be.alloc(n, "float32"), be.alloc(n, "float32")
        self.t = 0
        self.call = {
            "sgd_momentum": lambda t: be.sgd_step(self.p, self.g, s1, lr=0.01, step=t, momentum=0.9),
            "adam": lambda t: be.adam_step(self.p, self.g, s1, s2, lr=1e-3, step=t),
            "rmsprop": lambda t: be.rmsprop_step(self.p, self.g, s1, None, None, lr=1e-3),
            "adagrad": lambda t: be.adagrad_step(self.p, self.g, s1, lr=0.01, step=t),
        }[optimizer]
        self.call(1)  # compile / warm up outside the timing

    def time_step(self, backend, optimizer, n):
        self.t += 1
        self.call(self.t + 1)
        self.be.synchronize()


class Conv2d(Bench):
    """Convolution forward and backward, 3 x 3 kernels with padding 1, batch 64, NCHW."""

    params = (BACKENDS, ["1x28x28->32", "32x14x14->64"])
    param_names = ["backend", "input -> channels"]

    def setup(self, backend, shape):
        self.be = be = backend_or_skip(backend)
        src, cout = shape.split("->")
        cin, h, w = map(int, src.split("x"))
        self.x, self.w, self.b = (
            _randn(be, 64, cin, h, w),
            _randn(be, int(cout), cin, 3, 3, scale=0.1),
            _randn(be, int(cout)),
        )
        self.y = be.conv2d(self.x, self.w, self.b, stride=(1, 1), padding=(1, 1))
        self.g = _randn(be, *self.y.shape, seed=3)
        self.time_conv2d_backward(backend, shape)

    def time_conv2d(self, backend, shape):
        self.be.conv2d(self.x, self.w, self.b, stride=(1, 1), padding=(1, 1))
        self.be.synchronize()

    def time_conv2d_backward(self, backend, shape):
        self.be.conv2d_backward(self.g, self.x, self.w, stride=(1, 1), padding=(1, 1))
        self.be.synchronize()


class MaxPool2d(Bench):
    """2 x 2 max pooling forward and backward of a batch of 64 x 32 x 28 x 28."""

    params = (BACKENDS,)
    param_names = ["backend"]

    def setup(self, backend):
        self.be = be = backend_or_skip(backend)
        self.x = _randn(be, 64, 32, 28, 28)
        y, self.idx = be.maxpool2d(self.x, kernel_size=(2, 2), stride=(2, 2))
        self.g = _randn(be, *y.shape, seed=1)
        self.time_maxpool2d_backward(backend)

    def time_maxpool2d(self, backend):
        self.be.maxpool2d(self.x, kernel_size=(2, 2), stride=(2, 2))
        self.be.synchronize()

    def time_maxpool2d_backward(self, backend):
        self.be.maxpool2d_backward(self.g, self.idx, self.x.shape, kernel_size=(2, 2), stride=(2, 2))
        self.be.synchronize()


class LSTMStep(Bench):
    """The pointwise part of one LSTM time step (the GEMMs are ``gemm``), forward and backward."""

    params = (BACKENDS, [64, 512])
    param_names = ["backend", "batch"]

    def setup(self, backend, batch):
        self.be = be = backend_or_skip(backend)
        hidden = 128
        self.gates, self.c_prev = _randn(be, batch, 4 * hidden), _randn(be, batch, hidden, seed=1)
        self.h, self.c, self.acts = be.lstm_step(be.asarray(self.gates.copy()), self.c_prev)
        self.gh, self.gc = _randn(be, batch, hidden, seed=2), _randn(be, batch, hidden, seed=3)
        self.time_lstm_step_backward(backend, batch)

    def time_lstm_step(self, backend, batch):
        self.be.lstm_step(self.gates, self.c_prev)
        self.be.synchronize()

    def time_lstm_step_backward(self, backend, batch):
        self.be.lstm_step_backward(self.gh, self.gc, self.acts, self.c_prev, self.c)
        self.be.synchronize()


class MLPLossGrad(Bench):
    """The MLP estimators' fused step (``MLPStep``: the backend's ``mlp_loss_grad`` extension, else the reference
    composition): one training batch of the MLP 784-256-128-10 (gather, forward, softmax loss, backward)."""

    params = (BACKENDS, [128, 512])
    param_names = ["backend", "batch"]

    def setup(self, backend, batch):
        from minitrain import nn
        from minitrain.data import ArrayDataset
        from minitrain.estimators._mlp_step import MLPStep

        self.be = be = backend_or_skip(backend)
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((10_000, 784), dtype=np.float32), rng.integers(0, 10, 10_000)
        self.data = ArrayDataset(X, y, backend=be)
        self.rows = be.asarray(rng.permutation(10_000)[:batch])
        net = nn.Sequential(
            nn.Linear(784, 256, activation="relu", backend=be), nn.Linear(256, 128, activation="relu", backend=be),
            nn.Linear(128, 10, backend=be), backend=be,
        )  # fmt: skip
        net.flat_parameters()
        self.step = MLPStep.for_module(net, "softmax")
        self.time_mlp_loss_grad(backend, batch)

    def time_mlp_loss_grad(self, backend, batch):
        self.step(self.data, self.rows, float(batch))
        self.be.synchronize()
