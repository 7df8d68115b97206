"""minitrain against its peers, side by side in one process: ``python asv_benchmarks/peers.py``.

Training step of an MLP 784-256-128-10, batch 128, Adam, float32 on synthetic data, as a user writes
it, for scikit-learn's ``MLPClassifier`` (``partial_fit``, one epoch per call), PyTorch CPU (if
importable; ``pip install torch==2.13.0``), and minitrain on the ``numpy`` and ``numba`` backends
(``nn.Sequential`` of ``nn.Linear`` + ``nn.ReLU``, ``optim.Adam``, ``F.cross_entropy``, ``backward``).
Each repeat times ``--epochs`` epochs of every contender in turn (interleaved, the order rotating), after
one warm-up epoch each (where Numba compiles or loads its cache) and a pause before each timing that lets
the previous contender's idle threads (OpenBLAS, OpenMP) stop spinning; the table gives the median.

In the same repeats: the float32 GEMM peak (NumPy matmul of two 2048 x 2048 matrices) and the
GEMM-only ceiling of the step (its 8 matmuls alone into preallocated buffers). FLOPs of a step
count 2 * batch * in * out for each forward and weight-gradient GEMM and for the input gradients of
all layers but the first (never needed).

``--digits`` adds the estimators with default parameters on scikit-learn's digits (fit time, test
accuracy and tracemalloc peak of the fit, sklearn vs minitrain). ``--compile`` measures what Numba's
compilation adds to the first fit (``MLPClassifier`` on digits) of a fresh process, with an empty on-disk
cache (``NUMBA_CACHE_DIR`` a new directory) and then with that cache warm, against the numpy backend.
Timings on a shared machine are noisy: compare the ratios, and rerun when the min-max spread is wide.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

LAYERS = (784, 256, 128, 10)
BATCH = 128


def flops_per_sample(layers: tuple[int, ...] = LAYERS) -> int:
    """FLOPs of one training sample: forward + weight gradients of every layer, input gradients but the first's."""
    pairs = list(itertools.pairwise(layers))
    return sum(4 * i * o for i, o in pairs) + sum(2 * i * o for i, o in pairs[1:])


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 samples of 784 features whose 10 classes a linear map separates, with noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, LAYERS[0]), dtype=np.float32)
    y = np.argmax(X @ rng.standard_normal((LAYERS[0], LAYERS[-1])).astype(np.float32), axis=1)
    return X, y.astype(np.int64)


# ------------------------------------------------------------------------------------- contenders
def sklearn_epoch(X: np.ndarray, y: np.ndarray, seed: int = 0) -> Callable[[], None]:
    """One ``partial_fit`` epoch of scikit-learn's MLPClassifier (adam, batch 128, no penalty, no early stopping)."""
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=LAYERS[1:-1], solver="adam", batch_size=BATCH, learning_rate_init=1e-3, alpha=0.0,
        shuffle=True, random_state=seed, tol=0.0, n_iter_no_change=10**9, early_stopping=False,
    )  # fmt: skip
    classes = np.arange(LAYERS[-1])
    return lambda: clf.partial_fit(X, y, classes=classes)


def torch_epoch(X: np.ndarray, y: np.ndarray, seed: int = 0) -> Callable[[], None]:
    """One epoch of the same network in PyTorch: shuffle, slice batches, Adam."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    layers: list[Any] = []
    for i, (a, b) in enumerate(itertools.pairwise(LAYERS)):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(LAYERS) - 2 else [])
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)

    def epoch() -> None:
        perm = torch.randperm(len(Xt), generator=gen)
        Xs, ys = Xt[perm], yt[perm]
        for i in range(0, len(Xs), BATCH):
            loss = loss_fn(model(Xs[i : i + BATCH]), ys[i : i + BATCH])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return epoch


def minitrain_epoch(backend: str) -> Callable[[np.ndarray, np.ndarray, int], Callable[[], None]]:
    """One epoch of the network in minitrain on ``backend``: shuffle, slice batches, Adam."""

    def make(X: np.ndarray, y: np.ndarray, seed: int = 0) -> Callable[[], None]:
        import minitrain as mt
        from minitrain import functional as F
        from minitrain import nn, optim

        mt.manual_seed(seed)
        with mt.use_backend(backend):
            layers: list[Any] = []
            for i, (a, b) in enumerate(itertools.pairwise(LAYERS)):
                layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(LAYERS) - 2 else [])
            model = nn.Sequential(*layers)
            opt = optim.Adam(model.parameters(), lr=1e-3)
        rng = np.random.default_rng(seed)

        def epoch() -> None:
            perm = rng.permutation(len(X))
            Xs, ys = X[perm], y[perm]
            with mt.use_backend(backend):
                for i in range(0, len(Xs), BATCH):
                    loss = F.cross_entropy(model(mt.tensor(Xs[i : i + BATCH])), ys[i : i + BATCH])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()

        return epoch

    return make


def gemm_ceiling_epoch(X: np.ndarray, y: np.ndarray, seed: int = 0) -> Callable[[], None]:
    """The step's 8 matmuls alone (forward, weight gradients, input gradients but the first's), no other work."""
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((o, i), dtype=np.float32) * 0.05 for i, o in itertools.pairwise(LAYERS)]
    acts = [np.empty((BATCH, o), np.float32) for o in LAYERS[1:]]
    grads = [np.empty_like(w) for w in ws]
    deltas = [np.empty((BATCH, i), np.float32) for i in LAYERS[1:-1]]

    def epoch() -> None:
        for s in range(0, len(X) - BATCH + 1, BATCH):
            h = X[s : s + BATCH]
            for w, a in zip(ws, acts):
                np.matmul(h, w.T, out=a)
                h = a
            d = acts[-1]
            for k in range(len(ws) - 1, -1, -1):
                np.matmul(d.T, acts[k - 1] if k else X[s : s + BATCH], out=grads[k])
                if k:
                    np.matmul(d, ws[k], out=deltas[k - 1])
                    d = deltas[k - 1]

    return epoch


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


# ------------------------------------------------------------------------------------- the run
def _available(name: str) -> str:
    """Why a contender cannot run here, or ''."""
    try:
        if name == "torch":
            import torch  # noqa: F401
        elif name.startswith("minitrain"):
            import minitrain as mt

            mt.get_backend(name.split("-")[1])
    except (ImportError, ValueError) as exc:
        return str(exc).splitlines()[0]
    return ""


def training_table(n: int, repeats: int, epochs: int = 3) -> None:
    """Interleaved epochs of every contender; print samples/s, ratios and the fraction of the GEMM peak."""
    X, y = synthetic(n)
    makers = {
        "sklearn": sklearn_epoch,
        "torch": torch_epoch,
        "minitrain-numpy": minitrain_epoch("numpy"),
        "minitrain-numba": minitrain_epoch("numba"),
        "gemm-only": gemm_ceiling_epoch,
    }
    epochs_per_timing, epochs, notes = epochs, {}, []
    for name, make in makers.items():
        why = _available(name)
        if why:
            notes.append(f"{name} skipped: {why}")
            continue
        epochs[name] = make(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first = _timed(epochs[name])
        notes.append(f"{name}: warm-up epoch (compiles, allocates) {first:.2f} s")
    times: dict[str, list[float]] = {k: [] for k in epochs}
    peaks = []
    names = list(epochs)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                times[name].append(_timed(epochs[name], epochs_per_timing, settle=0.5))
        peaks.append(gemm_peak())
    rate = {k: [n * epochs_per_timing / t for t in v] for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in rate.items()}
    peak = statistics.median(peaks)
    fps = flops_per_sample()
    what = f"{n} samples/epoch, {repeats} repeats of {epochs_per_timing} epochs"
    print(f"\nMLP {'-'.join(map(str, LAYERS))}, batch {BATCH}, Adam, float32, {what}")
    spread = f"{min(peaks):.0f}-{max(peaks):.0f}"
    print(f"threads: OpenBLAS/torch 2; float32 GEMM peak {peak:.0f} GFLOP/s (median; range {spread})")
    print(f"FLOPs per sample {fps / 1e6:.3f} M\n")
    head = f"{'contender':<18}{'samples/s':>11}{'min-max':>17}{'vs sklearn':>12}{'vs torch':>10}"
    head += f"{'GFLOP/s':>9}{'% peak':>8}"
    print(head)
    print("-" * len(head))
    for k in names:
        sk = f"{med[k] / med['sklearn']:.2f}x" if "sklearn" in med else "-"
        tc = f"{med[k] / med['torch']:.2f}x" if "torch" in med else "-"
        gf = med[k] * fps / 1e9
        spread = f"{min(rate[k]):,.0f}-{max(rate[k]):,.0f}"
        print(f"{k:<18}{med[k]:>11,.0f}{spread:>17}{sk:>12}{tc:>10}{gf:>9.1f}{100 * gf / peak:>7.0f}%")
    print()
    for note in notes:
        print("note:", note)


def digits_table(repeats: int) -> None:
    """Default-parameter estimators on digits: fit time, test accuracy and tracemalloc peak, sklearn vs minitrain."""
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLP

    from minitrain.estimators import MLPClassifier

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
    print(f"\ndigits ({len(Xtr)} train / {len(Xte)} test), default parameters, {repeats} fits each (median)")
    head = f"{'estimator':<18}{'fit s':>8}{'vs sklearn':>12}{'n_iter_':>9}{'test acc':>10}{'peak MiB':>10}"
    print(head)
    print("-" * len(head))
    for k in makers:
        print(
            f"{k:<18}{med[k]:>8.3f}{med[k] / med['sklearn']:>11.2f}x{iters[k]:>9}{acc[k]:>10.4f}{mem[k] / 2**20:>10.2f}"
        )


_FIRST_FIT = """
import time, warnings
t0 = time.perf_counter()
import numpy as np
from sklearn.datasets import load_digits
from minitrain.estimators import MLPClassifier
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
    print("\nfirst fit of a fresh process (MLPClassifier, digits, default parameters)")
    head = f"{'process':<20}{'imports s':>10}{'1st fit s':>11}{'2nd fit s':>11}{'1st - 2nd':>11}{'vs numpy 1st':>14}"
    print(head)
    print("-" * len(head))
    for label, imports, first, second in rows:
        extra = first - rows[0][2]
        print(f"{label:<20}{imports:>10.2f}{first:>11.2f}{second:>11.2f}{first - second:>11.2f}{extra:>+14.2f}")


def main(argv: list[str] | None = None) -> None:
    """Parse the options and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12800, help="samples per epoch (default 12800)")
    parser.add_argument("--repeats", type=int, default=7, help="timings per contender (default 7)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timing (default 3)")
    parser.add_argument("--digits", action="store_true", help="also compare the estimators on digits")
    parser.add_argument("--compile", action="store_true", help="also measure Numba's compile cost on a first fit")
    parser.add_argument("--no-training", action="store_true", help="skip the training-step table")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    if not args.no_training:
        training_table(args.samples, args.repeats, args.epochs)
    if args.digits:
        digits_table(args.repeats)
    if args.compile:
        compile_table()


if __name__ == "__main__":
    main()
