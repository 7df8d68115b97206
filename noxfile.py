"""Developer sessions: tests per backend, lint with a line budget, examples; gpu and bench are opt-in."""

from __future__ import annotations

import pathlib

import nox

nox.options.sessions = ["tests-numpy", "lint", "examples"]
nox.options.reuse_existing_virtualenvs = True

CPU_BACKENDS = ["numpy", "numba"]
LINE_BUDGET = 500  # lines per source file; only minitrain/backend/base.py may grow past it
BUDGET_EXEMPT = {"minitrain/backend/base.py"}


def _tests_session(backend: str):
    extra = "test" if backend == "numpy" else f"test,{backend}"

    def run_tests(session: nox.Session) -> None:
        session.install("-e", f".[{extra}]")
        session.run("pytest", *session.posargs, env={"MINITRAIN_BACKEND": backend})

    run_tests.__doc__ = f"Run the test suite with MINITRAIN_BACKEND={backend} and the .[{extra}] extras installed."
    return run_tests


for _backend in CPU_BACKENDS:
    nox.session(name=f"tests-{_backend}", tags=["tests"])(_tests_session(_backend))


@nox.session(default=False)
def gpu(session: nox.Session) -> None:
    """Run the test suite on the CuPy backend (needs a CUDA GPU)."""
    session.install("-e", ".[test,cupy]")
    session.run("pytest", *session.posargs, env={"MINITRAIN_BACKEND": "cupy"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint and format) and the per-file line budget."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    over = []
    for path in sorted(pathlib.Path().glob("**/*.py")):
        rel = path.as_posix()
        if rel.startswith((".", "tests/", "build/")) or rel in BUDGET_EXEMPT:
            continue
        n = len(path.read_text().splitlines())
        if n > LINE_BUDGET:
            over.append(f"{rel}: {n} lines")
    if over:
        session.error(f"files over the {LINE_BUDGET}-line budget (split them by responsibility): {over}")


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example script."""
    session.install("-e", ".")
    for script in sorted(pathlib.Path("examples").glob("*.py")):
        session.run("python", str(script))
