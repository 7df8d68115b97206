"""The examples run and reach what they promise."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from minitrain import list_backends

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_reaches_96_percent_test_accuracy(backend, capsys):
    accuracy = _load("quickstart").main(["--backend", backend.name])
    out = capsys.readouterr().out
    assert accuracy >= 0.96, out
    assert "epoch   1  train loss" in out and "val acc" in out
    assert f"backend {backend.name}" in out.splitlines()[-1]


def test_quickstart_rejects_an_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        _load("quickstart").main(["--backend", "nope", "--epochs", "1"])


def test_sklearn_pipeline_searches_every_backend(capsys):
    accuracy = _load("sklearn_pipeline").main(["--quick"])
    out = capsys.readouterr().out
    assert accuracy >= 0.9, out
    assert "best parameters:" in out
    for info in list_backends():
        if info.available:
            assert f"backend {info.name:>6}: mean fit time" in out
