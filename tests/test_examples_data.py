"""The image, sequence, text and tabular examples run with their real settings and reach what they promise."""

from __future__ import annotations

import importlib.util
import pathlib
import re

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _epoch_lines(out: str) -> list[int]:
    """The epoch numbers of the per-epoch progress lines (EpochLogger's, as stdout is not a terminal here)."""
    return [int(m) for m in re.findall(r"^epoch +(\d+)  train_loss [\d.]+\+?  valid_loss", out, re.M)]


def _metric(out: str, label: str) -> float:
    return float(re.search(rf"^{label} (\d\.\d{{4}})", out, re.M).group(1))


def test_digits_cnn_reaches_98_percent_test_accuracy(capsys):
    accuracy = _load("digits_cnn").main([])  # the real settings: 40 epochs, augmentation on
    out = capsys.readouterr().out
    assert accuracy >= 0.98, out
    assert _epoch_lines(out) == list(range(1, 41)), out
    assert "RandomRotation(degrees=5)" in out and "(1, 8, 8)" in out
    assert _metric(out, ".*validation accuracy") >= 0.96, out
    assert _metric(out, "test accuracy") == round(accuracy, 4)


def test_digits_cnn_builds_what_its_flags_say():
    digits = _load("digits_cnn")
    X_train, X_test, y_train, y_test = digits.load_images()
    assert X_train.shape[1:] == (1, 8, 8) and X_train.dtype == np.float32 and len(X_test) == 450
    assert 0.0 <= X_train.min() and X_train.max() <= 1.0
    assert np.allclose(np.bincount(y_test) / len(y_test), np.bincount(y_train) / len(y_train), atol=0.01)
    clf = digits.make_classifier(epochs=3, use_augment=False)
    assert clf.augment is None and clf.max_epochs == 3 and clf.train_split == 0.2
    assert digits.make_classifier().augment is not None


def test_sequence_lstm_classifies_the_waves(capsys):
    accuracy = _load("sequence_lstm").main([])
    out = capsys.readouterr().out
    assert accuracy >= 0.95, out  # measured 0.983
    assert _epoch_lines(out) == list(range(1, 41)), out
    assert _metric(out, "validation accuracy") >= 0.93, out
    assert re.search(r"^test accuracy [\d.]+  \(sine [\d.]+, square [\d.]+, sawtooth [\d.]+\)$", out, re.M), out


def test_the_waves_are_what_their_labels_say():
    seq = _load("sequence_lstm")
    X, y = seq.make_waves(300, n_steps=64, noise=0.0, rng=np.random.default_rng(0))
    assert X.shape == (300, 64, 1) and X.dtype == np.float32 and set(y.tolist()) == {0, 1, 2}
    values = X[:, :, 0]
    square = np.isclose(np.abs(values), np.abs(values[:, :1])).all(axis=1)  # a square wave takes two values
    assert np.array_equal(square, y == 1)
    jumps = np.abs(np.diff(values, axis=1)).max(axis=1) / np.abs(values).max(axis=1)
    assert (jumps[y == 0] < 0.8).all() and (jumps[y == 2] > 1.5).all()  # a sawtooth drops at each period's end


def test_text_attention_tells_keywords_and_their_order(capsys):
    accuracy = _load("text_attention").main([])
    out = capsys.readouterr().out
    assert accuracy >= 0.95, out  # measured 0.993; chance is 0.25
    assert _epoch_lines(out) == list(range(1, 13)), out
    assert _metric(out, ".*validation accuracy") >= 0.93, out
    assert "test accuracy" in out and "(chance 0.25" in out


def test_sentences_hold_the_keywords_their_class_says():
    text = _load("text_attention")
    X, y = text.make_sentences(500, rng=np.random.default_rng(1))
    assert X.shape == (500, 20) and X.dtype == np.int64 and np.bincount(y).min() > 90
    lengths = (X != 0).sum(axis=1)
    assert lengths.min() >= 5 and all((row[n:] == 0).all() for row, n in zip(X, lengths))  # padded at the end
    for row, label in zip(X, y):
        keywords = [t for t in row.tolist() if t in (1, 2)]
        assert keywords == [[1], [2], [1, 2], [2, 1]][label], (row, label)


def test_the_transformer_ignores_the_padding():
    text = _load("text_attention")
    net = text.KeywordTransformer(20, 4, dropout=0.0, backend="numpy")
    net.eval()
    X, _ = text.make_sentences(16, rng=np.random.default_rng(2))
    padded = X[:, -1] == 0
    assert 0 < padded.sum() < len(X)
    before = net(X).numpy()
    net.positions.weight.data[-1] += 10.0  # the last position: padding in some sentences, a token in others
    after = net(X).numpy()
    assert np.allclose(after[padded], before[padded], atol=1e-5)  # masked out of the attention and the mean
    assert not np.allclose(after[~padded], before[~padded], atol=1e-3)


def test_tabular_preprocessing_table_shows_what_the_clipper_buys(capsys):
    scores = _load("tabular_preprocessing").main([])
    out = capsys.readouterr().out
    assert set(scores) == {"corrupted, IQRClipper", "corrupted, no clipper", "clean, IQRClipper"}
    assert scores["corrupted, IQRClipper"] >= 0.9 and scores["clean, IQRClipper"] >= 0.93, out  # 0.930, 0.959
    assert scores["corrupted, IQRClipper"] >= scores["corrupted, no clipper"] + 0.05, out  # 0.930 vs 0.807
    assert "8 candidates x 5 folds" in out and "2 candidates x 5 folds" in out
    rows = re.findall(r"^(corrupted, IQRClipper|corrupted, no clipper|clean, IQRClipper) +(\d\.\d{4}) +(\d\.\d{4})$",
                      out, re.M)  # fmt: skip
    assert len(rows) == 3 and all(float(test) == round(scores[name], 4) for name, _, test in rows), out


def test_corrupt_injects_the_fractions_asked():
    tab = _load("tabular_preprocessing")
    X = np.ones((400, 50))
    dirty = tab.corrupt(X, np.random.default_rng(0), missing=0.1, outliers=0.05)
    assert np.isnan(dirty).mean() == pytest.approx(0.1, abs=0.01) and (X == 1).all()
    kept = dirty[~np.isnan(dirty)]
    assert (kept > 1).mean() == pytest.approx(0.05, abs=0.01)
    assert (kept[kept > 1] >= 20.0).all() and kept.max() <= 50.0
