"""Two minitrain source trees side by side: ``python asv_benchmarks/compare_trees.py OLD_TREE NEW_TREE``.

A check that a change costs no speed, for changes asv cannot compare (an API change breaks the old commit's
benchmarks). Each tree (a checkout, e.g. ``git worktree add ../base <commit>``) is imported in its own worker
process, beside a third one running scikit-learn; the workers time one unit of work each in turn, the order
rotating, and the report gives medians and the per-round ratio of the new tree to the old. Units
(``--what``): ``epoch``, one ``MLPClassifier(backend="numba").partial_fit`` epoch of the peers' MLP workload
(784-256-128-10, batch 128, 60000 samples; samples/s), or ``digits``, one ``MLPClassifier`` fit with default
parameters on scikit-learn's digits as float32 (seconds). Both workers use the Python running this script and
the packages it sees (numpy, numba, scikit-learn); only minitrain comes from the trees.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any


def _worker(tree: str, what: str, library: str) -> None:
    """Import minitrain from ``tree``, warm up, then time one unit per line read from stdin."""
    sys.path[:0] = [tree, str(Path(tree) / "backends"), str(Path(__file__).resolve().parent)]
    import numpy as np

    warnings.simplefilter("ignore")
    if what == "epoch":
        from contenders import WORKLOADS, estimator_epoch, sklearn_epoch

        w = WORKLOADS["mlp-256-128"]
        X, y = w.data()
        unit = sklearn_epoch(X, y, w) if library == "sklearn" else estimator_epoch("numba")(X, y, w)
    else:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X.astype(np.float32)
        if library == "sklearn":
            from sklearn.neural_network import MLPClassifier

            kw: dict[str, Any] = {}
        else:
            from minitrain import MLPClassifier

            kw = {"backend": "numba"}

        def unit() -> Any:
            return MLPClassifier(random_state=0, **kw).fit(X, y)

    if library != "sklearn":
        import minitrain

        assert minitrain.__file__.startswith(str(Path(tree).resolve())), minitrain.__file__
    unit()  # compile or load the kernel cache
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        unit()
        seconds = time.perf_counter() - start
        print(60000 / seconds if what == "epoch" else seconds, flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run the workers interleaved and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the source tree before the change")
    parser.add_argument("new", help="the source tree after the change")
    parser.add_argument("--what", choices=("epoch", "digits"), default="epoch")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker[0], args.what, args.worker[1])
        return
    sides = {"old": (args.old, "minitrain"), "new": (args.new, "minitrain"), "sklearn": (args.new, "sklearn")}
    procs = {}
    for name, (tree, library) in sides.items():
        cmd = [sys.executable, __file__, args.old, args.new, "--what", args.what, "--worker", tree, library]
        procs[name] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if procs[name].stdout.readline().strip() != "ready":
            raise SystemExit(f"the {name} worker failed to start")
    results: dict[str, list[float]] = {name: [] for name in procs}
    names = list(procs)
    for r in range(args.rounds):
        for name in names[r % 3 :] + names[: r % 3]:
            time.sleep(0.3)  # the previous worker's idle BLAS threads stop spinning
            procs[name].stdin.write("go\n")
            procs[name].stdin.flush()
            results[name].append(float(procs[name].stdout.readline()))
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    unit = "samples/s" if args.what == "epoch" else "s per fit"
    print(f"{args.what}, {args.rounds} interleaved rounds: median (min-max) {unit}")
    for name, values in results.items():
        print(f"  {name:8s} {statistics.median(values):12.4g} ({min(values):.4g}-{max(values):.4g})")
    ratios = [a / b for a, b in zip(results["new"], results["old"], strict=True)]
    print(f"  new / old per round: median {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
    vs_sklearn = statistics.median(results["new"]) / statistics.median(results["sklearn"])
    print(f"  new / scikit-learn (medians): {vs_sklearn:.3f}")


if __name__ == "__main__":
    main()
