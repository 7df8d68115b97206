"""Installing minitrain: numba is a core dependency, optional at run time, and its caches stay out of the install."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import pathlib
import re
import shutil
import site
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: Not copied into the build's source tree: version control, environments, build outputs, caches.
SKIP_IN_SOURCE = (".git", ".venv", ".nox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".asv")


def _run(args: list[str], env: dict[str, str], cwd: pathlib.Path) -> str:
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what could point Python, pip, numba or minitrain elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "NUMBA_", "MINITRAIN_", "PIP_"))}
    env.update(PYTHONNOUSERSITE="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def test_numpy_backend_works_when_numba_cannot_be_imported():
    script = textwrap.dedent(
        """
        import json, sys
        sys.modules["numba"] = None  # what a missing or broken numba looks like to an import
        import numpy as np
        import minitrain

        X = np.random.default_rng(0).normal(size=(40, 3))
        y = (X[:, 0] > 0).astype(int)
        clf = minitrain.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, backend="auto").fit(X, y)
        net = minitrain.NeuralNetClassifier(module=minitrain.nn.Linear(3, 2), max_epochs=1).fit(X.astype("float32"), y)
        infos = {b.name: [b.available, b.reason] for b in minitrain.list_backends()}
        numba_loaded = sys.modules.get("numba") is not None
        print(json.dumps({"backends": infos, "mlp": clf.backend_, "net": net.backend_, "numba": numba_loaded}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "MINITRAIN_BACKEND"}
    out = _run([sys.executable, "-W", "ignore", "-c", script], env, ROOT)
    report = json.loads(out.strip().splitlines()[-1])
    available, reason = report["backends"]["numba"]
    assert not available
    assert "numba" in reason
    assert report["backends"]["numpy"] == [True, ""]
    assert report["mlp"] == "numpy"
    assert report["net"] == "numpy"
    assert not report["numba"]


@pytest.fixture
def user_cache(monkeypatch, tmp_path):
    """``NUMBA_CACHE_DIR`` unset and ``XDG_CACHE_HOME`` in ``tmp_path``; returns where our kernels should cache."""
    numba = pytest.importorskip("numba")
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "minitrain" / "numba"


def _norm_kernel():
    from minitrain_numba import _jit, _optim

    return _jit.Kernel(_optim.norm_power_sum.py_func)  # a new dispatcher: its cache is located now


def test_package_kernels_are_cached_in_the_user_cache_directory(user_cache):
    kernel = _norm_kernel()
    assert kernel(3, np.array([1.0, 2.0, 2.0]), 2.0) == 9.0
    cache_dir = pathlib.Path(kernel.serial.stats.cache_path)
    assert cache_dir.parent == user_cache
    assert cache_dir.name.startswith("minitrain_numba_")
    assert {p.suffix for p in cache_dir.iterdir()} == {".nbi", ".nbc"}


def test_numba_cache_dir_comes_before_the_user_cache_directory(user_cache, monkeypatch, tmp_path):
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "numba"))
    assert pathlib.Path(_norm_kernel().serial.stats.cache_path).parent == tmp_path / "numba"


def test_kernels_compile_in_memory_where_the_user_cache_is_not_writable(user_cache, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file" / "cache"))  # cannot be made, even by root
    kernel = _norm_kernel()
    assert kernel(3, np.array([1.0, 2.0, 2.0]), 2.0) == 9.0
    assert kernel.serial.stats.cache_path is None  # numba's NullCache: nothing written anywhere


def test_relative_xdg_cache_home_falls_back_to_the_home_cache(monkeypatch, tmp_path):
    pytest.importorskip("numba")
    from minitrain_numba import _cache

    if sys.platform in ("win32", "darwin"):
        pytest.skip("~/.cache is the default on Linux and other POSIX systems")
    monkeypatch.setenv("HOME", str(tmp_path))
    for value in ("", "relative/cache"):
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert _cache.cache_root() == str(tmp_path / ".cache" / "minitrain" / "numba")


def test_other_functions_keep_numbas_cache_location(user_cache, tmp_path):
    import numba
    from minitrain_numba import _cache

    (tmp_path / "thirdparty.py").write_text("def f(a):\n    return a + 1\n")
    spec = importlib.util.spec_from_file_location("thirdparty", tmp_path / "thirdparty.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert pathlib.Path(_norm_kernel().serial.stats.cache_path).parent == user_cache  # ours in use meanwhile
    for dispatcher in (numba.njit(cache=True)(module.f), _cache.njit(module.f)):
        assert pathlib.Path(dispatcher.stats.cache_path) == tmp_path / "__pycache__"  # numba's in-tree default


def test_numbas_own_cache_is_used_where_its_internals_differ(user_cache, monkeypatch):
    from minitrain_numba import _cache, _optim
    from numba.core.caching import FunctionCache

    monkeypatch.setattr(_cache, "_cache_classes", lambda: None)
    assert type(_cache.njit(_optim.norm_power_sum.py_func)._cache) is FunctionCache


def _build_requirements_missing() -> str | None:
    """Why this environment cannot build the project offline (``--no-build-isolation``), or None if it can."""
    from packaging.requirements import Requirement

    text = (ROOT / "pyproject.toml").read_text()
    requires = re.search(r"\[build-system\]\s*requires\s*=\s*\[(.*?)\]", text, re.S).group(1)
    for spec in re.findall(r'"([^"]+)"', requires):
        req = Requirement(spec)
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            return f"the build requirement {spec!r} is not installed (pip install '.[test]')"
        if not req.specifier.contains(version, prereleases=True):
            return f"the build requirement {spec!r} is not met by {req.name} {version} (pip install '.[test]')"
    return None


def _dependencies_dir(target: pathlib.Path) -> pathlib.Path:
    """A directory of links to this environment's installed packages, minitrain's own install left out."""
    target.mkdir()
    for site_dir in site.getsitepackages():
        if not os.path.isdir(site_dir):
            continue
        for entry in pathlib.Path(site_dir).iterdir():
            name = entry.name.lower()
            if "minitrain" in name or name.endswith((".pth", ".egg-link")) or (target / entry.name).exists():
                continue
            (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return target


def _cache_files(path: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in path.rglob("*") if p.suffix in (".nbi", ".nbc")]


FIT_ON_NUMBA = """
import json, numpy as np, minitrain, minitrain_numba
X = np.random.default_rng(0).normal(size=(40, 3))
y = (X[:, 0] > 0).astype(int)
clf = minitrain.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, backend="numba").fit(X, y)
infos = {b.name: [b.available, b.reason] for b in minitrain.list_backends()}
print(json.dumps({"backend": clf.backend_, "numba": infos["numba"], "file": minitrain_numba.__file__}))
"""


@pytest.mark.slow
def test_regular_then_editable_install_keeps_numba_usable(tmp_path):
    """``pip install .``, a numba fit, then ``pip install -e .`` in the same venv: no JIT cache in site-packages."""
    try:
        import venv
    except ImportError:
        pytest.skip("the venv module is not available")
    missing = _build_requirements_missing()
    if missing:
        pytest.skip(missing)
    if not hasattr(os, "symlink") or os.name == "nt":
        pytest.skip("the dependency links need symlinks (POSIX)")

    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*SKIP_IN_SOURCE))
    deps = _dependencies_dir(tmp_path / "deps")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    cache_home = tmp_path / "cache"
    env = _clean_env(XDG_CACHE_HOME=str(cache_home))
    site_packages = pathlib.Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env, tmp_path).strip()
    )
    (site_packages / "dependencies.pth").write_text(f"{deps}\n")
    probe = "import importlib.util as u; print(u.find_spec('minitrain'), u.find_spec('numba') is not None)"
    assert _run([python, "-c", probe], env, tmp_path).split() == ["None", "True"]  # deps seen, minitrain not
    pip_install = [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-cache-dir"]

    _run([*pip_install, str(src)], env, tmp_path)
    first = json.loads(_run([python, "-W", "ignore", "-c", FIT_ON_NUMBA], env, tmp_path).splitlines()[-1])
    assert first["backend"] == "numba"
    assert pathlib.Path(first["file"]).is_relative_to(site_packages)
    assert (site_packages / "minitrain_cupy" / "kernels.cu").is_file()  # package data: the CUDA source
    assert _cache_files(env_dir) == []
    assert _cache_files(cache_home / "minitrain" / "numba"), "the kernels were not cached in XDG_CACHE_HOME"

    _run([*pip_install, "-e", str(src)], env, tmp_path)
    assert not (site_packages / "minitrain_numba").exists()
    second = json.loads(_run([python, "-W", "ignore", "-c", FIT_ON_NUMBA], env, tmp_path).splitlines()[-1])
    assert second["numba"] == [True, ""]
    assert second["backend"] == "numba"
    assert pathlib.Path(second["file"]).is_relative_to(src)
    assert _cache_files(src) == []


def test_a_first_fit_with_a_cold_cache_runs_on_numba_and_prints_nothing(tmp_path):
    code = textwrap.dedent(
        """
        import json, time, warnings
        from sklearn.datasets import load_digits
        from sklearn.exceptions import ConvergenceWarning
        from minitrain import MLPClassifier
        warnings.simplefilter("ignore", ConvergenceWarning)  # scikit-learn's own, after max_iter epochs
        X, y = load_digits(return_X_y=True)
        start = time.perf_counter()
        clf = MLPClassifier(random_state=0, max_iter=20).fit(X, y)
        with open("result.json", "w") as f:
            json.dump({"backend": clf.backend_, "seconds": time.perf_counter() - start}, f)
        """
    )
    env = _clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONWARNINGS="default")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["backend"] == "numba"  # "auto" picks Numba after a plain install
    assert (done.stdout, done.stderr) == ("", ""), "a cold-cache fit must print nothing (warnings included)"
    assert list((tmp_path / "cache" / "minitrain" / "numba").rglob("*.nbi")), "the kernels were not cached"
