"""The documentation site builds in strict mode (a broken link or reference, or a docstring mkdocstrings cannot
read, fails), and every Python snippet of its pages runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "```python" in p.read_text())


def test_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install '.[docs]')")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed (pip install '.[docs]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1", **_env()},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index.html", "guide/backends/index.html", "api/estimators/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    assert "skorch-style" in (tmp_path / "site" / "api/estimators/index.html").read_text()  # docstrings rendered


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert {p for p in pages if p not in nav} == set()


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT / "docs").as_posix() for p in PAGES])
def test_page_snippets_run(page, tmp_path):
    """Each page's ``python`` blocks run in order, in one fresh interpreter (so registrations do not leak)."""
    code = "\n\n".join(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env()
    )
    assert done.returncode == 0, f"{page.name}:\n{done.stderr[-3000:]}"
