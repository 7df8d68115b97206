"""``GradientMonitor``: per-layer gradient and weight norms each epoch; warnings when gradients vanish or explode."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .base import Callback

__all__ = ["GradientMonitor", "GradientWarning"]


class GradientWarning(UserWarning):
    """Gradients vanish or explode (warned by :class:`GradientMonitor`).

    A ``UserWarning``: filter it by category, e.g. ``warnings.filterwarnings("error", category=GradientWarning)``
    to stop a fit whose gradients explode.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from minitrain import data, functional as F, nn, optim, training
    >>> from minitrain.callbacks import GradientMonitor, GradientWarning
    >>> model = nn.Linear(2, 1, backend="numpy")
    >>> crit = lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1))
    >>> monitor = GradientMonitor(explode_threshold=0.0)  # any gradient counts as exploding
    >>> trainer = training.Trainer(model, crit, optim.SGD(model, lr=0.1), batch_size=4, callbacks=[monitor])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = trainer.fit(data.ArrayDataset(np.ones((8, 2)), np.zeros(8), backend="numpy"), epochs=1)
    >>> [w.category.__name__ for w in caught if issubclass(w.category, GradientWarning)], monitor.exploding_
    (['GradientWarning'], {'Linear': 1})
    """


_VANISH_REMEDY = "ReLU-like activations, batch normalization or residual connections keep gradients flowing"
_EXPLODE_REMEDY = "clip the gradients (the optimizer's clip_grad_norm) or lower the learning rate"


class GradientMonitor(Callback):
    """Record each layer's gradient and weight norms every epoch; warn when gradients vanish or explode.

    A layer is a module owning trainable parameters directly (a ``Linear``, a ``BatchNorm1d``, ...), named by its
    dotted path in the network (``'0'``, ``'block.1'``; the network's class name when it is the network itself).
    Each epoch records, for every layer, ``grad_norm/<layer>`` and ``weight_norm/<layer>`` in the history, where
    TensorBoard, WandbLogger, EpochLogger and CSVLogger (if placed after it) find them.

    The gradient norm of an epoch is the root mean square of the layer's gradient norm over the epoch's batches,
    ``sqrt(mean_b ||g_b||^2)``, with ``g_b`` the gradient the optimizer applied at batch ``b`` (after any clipping,
    without weight decay). It is accumulated after each step with two array operations per flat parameter buffer
    (a square and a segmented sum, left on the backend's device) and read once per epoch, so it costs little per
    batch; it works with every step that writes the parameters' ``.grad`` arrays (autograd, and the MLP
    estimators' fused step). The weight norm is measured at the end of the epoch. Norms are Euclidean over all of
    a layer's trainable parameters (weight and bias together).

    Parameters
    ----------
    vanish_threshold : float, default=1e-6
        Gradients vanish in a layer when its gradient norm stays below ``vanish_threshold`` times its weight norm
        for ``patience`` epochs in a row.
    explode_threshold : float, default=1e4
        Gradients explode in a layer when its gradient norm exceeds this (or is not finite) in an epoch.
    patience : int, default=3
        Epochs in a row a vanishing gradient must last before the warning.
    warn : bool, default=True
        Emit a :class:`GradientWarning` the first time gradients vanish, and the first time they explode, in a fit;
        it names the layers and the remedy.

    Attributes
    ----------
    vanishing_ : dict of str to int
        Layers whose gradients vanished, with the epoch at which it was detected.
    exploding_ : dict of str to int
        Layers whose gradients exploded, with the epoch at which it was detected.

    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import data, functional as F, nn, optim, training
    >>> model = nn.Sequential(nn.Linear(2, 4, activation="relu", backend="numpy"), nn.Linear(4, 1, backend="numpy"))
    >>> crit = lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1))
    >>> trainer = training.Trainer(model, crit, optim.SGD(model, lr=0.1), batch_size=4, callbacks=[GradientMonitor()])
    >>> X = np.random.default_rng(0).normal(size=(8, 2))
    >>> _ = trainer.fit(data.ArrayDataset(X, X.sum(1), backend="numpy"), epochs=2)
    >>> sorted(k for k in trainer.history[-1] if "norm" in k)
    ['grad_norm/0', 'grad_norm/1', 'weight_norm/0', 'weight_norm/1']
    """

    def __init__(
        self, vanish_threshold: float = 1e-6, explode_threshold: float = 1e4, patience: int = 3, warn: bool = True
    ) -> None:
        self.vanish_threshold = vanish_threshold
        self.explode_threshold = explode_threshold
        self.patience = patience
        self.warn = warn

    def initialize(self) -> GradientMonitor:
        self.vanishing_: dict[str, int] = {}
        self.exploding_: dict[str, int] = {}
        self.streaks_: dict[str, int] = {}
        self._plan: _Plan | None = None
        return self

    def on_train_begin(self, trainer: Any) -> None:
        if not self.patience >= 1:
            raise ValueError(f"GradientMonitor: patience must be >= 1, got {self.patience!r}")
        if not hasattr(self, "streaks_"):
            self.initialize()

    def on_epoch_begin(self, trainer: Any) -> None:
        self._plan = _Plan(trainer.module)  # per epoch: parameters may be frozen or unfrozen between epochs

    def on_batch_end(self, trainer: Any, batch: int, loss: float) -> None:
        if self._plan is not None:
            self._plan.accumulate()

    def on_epoch_end(self, trainer: Any) -> None:
        plan, self._plan = self._plan, None
        if plan is None or plan.n_batches == 0:
            return
        grads, weights = plan.layer_norms()
        for layer in plan.layers:
            trainer.history.record(f"grad_norm/{layer}", grads[layer])
            trainer.history.record(f"weight_norm/{layer}", weights[layer])
        self._check(trainer.epoch, grads, weights, plan.kinds)

    def on_train_end(self, trainer: Any) -> None:
        plan, self._plan = self._plan, None
        if plan is None:  # the last epoch completed
            return
        # an epoch cut short (e.g. by a non-finite loss): its last gradients may tell which layer blew up
        last = plan.current_norms()
        grads = {k: v for k, v in last.items() if not math.isfinite(v)}
        self._check(trainer.epoch, grads, {}, plan.kinds)

    def _check(self, epoch: int, grads: dict[str, float], weights: dict[str, float], kinds: dict[str, str]) -> None:
        exploding, vanishing = [], []
        for layer, g in grads.items():
            if not math.isfinite(g) or g > self.explode_threshold:
                exploding.append(layer)
                self.streaks_[layer] = 0
                continue
            w = weights.get(layer, math.nan)
            small = w > 0 and g < self.vanish_threshold * w
            self.streaks_[layer] = self.streaks_.get(layer, 0) + 1 if small else 0
            if self.streaks_[layer] >= self.patience:
                vanishing.append(layer)
        new_exploding = [layer for layer in exploding if layer not in self.exploding_]
        if new_exploding and not self.exploding_ and self.warn:
            self._warn(
                f"gradients explode in {_names(new_exploding, kinds)} at epoch {epoch} (norm "
                f"{_fmt(grads[new_exploding[0]])} > {self.explode_threshold:g} or not finite): {_EXPLODE_REMEDY}."
            )
        new_vanishing = [layer for layer in vanishing if layer not in self.vanishing_]
        if new_vanishing and not self.vanishing_ and self.warn:
            first = new_vanishing[0]
            self._warn(
                f"gradients vanish in {_names(new_vanishing, kinds)}: their norm stayed below "
                f"{self.vanish_threshold:g} x the weights' norm for {self.patience} epochs (epoch {epoch}, layer "
                f"'{first}': {_fmt(grads[first])} vs weights {_fmt(weights[first])}): {_VANISH_REMEDY}."
            )
        self.exploding_.update(dict.fromkeys(new_exploding, epoch))
        self.vanishing_.update(dict.fromkeys(new_vanishing, epoch))

    @staticmethod
    def _warn(message: str) -> None:
        warnings.warn(f"GradientMonitor: {message}", GradientWarning, stacklevel=5)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state["_plan"] = None  # backend arrays of a running epoch
        return state


def _names(layers: list[str], kinds: dict[str, str]) -> str:
    shown = ", ".join(f"'{layer}' ({kinds[layer]})" for layer in layers[:3])
    more = f" and {len(layers) - 3} more" if len(layers) > 3 else ""
    return f"layer{'s' if len(layers) > 1 else ''} {shown}{more}"


def _fmt(value: float) -> str:
    return f"{value:.3g}"


class _Plan:
    """Where one epoch's gradients live, and their squared norms summed over its batches so far.

    Parameters stored in a current flat buffer are measured with one square and one ``add.reduceat`` per buffer;
    any other parameter (not flattened, or on an array module without ``reduceat``) with one dot product.
    """

    def __init__(self, module: Any) -> None:
        self.xp = xp = module.backend.xp
        self.to_numpy = module.backend.to_numpy
        self.layers: dict[str, list[Any]] = {}
        self.kinds: dict[str, str] = {}
        for name, mod in module.named_modules():
            params = [p for p in mod._parameters.values() if p.requires_grad and p.size]
            if params:
                layer = name or type(mod).__name__
                self.layers[layer], self.kinds[layer] = params, type(mod).__name__
        self.n_batches = 0
        # per flat buffer: (buffer, segment starts on the device, square scratch, accumulator); per parameter: where
        self.buffers: list[tuple[Any, Any, Any, Any]] = []
        self.where: dict[int, tuple[int, int]] = {}  # id(param) -> (buffer index or -1, segment or loose index)
        self.loose: list[Any] = []
        self.loose_acc: list[float] = []
        segmented = hasattr(xp.add, "reduceat")
        for p in (p for params in self.layers.values() for p in params):
            root = p._flat.root if segmented and p._flat is not None else None
            if root is None or not root.is_current():
                self.where[id(p)] = (-1, len(self.loose))
                self.loose.append(p)
                self.loose_acc.append(0.0)
            elif id(p) not in self.where:
                self._add_buffer(root)

    def _add_buffer(self, root: Any) -> None:
        xp = self.xp
        starts, offset = [], 0
        for p in root.params:
            if p.size:  # an empty parameter would break reduceat's segments
                self.where[id(p)] = (len(self.buffers), len(starts))
                starts.append(offset)
            offset += p.size
        index = xp.asarray(np.array(starts, dtype=np.intp))
        square = xp.empty_like(root.grad)  # squares in the gradients' dtype: 3x faster than in float64
        self.buffers.append((root, index, square, xp.zeros(index.shape, dtype=xp.float64)))

    def accumulate(self) -> None:
        """Add the current gradients' squared norms (called after each optimizer step)."""
        xp = self.xp
        with np.errstate(over="ignore", invalid="ignore"):
            for root, starts, square, acc in self.buffers:
                xp.multiply(root.grad, root.grad, out=square)
                acc += xp.add.reduceat(square, starts)
            for i, p in enumerate(self.loose):
                if p.grad is not None:
                    g = p.grad.ravel()
                    self.loose_acc[i] += float(xp.vdot(g, g))
        self.n_batches += 1

    def _per_param(self, sums: list[np.ndarray], loose: list[float], params: list[Any]) -> float:
        total = 0.0
        for p in params:
            i, j = self.where[id(p)]
            total += float(loose[j] if i < 0 else sums[i][j])
        return total

    def layer_norms(self) -> tuple[dict[str, float], dict[str, float]]:
        """Per layer, the root mean square of the gradient norms over the epoch's batches, and the weight norm."""
        n = max(self.n_batches, 1)
        sums = [self.to_numpy(acc) / n for _, _, _, acc in self.buffers]
        loose = [v / n for v in self.loose_acc]
        with np.errstate(over="ignore", invalid="ignore"):
            grads = {layer: math.sqrt(self._per_param(sums, loose, ps)) for layer, ps in self.layers.items()}
            weights = {layer: math.sqrt(sum(_square(self.xp, p.data) for p in ps)) for layer, ps in self.layers.items()}
        return grads, weights

    def current_norms(self) -> dict[str, float]:
        """Per layer, the norm of the gradients the parameters hold now."""
        with np.errstate(over="ignore", invalid="ignore"):
            return {
                layer: math.sqrt(sum(_square(self.xp, p.grad) for p in ps if p.grad is not None))
                for layer, ps in self.layers.items()
            }


def _square(xp: Any, a: Any) -> float:
    a = a.ravel(order="K")
    return float(xp.vdot(a, a).real)
