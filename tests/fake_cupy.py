"""A stand-in for ``cupy`` on machines without a GPU, so the CuPy backend's code runs in the CPU test suite.

Arrays are NumPy arrays, and ``RawModule`` compiles the backend's CUDA C source as C++ for the CPU (with
``_kernels.CPU_PRELUDE``: one thread runs each kernel's whole grid) and calls the kernels through ctypes with the
arguments the backend launches them with. What this checks: the backend's Python code (argument checks,
shapes, launches, fallbacks to the reference), the kernels' arithmetic against the NumPy reference, and the
kernels' signatures against the launcher's casts. What it cannot check: anything about real GPUs (races between
threads of a grid, NVRTC, device memory, streams) -- the GPU tests do, where a GPU exists.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import shutil
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.special
from minitrain_cupy import _kernels

from minitrain.backend import register_backend

_LIBRARY: dict[str, ctypes.CDLL] = {}
#: How many times each kernel (``act_f32``, ...) was launched, over the process.
LAUNCHES: dict[str, int] = {}
_SCALARS = {
    np.float32: ctypes.c_float,
    np.float64: ctypes.c_double,
    np.int64: ctypes.c_longlong,
    np.int32: ctypes.c_int,
}


def compiler() -> str | None:
    """The C++ compiler the stand-in uses (``g++`` or ``c++``), or None."""
    return shutil.which("g++") or shutil.which("c++")


def cpu_library() -> ctypes.CDLL:
    """``_kernels.SOURCE`` compiled for the CPU (once per process and source text)."""
    source = _kernels.CPU_PRELUDE + _kernels.SOURCE
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    if key not in _LIBRARY:
        out = Path(tempfile.mkdtemp(prefix="minitrain-cupy-cpu-"))
        (out / "kernels.cpp").write_text(source)
        cmd = [compiler() or "g++", "-O1", "-shared", "-fPIC", "-o", str(out / "kernels.so"), str(out / "kernels.cpp")]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"compiling the CUDA source for the CPU failed:\n{done.stderr}")
        _LIBRARY[key] = ctypes.CDLL(str(out / "kernels.so"))
    return _LIBRARY[key]


class _Function:
    def __init__(self, name: str, fn: Any) -> None:
        self.name, self.fn = name, fn
        self.fn.restype = None

    def __call__(self, grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...]) -> None:
        assert all(isinstance(v, int) and v > 0 for v in (*grid, *block)), (grid, block)
        call = []
        for a in args:
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous, "a kernel was given a non-contiguous array"
                call.append(ctypes.c_void_p(a.ctypes.data))
            elif type(a) in _SCALARS:
                call.append(_SCALARS[type(a)](a))
            else:
                raise TypeError(f"a kernel argument must be an array or a NumPy scalar of a fixed type, not {a!r}")
        self.fn(*call)
        LAUNCHES[self.name] = LAUNCHES.get(self.name, 0) + 1


class RawModule:
    """``cupy.RawModule`` over the CPU build of the backend's source."""

    def __init__(self, code: str, options: tuple[str, ...] = ()) -> None:
        assert code == _kernels.SOURCE
        self.lib = cpu_library()

    def get_function(self, name: str) -> _Function:
        return _Function(name, getattr(self.lib, name))


class RandomState:
    """``cupy.random.RandomState`` over a NumPy generator."""

    def __init__(self, seed: Any = None) -> None:
        self.gen = np.random.default_rng(seed)

    def random_sample(self, size: Any = None, dtype: Any = np.float64) -> np.ndarray:
        return _device(self.gen.random(size, dtype=dtype))

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None) -> np.ndarray:
        return _device(self.gen.uniform(low, high, size))

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None) -> np.ndarray:
        return _device(self.gen.normal(loc, scale, size))

    def randint(self, low: int, high: int | None = None, size: Any = None, dtype: Any = np.int64) -> np.ndarray:
        return _device(self.gen.integers(low, high, size, dtype=dtype))


class Device:
    """``cupy.cuda.Device``: records which device is current."""

    current: ClassVar[int] = 0
    entered: ClassVar[list[int]] = []

    def __init__(self, device: int = 0) -> None:
        self.id = int(device)

    def __enter__(self) -> Device:
        self._previous = Device.current
        Device.current = self.id
        Device.entered.append(self.id)
        return self

    def __exit__(self, *exc: Any) -> None:
        Device.current = self._previous

    def synchronize(self) -> None:
        return None


#: Device-to-host transfers of ``DeviceArray`` values since the last ``clear()``, by kind (``float``, ``asnumpy``,
#: ...), with the innermost minitrain frame that asked for each.
TRANSFERS: list[tuple[str, str]] = []


def _record(kind: str) -> None:
    frame = sys._getframe(2)
    while frame is not None and "minitrain" not in frame.f_code.co_filename:
        frame = frame.f_back
    where = "?" if frame is None else f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}"
    TRANSFERS.append((kind, where))


class DeviceArray(np.ndarray):
    """An ndarray that records every conversion to a Python value, as a D2H copy of a CuPy array would be."""

    def __float__(self) -> float:
        _record("float")
        return float(self.view(np.ndarray))

    def __int__(self) -> int:
        _record("int")
        return int(self.view(np.ndarray))

    def __bool__(self) -> bool:
        _record("bool")
        return bool(self.view(np.ndarray))

    def __index__(self) -> int:
        _record("index")
        return self.view(np.ndarray).__index__()

    def item(self, *args: Any) -> Any:
        _record("item")
        return self.view(np.ndarray).item(*args)

    def tolist(self) -> Any:
        _record("tolist")
        return self.view(np.ndarray).tolist()


def _device(value: Any) -> Any:
    if type(value) is np.ndarray:
        return value.view(DeviceArray)
    if isinstance(value, tuple):
        return tuple(_device(v) for v in value)
    return value


def _asnumpy(x: Any) -> np.ndarray:
    if isinstance(x, DeviceArray):
        _record("asnumpy")
    return np.array(x)


def make_module(devices: int = 1, *, counting: bool = False) -> types.ModuleType:
    """A ``cupy`` stand-in with ``devices`` CUDA devices; everything it does not define comes from NumPy.

    ``counting=True``: arrays are :class:`DeviceArray`, whose conversions to host values ``TRANSFERS`` records.
    """
    mod = types.ModuleType("cupy")
    if counting:

        def lookup(name: str) -> Any:
            value = getattr(np, name)
            if not callable(value) or isinstance(value, type):
                return value

            def call(*args: Any, **kwargs: Any) -> Any:
                return _device(value(*args, **kwargs))

            return call

        mod.__getattr__ = lookup  # type: ignore[method-assign]
        mod.ndarray = DeviceArray
    else:
        mod.__getattr__ = lambda name: getattr(np, name)  # type: ignore[method-assign]
        mod.ndarray = np.ndarray
    mod.RawModule = RawModule
    mod.asnumpy = _asnumpy
    runtime = types.SimpleNamespace(getDeviceCount=lambda: devices)
    mod.cuda = types.SimpleNamespace(runtime=runtime, Device=Device)
    mod.random = types.SimpleNamespace(RandomState=RandomState)
    return mod


@contextlib.contextmanager
def installed(devices: int = 1, *, counting: bool = False) -> Iterator[types.ModuleType]:
    """Make ``import cupy`` (and ``cupyx.scipy.special``) give the stand-in inside the block."""
    cupyx = types.ModuleType("cupyx")
    cupyx_scipy = types.ModuleType("cupyx.scipy")
    cupyx_scipy.special = scipy.special
    cupyx.scipy = cupyx_scipy
    fake = make_module(devices, counting=counting)
    names = {"cupy": fake, "cupyx": cupyx, "cupyx.scipy": cupyx_scipy, "cupyx.scipy.special": scipy.special}
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(names)
    register_backend("cupy", "minitrain_cupy:CupyBackend")  # the registry looks again: get_backend("cupy") works
    try:
        yield fake
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        register_backend("cupy", "minitrain_cupy:CupyBackend")  # and forgets the stand-in's backend
