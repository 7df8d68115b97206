"""The CUDA C sources of the CuPy backend's fused kernels, and their signatures.

``SOURCE`` (the file ``kernels.cu``) is compiled once per device by ``cupy.RawModule`` (NVRTC) on first use. Every
kernel is written as a template over the float type and instantiated as ``<name>_f32`` and ``<name>_f64``; each one
loops over its work with a grid-stride loop (a thread per element, row, column or channel), so that the same source
also compiles as plain C++ (``CPU_PRELUDE`` defines the CUDA names for one thread running the whole grid): the test
suite checks the kernels' numbers against the NumPy reference on machines without a GPU that way, and compiles the
source with ``nvcc`` / NVRTC where they exist. Sums accumulate in double, as the other backends' do.

``SIGNATURES`` gives each kernel's arguments: ``T*`` an array of the float type, ``T`` a scalar of it, ``i64*``,
``f64*``, ``i8*`` arrays, ``i64`` / ``i32`` integer scalars. The launcher casts scalars with it, and a test
checks it against the source.
"""

from __future__ import annotations

from pathlib import Path

#: Activation codes, in ``minitrain.backend.ACTIVATIONS`` order.
ACTIVATION_CODES = {
    "identity": 0, "relu": 1, "leaky_relu": 2, "elu": 3, "gelu": 4, "gelu_tanh": 5, "sigmoid": 6, "tanh": 7,
    "softplus": 8,
}  # fmt: skip

_GRID = ("i64",) * 12  # n, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw
SIGNATURES: dict[str, tuple[str, ...]] = {
    "act": ("T*", "T*", "i64", "i32", "T"),
    "bias_act": ("T*", "T*", "i64", "i64", "i32", "T"),
    "act_backward": ("T*", "T*", "T*", "i64", "i32", "T"),
    "bias_act_backward": ("T*", "T*", "T*", "T*", "i64", "i64", "i32", "T"),
    "softmax_xent_index": ("T*", "i64*", "T*", "T*", "T*", "i64", "i64", "T", "i64*"),
    "softmax_xent_prob": ("T*", "T*", "T*", "T*", "T*", "i64", "i64", "T"),
    "sigmoid_xent": ("T*", "T*", "T*", "T*", "T*", "i64", "i64", "i64"),
    "mse": ("T*", "T*", "T*", "T*", "i64"),
    "dropout": ("T*", "T*", "T*", "i64", "T", "T"),
    "bn_stats": ("T*", "f64*", "f64*", "i64", "i64", "i64"),
    "bn_apply": ("T*", "T*", "T*", "T*", "T*", "T*", "T*", "i64", "i64", "i64"),
    "bn_sums": ("T*", "T*", "f64*", "f64*", "i64", "i64", "i64"),
    "bn_dx": ("T*", "T*", "T*", "T*", "T*", "T*", "i64", "i64", "i64", "T", "i32"),
    "sgd": ("T*", "T*", "T*", "i64", "T", "T", "T", "i32", "T", "T", "i32"),
    "adam": ("T*", "T*", "T*", "T*", "i64", "T", "T", "T", "T", "T", "T", "T", "T"),
    "rmsprop": ("T*", "T*", "T*", "T*", "T*", "i64", "T", "T", "T", "T", "i32", "T", "T"),
    "adagrad": ("T*", "T*", "T*", "i64", "T", "T", "T", "T"),
    "norm_sum": ("T*", "f64*", "i64", "i32"),
    "im2col": ("T*", "T*", *_GRID),
    "col2im": ("T*", "T*", *_GRID),
    "onp_to_nop": ("T*", "T*", "T*", "i64", "i64", "i64"),
    "nop_to_onp": ("T*", "T*", "i64", "i64", "i64"),
    "maxpool": ("T*", "T*", "i8*", *_GRID),
    "maxpool_backward": ("T*", "i8*", "T*", *_GRID),
    "avgpool": ("T*", "T*", *_GRID),
    "avgpool_backward": ("T*", "T*", *_GRID),
    "lstm_step": ("T*", "T*", "T*", "T*", "i64", "i64"),
    "lstm_step_backward": ("T*", "T*", "T*", "T*", "T*", "T*", "T*", "i64", "i64", "i32"),
    "gru_step": ("T*", "T*", "T*", "T*", "i64", "i64"),
    "gru_step_backward": ("T*", "T*", "T*", "T*", "T*", "T*", "T*", "i64", "i64"),
}

#: Definitions that let ``SOURCE`` compile as C++ for a CPU: one thread runs every kernel's whole grid.
CPU_PRELUDE = r"""
#include <cmath>
#define __global__
#define __device__
#define __forceinline__ inline
struct minitrain_dim3 { long long x; };
static const minitrain_dim3 blockIdx = {0}, blockDim = {1}, gridDim = {1}, threadIdx = {0};
#define __shared__ static
inline void __syncthreads() {}
inline double atomicAdd(double* address, double value) { double old = *address; *address += value; return old; }
"""

#: The kernels' CUDA C source, ``kernels.cu`` beside this module (shipped as package data).
SOURCE = (Path(__file__).resolve().parent / "kernels.cu").read_text(encoding="utf-8")
