"""The training loop shared by every estimator: epochs of batches, validation, callbacks and history."""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .augment import Compose
from .autograd import Tensor, no_grad
from .callbacks import Callback, History
from .data import ArrayDataset
from .random import spawn_seed

Criterion = Callable[[Tensor, Any, Any, float], Tensor]

__all__ = ["NonFiniteLossError", "Trainer"]


class NonFiniteLossError(ValueError, FloatingPointError):
    """Training diverged: the loss, the validation loss or a parameter became NaN or infinite. The model was reset to
    the weights it had after its last finite epoch (and its optimizer's state was cleared), so it stays usable.

    ``what`` says what became non-finite (e.g. "the training loss became inf") and ``epoch`` in which epoch.

    Parameters
    ----------
    message : str
    what : str, default=''
    epoch : int, default=0

    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import data, functional as F, nn, optim, training
    >>> model = nn.Linear(2, 1, backend="numpy")
    >>> crit = lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1))
    >>> trainer = training.Trainer(model, crit, optim.SGD(model, lr=0.1), batch_size=4)
    >>> y = np.zeros(8)
    >>> y[5] = np.inf
    >>> try:
    ...     trainer.fit(data.ArrayDataset(np.ones((8, 2)), y, backend="numpy"), epochs=3)
    ... except training.NonFiniteLossError as err:
    ...     print(err.what, "in epoch", err.epoch)
    the training loss became inf in epoch 1
    >>> bool(np.isfinite(model.weight.numpy()).all())  # the weights of the last finite epoch
    True
    """

    def __init__(self, message: str, what: str = "", epoch: int = 0) -> None:
        super().__init__(message)
        self.what, self.epoch = what, epoch


class Trainer:
    """Train ``module`` with ``optimizer`` on ``criterion``, epoch after epoch, calling ``callbacks``.

    Parameters
    ----------
    module : Module
    criterion : callable ``(output, y_batch, sample_weight_batch, weight_sum) -> scalar Tensor``
        The loss of a batch, a weighted mean over its samples.
    optimizer : Optimizer
    batch_size : int
    callbacks : sequence of Callback
        Run in order; a :class:`~minitrain.callbacks.History` is always kept in ``history``.
    shuffle : bool or 'chained', default True
        Visit the training samples in a new random order each epoch: a fresh permutation (True), or a permutation
        of the previous epoch's order ('chained', scikit-learn's MLP rule; the chain starts anew with each
        ``Trainer``). Either draws one permutation from ``random_state`` per epoch.
    random_state : numpy RandomState, optional
        Source of the shuffling permutations.
    score_fn : callable ``(dataset) -> float``, optional
        Validation score (higher is better) recorded as ``valid_score``.
    penalty : callable ``(weight_sum) -> float``, optional
        Called after each backward pass, before the step; its value is added to the reported training loss
        (a regularizer whose gradient the optimizer applies, e.g. through ``weight_decay``).
    estimator : object, optional
        The estimator being fitted, for callbacks that need it.
    forward_backward : callable ``(dataset, rows, weight_sum) -> float``, optional
        Replaces the autograd step (gather the batch, forward, ``criterion``, backward): it returns the loss of the
        samples ``rows`` of ``dataset`` (a slice of samples in place, or an index array on the dataset's backend)
        and sets the gradient of every parameter the optimizer updates; ``dataset.take(rows)`` gathers them if it
        needs them gathered. ``criterion`` still computes validation losses.
    augment : callable ``(x_batch, y_batch, generator) -> (x_batch, y_batch)`` or list of them, optional
        Augmentation of the training batches (see :mod:`minitrain.augment`; a list becomes a ``Compose``), applied
        by the autograd step after gathering each batch and before the forward pass; never to validation batches.
        A ``forward_backward`` step gathers its own batches and applies none.
    augment_generator : generator of the module's backend, optional
        What ``augment`` draws from (``Backend.generator``); by default a new one seeded from the current stream
        (see :mod:`minitrain.random`).

    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import nn, optim, functional as F
    >>> from minitrain.data import ArrayDataset
    >>> model = nn.Linear(2, 1, backend="numpy")
    >>> crit = lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1))
    >>> trainer = Trainer(model, crit, optim.SGD(model, lr=0.1), batch_size=4)
    >>> X = np.random.default_rng(0).normal(size=(16, 2))
    >>> _ = trainer.fit(ArrayDataset(X, X.sum(1), backend="numpy"), epochs=50)
    >>> round(trainer.history[-1, "train_loss"], 6)
    0.0
    """

    def __init__(
        self,
        module: Any,
        criterion: Criterion,
        optimizer: Any,
        *,
        batch_size: int,
        callbacks: Sequence[Callback] = (),
        shuffle: bool | str = True,
        random_state: np.random.RandomState | None = None,
        score_fn: Callable[[ArrayDataset], float] | None = None,
        penalty: Callable[[float], float] | None = None,
        estimator: Any = None,
        forward_backward: Callable[[ArrayDataset, Any, float], float] | None = None,
        augment: Callable[[Any, Any, Any], tuple[Any, Any]] | Sequence[Any] | None = None,
        augment_generator: Any = None,
    ) -> None:
        self.module = module
        self.criterion = criterion
        self.optimizer = optimizer
        self.batch_size = int(batch_size)
        history = next((cb for cb in callbacks if isinstance(cb, History)), None)
        self.history = history if history is not None else History()  # not `or`: an empty History is falsy
        self.callbacks = [self.history, *(cb for cb in callbacks if cb is not self.history)]
        self.shuffle = shuffle
        self.random_state = random_state if random_state is not None else np.random.RandomState()
        self.score_fn = score_fn
        self.penalty = penalty
        self.estimator = estimator
        self.forward_backward = forward_backward
        self.augment = Compose(list(augment)) if isinstance(augment, (list, tuple)) else augment
        if augment is not None and augment_generator is None:
            augment_generator = module.backend.generator(spawn_seed())
        self.augment_generator = augment_generator
        self.stop_training = False
        self.epoch = 0
        self.n_batches = 0
        self.n_samples_seen = 0
        self._order: np.ndarray | None = None
        self._last_finite: list[Any] | None = None  # the weights at the start of the running epoch
        self._fit_start = 0  # the epoch the running fit() started after
        self._best: dict[str, float] = {}
        self._best_seen = -1  # history records the running bests cover

    # ------------------------------------------------------------------ state used by callbacks
    @property
    def lr(self) -> float:
        """Learning rate of the first parameter group; setting it sets every group's."""
        return float(self.optimizer.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = float(value)

    def _weight_arrays(self) -> list[Any]:
        """The arrays ``get_weights`` copies: parameters (a flat buffer whole when they fill it) and buffers."""
        params = self.module.parameters()
        root = params[0]._flat.root if params and params[0]._flat is not None else None
        if root is not None and root.is_current() and {id(q) for q in root.params} == {id(q) for q in params}:
            arrays = [root.data]
        else:
            arrays = [p.data for p in params]
        return arrays + [b for _, b in self.module.named_buffers() if b is not None]

    def get_weights(self) -> list[Any]:
        """Copies (on the backend) of every parameter and buffer, for ``set_weights``."""
        xp = self.module.backend.xp
        return [xp.copy(a) for a in self._weight_arrays()]

    def set_weights(self, weights: list[Any]) -> None:
        """Copy back weights taken by ``get_weights`` (or their NumPy copies), in place (flat buffers stay valid)."""
        be = self.module.backend
        for dst, src in zip(self._weight_arrays(), weights, strict=True):
            be.xp.copyto(dst, be.asarray(src))

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    # ------------------------------------------------------------------ the loop
    def initialize(self) -> Trainer:
        """Forget previous epochs: reset the callbacks (and the history)."""
        for cb in self.callbacks:
            cb.initialize()
        self.epoch = 0
        self.n_samples_seen = 0
        return self

    def fit(self, train: ArrayDataset, valid: ArrayDataset | None = None, epochs: int = 1) -> Trainer:
        """Run up to ``epochs`` more epochs (fewer if a callback sets ``stop_training``).

        A non-finite training loss, validation loss or parameter raises :class:`NonFiniteLossError` after
        restoring the weights of the last finite epoch. A KeyboardInterrupt ends training with a warning and the
        model trained so far; the history keeps the epochs that completed. Inside scikit-learn's model selection
        (``GridSearchCV``, ``cross_val_score``, ...) the interrupt propagates instead, so that it stops the search
        rather than let it score a model cut short.
        """
        self.stop_training = False
        self._fit_start = self.__dict__.pop("_resumed_fit_start", self.epoch)
        self._call("on_train_begin")
        try:
            with self.module.backend.context():  # the model's device is current for the whole loop
                for _ in range(epochs):
                    self._run_epoch(train, valid)
                    if self.stop_training:
                        break
        except KeyboardInterrupt:
            self._drop_unfinished_epoch()
            if self._last_finite is not None and not self._weights_finite():  # interrupted right after diverging
                self.set_weights(self._last_finite)
            if _inside_model_selection():
                raise
            warnings.warn("Training interrupted by user.", UserWarning, stacklevel=2)
        except NonFiniteLossError:
            self._drop_unfinished_epoch()
            raise
        finally:
            self._call("on_train_end")
        return self

    def loop_state(self) -> dict[str, Any]:
        """Where the loop stands between two epochs: ``epoch``, ``fit_epochs`` (epochs the running ``fit`` call
        completed), ``n_samples_seen`` and the last shuffled ``order``. A checkpoint keeps it beside the model, the
        optimizer, the history, the callbacks and ``random_state``."""
        return {
            "epoch": self.epoch, "fit_epochs": self.epoch - self._fit_start, "n_samples_seen": self.n_samples_seen,
            "order": self._order,
        }  # fmt: skip

    def restore_loop_state(self, state: dict[str, Any]) -> Trainer:
        """Continue the loop from ``loop_state()``'s ``state``; returns self."""
        self.epoch, self.n_samples_seen = int(state["epoch"]), int(state["n_samples_seen"])
        self._order = None if state["order"] is None else np.asarray(state["order"])
        self._resumed_fit_start = self.epoch - int(state["fit_epochs"])  # the next fit() continues that one
        return self

    def resume(self, path: Any) -> Trainer:
        """Continue from a checkpoint that :class:`~minitrain.callbacks.Checkpoint` wrote for a trainer like this
        one (the same model architecture, optimizer and callbacks, e.g. the script that was stopped, run again).

        Restores, in place: the model's parameters, buffers and random generators, the optimizer's state, the
        history, ``random_state`` (and ``augment_generator``), each callback's state and the loop's position. Call
        ``fit`` with the epochs that are left (``loop_state()["fit_epochs"]`` of them ran) and training goes on as if
        never stopped.

        Returns
        -------
        self
        """
        from .io import load

        saved = load(path, backend=self.module.backend)
        if not isinstance(saved, dict) or "trainer" not in saved or "module" not in saved:
            raise ValueError(f"{path} is not a checkpoint of a Trainer (it holds {type(saved).__name__})")
        module = saved["module"]
        self.module.load_state_dict(module.state_dict())
        mine, theirs = dict(self.module.named_generators()), dict(module.named_generators())
        if mine.keys() != theirs.keys():
            raise ValueError(f"{path}: the model's random generators differ ({sorted(theirs)} in the file)")
        for name, gen in mine.items():
            gen.bit_generator.state = theirs[name].bit_generator.state
        self.optimizer.load_state_dict(saved["optimizer"].state_dict())
        self.history.records[:] = saved["history"].records
        self.random_state.set_state(saved["random_state"].get_state())
        callbacks = [cb for cb in self.callbacks if not isinstance(cb, History)]
        for cb, old in zip(callbacks, saved["callbacks"], strict=False):
            if type(cb) is type(old):
                cb.__dict__.update(old.__dict__)
        if saved.get("augment_generator") is not None and self.augment_generator is not None:
            self.augment_generator.bit_generator.state = saved["augment_generator"].bit_generator.state
        return self.restore_loop_state(saved["trainer"])

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint saves: the fitted estimator being trained (if any) or the model, optimizer, history,
        ``random_state``, callbacks and ``augment_generator``, and ``loop_state()``."""
        if self.estimator is not None:
            return {"estimator": self.estimator, "trainer": self.loop_state()}
        callbacks = [cb for cb in self.callbacks if not isinstance(cb, History)]
        return {
            "module": self.module, "optimizer": self.optimizer, "history": self.history,
            "random_state": self.random_state, "callbacks": callbacks, "trainer": self.loop_state(),
            "augment_generator": self.augment_generator,
        }  # fmt: skip

    def _drop_unfinished_epoch(self) -> None:
        """Forget the record of an epoch that did not complete."""
        records = self.history.records
        if records and records[-1].get("epoch") == self.epoch and "duration" not in records[-1]:
            records.pop()
            self.epoch -= 1

    def _diverged(self, what: str, last_finite: list[Any], batch: int | None = None) -> NonFiniteLossError:
        """Restore the epoch's starting weights, clear the optimizer's state; the error to raise."""
        self.set_weights(last_finite)
        self.optimizer.clear_state()
        where = f"epoch {self.epoch}" if batch is None else f"epoch {self.epoch}, batch {batch}"
        return NonFiniteLossError(
            f"{what[:1].upper()}{what[1:]} at {where}; the model keeps the weights it had after epoch "
            f"{self.epoch - 1}. Scale the inputs (e.g. StandardScaler) or lower the learning rate.",
            what,
            self.epoch,
        )

    def _weights_finite(self, arrays: list[Any] | None = None) -> bool:
        """Whether every parameter and floating buffer (``arrays``, default: the current ones) is finite."""
        xp = self.module.backend.xp
        arrays = self._weight_arrays() if arrays is None else arrays
        return all(bool(xp.isfinite(a).all()) for a in arrays if a.dtype.kind == "f")

    def _run_epoch(self, train: ArrayDataset, valid: ArrayDataset | None) -> None:
        self.epoch += 1
        began = time.perf_counter()
        self.history.new_epoch(epoch=self.epoch, lr=self.lr)
        self.n_batches = -(-train.n_samples // self.batch_size)
        self._call("on_epoch_begin")
        weights = self._weight_arrays()  # the arrays this epoch trains, copied and at the end checked
        last_finite = self._last_finite = [self.module.backend.xp.copy(a) for a in weights]
        self.module.train()
        order = None
        if self.shuffle:
            perm = np.arange(train.n_samples)
            self.random_state.shuffle(perm)  # what sklearn.utils.shuffle draws, without its input checks
            if self.shuffle == "chained":  # permute the previous order, as scikit-learn's MLP does
                chained = self._order is not None and len(self._order) == train.n_samples
                perm = self._order[perm] if chained else perm
            order = self._order = perm
        total = 0.0
        step = self._autograd_step if self.forward_backward is None else self.forward_backward
        n_samples = train.n_samples
        all_rows = None if order is None else train.backend.asarray(order)
        for i, start in enumerate(range(0, n_samples, self.batch_size)):
            stop = min(start + self.batch_size, n_samples)
            rows = slice(start, stop) if all_rows is None else all_rows[start:stop]
            weight_sum = train.weight_sum(slice(start, stop) if order is None else order[start:stop])  # on the host
            loss = self._train_step(step, train, rows, weight_sum)
            if not math.isfinite(loss):
                raise self._diverged(f"the training loss became {loss}", last_finite, i + 1)
            total += loss * (stop - start)
            self.n_samples_seen += stop - start
            self._call("on_batch_end", i, loss)
        if not self._weights_finite(weights):  # the epoch's last step diverged
            raise self._diverged("a parameter became non-finite", last_finite)
        self.history.record("train_loss", total / max(train.n_samples, 1))
        if valid is not None:
            valid_loss = self.evaluate_loss(valid)
            if not math.isfinite(valid_loss):
                raise self._diverged(f"the validation loss became {valid_loss}", last_finite)
            self.history.record("valid_loss", valid_loss)
            if self.score_fn is not None:
                self.history.record("valid_score", float(self.score_fn(valid)))
        self._mark_best()
        self.history.record("duration", time.perf_counter() - began)
        self._call("on_epoch_end")

    def _autograd_step(self, data: ArrayDataset, rows: Any, weight_sum: float) -> float:
        """Loss of the batch ``rows`` of ``data``, every parameter's gradient set through the autograd graph."""
        xb, yb, wb = data.take(rows)
        if self.augment is not None:
            xb, yb = self.augment(xb, yb, self.augment_generator)
        self.optimizer.zero_grad()
        out = self.module(Tensor._make(xb, self.module.backend))
        loss = self.criterion(out, yb, wb, weight_sum)
        loss.backward()
        return float(loss.data)

    def _train_step(
        self, step: Callable[[ArrayDataset, Any, float], float], data: ArrayDataset, rows: Any, weight_sum: float
    ) -> float:
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by the caller, not warned
            value = step(data, rows, weight_sum)
            if self.penalty is not None:
                value += self.penalty(weight_sum)
            self.optimizer.step()
        return value

    def evaluate_loss(self, data: ArrayDataset) -> float:
        """Mean loss of ``module`` (in eval mode, without gradients) over ``data``."""
        was_training = self.module.training
        self.module.eval()
        total = 0.0
        try:  # NumPy's warnings off: divergence is reported by the caller
            with self.module.backend.context(), no_grad(), np.errstate(over="ignore", invalid="ignore"):
                for xb, yb, wb, wsum in data.batches(max(self.batch_size, 1024)):
                    out = self.module(Tensor._make(xb, self.module.backend))
                    total += float(self.criterion(out, yb, wb, wsum).data) * xb.shape[0]
        finally:
            self.module.train(was_training)
        return total / max(data.n_samples, 1)

    _BEST_KEYS = (("train_loss", 1.0), ("valid_loss", 1.0), ("valid_score", -1.0))

    def _mark_best(self) -> None:
        """Record ``<key>_best`` flags: the lowest loss so far, the highest score so far.

        The bests are kept running; the history is read back only when it was started or continued
        elsewhere (a new fit, ``partial_fit`` / warm start with a new trainer).
        """
        records = self.history.records
        if self._best_seen != len(records) - 1:
            self._best = {}
            for r in records[:-1]:
                self._update_best(r)
        flags = self._update_best(records[-1])
        for key, is_best in flags.items():
            self.history.record(f"{key}_best", is_best)
        self._best_seen = len(records)

    def _update_best(self, record: dict[str, Any]) -> dict[str, bool]:
        flags = {}
        for key, sign in self._BEST_KEYS:
            value = record.get(key)
            if value is None:
                continue
            best = self._best.get(key)
            flags[key] = bool(np.isfinite(value) and (best is None or sign * value < best))
            if flags[key]:
                self._best[key] = sign * value
        return flags


def _inside_model_selection() -> bool:
    """Whether this call runs inside scikit-learn's model selection (a search, a cross-validation)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("sklearn.model_selection"):
            return True
        frame = frame.f_back
    return False
