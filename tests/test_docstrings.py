"""Every public class and function of minitrain has a docstring with a runnable example (a doctest).

The examples themselves run as doctests of the ``minitrain`` package (``--doctest-modules`` over the
``minitrain`` test path, see pyproject.toml); these tests check that every public object has one, and that
the test configuration still collects them.
"""

from __future__ import annotations

import importlib
import inspect

MODULES = [
    "minitrain", "minitrain.nn", "minitrain.functional", "minitrain.losses", "minitrain.optim", "minitrain.schedules",
    "minitrain.callbacks", "minitrain.data", "minitrain.training", "minitrain.io", "minitrain.random", "minitrain.plot",
    "minitrain.preprocessing", "minitrain.augment", "minitrain.models", "minitrain.init", "minitrain.backend",
    "minitrain.testing", "minitrain.autograd",
]  # fmt: skip

# Objects allowed to lack an example, by "module.qualname". Only objects defined in files whose maintainers
# own their docstrings (the conv and recurrent kernels and layers: minitrain/functional/conv_ops.py,
# minitrain/functional/recurrent_ops.py, minitrain/nn/conv.py, minitrain/nn/recurrent.py) may be listed here,
# each with a comment saying why. Empty: every public object has an example today.
EXEMPT: frozenset[str] = frozenset()


def _public_objects() -> dict[int, tuple[str, object]]:
    """Every public class and function defined in minitrain, each once (re-exports count once)."""
    found: dict[int, tuple[str, object]] = {}
    for name in MODULES:
        module = importlib.import_module(name)
        names = getattr(module, "__all__", None)
        if names is None:
            names = [n for n in dir(module) if not n.startswith("_")]
        for attr in names:
            obj = getattr(module, attr, None)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("minitrain"):
                continue
            found.setdefault(id(obj), (f"{obj.__module__}.{obj.__qualname__}", obj))
    return found


def test_public_objects_are_found():
    names = {name for name, _ in _public_objects().values()}
    assert len(names) > 100
    for expected in ("minitrain.nn.module.Module", "minitrain.functional.layer_ops.relu", "minitrain.io.load"):
        assert expected in names


def test_every_public_class_and_function_has_an_example():
    missing = sorted(name for name, obj in _public_objects().values() if ">>>" not in (inspect.getdoc(obj) or ""))
    offenders = [name for name in missing if name not in EXEMPT]
    assert not offenders, (
        f"{len(offenders)} public objects have no example (an 'Examples' section with a doctest) in their "
        f"docstring:\n  " + "\n  ".join(offenders)
    )


def test_exemptions_are_still_needed():
    names = {name: obj for name, obj in _public_objects().values()}
    stale = sorted(n for n in EXEMPT if n not in names or ">>>" in (inspect.getdoc(names[n]) or ""))
    assert not stale, f"remove these from EXEMPT (they have an example now, or are gone): {stale}"


def test_the_examples_run_in_the_test_suite(pytestconfig):
    """The doctests run in the plain ``pytest`` command: doctest collection is on and covers the package."""
    assert "--doctest-modules" in pytestconfig.getini("addopts")
    assert "minitrain" in pytestconfig.getini("testpaths")
