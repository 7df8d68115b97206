"""CuPy backend plugin, registered as ``cupy`` (``"cupy:1"`` for device 1): the same models on an NVIDIA GPU.

Importing this module is cheap: cupy is imported when the backend is first asked for. Arrays are CuPy arrays on
the backend's device; every kernel and allocation runs with that device current, so models on two devices in one
process do not interfere (``Backend.context()`` makes the device current for a whole training loop).

GEMMs go to cuBLAS through ``cupy.matmul``. The hot elementwise work runs as fused CUDA kernels, one launch each
(``_kernels.SOURCE``, compiled by NVRTC on first use): bias + activation and its backward with the bias gradient,
softmax and sigmoid cross-entropy (loss and gradient in one pass), dropout, batch norm, gradient-norm clipping,
every optimizer step over the flat parameter buffer, convolution through im2col + cuBLAS + col2im, max and average
pooling, and the LSTM and GRU steps. Each override returns ``NotImplemented`` for arguments it does not take (other
array types or dtypes, non-contiguous arrays it would have to copy): the reference (``Backend``, over ``cupy``) runs
instead. Special functions come from ``cupyx.scipy.special`` and random numbers from a device generator: a training
step reads back one value, its loss (for the history and the callbacks).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from minitrain.backend import KERNELS, Backend, canonical_activation
from minitrain.backend.base import NEEDS_PREACTIVATION

from . import _kernels
from ._common import cp, ok
from ._spatial import SpatialMixin
from ._steps import StepsMixin

_THREADS = 256
_MAX_BLOCKS = 65535


class DeviceGenerator:
    """A random generator on a CUDA device with the part of NumPy ``Generator``'s API minitrain uses.

    Parameters
    ----------
    seed : int or None
    """

    def __init__(self, seed: Any = None) -> None:
        self._state = cp().random.RandomState(None if seed is None else int(seed) % (2**63))

    def random(self, size: Any = None, dtype: Any = np.float64) -> Any:
        """Uniform draws in [0, 1)."""
        return self._state.random_sample(size=size, dtype=dtype)

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None) -> Any:
        """Uniform draws in [low, high)."""
        return self._state.uniform(low, high, size=size)

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None) -> Any:
        """Normal draws."""
        return self._state.normal(loc, scale, size=size)

    def integers(self, low: int, high: int | None = None, size: Any = None) -> Any:
        """Integers in [low, high) (in [0, low) when ``high`` is None), as int64."""
        return self._state.randint(low, high, size=size, dtype=np.int64)


class CupyBackend(SpatialMixin, StepsMixin, Backend):
    """CUDA GPU arrays through CuPy, cuBLAS GEMMs and fused CUDA kernels; the reference for everything else.

    Parameters
    ----------
    device : int, optional
        The CUDA device (``"cupy:1"`` is device 1); device 0 by default.

    Examples
    --------
    >>> import minitrain as mt
    >>> info = {i.name: i for i in mt.list_backends()}["cupy"]
    >>> info.available or "cupy" in info.reason or "CUDA" in info.reason
    True
    """

    name = "cupy"

    def __init__(self, device: int | None = None) -> None:
        super().__init__(device)
        xpm = cp()
        count = xpm.cuda.runtime.getDeviceCount()
        if not 0 <= self.device_index < count:
            raise ValueError(
                f"backend 'cupy:{self.device_index}': this machine has {count} CUDA device(s), numbered 0 to "
                f"{count - 1}"
            )
        self._module: Any = None
        self._dummies: dict[Any, Any] = {}

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        """Whether cupy imports and sees a CUDA device, with the reason when not."""
        try:
            import cupy
        except ModuleNotFoundError as exc:
            return False, (
                f'cupy is not installed ({exc}); pip install "minitrain[cupy]" or the CuPy wheel of your CUDA '
                "(cupy-cuda12x, cupy-cuda13x)"
            )
        except Exception as exc:  # a broken install
            return False, f"cupy cannot be imported ({type(exc).__name__}: {exc})"
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # no driver, or one too old for this CUDA runtime: CuPy's own message
            return False, f"no usable CUDA device ({type(exc).__name__}: {exc})"
        if count < 1:
            return False, "no CUDA device found"
        return True, ""

    # ------------------------------------------------------------------ array module, device, randomness
    @property
    def xp(self) -> Any:
        """The array module: ``cupy``."""
        return cp()

    @property
    def device(self) -> str:
        """``"cuda:<index>"``."""
        return f"cuda:{self.device_index}"

    def context(self) -> Any:
        """A context in which this backend's device is the current CUDA device."""
        return cp().cuda.Device(self.device_index)

    def synchronize(self) -> None:
        """Wait until the device has finished the work queued so far."""
        cp().cuda.Device(self.device_index).synchronize()

    def to_numpy(self, x: Any) -> np.ndarray:
        """A NumPy copy of a device array (explicit transfer)."""
        xpm = cp()
        return xpm.asnumpy(x) if isinstance(x, xpm.ndarray) else np.asarray(x)

    def generator(self, seed: Any = None) -> Any:
        """A :class:`DeviceGenerator` on this backend's device."""
        return DeviceGenerator(seed)

    def _erf(self, x: Any) -> Any:
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(x)

    def _expit(self, z: Any, out: Any = None) -> Any:
        import cupyx.scipy.special

        return cupyx.scipy.special.expit(z) if out is None else cupyx.scipy.special.expit(z, out=out)

    # ------------------------------------------------------------------ launching kernels
    def _launch(self, name: str, dtype: Any, work: int, *args: Any) -> None:
        """Launch kernel ``name`` for ``dtype`` over ``work`` items, casting scalars as ``SIGNATURES`` says."""
        if self._module is None:
            self._module = cp().RawModule(code=_kernels.SOURCE, options=("--std=c++14",))
        suffix = "f32" if np.dtype(dtype) == np.float32 else "f64"
        fn = self._module.get_function(f"{name}_{suffix}")
        scalar = np.float32 if suffix == "f32" else np.float64
        cast = {"T": scalar, "i64": np.int64, "i32": np.int32}
        call = tuple(
            cast[kind](a) if kind in cast else a for kind, a in zip(_kernels.SIGNATURES[name], args, strict=True)
        )
        blocks = max(1, min(_MAX_BLOCKS, -(-int(work) // _THREADS)))
        fn((blocks,), (_THREADS,), call)

    def _dummy(self, dtype: Any) -> Any:
        """A one-element array of ``dtype`` for pointer arguments a kernel does not read."""
        key = np.dtype(dtype)
        if key not in self._dummies:
            self._dummies[key] = cp().zeros(1, dtype=key)
        return self._dummies[key]

    def _vector(self, v: Any, n: int, dtype: Any, fill: float) -> Any:
        """A contiguous (n,) vector of ``dtype`` from ``v`` (``fill`` where v is None), or None for another shape."""
        xpm = cp()
        if v is None:
            return xpm.full(n, fill, dtype=dtype)
        if not isinstance(v, xpm.ndarray) or v.shape != (n,):
            return None
        return xpm.ascontiguousarray(v, dtype=dtype)

    # ------------------------------------------------------------------ activations
    def act(self, z: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None) -> Any:
        """Apply an activation elementwise, into ``out`` (which may be ``z``) if given."""
        name = canonical_activation(activation)
        dt = ok(z, out)
        if dt is None or (out is not None and out.shape != z.shape):
            return NotImplemented
        y = cp().empty_like(z) if out is None else out
        self._launch("act", dt, z.size, z, y, z.size, _kernels.ACTIVATION_CODES[name], alpha)
        return y

    def affine_act(
        self, x: Any, w: Any, b: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None
    ) -> tuple[Any, Any]:
        """``act(x @ w.T + b)`` for ``w`` of shape (out, in): the GEMM, then one pass for the bias and activation."""
        xpm = cp()
        name = canonical_activation(activation)
        if ok(x, b, out) is None or not isinstance(w, xpm.ndarray) or w.dtype != x.dtype:
            return NotImplemented
        if (
            x.ndim != 2
            or w.ndim != 2
            or x.shape[1] != w.shape[1]
            or (out is not None and out.shape != (x.shape[0], w.shape[0]))
        ):
            return NotImplemented
        n, o = x.shape[0], w.shape[0]
        bias = b if b is not None else self._dummy(x.dtype)
        keep_z = name in NEEDS_PREACTIVATION
        z = out if out is not None and not keep_z else xpm.empty((n, o), dtype=x.dtype)
        xpm.matmul(x, w.T, out=z)
        code = _kernels.ACTIVATION_CODES[name]
        if b is not None or (code != 0 and not keep_z):
            self._launch("bias_act", x.dtype, z.size, z, bias if b is not None else self._zeros(o, x.dtype), z.size, o,
                         0 if keep_z else code, alpha)  # fmt: skip
        if keep_z:
            y = xpm.empty_like(z) if out is None else out
            self._launch("act", x.dtype, z.size, z, y, z.size, code, alpha)
            return y, z
        return z, None

    def _zeros(self, n: int, dtype: Any) -> Any:
        key = (n, np.dtype(dtype), "zeros")
        if key not in self._dummies:
            self._dummies[key] = cp().zeros(n, dtype=dtype)
        return self._dummies[key]

    def act_backward(
        self, grad: Any, y: Any, z: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None
    ) -> Any:
        """Gradient with respect to the pre-activation, from the output ``y`` (or ``z`` if needed)."""
        name = canonical_activation(activation)
        src = z if name in NEEDS_PREACTIVATION else y
        dt = ok(grad, src, out)
        if dt is None or src is None or src.shape != grad.shape or (out is not None and out.shape != grad.shape):
            return NotImplemented
        res = cp().empty_like(grad) if out is None else out
        self._launch("act_backward", dt, grad.size, grad, src, res, grad.size, _kernels.ACTIVATION_CODES[name], alpha)
        return res

    def bias_act_backward(
        self, grad: Any, y: Any, z: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None,
        bias_grad: Any = None,
    ) -> tuple[Any, Any]:  # fmt: skip
        """``act_backward`` of 2-D ``grad`` and the column sums of the result, one thread per column."""
        xpm = cp()
        name = canonical_activation(activation)
        src = grad if name == "identity" else z if name in NEEDS_PREACTIVATION else y
        dt = ok(grad, src, out, bias_grad)
        if dt is None or grad.ndim != 2 or src is None or src.shape != grad.shape:
            return NotImplemented
        rows, cols = grad.shape
        if (out is not None and out.shape != grad.shape) or (bias_grad is not None and bias_grad.shape != (cols,)):
            return NotImplemented
        res = xpm.empty_like(grad) if out is None else out
        db = xpm.empty(cols, dtype=dt) if bias_grad is None else bias_grad
        code = _kernels.ACTIVATION_CODES[name]
        self._launch("bias_act_backward", dt, cols, grad, src, res, db, rows, cols, code, alpha)
        return res, db

    # ------------------------------------------------------------------ losses, dropout
    def softmax_cross_entropy(
        self, logits: Any, target: Any, *, weight: Any = None, label_smoothing: float = 0.0
    ) -> tuple[Any, Any]:
        """Per-sample softmax cross-entropy and its gradient in one pass; a row with an out-of-bounds class index
        gets a NaN loss (checking it on the host would stop the device)."""
        xpm = cp()
        dt = ok(logits)
        if dt is None or logits.ndim != 2 or logits.shape[1] == 0 or not isinstance(target, xpm.ndarray):
            return NotImplemented
        n, c = logits.shape
        w = self._vector(weight, c, dt, 1.0)
        by_index = target.shape == (n,) and target.dtype.kind in "iu"
        if w is None or not (by_index or target.shape == (n, c)):
            return NotImplemented
        loss, grad = xpm.empty(n, dtype=dt), xpm.empty((n, c), dtype=dt)
        if by_index:
            t = xpm.ascontiguousarray(target, dtype=xpm.int64)
            bad = xpm.empty(n, dtype=xpm.int64)
            self._launch("softmax_xent_index", dt, n, logits, t, w, loss, grad, n, c, label_smoothing, bad)
        else:
            q = xpm.ascontiguousarray(target, dtype=dt)
            self._launch("softmax_xent_prob", dt, n, logits, q, w, loss, grad, n, c, label_smoothing)
        return loss, grad

    def sigmoid_cross_entropy(self, logits: Any, target: Any, *, pos_weight: Any = None) -> tuple[Any, Any]:
        """Elementwise binary cross-entropy of sigmoid(logits) and its gradient, in one pass."""
        xpm = cp()
        dt = ok(logits)
        if dt is None or not isinstance(target, xpm.ndarray) or target.shape != logits.shape or logits.size == 0:
            return NotImplemented
        cols = logits.shape[-1] if logits.ndim else 1
        pw = None
        if pos_weight is not None:
            pw = xpm.asarray(pos_weight, dtype=dt).reshape(-1)
            if pw.size not in (1, cols) or (pw.size == cols and xpm.asarray(pos_weight).ndim > 1):
                return NotImplemented
        t = xpm.ascontiguousarray(target, dtype=dt)
        loss, grad = xpm.empty_like(logits), xpm.empty_like(logits)
        npw = 0 if pw is None else pw.size
        self._launch("sigmoid_xent", dt, logits.size, logits, t, self._dummy(dt) if pw is None else pw, loss, grad,
                     logits.size, cols, npw)  # fmt: skip
        return loss, grad

    def mse(self, pred: Any, target: Any) -> tuple[Any, Any]:
        """Elementwise squared error and its gradient wrt ``pred``, in one pass."""
        xpm = cp()
        dt = ok(pred)
        if dt is None or not isinstance(target, xpm.ndarray) or target.shape != pred.shape:
            return NotImplemented
        t = xpm.ascontiguousarray(target, dtype=dt)
        loss, grad = xpm.empty_like(pred), xpm.empty_like(pred)
        self._launch("mse", dt, pred.size, pred, t, loss, grad, pred.size)
        return loss, grad

    def dropout(self, x: Any, p: float, generator: Any, *, out: Any = None) -> tuple[Any, Any]:
        """Inverted dropout from the device generator's draws: the mask is built in the draws' buffer."""
        dt = ok(x, out)
        if (
            dt is None
            or p >= 1.0
            or not isinstance(generator, DeviceGenerator)
            or (out is not None and out.shape != x.shape)
        ):
            return NotImplemented
        mask = generator.random(x.shape, dtype=dt)
        y = cp().empty_like(x) if out is None else out
        self._launch("dropout", dt, x.size, x, mask, y, x.size, p, float(dt.type(1.0 / (1.0 - p))))
        return y, mask

    # ------------------------------------------------------------------ batch norm
    def batchnorm(
        self, x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, *, training: bool = True,
        momentum: float = 0.1, eps: float = 1e-5,
    ) -> tuple[Any, Any, Any]:  # fmt: skip
        """Batch normalization over every axis but 1; returns ``(y, xhat, inv_std)``."""
        xpm = cp()
        dt = ok(x, gamma, beta, running_mean, running_var)
        if dt is None or x.ndim < 2 or x.size == 0 or (running_mean is None) != (running_var is None):
            return NotImplemented
        n, c = x.shape[:2]
        if any(v is not None and v.shape != (c,) for v in (gamma, beta, running_mean, running_var)):
            return NotImplemented
        s = x.size // (n * c)
        if training or running_mean is None:
            mean64, var64 = xpm.empty(c), xpm.empty(c)
            self._launch("bn_stats", dt, c, x, mean64, var64, n, c, s)
            mean, var = mean64.astype(dt), var64.astype(dt)
            if training and running_mean is not None:
                count = n * s
                running_mean *= 1.0 - momentum
                running_mean += momentum * mean
                running_var *= 1.0 - momentum
                running_var += momentum * var * (count / max(count - 1, 1))
        else:
            mean, var = running_mean, running_var
        inv_std = (1.0 / xpm.sqrt(var + eps)).astype(dt, copy=False)
        g, b = self._vector(gamma, c, dt, 1.0), self._vector(beta, c, dt, 0.0)
        xhat, y = xpm.empty_like(x), xpm.empty_like(x)
        self._launch("bn_apply", dt, x.size, x, xpm.ascontiguousarray(mean), inv_std, g, b, xhat, y, x.size, c, s)
        return (xhat if gamma is None and beta is None else y), xhat, inv_std

    def batchnorm_backward(
        self, grad: Any, xhat: Any, inv_std: Any, gamma: Any, *, training: bool = True
    ) -> tuple[Any, Any, Any]:
        """Gradients of batch normalization: ``(dx, dgamma, dbeta)``."""
        xpm = cp()
        dt = ok(grad, xhat, inv_std, gamma)
        if dt is None or grad.ndim < 2 or grad.size == 0 or xhat.shape != grad.shape:
            return NotImplemented
        n, c = grad.shape[:2]
        if any(v is not None and v.shape != (c,) for v in (inv_std, gamma)):
            return NotImplemented
        s = grad.size // (n * c)
        sums = xpm.empty((2, c))
        self._launch("bn_sums", dt, c, grad, xhat, sums[0], sums[1], n, c, s)
        dbeta, dgamma = sums[0].astype(dt), sums[1].astype(dt)
        scale = inv_std if gamma is None else gamma * inv_std
        count = grad.size // c
        k = xpm.ascontiguousarray(scale / count if training else scale, dtype=dt)
        dx = xpm.empty_like(grad)
        self._launch("bn_dx", dt, grad.size, grad, xhat, k, dbeta, dgamma, dx, grad.size, c, s, count, int(training))
        return dx, dgamma, dbeta


def _on_device(fn: Any) -> Any:
    """``fn`` run with its backend's device current, so its allocations and launches land there."""

    @functools.wraps(fn)
    def method(self: CupyBackend, *args: Any, **kwargs: Any) -> Any:
        with cp().cuda.Device(self.device_index):
            return fn(self, *args, **kwargs)

    return method


for _name in (*KERNELS, "asarray", "alloc", "generator"):
    setattr(CupyBackend, _name, _on_device(getattr(CupyBackend, _name)))
