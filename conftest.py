"""Doctests whose examples need an optional extra skip, with the reason, where that extra is not installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem

_EXTRAS = {  # module file -> (the modules its examples import, the extra that installs them)
    "minitrain/dask.py": (("dask", "distributed"), "dask"),
    "minitrain/plot.py": (("matplotlib",), "plot"),
    "minitrain/callbacks/trackers.py": (("tensorboardX", "wandb"), "monitor,wandb"),
}
_ROOT = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, DoctestItem):
            continue
        needs = _EXTRAS.get(Path(item.path).resolve().relative_to(_ROOT).as_posix())
        missing = [m for m in needs[0] if importlib.util.find_spec(m) is None] if needs else []
        if missing:
            reason = f'the example needs {", ".join(missing)}: pip install "minitrain[{needs[1]}]"'
            item.add_marker(pytest.mark.skip(reason=reason))
