"""Shared fixtures: every test that takes ``backend`` runs on each registered backend."""

from __future__ import annotations

import os

import numpy as np
import pytest

import minitrain as mt
from minitrain.backend import get_backend, list_backends

_INFOS = list_backends()


def pytest_configure(config):
    """Stop early, with the reason, when MINITRAIN_BACKEND names a backend that cannot run here."""
    wanted = os.environ.get("MINITRAIN_BACKEND", "").strip().partition(":")[0]
    if wanted and wanted != "auto":
        info = next((i for i in _INFOS if i.name == wanted), None)
        if info is None or not info.available:
            why = "not registered" if info is None else info.reason
            pytest.exit(f"MINITRAIN_BACKEND={wanted!r} cannot be used: {why}", returncode=4)


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
