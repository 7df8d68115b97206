"""Parity cases of the convolution and pooling kernels: ``PARITY[kernel]`` is a function of one ``Ctx``."""

from __future__ import annotations

from collections.abc import Callable

from ._ctx import Ctx

PARITY: dict[str, Callable[[Ctx], None]] = {}
