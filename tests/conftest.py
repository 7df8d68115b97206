"""Shared fixtures: every test that takes ``backend`` runs on each registered backend."""

from __future__ import annotations

import numpy as np
import pytest

import minitrain as mt
from minitrain.backend import get_backend, list_backends

_INFOS = list_backends()


@pytest.fixture(params=[info.name for info in _INFOS])
def backend(request):
    """A backend instance; an unavailable backend skips with its reason."""
    info = next(i for i in _INFOS if i.name == request.param)
    if not info.available:
        pytest.skip(f"backend {info.name!r} unavailable: {info.reason}")
    be = get_backend(info.name)
    with mt.use_backend(be):
        yield be


@pytest.fixture
def reference():
    """The NumPy reference backend."""
    return get_backend("numpy")


@pytest.fixture
def rng():
    """A seeded NumPy generator for test data."""
    return np.random.default_rng(1234)
