"""The GPU section of ``peers.py`` (``--gpu``): minitrain on CuPy against PyTorch CUDA, and the fused kernels'
bandwidth against a device-to-device copy. Needs a CUDA GPU with cupy (and torch for the PyTorch rows).

Training: MLP 784-512-256-10 at batch 1024, Adam, float32, on MNIST-shaped synthetic data (60000 samples) that
sits on the GPU; samples per second over whole epochs, each contender warmed up first (NVRTC compiles
minitrain's kernels, cuBLAS picks its algorithms), the contenders interleaved over the repeats. minitrain runs
as its users write it: ``MLPClassifier(backend="cupy").partial_fit`` with CuPy arrays, and the ``nn``/``optim``
loop. PyTorch runs its usual loop twice: reading the loss back every step (``loss.item()``, as minitrain's
training loop does for its history and callbacks) and accumulating it on the device.

Bandwidth: each fused kernel over 2**26 float32 values, timed with CUDA events; bytes moved (every array read
and written once) per second, as a fraction of what ``cupy.copyto`` between two device arrays achieves.
"""

from __future__ import annotations

import itertools
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

LAYERS, BATCH, SAMPLES = (784, 512, 256, 10), 1024, 60000


def _data(cp: Any) -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((SAMPLES, LAYERS[0]), dtype=np.float32)
    y = np.argmax(X @ rng.standard_normal((LAYERS[0], 10)).astype(np.float32), axis=1).astype(np.int64)
    return cp.asarray(X), cp.asarray(y)


def _estimator(X: Any, y: Any) -> Callable[[], None]:
    import minitrain as mt

    clf = mt.MLPClassifier(
        hidden_layer_sizes=LAYERS[1:-1], batch_size=BATCH, alpha=0.0, tol=0.0, n_iter_no_change=10**9,
        backend="cupy", random_state=0,
    )  # fmt: skip
    classes = np.arange(10)
    return lambda: clf.partial_fit(X, y, classes=classes)


def _loop(X: Any, y: Any) -> Callable[[], None]:
    import minitrain as mt
    from minitrain import nn, optim

    be = mt.get_backend("cupy")
    layers: list[Any] = []
    for i, o in itertools.pairwise(LAYERS):
        layers += [nn.Linear(i, o), nn.ReLU()]
    net = nn.Sequential(*layers[:-1]).to(be)
    opt, loss_fn = optim.Adam(net.parameters(), lr=1e-3), nn.CrossEntropyLoss()
    gen = be.generator(0)

    def epoch() -> None:
        perm = gen.integers(0, 2**62, size=SAMPLES).argsort()
        for i in range(0, SAMPLES, BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            loss = loss_fn(net(mt.Tensor(X[idx], backend=be)), y[idx])
            loss.backward()
            opt.step()
            float(loss.data)

    return epoch


def _torch(X: Any, y: Any, sync: bool) -> Callable[[], None]:
    import torch

    Xt, yt = torch.as_tensor(X, device="cuda"), torch.as_tensor(y, device="cuda")
    layers: list[Any] = []
    for i, o in itertools.pairwise(LAYERS):
        layers += [torch.nn.Linear(i, o), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1]).cuda()
    opt, loss_fn = torch.optim.Adam(net.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss()

    def epoch() -> None:
        perm = torch.randperm(SAMPLES, device="cuda")
        total = torch.zeros((), device="cuda")
        for i in range(0, SAMPLES, BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            if sync:
                loss.item()
            else:
                total += loss.detach()
        float(total)

    return epoch


def training_rows(repeats: int) -> list[list[str]]:
    """Samples per second of each contender (median and range over ``repeats`` epochs)."""
    import cupy as cp

    X, y = _data(cp)
    made: dict[str, Callable[[], None]] = {
        "minitrain MLPClassifier (cupy)": _estimator(X, y),
        "minitrain nn/optim loop (cupy)": _loop(X, y),
    }
    try:
        import torch

        if torch.cuda.is_available():
            made["PyTorch CUDA, loss.item() each step"] = _torch(X, y, True)
            made["PyTorch CUDA, loss kept on the GPU"] = _torch(X, y, False)
    except ImportError:
        pass
    times: dict[str, list[float]] = {k: [] for k in made}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in made.values():
            epoch()  # warm-up: compile, cuBLAS heuristics, memory pools
        for r in range(repeats):
            keys = list(made)[r % len(made) :] + list(made)[: r % len(made)]
            for k in keys:
                cp.cuda.Device().synchronize()
                t = time.perf_counter()
                made[k]()
                cp.cuda.Device().synchronize()
                times[k].append(time.perf_counter() - t)
    ref = next((k for k in made if k.startswith("PyTorch CUDA, loss.item")), None)
    rows = []
    for k, ts in times.items():
        med = statistics.median(ts)
        ratio = f"{statistics.median(times[ref]) / med:.2f}x" if ref else "n/a"
        rows.append([k, f"{SAMPLES / med:,.0f}", f"{SAMPLES / max(ts):,.0f} - {SAMPLES / min(ts):,.0f}", ratio])
    return rows


def _event_time(cp: Any, fn: Callable[[], Any], reps: int = 20) -> float:
    """Median seconds of ``fn`` on the device, from CUDA events."""
    fn()
    out = []
    for _ in range(reps):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        out.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return statistics.median(out)


def bandwidth_rows(n: int = 2**26) -> list[list[str]]:
    """GB/s of the fused kernels and of a device-to-device copy, over ``n`` float32 values."""
    import cupy as cp

    import minitrain as mt

    be = mt.get_backend("cupy")
    rng = cp.random.default_rng(0)
    a, b, c, d = (rng.standard_normal(n, dtype=cp.float32) for _ in range(4))
    rows2d = (n // 1024, 1024)
    logits = rng.standard_normal((n // 16, 16), dtype=cp.float32)
    labels = rng.integers(0, 16, n // 16)
    gen = be.generator(0)
    size = 4 * n
    cases: list[tuple[str, Callable[[], Any], float]] = [
        ("device-to-device copy (cupy.copyto)", lambda: cp.copyto(b, a), 2 * size),
        ("act relu", lambda: be.act(a, "relu", out=b), 2 * size),
        ("act_backward gelu (grad, z -> out)", lambda: be.act_backward(a, None, b, "gelu", out=c), 3 * size),
        ("bias_act_backward relu, 1024 columns", lambda: be.bias_act_backward(
            a.reshape(rows2d), b.reshape(rows2d), None, "relu", out=c.reshape(rows2d)), 3 * size),
        ("dropout p=0.5 (mask from the generator)", lambda: be.dropout(a, 0.5, gen, out=b), 4 * size),
        ("softmax cross-entropy, 16 classes", lambda: be.softmax_cross_entropy(logits, labels), 2 * size),
        ("sgd momentum step", lambda: be.sgd_step(a, b, c, lr=1e-3, step=2, momentum=0.9), 5 * size),
        ("adam step", lambda: be.adam_step(a, b, c, d, lr=1e-3, step=2), 7 * size),
    ]  # fmt: skip
    copy = None
    rows = []
    for label, fn, moved in cases:
        gbs = moved / _event_time(cp, fn) / 1e9
        copy = copy or gbs
        rows.append([label, f"{gbs:,.0f}", f"{gbs / copy:.0%}"])
    return rows


def device_line() -> str:
    """The GPU's name and the versions that matter."""
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return f"{name}, CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}, cupy {cp.__version__}"
