"""minitrain against its peers, side by side in one process: ``python asv_benchmarks/peers.py``.

Workloads (``--workloads``, every one by default, see ``contenders.py``): MNIST-shaped synthetic data (60000 x 784,
10 classes) through an MLP 784-256-128-10 at batch 128 and 784-512-256-10 at batch 256, a small CNN on 28 x 28
images at batch 64 and 128, and an LSTM and a GRU (hidden 64) over 50 steps of 8 features, the last step into 5
classes, at batch 128; Adam, float32, a fixed number of epochs. Contenders, each written as its users write it:
scikit-learn's ``MLPClassifier.partial_fit`` (MLPs only), PyTorch CPU (if importable; ``pip install
torch==2.13.0``, never an unpinned torch), minitrain's ``nn``/``optim`` loop on every available CPU
backend, minitrain's ``MLPClassifier.partial_fit`` on numba, and the MLP step's GEMMs alone (the ceiling).

Each repeat times ``--epochs`` epochs of every contender in turn (interleaved, the order rotating), after
one warm-up epoch each (where Numba compiles or loads its cache) and a pause that lets the previous
contender's idle threads stop spinning; tables give the median and the min-max range. In the same
repeats: the float32 GEMM peak (NumPy matmul of two 2048 x 2048 matrices), so every contender's achieved
GFLOP/s is also a fraction of this machine's peak. Peak memory: how far the resident set size peaks
above its level before the epoch (data, model and optimizer built, kernels compiled on a small warm-up
run of the same contender, the peak reset through
``/proc/self/clear_refs``) while the first epoch runs, each contender in a fresh process on the same data
(Linux; ``--no-memory`` skips it).

``--digits`` adds the estimators with default parameters on scikit-learn's digits (fit time, test
accuracy, tracemalloc peak); ``--compile`` what Numba's compilation adds to the first fit of a fresh
process. Output is markdown; ``--markdown FILE`` also writes it to FILE with the command, machine and date.
Timings on a shared machine are noisy: compare the ratios, and rerun when the min-max spread is wide.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contenders import WORKLOADS, Workload, available, contenders, quiet

OUT: list[str] = []


def emit(line: str = "") -> None:
    """Print a line of the report and keep it for ``--markdown``."""
    print(line, flush=True)
    OUT.append(line)


def table(head: list[str], rows: list[list[str]]) -> None:
    """Emit a markdown table."""
    emit("| " + " | ".join(head) + " |")
    emit("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        emit("| " + " | ".join(row) + " |")
    emit()


def gemm_peak(n: int = 2048, reps: int = 3) -> float:
    """GFLOP/s of NumPy float32 matmul of two n x n matrices (best of ``reps``)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)
    best = min(_timed(lambda: np.matmul(a, b, out=c)) for _ in range(reps))
    return 2.0 * n**3 / best / 1e9


def _timed(fn: Callable[[], Any], times: int = 1, settle: float = 0.0) -> float:
    gc.collect()
    time.sleep(settle)
    t0 = time.perf_counter()
    for _ in range(times):
        fn()
    return time.perf_counter() - t0


def _peak_rss_growth(contender: str, workload: str, samples: int) -> float:
    """MiB the peak RSS grows by while one epoch of ``contender`` runs, in a fresh process (-1 on failure)."""
    cmd = [sys.executable, __file__, "--memory-of", contender, "--workloads", workload, "--samples", str(samples)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    return float(out.stdout.split()[-1]) if out.returncode == 0 and out.stdout.split() else -1.0


def _rss_kib() -> tuple[int, int]:
    """Current and peak resident set size of this process, in KiB (Linux)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def _memory_child(contender: str, w: Workload) -> None:
    X, y = w.data()
    make = contenders(w.kind)[contender]
    quiet(make(X[: 2 * w.batch], y[: 2 * w.batch], w))()  # Numba compiles or loads its cache here, not below
    epoch = quiet(make(X, y, w))
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS (Linux >= 4.0)
    before = _rss_kib()[0]
    epoch()
    print((_rss_kib()[1] - before) / 1024.0)


def training_table(key: str, w: Workload, repeats: int, epochs: int, memory: bool) -> None:
    """Interleaved epochs of every contender on ``w``: samples/s, ratios, GFLOP/s, % of peak, memory."""
    X, y = w.data()
    runs, notes = {}, []
    for name, make in contenders(w.kind).items():
        why = available(name)
        if why:
            notes.append(f"{name} skipped: {why}")
            continue
        runs[name] = quiet(make(X, y, w))
        notes.append(f"{name}: warm-up epoch (compiles, allocates) {_timed(runs[name]):.2f} s")
    times: dict[str, list[float]] = {k: [] for k in runs}
    peaks, names = [], list(runs)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(_timed(runs[name], epochs, settle=0.5))
        peaks.append(gemm_peak())
    rate = {k: [len(X) * epochs / t for t in v] for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in rate.items()}
    peak, fps = statistics.median(peaks), w.flops_per_sample
    emit(f"### {w.name}, Adam, float32")
    emit()
    emit(f"{len(X)} samples per epoch, {repeats} interleaved repeats of {epochs} epoch(s), medians.")
    emit(
        f"float32 GEMM peak {peak:.0f} GFLOP/s (range {min(peaks):.0f}-{max(peaks):.0f}); {fps / 1e6:.3f} MFLOP/sample."
    )
    emit()
    rows = []
    for k in names:
        gf = med[k] * fps / 1e9
        mem = f"{_peak_rss_growth(k, key, len(X)):.0f}" if memory and k != "gemm-only" else "-"
        rows.append([
            k, f"{med[k]:,.0f}", f"{min(rate[k]):,.0f}-{max(rate[k]):,.0f}",
            f"{med[k] / med['sklearn']:.2f}x" if "sklearn" in med else "-",
            f"{med[k] / med['torch']:.2f}x" if "torch" in med else "-",
            f"{gf:.1f}", f"{100 * gf / peak:.0f} %", mem,
        ])  # fmt: skip
    head = ["contender", "samples/s", "min-max", "vs sklearn", "vs torch", "GFLOP/s", "of peak", "peak RSS +MiB"]
    table(head, rows)
    for note in notes:
        emit(f"- {note}")
    emit()


def digits_table(repeats: int) -> None:
    """Default-parameter estimators on digits: fit time, test accuracy and tracemalloc peak, sklearn vs minitrain."""
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLP

    from minitrain import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    makers = {
        "sklearn": lambda: SkMLP(random_state=0),
        "minitrain-numpy": lambda: MLPClassifier(random_state=0, backend="numpy"),
        "minitrain-numba": lambda: MLPClassifier(random_state=0, backend="numba"),
    }
    fit_times: dict[str, list[float]] = {k: [] for k in makers}
    acc, mem, iters = {}, {}, {}
    for r in range(repeats + 1):
        for name, make in makers.items():
            est = make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                t = _timed(lambda est=est: est.fit(Xtr, ytr))
            if r:  # the first round warms up (Numba compiles or loads its cache)
                fit_times[name].append(t)
            acc[name], iters[name] = est.score(Xte, yte), est.n_iter_
    for name, make in makers.items():
        tracemalloc.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            make().fit(Xtr, ytr)
        mem[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    med = {k: statistics.median(v) for k, v in fit_times.items()}
    emit(f"### digits ({len(Xtr)} train / {len(Xte)} test), default parameters, {repeats} fits each, medians")
    emit()
    rows = [
        [k, f"{med[k]:.3f}", f"{min(v):.3f}-{max(v):.3f}", f"{med[k] / med['sklearn']:.2f}x", str(iters[k]),
         f"{acc[k]:.4f}", f"{mem[k] / 2**20:.2f}"]
        for k, v in fit_times.items()
    ]  # fmt: skip
    table(["estimator", "fit s", "min-max", "vs sklearn", "n_iter_", "test accuracy", "tracemalloc peak MiB"], rows)


_FIRST_FIT = """
import time, warnings
t0 = time.perf_counter()
import numpy as np
from sklearn.datasets import load_digits
from minitrain import MLPClassifier
X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)
t1 = time.perf_counter()
warnings.simplefilter("ignore")
MLPClassifier(random_state=0, backend="{backend}").fit(X, y)
t2 = time.perf_counter()
MLPClassifier(random_state=0, backend="{backend}").fit(X, y)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def compile_table() -> None:
    """First and second fit of a fresh process: numpy backend, numba with a cold and then a warm disk cache."""
    with tempfile.TemporaryDirectory() as cache:
        rows = []
        for label, backend in (("numpy", "numpy"), ("numba, cold cache", "numba"), ("numba, warm cache", "numba")):
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            code = _FIRST_FIT.format(backend=backend)
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            rows.append((label, *map(float, out.stdout.split())))
    emit("### First fit of a fresh process (MLPClassifier, digits, default parameters)")
    emit()
    table(
        ["process", "imports s", "1st fit s", "2nd fit s", "1st - 2nd", "1st vs numpy's 1st"],
        [
            [
                label,
                f"{imports:.2f}",
                f"{first:.2f}",
                f"{second:.2f}",
                f"{first - second:+.2f}",
                f"{first - rows[0][2]:+.2f}",
            ]
            for label, imports, first, second in rows
        ],
    )


def gpu_tables(repeats: int) -> None:
    """The GPU section: training against PyTorch CUDA, and the fused kernels' bandwidth (see gpu_peers.py)."""
    import gpu_peers

    emit(f"### GPU: {gpu_peers.device_line()}")
    emit()
    emit(f"MLP 784-512-256-10, batch {gpu_peers.BATCH}, Adam, float32, {gpu_peers.SAMPLES} samples on the GPU:")
    emit()
    table(["contender", "samples/s (median)", "range", "vs PyTorch (loss.item())"], gpu_peers.training_rows(repeats))
    emit("Fused kernels over 2**26 float32 values, bytes read and written per second:")
    emit()
    table(["kernel", "GB/s", "of the copy"], gpu_peers.bandwidth_rows())


def main(argv: list[str] | None = None) -> None:
    """Parse the options and emit the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"from {', '.join(WORKLOADS)}")
    parser.add_argument("--samples", type=int, default=None, help="samples per epoch (default: the workload's)")
    parser.add_argument("--repeats", type=int, default=5, help="timings per contender (default 5)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timing (default 1)")
    parser.add_argument("--digits", action="store_true", help="also compare the estimators on digits")
    parser.add_argument("--compile", action="store_true", help="also measure Numba's compile cost on a first fit")
    parser.add_argument("--gpu", action="store_true", help="also the GPU section (gpu_peers.py; needs cupy)")
    parser.add_argument("--no-training", action="store_true", help="skip the training tables")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory column")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chosen = []
    for key in args.workloads.split(","):
        if key not in WORKLOADS:
            parser.error(f"unknown workload {key!r}; choose from {', '.join(WORKLOADS)}")
        w = WORKLOADS[key]
        chosen.append((key, Workload(w.name, w.kind, w.layers, w.batch, args.samples or w.samples)))
    if args.memory_of:
        _memory_child(args.memory_of, chosen[0][1])
        return
    import sklearn

    versions = f"numpy {np.__version__}, scikit-learn {sklearn.__version__}"
    if not available("torch"):
        import torch

        versions += f", torch {torch.__version__}"
    emit(f"## minitrain vs its peers, {datetime.date.today().isoformat()}")
    emit()
    emit(f"`python asv_benchmarks/peers.py {' '.join(sys.argv[1:] if argv is None else argv)}`".replace(" `", "`"))
    emit()
    cpu = platform.processor() or platform.machine()
    emit(f"{cpu}, {os.cpu_count()} CPUs, python {platform.python_version()}, {versions}")
    emit()
    if not args.no_training:
        for key, w in chosen:
            training_table(key, w, args.repeats, args.epochs, not args.no_memory)
    if args.digits:
        digits_table(args.repeats)
    if args.compile:
        compile_table()
    if args.gpu:
        gpu_tables(args.repeats)
    if args.markdown:
        Path(args.markdown).write_text("\n".join(OUT) + "\n")


if __name__ == "__main__":
    main()
