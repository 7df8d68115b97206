"""Train a small network on scikit-learn's digits with minitrain's low-level API.

Standardized features, a stratified train/validation/test split, Adam, a line per epoch, early
stopping on the validation loss (best weights restored), then the test accuracy. With matplotlib
installed (pip install "minitrain[plot]"), the learning curves are saved as a PNG (--plot PATH; the
default is in the temporary directory, "" skips it).

    python examples/quickstart.py [--backend numpy] [--epochs 200] [--patience 10] [--plot curves.png]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import minitrain as mt
from minitrain import losses, nn, optim
from minitrain.callbacks import History


def evaluate(model: nn.Module, loss_fn: losses.CrossEntropyLoss, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Loss and accuracy of ``model`` on (X, y), in eval mode."""
    model.eval()
    with mt.no_grad():
        logits = model(X)
        loss = loss_fn(logits, y).item()
    model.train()
    return loss, float((logits.numpy().argmax(axis=1) == y).mean())


def main(argv: list[str] | None = None) -> float:
    """Train, print progress, return the test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", help="numpy, numba or auto (default)")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10, help="epochs without validation improvement")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--plot",
        default=os.path.join(tempfile.gettempdir(), "minitrain_quickstart.png"),
        metavar="PATH",
        help="where to save the learning curves (PNG, needs matplotlib); '' skips them",
    )
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=args.seed)
    X_train, X_val, y_train, y_val = train_test_split(
        X_train, y_train, test_size=0.2, stratify=y_train, random_state=args.seed
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_val, X_test = (scaler.transform(a).astype(np.float32) for a in (X_train, X_val, X_test))

    mt.manual_seed(args.seed)
    order = np.random.default_rng(args.seed)
    with mt.use_backend(args.backend) as backend:
        model = nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
        )
        optimizer = optim.Adam(model, lr=args.lr, weight_decay=1e-4)
        loss_fn = losses.CrossEntropyLoss()
        print(f"backend {backend.name}: {model.num_parameters()} parameters, {len(X_train)} training samples")
        best_loss, best_state, waited = float("inf"), model.state_dict(), 0
        history, best_epoch, stopped = History(), None, None  # for the learning curves
        start = time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            perm = order.permutation(len(X_train))
            total = 0.0
            for i in range(0, len(perm), args.batch_size):
                idx = perm[i : i + args.batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(X_train[idx]), y_train[idx])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
            val_loss, val_acc = evaluate(model, loss_fn, X_val, y_val)
            train_loss = total / len(X_train)
            print(f"epoch {epoch:3d}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  val acc {val_acc:.4f}")
            history.new_epoch(epoch=epoch, train_loss=train_loss, valid_loss=val_loss, valid_score=val_acc)
            if val_loss < best_loss - 1e-4:
                best_loss, best_state, waited, best_epoch = val_loss, model.state_dict(), 0, epoch
            else:
                waited += 1
                if waited >= args.patience:
                    print(f"early stop: no validation improvement for {args.patience} epochs")
                    stopped = epoch
                    break
        model.load_state_dict(best_state)
        _, test_acc = evaluate(model, loss_fn, X_test, y_test)
        elapsed = time.perf_counter() - start
        if args.plot and len(history) and importlib.util.find_spec("matplotlib") is not None:
            from minitrain.plot import learning_curves

            learning_curves(history, best_epoch=best_epoch, stopped_epoch=stopped).savefig(args.plot, dpi=80)
            print(f"learning curves saved to {args.plot}")
        print(f"test accuracy {test_acc:.4f}  (backend {backend.name}, {elapsed:.1f} s)")
    return test_acc


if __name__ == "__main__":
    main()
