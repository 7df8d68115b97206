"""Test machinery (host-side, NumPy): finite-difference ``gradcheck`` and the backend suite ``check_backend``."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from ..backend import KERNELS, Backend, NumpyBackend, get_backend
from . import _parity, _parity_conv, _parity_mlp, _parity_recurrent
from ._ctx import TOLERANCES, Ctx
from ._gradcheck import gradcheck
from ._parity import PROTOCOL_METHODS

__all__ = ["PROTOCOL_METHODS", "TOLERANCES", "check_backend", "conformance_cases", "gradcheck"]

_PARITY: dict[str, Callable[[Ctx], None]] = {**_parity.PARITY, **_parity_conv.PARITY, **_parity_recurrent.PARITY}
#: Parity cases of the extensions (``Backend.extensions``) whose meaning minitrain defines.
_EXTENSIONS: dict[str, Callable[[Ctx], None]] = {**_parity_mlp.PARITY}


def _case(body: Callable[[Ctx], None], dtype: str, seed: int, backend: Backend, reference: Backend) -> None:
    body(ctx := Ctx(backend, reference, dtype, seed))
    ctx.finish()


# ---------------------------------------------------------------------------------------- public API
def conformance_cases(dtypes: Sequence[str] = ("float32", "float64")) -> list[tuple[str, Callable[..., None]]]:
    """The cases of ``check_backend``, one ``(name, check)`` pair each, for pytest to parametrize.

    ``check(backend, reference)`` runs one case against the NumPy ``reference`` and raises AssertionError
    listing every failed check. Names: ``protocol``, ``signatures``, ``parity/<kernel>[<dtype>]`` and
    ``extension/<name>[<dtype>]`` (what the extension's users run on the backend: the extension where it
    applies, else their composition of the backend's kernels).

    Parameters
    ----------
    dtypes : sequence of str, default=("float32", "float64")
        Floating dtypes the parity cases run in.

    Examples
    --------
    >>> from minitrain.testing import conformance_cases
    >>> names = [name for name, _ in conformance_cases()]
    >>> "parity/gemm[float32]" in names and "signatures" in names
    True
    """
    dts = [str(np.dtype(d)) for d in dtypes]
    if not set(dts) <= set(TOLERANCES):
        raise ValueError(f"dtypes must be among {', '.join(TOLERANCES)}, got {list(dtypes)}")
    missing = [k for k in KERNELS if k not in _PARITY]
    if missing:
        raise RuntimeError(f"minitrain.testing has no parity check for kernels {missing}")
    cases = [
        ("protocol", partial(_case, _parity.protocol, "float64", 0)),
        ("signatures", partial(_case, _parity.signatures, "", 0)),
    ]
    cases += [
        (f"parity/{k}[{d}]", partial(_case, _PARITY[k], d, zlib.crc32(f"{k}{d}".encode())))
        for k in KERNELS
        for d in dts
    ]
    return cases + [
        (f"extension/{k}[{d}]", partial(_case, body, d, zlib.crc32(f"{k}{d}".encode())))
        for k, body in _EXTENSIONS.items()
        for d in dts
    ]


def check_backend(backend: Any, *, dtypes: Sequence[str] = ("float32", "float64")) -> None:
    """Run the conformance and parity suite on a backend; raise one AssertionError listing all failures.

    Checks the protocol (attributes, ``asarray``/``to_numpy``, ``alloc``, seeded ``generator``), that overrides
    keep the signatures of ``Backend`` and add no public methods, every kernel of ``KERNELS`` against the NumPy
    reference on odd shapes, empty batches and non-contiguous inputs, with every option, and the extensions
    minitrain defines (``Backend.extensions``) against the reference composition.
    A backend whose ``generator`` gives NumPy ``Generator``s must draw dropout masks exactly as the reference.

    Parameters
    ----------
    backend : str or Backend
        The backend to check (an instance, or a registered name).
    dtypes : sequence of str, default=("float32", "float64")
        Floating dtypes the parity cases run in.

    Examples
    --------
    >>> from minitrain.testing import check_backend
    >>> check_backend("numpy", dtypes=("float64",))
    """
    be = get_backend(backend)
    cases, failures = conformance_cases(dtypes), []
    for name, case in cases:
        try:
            case(be, NumpyBackend())
        except Exception as exc:  # collect every failing case
            failures.append(f"[{name}] {exc if isinstance(exc, AssertionError) else f'raised {exc!r}'}")
    if failures:
        summary = f"backend {be.name!r} ({type(be).__name__}) failed {len(failures)} of {len(cases)} conformance cases"
        raise AssertionError(summary + ":\n" + "\n".join(failures))
