"""Reporting callbacks: a progress bar with epoch summaries, one line per epoch, a CSV file."""

from __future__ import annotations

import csv
import numbers
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .base import Callback

__all__ = ["CSVLogger", "EpochLogger", "ProgressBar"]


class ProgressBar(Callback):
    """A tqdm bar per epoch (batches done, running mean loss, rate, ETA), then a one-line summary of the epoch.

    The bar is transient by default: when an epoch ends it gives way to the epoch's summary line, the one
    :class:`EpochLogger` prints (losses and scores, ``+`` marking a best so far, lr, duration; keys with a ``/``,
    such as GradientMonitor's ``grad_norm/<layer>``, are left out). What verbose estimators show. It stays quiet
    when its stream is not a terminal (a log file, a CI job, a captured stream) unless ``disable=False`` forces it.

    Parameters
    ----------
    leave : bool, default=False
        Keep each epoch's finished bar on screen (above its summary line).
    mininterval : float, default=0.1
        Minimum seconds between redraws.
    disable : bool or None, default=None
        None shows the bar and the summary lines only when ``file`` is a terminal (tqdm's rule); False shows them
        whatever ``file`` is; True shows nothing.
    file : {'stderr', 'stdout'} or writable text stream, default='stderr'
        Where to write; ``sys.stderr`` / ``sys.stdout`` are looked up when training starts. Estimators clone their
        callbacks, which deep-copies a stream: give them a name, and a stream only to a ``Trainer``.
    summary : bool, default=True
        Write the summary line of each epoch.

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> from minitrain import data, functional as F, nn, optim, training
    >>> model = nn.Linear(2, 1, backend="numpy")
    >>> crit = lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1))
    >>> out = io.StringIO()  # not a terminal: disable=False forces the output
    >>> bar = ProgressBar(disable=False, file=out)
    >>> trainer = training.Trainer(model, crit, optim.SGD(model, lr=0.1), batch_size=4, callbacks=[bar])
    >>> _ = trainer.fit(data.ArrayDataset(np.ones((8, 2)), np.ones(8), backend="numpy"), epochs=2)
    >>> [line for line in out.getvalue().splitlines() if line.startswith("epoch")][-1][:24]
    'epoch   2  train_loss 0.'
    """

    def __init__(
        self, leave: bool = False, mininterval: float = 0.1, disable: bool | None = None, file: Any = "stderr",
        summary: bool = True,
    ) -> None:  # fmt: skip
        self.leave = leave
        self.mininterval = mininterval
        self.disable = disable
        self.file = file
        self.summary = summary

    def _stream(self) -> Any:
        if isinstance(self.file, str):
            if self.file not in ("stderr", "stdout"):
                raise ValueError(f"ProgressBar: file must be 'stderr', 'stdout' or a stream, got {self.file!r}")
            return getattr(sys, self.file)
        return self.file

    def _shown(self) -> bool:
        if self.disable is not None:
            return not self.disable
        isatty = getattr(self._stream(), "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:  # a closed stream
            return False

    def _close(self) -> None:
        if getattr(self, "bar_", None) is not None:
            self.bar_.close()
        self.bar_ = None

    def on_train_begin(self, trainer: Any) -> None:
        self.shown_ = self._shown()

    def on_epoch_begin(self, trainer: Any) -> None:
        from tqdm import tqdm

        self._close()
        if not getattr(self, "shown_", False):
            return
        self.bar_ = tqdm(
            total=trainer.n_batches, desc=f"epoch {trainer.epoch}", unit="batch", leave=self.leave,
            mininterval=self.mininterval, file=self._stream(), dynamic_ncols=True,
        )  # fmt: skip
        self.loss_sum_, self.seen_ = 0.0, 0

    def on_batch_end(self, trainer: Any, batch: int, loss: float) -> None:
        if getattr(self, "bar_", None) is None:
            return
        self.loss_sum_ += loss
        self.seen_ += 1
        self.bar_.set_postfix(loss=f"{self.loss_sum_ / self.seen_:.4f}", refresh=False)
        self.bar_.update()

    def on_epoch_end(self, trainer: Any) -> None:
        if getattr(self, "bar_", None) is None:
            return
        record = trainer.history[-1]
        keys = ("train_loss", "valid_loss", "valid_score")
        self.bar_.set_postfix({k: f"{record[k]:.4f}" for k in keys if k in record}, refresh=False)
        self._close()
        if self.summary:
            from tqdm import tqdm

            shown = {k: v for k, v in record.items() if "/" not in k}  # not per-layer series (grad_norm/<layer>)
            tqdm.write(EpochLogger().format_record(shown), file=self._stream())

    def on_train_end(self, trainer: Any) -> None:
        self._close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state["bar_"] = None  # a live bar holds its stream
        return state


class EpochLogger(Callback):
    """Report each epoch in one line: losses and scores (``+`` marks a best so far), lr and duration.

    Parameters
    ----------
    sink : callable, default=print
        Called with each line.
    keys : sequence of str, optional
        History keys to show, in order; by default every number recorded except the ``*_best`` flags.

    Examples
    --------
    >>> record = {"epoch": 3, "lr": 0.001, "train_loss": 0.42131, "train_loss_best": True, "valid_loss": 0.455,
    ...           "valid_loss_best": False, "duration": 0.1234}
    >>> EpochLogger().format_record(record)
    'epoch   3  train_loss 0.4213+  valid_loss 0.4550  lr 0.001  dur 0.12s'
    """

    def __init__(self, sink: Callable[[str], Any] = print, keys: Sequence[str] | None = None) -> None:
        self.sink = sink
        self.keys = keys

    def format_record(self, record: dict[str, Any]) -> str:
        """The line for one history record."""
        keys = self.keys
        if keys is None:
            shown = [k for k, v in record.items() if k not in ("epoch", "lr", "duration") and not k.endswith("_best")
                     and isinstance(v, numbers.Real) and not isinstance(v, bool)]  # fmt: skip
            keys = ["epoch", *shown, "lr", "duration"]
        parts = []
        for key in keys:
            value = record.get(key)
            if value is None:
                continue
            if key == "epoch":
                parts.append(f"epoch {value:>3}")
            elif key == "lr":
                parts.append(f"lr {value:.4g}")
            elif key == "duration":
                parts.append(f"dur {value:.2f}s")
            else:
                mark = "+" if record.get(f"{key}_best") is True else ""
                parts.append(f"{key} {value:.4f}{mark}" if isinstance(value, numbers.Real) else f"{key} {value}")
        return "  ".join(parts)

    def on_epoch_end(self, trainer: Any) -> None:
        self.sink(self.format_record(trainer.history[-1]))


class CSVLogger(Callback):
    """Write the history to a CSV file, one row per epoch, as training goes.

    The columns are those of the first epoch logged (later keys are left out).

    Parameters
    ----------
    path : str or path-like
    sep : str, default=','
    append : bool, default=False
        Add to an existing file instead of starting a new one at each fit.

    Examples
    --------
    >>> import os, tempfile
    >>> from types import SimpleNamespace
    >>> from minitrain.callbacks import History
    >>> history = History()
    >>> history.new_epoch(epoch=1, train_loss=0.5)
    >>> path = os.path.join(tempfile.mkdtemp(), "history.csv")
    >>> CSVLogger(path).on_epoch_end(SimpleNamespace(history=history))
    >>> open(path).read().splitlines()
    ['epoch,train_loss', '1,0.5']
    """

    def __init__(self, path: str | os.PathLike[str], sep: str = ",", append: bool = False) -> None:
        self.path = path
        self.sep = sep
        self.append = append

    def initialize(self) -> CSVLogger:
        self.fieldnames_: list[str] | None = None
        return self

    def on_epoch_end(self, trainer: Any) -> None:
        record = trainer.history[-1]
        first = getattr(self, "fieldnames_", None) is None
        if first:
            self.fieldnames_ = list(record)
        append = not first or self.append
        header = first and not (append and os.path.exists(self.path) and os.path.getsize(self.path) > 0)
        with open(self.path, "a" if append else "w", newline="") as f:
            writer = csv.DictWriter(f, self.fieldnames_, delimiter=self.sep, extrasaction="ignore")
            if header:
                writer.writeheader()
            writer.writerow(record)
