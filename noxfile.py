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
    def run_tests(session: nox.Session) -> None:
        session.install("-e", ".[test]")  # numba is a core dependency: both CPU backends are installed
        session.run("pytest", *session.posargs, env={"MINITRAIN_BACKEND": backend})

    run_tests.__doc__ = f"Run the test suite with {backend} as the default backend (MINITRAIN_BACKEND={backend})."
    return run_tests


for _backend in CPU_BACKENDS:
    nox.session(name=f"tests-{_backend}", tags=["tests"])(_tests_session(_backend))


@nox.session(default=False)
def gpu(session: nox.Session) -> None:
    """Run the test suite on the CuPy backend (needs a CUDA GPU)."""
    session.install("-e", ".[test,cupy]")
    session.run("pytest", *session.posargs, env={"MINITRAIN_BACKEND": "cupy"})


@nox.session(default=False)
def docs(session: nox.Session) -> None:
    """Build the documentation site in strict mode; ``nox -s docs -- serve`` serves it with live reload."""
    session.install("-e", ".[docs]")
    if "serve" in session.posargs:
        session.run("mkdocs", "serve", "--strict")
    else:
        session.run("mkdocs", "build", "--strict", "-d", "site")


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


BENCH_DIR = "asv_benchmarks"


def _asv(session: nox.Session, *args: str) -> None:
    session.run("asv", *args, f"--config={BENCH_DIR}/asv.conf.json", external=True)


@nox.session(default=False, python=False)
def bench(session: nox.Session) -> None:
    """Run the asv suite on the working tree in this environment and publish it (nox -s bench -- -b MLPStep)."""
    commit = session.run("git", "rev-parse", "HEAD", silent=True, external=True).strip()
    _asv(session, "machine", "--yes")
    _asv(session, "run", "--python=same", f"--set-commit-hash={commit}", "--show-stderr", *session.posargs)
    _asv(session, "publish")


@nox.session(default=False, python=False)
def bench_compare(session: nox.Session) -> None:
    """Compare two commits with asv continuous, each built in its own env: nox -s bench_compare -- A B."""
    if len(session.posargs) < 2:
        session.error("usage: nox -s bench_compare -- BASE_COMMIT NEW_COMMIT [asv continuous options]")
    base, new, *rest = session.posargs
    _asv(session, "machine", "--yes")
    _asv(session, "continuous", "--factor=1.1", "--show-stderr", *rest, base, new)


@nox.session(default=False, python=False)
def peers(session: nox.Session) -> None:
    """minitrain against scikit-learn and PyTorch, side by side in one process (nox -s peers -- --digits)."""
    session.run("python", f"{BENCH_DIR}/peers.py", *session.posargs, external=True)
