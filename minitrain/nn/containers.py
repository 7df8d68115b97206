"""Containers: ``Sequential`` (fusing Linear + activation pairs), ``Residual``, ``Identity``, ``Flatten``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from .. import functional as F
from ..autograd import Tensor
from .activation import Activation
from .conv import fused_conv
from .linear import Linear
from .module import Module


class Sequential(Module):
    """Modules applied in order.

    A ``Linear`` without activation followed by an activation module runs as one fused node,
    so ``Sequential(Linear(4, 8), ReLU())`` costs what ``Linear(4, 8, activation='relu')`` does; so does a
    ``Conv2d`` followed by an activation and, optionally, a ``MaxPool2d`` whose windows do not overlap.

    Examples
    --------
    >>> import minitrain as mt
    >>> net = mt.nn.Sequential(mt.nn.Linear(4, 8), mt.nn.ReLU(), mt.nn.Linear(8, 2))
    >>> net(mt.tensor([[0.0, 1.0, 2.0, 3.0]])).shape
    (1, 2)
    """

    def __init__(self, *modules: Module | OrderedDict, backend: Any = None) -> None:
        super().__init__(backend)
        object.__setattr__(self, "_plan", None)
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for name, m in modules[0].items():
                setattr(self, name, m)
        else:
            for i, m in enumerate(modules):
                setattr(self, str(i), m)

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Module):
            object.__setattr__(self, "_plan", None)
        super().__setattr__(name, value)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_plan": None}  # the fused plan holds closures; rebuilt on first call

    def append(self, module: Module) -> Sequential:
        """Add a module at the end; returns self."""
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module:
        mods = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*mods[index], backend=self._backend)
        return mods[index]

    def _build_plan(self) -> list[Callable[[Any], Any]]:
        mods = list(self._modules.values())
        plan: list[Callable[[Any], Any]] = []
        i = 0
        while i < len(mods):
            m = mods[i]
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            conv = fused_conv(mods, i)
            if conv is not None:
                plan.append(conv[0])
                i += conv[1]
            elif (
                type(m) is Linear
                and m.activation == "identity"
                and isinstance(nxt, Activation)
                and type(nxt).forward is Activation.forward
            ):
                plan.append(_fused(m, nxt))
                i += 2
            else:
                plan.append(m)
                i += 1
        return plan

    def forward(self, x: Any) -> Any:
        """Apply every module in order."""
        plan = self._plan
        if plan is None:
            plan = self._build_plan()
            object.__setattr__(self, "_plan", plan)
        for step in plan:
            x = step(x)
        return x


def _fused(lin: Linear, act: Activation) -> Callable[[Any], Tensor]:
    def step(x: Any) -> Tensor:
        if not isinstance(x, Tensor):
            x = Tensor(x, backend=lin.backend, dtype=lin.weight.dtype)
        elif x.dtype != lin.weight.dtype:
            x = F.astype(x, lin.weight.dtype)
        return F.linear(x, lin.weight, lin.bias, act.act_name, act.act_alpha)

    return step


class Identity(Module):
    """Returns its input unchanged.

    A placeholder where a layer is optional (e.g. the default shortcut of :class:`Residual`).

    Parameters
    ----------
    backend : str or Backend, optional

    Examples
    --------
    >>> import minitrain as mt
    >>> x = mt.tensor([1.0, 2.0])
    >>> mt.nn.Identity()(x) is x
    True
    """

    def forward(self, x: Any) -> Any:
        """Return ``x``."""
        return x


class Flatten(Module):
    """Merge axes ``start_dim..end_dim`` (by default all but the batch axis).

    Parameters
    ----------
    start_dim : int, default=1
    end_dim : int, default=-1
        Both included; negative values count from the end.
    backend : str or Backend, optional

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> x = mt.tensor(np.zeros((2, 3, 4, 5), dtype=np.float32))
    >>> mt.nn.Flatten()(x).shape, mt.nn.Flatten(start_dim=2)(x).shape
    ((2, 60), (2, 3, 20))
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1, backend: Any = None) -> None:
        super().__init__(backend)
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Any) -> Tensor:
        """Flatten ``x``."""
        return F.flatten(self._tensor(x), self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Residual(Module):
    """Skip connection: ``module(x) + shortcut(x)`` (the shortcut is the identity by default).

    Parameters
    ----------
    module : Module
        The residual branch; its output shape must match the shortcut's.
    shortcut : Module, optional
        A projection (e.g. ``Linear``) when the shapes differ.
    backend : str or Backend, optional
        By default ``module``'s.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> mt.nn.Residual(mt.nn.ReLU())(mt.tensor([-1.0, 2.0])).numpy().tolist()  # relu(x) + x
    [-1.0, 4.0]
    >>> block = mt.nn.Residual(mt.nn.Linear(4, 8, activation="relu"), shortcut=mt.nn.Linear(4, 8))
    >>> block(np.ones((2, 4), dtype=np.float32)).shape
    (2, 8)
    """

    def __init__(self, module: Module, shortcut: Module | None = None, backend: Any = None) -> None:
        super().__init__(backend if backend is not None else module.backend)
        self.module = module
        self.shortcut = shortcut if shortcut is not None else Identity(backend=self._backend)

    def forward(self, x: Any) -> Tensor:
        """Return ``module(x) + shortcut(x)``."""
        if not isinstance(x, Tensor):
            x = Tensor(x, backend=self._backend)
        out = self.module(x)
        skip = self.shortcut(x)
        if out.shape != skip.shape:
            raise ValueError(
                f"Residual: branch output {out.shape} does not match shortcut {skip.shape}; pass a shortcut projection"
            )
        return out + skip
