"""``minitrain backends``: what can compute here, and with what (versions, devices, BLAS, threads, JIT cache)."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from typing import Any

from ._common import format_size, one_line

__all__ = ["backends", "report"]

CORE = ("numpy", "scipy", "scikit-learn", "numba", "llvmlite", "safetensors", "tqdm", "threadpoolctl")
OPTIONAL = ("tensorboardX", "wandb", "matplotlib", "pandas", "pyarrow", "torch")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _importable(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cpu() -> dict[str, Any]:
    """The CPU's model name, logical cores, and memory (total and available, in bytes, where known)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), name)
    except OSError:
        pass
    out: dict[str, Any] = {"name": name, "cores": os.cpu_count()}
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        out["memory_total"] = page * os.sysconf("SC_PHYS_PAGES")
        out["memory_available"] = page * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX, or not these names
        pass
    return out


def cuda() -> dict[str, Any]:
    """CuPy's version, the CUDA runtime and driver versions and every device (name, memory, compute capability);
    ``error`` says why not where cupy is missing or sees no GPU."""
    if not _importable("cupy"):
        return {"error": 'cupy is not installed (pip install "minitrain[cupy]")'}
    try:
        cupy = importlib.import_module("cupy")
    except Exception as exc:  # a broken install
        return {"error": f"cupy cannot be imported ({type(exc).__name__}: {one_line(exc)})"}
    out: dict[str, Any] = {"cupy": getattr(cupy, "__version__", None)}
    runtime = cupy.cuda.runtime
    try:
        out["runtime"] = _cuda_version(runtime.runtimeGetVersion())
        out["driver"] = _cuda_version(runtime.driverGetVersion())
        count = runtime.getDeviceCount()
    except Exception as exc:  # no driver, or one too old for this runtime
        out["error"] = f"{type(exc).__name__}: {one_line(exc)}"
        return out
    devices = []
    for i in range(count):
        device: dict[str, Any] = {"index": i}
        try:
            props = runtime.getDeviceProperties(i)
            name = props.get("name", b"?")
            device["name"] = name.decode() if isinstance(name, bytes) else str(name)
            device["memory_total"] = int(props.get("totalGlobalMem", 0))
            device["compute_capability"] = f"{props.get('major', '?')}.{props.get('minor', '?')}"
            with cupy.cuda.Device(i):
                device["memory_free"] = int(runtime.memGetInfo()[0])
        except Exception as exc:
            device["error"] = f"{type(exc).__name__}: {one_line(exc)}"
        devices.append(device)
    out["devices"] = devices
    return out


def _cuda_version(v: int) -> str:
    """CUDA's integer versions: 12040 -> '12.4'."""
    return f"{v // 1000}.{v % 1000 // 10}"


def blas() -> list[dict[str, Any]]:
    """The BLAS and OpenMP libraries loaded (NumPy's and SciPy's), with their thread counts (threadpoolctl)."""
    import numpy  # noqa: F401  (their libraries load with them)
    import scipy.linalg  # noqa: F401

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture", "filepath")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info()]


def numba_info() -> dict[str, Any]:
    """Numba's thread count and threading layer setting, and where the Numba backend caches compiled kernels
    (with the size of that cache)."""
    if not _importable("numba"):
        return {"error": "numba is not installed"}
    try:
        import numba
    except Exception as exc:
        return {"error": f"numba cannot be imported ({type(exc).__name__}: {one_line(exc)})"}
    out: dict[str, Any] = {
        "threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": numba.config.THREADING_LAYER,
        "cache_dir": os.environ.get("NUMBA_CACHE_DIR") or None,
    }
    if out["cache_dir"] is None:
        out["cache_dir"] = _jit_cache_dir()
    size = files = 0
    for folder, _, names in os.walk(out["cache_dir"]) if out["cache_dir"] else ():
        for n in names:
            try:
                size += os.path.getsize(os.path.join(folder, n))
                files += 1
            except OSError:
                pass
    out["cache_size"], out["cache_files"] = size, files
    return out


def _jit_cache_dir() -> str | None:
    """Where compiled kernels are cached: the ``jit_cache_dir`` extension of the first available backend that
    offers one (the Numba backend's own rule), or None."""
    from ..backend import get_backend, list_backends

    for info in list_backends():
        try:
            find = get_backend(info.name).extension("jit_cache_dir") if info.available else None
        except Exception:  # a plugin that loads but cannot start: no cache to show
            continue
        if find is not None:
            return find()
    return None


def report() -> dict[str, Any]:
    """Everything ``minitrain backends`` shows, as a JSON-able dict.

    Examples
    --------
    >>> r = report()
    >>> sorted(r)
    ['auto', 'backends', 'blas', 'cpu', 'cuda', 'minitrain', 'numba', 'packages', 'python']
    >>> any(b["name"] == "numpy" and b["available"] for b in r["backends"])
    True
    """
    import minitrain

    from ..backend import get_backend, list_backends

    machine = cpu()
    gpu = cuda()
    rows = []
    for b in list_backends():
        row: dict[str, Any] = {"name": b.name, "available": b.available, "reason": b.reason}
        if b.available:
            try:
                row["device"] = str(get_backend(b.name).device)
            except Exception as exc:  # a plugin that loads but cannot start
                row.update(available=False, reason=f"{type(exc).__name__}: {one_line(exc)}")
        rows.append(row)
    try:
        auto = get_backend().spec
    except ValueError as exc:  # MINITRAIN_BACKEND names a backend that cannot run
        auto = f"none ({one_line(exc)})"
    packages = {d: _version(d) for d in (*CORE, *OPTIONAL)}
    packages["cupy"] = gpu.get("cupy")
    return {
        "minitrain": minitrain.__version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()}, {platform.platform(terse=True)})",
        "packages": packages,
        "auto": auto,
        "backends": rows,
        "cpu": machine,
        "cuda": gpu,
        "blas": blas(),
        "numba": numba_info(),
    }


def backends(args: argparse.Namespace) -> int:
    """Run ``minitrain backends``: print the report (``--json``: as JSON); returns the exit code."""
    r = report()
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print("\n".join(_lines(r)))
    return 0


def _lines(r: dict[str, Any]) -> list[str]:
    pkgs = r["packages"]
    core = ", ".join(f"{d} {pkgs[d] or 'missing'}" for d in CORE)
    optional = ", ".join(f"{d} {pkgs[d]}" if pkgs[d] else f"{d} -" for d in ("cupy", *OPTIONAL))
    out = [f"minitrain {r['minitrain']}, Python {r['python']}", f"packages: {core}", f"optional: {optional}", ""]
    chosen = os.environ.get("MINITRAIN_BACKEND")
    why = f"MINITRAIN_BACKEND={chosen}" if chosen else '"auto"'
    out.append(f"backends (the default, {why}: {r['auto']}):")
    machine, gpu = r["cpu"], r["cuda"]
    memory = f", {format_size(machine['memory_total'])} memory" if "memory_total" in machine else ""
    cpu_text = f"{machine['name']}, {machine['cores']} logical cores{memory}"
    width = max(len(b["name"]) for b in r["backends"])
    for b in r["backends"]:
        if not b["available"]:
            out.append(f"  {b['name']:<{width}}  unavailable: {b['reason']}")
            continue
        device = b.get("device", "cpu")
        where = cpu_text if device == "cpu" else device
        if device.startswith("cuda"):
            where = "; ".join(_gpu_text(d) for d in gpu.get("devices", [])) or device
        out.append(f"  {b['name']:<{width}}  available on {where}")
    out.append("")
    if "error" in gpu and "runtime" not in gpu:
        out.append(f"CUDA: {gpu['error']}")
    else:
        out.append(f"CUDA: runtime {gpu.get('runtime', '?')}, driver {gpu.get('driver', '?')}, cupy {gpu.get('cupy')}")
        out += [f"  {_gpu_text(d)}" for d in gpu.get("devices", [])] or [f"  {gpu.get('error', 'no device')}"]
    out.append("BLAS and OpenMP (threadpoolctl):" if r["blas"] else "BLAS: threadpoolctl is not installed")
    for lib in r["blas"]:
        layer = f", {lib['threading_layer']}" if lib.get("threading_layer") not in (None, "unknown") else ""
        arch = f", {lib['architecture']}" if lib.get("architecture") else ""
        out.append(f"  {lib['internal_api']} {lib['version'] or ''} ({lib['user_api']}{layer}{arch}): "
                   f"{lib['num_threads']} threads, {lib['filepath']}")  # fmt: skip
    nb = r["numba"]
    if "error" in nb:
        out.append(f"Numba: {nb['error']}")
        return out
    out.append(f"Numba: {nb['threads']} threads, threading layer {nb['threading_layer']!r}")
    size = format_size(nb["cache_size"])
    where = nb["cache_dir"] or "none (kernels compile in memory)"
    out.append(f"  JIT cache: {where} ({size} in {nb['cache_files']} files)")
    return out


def _gpu_text(d: dict[str, Any]) -> str:
    if "error" in d:
        return f"cuda:{d['index']}: {d['error']}"
    return (f"cuda:{d['index']} {d['name']} (compute {d['compute_capability']}), {format_size(d['memory_total'])} "
            f"memory, {format_size(d['memory_free'])} free")  # fmt: skip
