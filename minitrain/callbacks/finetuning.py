"""Fine-tuning: pick sub-modules by name (``select_parameters``) and let frozen ones train again (``Unfreeze``)."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

from .base import Callback

__all__ = ["Unfreeze", "select_parameters"]


def _names(owner: str, names: Any) -> list[str]:
    """``names`` as a list of str: one str is one name."""
    if isinstance(names, str):
        return [names]
    if isinstance(names, Iterable) and not isinstance(names, dict):
        names = list(names)
        if all(isinstance(n, str) for n in names):
            return names
    raise TypeError(f"{owner} must be a sub-module name or a list of them (str), got {names!r}")


def select_parameters(module: Any, names: Any, owner: str = "modules") -> list[Any]:
    """The parameters of ``module`` that the given sub-module or parameter names select, each once.

    A name selects the sub-module of that dotted name in ``module.named_modules()`` with everything under it, or a
    parameter of ``module.named_parameters()``: a parameter is selected when its name equals a given name or starts
    with it followed by a dot (``"0"`` selects ``"0.weight"`` and ``"0.conv.bias"``, not ``"01.weight"``). ``""``
    names ``module`` itself; one str is one name.

    Parameters
    ----------
    module : Module
    names : str or iterable of str
    owner : str, default='modules'
        What the names are, in error messages (e.g. 'frozen').

    Returns
    -------
    list of Parameter
        In ``module.named_parameters()`` order.

    Raises
    ------
    ValueError
        If a name selects nothing; the message lists the sub-modules there are.

    Examples
    --------
    >>> from minitrain import nn
    >>> net = nn.Sequential(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), nn.Linear(3, 2))
    >>> [p.shape for p in select_parameters(net, ["0", "1.bias"])]
    [(3, 4), (3,), (2,)]
    """
    wanted = _names(owner, names)
    named = list(module.named_parameters())
    picked: dict[int, Any] = {}
    for name in wanted:
        hits = [p for pname, p in named if not name or pname == name or pname.startswith(name + ".")]
        if not hits:
            subs = [m for m, _ in module.named_modules() if m]
            what = "a sub-module without parameters" if name in subs else "no sub-module or parameter"
            raise ValueError(
                f"{owner}: {name!r} names {what} of this {type(module).__name__}; its sub-modules are {subs} (names "
                "as in named_modules(), or parameter names as in named_parameters())"
            )
        picked.update((id(p), p) for p in hits)
    return [p for _, p in named if id(p) in picked]


class Unfreeze(Callback):
    """Let frozen parameters train again from the start of epoch ``at_epoch``.

    Parameters
    ----------
    at_epoch : int
        The 1-based epoch at whose start the parameters are unfrozen, numbered as ``trainer.epoch`` and the
        estimators' ``history_[:, 'epoch']`` are: over the whole history, so the epochs of earlier ``warm_start``
        fits and ``partial_fit`` calls count (a fresh ``fit`` starts again at 1). 1 unfreezes before the first
        step. If training resumes past ``at_epoch`` before this callback acted, it acts at the first epoch that runs.
        It acts once per fit (until ``initialize``).
    modules : str, list of str or None, default=None
        Sub-modules (or parameters) to unfreeze, named as for the estimators' ``frozen`` (see
        :func:`select_parameters`); None unfreezes the whole module.

    Attributes
    ----------
    unfrozen_epoch_ : int or None
        The epoch at whose start this callback unfroze the parameters; None until then.

    Notes
    -----
    The optimizer must already hold the frozen parameters (it leaves them alone while they are frozen): the
    NeuralNet estimators build theirs over the whole module; with a ``Trainer`` of your own, build the optimizer
    over ``module.parameters()``, not ``trainable_parameters()``. Their learning rate is their parameter group's
    (see the estimators' ``optimizer__param_groups``).

    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import data, functional as F, nn, optim, training
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)).to("numpy")
    >>> _ = model[0].freeze()
    >>> crit = lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1))
    >>> unfreeze = Unfreeze(at_epoch=3, modules=["0"])
    >>> trainer = training.Trainer(model, crit, optim.SGD(model, lr=0.1), batch_size=4, callbacks=[unfreeze])
    >>> _ = trainer.fit(data.ArrayDataset(np.ones((8, 2)), np.ones(8), backend="numpy"), epochs=4)
    >>> unfreeze.unfrozen_epoch_, len(model.trainable_parameters())
    (3, 4)
    """

    def __init__(self, at_epoch: int, modules: str | list[str] | tuple[str, ...] | None = None) -> None:
        self.at_epoch = at_epoch
        self.modules = modules

    def initialize(self) -> Unfreeze:
        self.unfrozen_epoch_: int | None = None
        return self

    def _selected(self, trainer: Any) -> list[Any]:
        if self.modules is None:
            return trainer.module.parameters()
        return select_parameters(trainer.module, self.modules, "Unfreeze: modules")

    def on_train_begin(self, trainer: Any) -> None:
        at = self.at_epoch
        if isinstance(at, bool) or not isinstance(at, numbers.Integral) or at < 1:
            raise ValueError(f"Unfreeze: at_epoch must be an integer >= 1 (epochs count from 1), got {at!r}")
        if not hasattr(self, "unfrozen_epoch_"):
            self.initialize()
        groups = getattr(trainer.optimizer, "param_groups", None)
        selected = self._selected(trainer)  # checks the names before the first epoch
        if groups is not None and self.unfrozen_epoch_ is None:
            held, chosen = {id(p) for g in groups for p in g["params"]}, {id(p) for p in selected}
            names = [n for n, p in trainer.module.named_parameters() if id(p) in chosen and id(p) not in held]
            if names:
                raise ValueError(
                    f"Unfreeze: the optimizer does not hold the parameters {names}, so they would not train once "
                    "unfrozen; build it over the whole module (it leaves frozen parameters alone until they unfreeze)"
                )

    def on_epoch_begin(self, trainer: Any) -> None:
        if self.unfrozen_epoch_ is None and trainer.epoch >= self.at_epoch:
            for p in self._selected(trainer):
                p.requires_grad = True
            self.unfrozen_epoch_ = trainer.epoch
