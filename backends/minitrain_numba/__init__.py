"""Numba backend plugin (work in progress): registered as ``numba``; numba is imported lazily."""

from __future__ import annotations

from minitrain.backend.base import Backend


class NumbaBackend(Backend):
    """JIT-compiled CPU kernels; falls back to the NumPy reference for what it does not override."""

    name = "numba"

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        """Whether numba can be imported, with the reason when not."""
        try:
            import numba  # noqa: F401
        except ImportError as exc:
            return False, f"numba is not installed ({exc}); pip install minitrain[numba]"
        return True, ""
