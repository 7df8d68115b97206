"""The ``minitrain`` command line: every command end to end on small CSV files, and its errors."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

import minitrain as mt
from minitrain import io as mt_io
from minitrain.cli import _backends, _bench, main
from minitrain.cli._tables import feature_matrix, read_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAST = ["--backend", "numpy", "--hidden", "16", "--batch-size", "32", "--lr", "0.01"]


def _write_csv(path: pathlib.Path, header: list[str], rows: list[list]) -> pathlib.Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _classification_rows(n: int = 120, seed: int = 0) -> list[list]:
    """x1 (numeric, some missing), x2 (numeric), color (text, some missing), label (text, three classes)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    color = rng.choice(["red", "green", "blue"], n)
    score = x1 + 0.5 * x2 + 1.5 * (color == "red")
    label = np.where(score > 1, "high", np.where(score > -0.3, "mid", "low"))
    rows = []
    for i in range(n):
        c = "" if i % 13 == 0 else "NA" if i % 17 == 0 else color[i]
        rows.append(["" if i % 11 == 0 else f"{x1[i]:.4f}", f"{x2[i]:.4f}", c, label[i]])
    return rows


def _regression_rows(n: int = 120, seed: int = 1) -> list[list]:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    kind = rng.choice(["a", "b"], n)
    y = 3 * x1 - x2 + 2 * (kind == "a") + 0.1 * rng.standard_normal(n)
    rows = [[f"{x1[i]:.4f}", f"{x2[i]:.4f}", kind[i], f"{y[i]:.4f}"] for i in range(n)]
    rows[5][3] = ""  # a row without a target: left out of training and evaluation
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The CSV files of the tests: classification with text and missing values, regression, 16 numeric columns."""
    where = tmp_path_factory.mktemp("cli-data")
    rng = np.random.default_rng(2)
    pixels = rng.standard_normal((60, 16))
    pixel_rows = [[f"{v:.3f}" for v in row] + [int(row[:8].sum() > 0)] for row in pixels]
    return types.SimpleNamespace(
        cls=_write_csv(where / "cls.csv", ["x1", "x2", "color", "label"], _classification_rows()),
        reg=_write_csv(where / "reg.csv", ["x1", "x2", "kind", "y"], _regression_rows()),
        pixels=_write_csv(where / "pixels.csv", [f"p{i}" for i in range(16)] + ["y"], pixel_rows),
        dir=where,
    )


@pytest.fixture(scope="module")
def trained(data):
    """A classifier trained by ``minitrain train``, with the pipeline it held in memory when it saved it."""
    saved = {}

    def capture(obj, path):
        saved["bundle"] = obj
        return save(obj, path)

    save, out = mt_io.save, data.dir / "cls.mt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mt_io, "save", capture)
        assert main(["train", str(data.cls), "--target", "label", "--epochs", "10", "--out", str(out), *FAST]) == 0
    return types.SimpleNamespace(path=out, bundle=saved["bundle"])


def _error(capsys, argv: list[str]) -> str:
    """Run a command that must fail: exit code 1 and one line on stderr, without a traceback."""
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("minitrain: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _read_predictions(path: pathlib.Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


# ------------------------------------------------------------------------------------------------ train
def test_train_prints_a_line_per_epoch_and_final_metrics_and_saves_the_pipeline(data, tmp_path, capsys):
    out = tmp_path / "model.mt"
    assert main(["train", str(data.cls), "--target", "label", "--epochs", "3", "--out", str(out), *FAST]) == 0
    stdout = capsys.readouterr().out
    assert "task: classify (inferred: it holds text" in stdout
    assert "(2 numeric, 1 categorical)" in stdout
    epochs = [line for line in stdout.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 3 and all("valid_loss" in line and "valid_accuracy" in line for line in epochs)
    assert "validation (12 rows): accuracy " in stdout and "f1_macro" in stdout and "log_loss" in stdout
    bundle = mt.load(out)
    assert bundle["kinds"] == {"x1": "numeric", "x2": "numeric", "color": "categorical"}
    prep, est = bundle["pipeline"][0], bundle["pipeline"][-1]
    assert [name for name, _, _ in prep.transformers_[:2]] == ["numeric", "categorical"]
    assert sorted(est.classes_.tolist()) == ["high", "low", "mid"] and est.callbacks_ == []


def test_predictions_of_the_saved_model_equal_the_in_process_models(trained, data, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(["predict", str(trained.path), str(data.cls), "--out", str(out), "--proba"]) == 0
    header, rows = _read_predictions(out)
    pipeline = trained.bundle["pipeline"]  # the very object `train` had fitted, before it was saved
    classes = pipeline[-1].classes_
    assert header == ["label", *(f"proba_{c}" for c in classes)]
    X = feature_matrix(read_table(data.cls), trained.bundle["features"], trained.bundle["kinds"])
    assert [r[0] for r in rows] == pipeline.predict(X).tolist()
    np.testing.assert_array_equal(np.array([r[1:] for r in rows], dtype=float), pipeline.predict_proba(X))
    assert "wrote 120 predictions" in capsys.readouterr().err


def test_predict_writes_csv_to_stdout_and_warns_in_one_line_about_unseen_categories(trained, tmp_path, capsys):
    new = _write_csv(tmp_path / "new.csv", ["color", "x2", "x1"], [["purple", "0.5", "1.0"], ["red", "", "0.1"]])
    assert main(["predict", str(trained.path), str(new)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "label" and len(lines) == 3 and set(lines[1:]) <= {"high", "mid", "low"}
    assert captured.err.strip() == (
        "minitrain: warning: column 'color' has values training never saw ('purple'): they count as none of the "
        "known ones"
    )


def test_regression_train_predict_evaluate(data, tmp_path, capsys):
    model = tmp_path / "reg.mt"
    argv = ["train", str(data.reg), "--target", "y", "--epochs", "5", "--out", str(model), *FAST]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "note: 1 row(s) without a value in 'y' left out" in stdout and "task: regress (inferred" in stdout
    assert "valid_r2" in stdout and "validation (12 rows): r2 " in stdout
    assert main(["evaluate", str(model), str(data.reg), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["rows"] == 119 and scores["task"] == "regress" and set(scores) >= {"r2", "mae", "rmse"}
    assert main(["predict", str(model), str(data.reg)]) == 0
    values = capsys.readouterr().out.splitlines()
    assert values[0] == "y" and len(values) == 121 and all(np.isfinite(float(v)) for v in values[1:])


def test_evaluate_a_classifier(trained, data, capsys):
    assert main(["evaluate", str(trained.path), str(data.cls)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{data.cls} (120 rows, classify 'label'): accuracy ")
    assert "f1_macro" in line and "log_loss" in line


def test_without_validation_the_final_metrics_are_on_the_training_rows(data, tmp_path, capsys):
    argv = ["train", str(data.cls), "--target", "label", "--epochs", "1", "--out", str(tmp_path / "m.mt"), *FAST]
    assert main([*argv, "--validation-fraction", "0"]) == 0
    stdout = capsys.readouterr().out
    assert "120 rows to train on, 0 to validate on" in stdout and "training (120 rows): accuracy " in stdout
    assert "valid_accuracy" not in stdout


def test_semicolon_and_tab_separated_files_are_read(tmp_path):
    (tmp_path / "a.csv").write_text("x;label\n1,5;a\n2;b\n")
    (tmp_path / "b.tsv").write_text("x\tlabel\n1\ta\n")
    assert read_table(tmp_path / "a.csv").columns == {"x": ["1,5", "2"], "label": ["a", "b"]}
    assert read_table(tmp_path / "b.tsv").columns == {"x": ["1"], "label": ["a"]}


def test_task_can_be_forced_and_whole_number_targets_are_classes(data, tmp_path, capsys):
    argv = ["train", str(data.pixels), "--target", "y", "--epochs", "1", "--out", str(tmp_path / "m.mt"), *FAST]
    assert main(argv) == 0
    assert "task: classify (inferred: it holds 2 distinct whole numbers" in capsys.readouterr().out
    assert main([*argv, "--task", "regress"]) == 0
    assert "task: regress\n" in capsys.readouterr().out


@pytest.mark.parametrize("model, hidden", [("cnn", "4,8"), ("lstm", "8")])
def test_cnn_and_lstm_read_numeric_columns_as_an_image_or_a_sequence(model, hidden, data, tmp_path, capsys):
    out = tmp_path / f"{model}.mt"
    argv = ["train", str(data.pixels), "--target", "y", "--model", model, "--epochs", "2", "--out", str(out)]
    assert main([*argv, *FAST, "--hidden", hidden]) == 0
    assert f"model: {model} {hidden.replace(',', '-')} on numpy" in capsys.readouterr().out
    assert main(["predict", str(out), str(data.pixels)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 61


def test_tensorboard_writes_event_files(data, tmp_path, capsys):
    argv = ["train", str(data.reg), "--target", "y", "--epochs", "2", "--out", str(tmp_path / "m.mt"), *FAST]
    if importlib.util.find_spec("tensorboardX") is None:
        assert "tensorboardX" in _error(capsys, [*argv, "--tensorboard", str(tmp_path / "tb")])
        return
    assert main([*argv, "--tensorboard", str(tmp_path / "tb")]) == 0
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tb"))


def test_parquet_files_train_like_csv(data, tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = read_table(data.cls)
    path = tmp_path / "cls.parquet"
    numbers = {n: [float(v) if v else None for v in table.columns[n]] for n in ("x1", "x2")}
    text = {n: [v if v not in ("", "NA") else None for v in table.columns[n]] for n in ("color", "label")}
    pq.write_table(pa.table({**numbers, **text}), path)
    argv = ["train", str(path), "--target", "label", "--epochs", "1", "--out", str(tmp_path / "m.mt"), *FAST]
    assert main(argv) == 0
    assert "(2 numeric, 1 categorical)" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "m.mt"), str(data.cls)]) == 0
    capsys.readouterr()
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    assert "is not a readable Parquet file" in _error(capsys, ["train", str(tmp_path / "bad.parquet"), "--target", "y"])


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    assert "needs pyarrow (Parquet files): pip install pyarrow" in _error(capsys, ["train", str(path), "--target", "y"])


# ------------------------------------------------------------------------------------------------ errors
def test_data_errors_are_one_line_each(data, tmp_path, capsys):
    ragged = _write_csv(tmp_path / "ragged.csv", ["a", "b"], [["1", "2", "3"]])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)))
    twice = _write_csv(tmp_path / "twice.csv", ["a", "b", "a"], [["1", "2", "3"]])
    cases = {
        "missing.csv: No such file or directory": ["train", str(tmp_path / "missing.csv"), "--target", "y"],
        "'nope' is not in": ["train", str(data.cls), "--target", "nope"],
        "holds text ('mid'), but regression needs numbers": ["train", str(data.cls), "--target", "label", "--task",
                                                             "regress"],
        "unknown backend 'nosuch'": ["train", str(data.cls), "--target", "label", "--backend", "nosuch"],
        "line 2: 3 values, but the header names 2 columns": ["train", str(ragged), "--target", "a"],
        "is empty": ["train", str(empty), "--target", "a"],
        "is not a text file": ["train", str(binary), "--target", "a"],
        "the header names 'a' more than once": ["train", str(twice), "--target", "b"],
        "--model cnn takes numeric columns only": ["train", str(data.cls), "--target", "label", "--model", "cnn"],
        "not a square number": ["train", str(data.reg), "--target", "kind", "--model", "cnn"],
    }  # fmt: skip
    for fragment, argv in cases.items():
        assert fragment in _error(capsys, argv), argv


def test_model_file_errors_are_one_line_each(trained, data, tmp_path, capsys):
    truncated = tmp_path / "truncated.mt"
    truncated.write_bytes(trained.path.read_bytes()[:500])
    other = tmp_path / "linear.safetensors"
    mt.save(mt.nn.Linear(2, 1), other)
    lacking = _write_csv(tmp_path / "lacking.csv", ["x1", "label"], [["1", "low"]])
    texty = _write_csv(tmp_path / "texty.csv", ["x1", "x2", "color"], [["one", "2", "red"]])
    cases = {
        "is not a model file": ["predict", str(data.cls), str(data.cls)],
        "truncated": ["predict", str(truncated), str(data.cls)],
        "holds a Linear saved with minitrain.save, not a model written by `minitrain train`": [
            "predict", str(other), str(data.cls)],
        "lacks the column(s) 'x2', 'color'": ["predict", str(trained.path), str(lacking)],
        "holds 'one' (row 1), but it holds numbers": ["predict", str(trained.path), str(texty)],
        "model.mt: No such file or directory": ["evaluate", str(tmp_path / "model.mt"), str(data.cls)],
    }  # fmt: skip
    for fragment, argv in cases.items():
        assert fragment in _error(capsys, argv), argv


def test_proba_needs_a_classifier(data, tmp_path, capsys):
    model = tmp_path / "reg.mt"
    assert main(["train", str(data.reg), "--target", "y", "--epochs", "1", "--out", str(model), *FAST]) == 0
    capsys.readouterr()
    assert "--proba needs a classifier" in _error(capsys, ["predict", str(model), str(data.reg), "--proba"])


def test_debug_shows_the_traceback_before_or_after_the_command(tmp_path, capsys):
    missing = str(tmp_path / "missing.csv")
    for argv in (["--debug", "train", missing, "--target", "y"], ["train", missing, "--target", "y", "--debug"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "Traceback" in err and err.rstrip().endswith("missing.csv: No such file or directory")


def test_usage_errors_exit_with_2_and_version_prints(capsys):
    assert main(["train", "data.csv"]) == 2  # --target is required
    assert "--target" in capsys.readouterr().err
    assert main(["train", "data.csv", "--target", "y", "--hidden", "0,4"]) == 2
    assert main([]) == 2
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"minitrain {mt.__version__}"


# ------------------------------------------------------------------------------------------------ backends, bench
def test_backends_lists_every_backend_versions_blas_and_the_jit_cache(capsys):
    assert main(["backends"]) == 0
    text = capsys.readouterr().out
    for info in mt.list_backends():
        assert f"  {info.name} " in text
    assert "numpy " in text and "scikit-learn " in text and "CUDA:" in text and "BLAS" in text
    assert main(["backends", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in report["backends"]] == [i.name for i in mt.list_backends()]
    assert report["packages"]["numpy"] == np.__version__ and report["cpu"]["cores"] == os.cpu_count()
    if "error" not in report["numba"]:
        assert report["numba"]["threads"] >= 1 and "cache_size" in report["numba"]


def test_backends_shows_where_the_numba_backend_caches_its_kernels(monkeypatch, capsys):
    """Through the backend's ``jit_cache_dir`` extension: the CLI names no plugin module."""
    if not dict((i.name, i.available) for i in mt.list_backends()).get("numba"):
        pytest.skip("the numba backend cannot run here")
    from minitrain_numba import _cache

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert main(["backends", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["numba"]["cache_dir"] == _cache.cache_root() is not None
    assert "minitrain_numba" not in (ROOT / "minitrain" / "cli" / "_backends.py").read_text()


def test_backends_reports_cuda_devices_through_cupy(monkeypatch):
    runtime = types.SimpleNamespace(
        runtimeGetVersion=lambda: 12040, driverGetVersion=lambda: 12060, getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"NVIDIA H100", "totalGlobalMem": 80 * 2**30, "major": 9, "minor": 0},
        memGetInfo=lambda: (79 * 2**30, 80 * 2**30),
    )  # fmt: skip

    class Device:
        def __init__(self, i):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    fake = types.SimpleNamespace(__version__="13.6.0", cuda=types.SimpleNamespace(runtime=runtime, Device=Device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    info = _backends.cuda()
    assert info["runtime"] == "12.4" and info["driver"] == "12.6" and info["cupy"] == "13.6.0"
    assert info["devices"] == [
        {"index": 0, "name": "NVIDIA H100", "memory_total": 80 * 2**30, "compute_capability": "9.0",
         "memory_free": 79 * 2**30}
    ]  # fmt: skip
    assert "cuda:0 NVIDIA H100 (compute 9.0), 80.0 GiB memory, 79.0 GiB free" in _backends._gpu_text(info["devices"][0])


def test_bench_runs_peers_py_of_the_checkout(capfd):
    if _bench.peers_script() is None:
        pytest.skip("not a source checkout")
    assert main(["bench", "--help"]) == 0
    assert "--workloads" in capfd.readouterr().out


def test_bench_outside_a_checkout_says_so(monkeypatch, capsys):
    monkeypatch.setattr(_bench, "peers_script", lambda: None)
    assert "bench needs a source checkout" in _error(capsys, ["bench", "--workloads", "cnn"])


# ------------------------------------------------------------------------------------------------ python -m
def test_python_dash_m_minitrain(trained, data):
    run = [sys.executable, "-m", "minitrain"]
    done = subprocess.run([*run, "evaluate", str(trained.path), str(data.cls), "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 120
    done = subprocess.run([*run, "predict", str(data.cls), str(data.cls)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "is not a model file" in done.stderr
