"""Images, sequences and token ids through the NeuralNet estimators; the ready-made builders; Unflatten / Reshape."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

import minitrain as mt
from minitrain import nn
from minitrain.data import ArrayDataset
from minitrain.estimators import NeuralNetClassifier, NeuralNetRegressor
from minitrain.models import RecurrentNet, SmallCNN

_X, _Y = load_digits(return_X_y=True)
FLAT = (_X[:240] / 16.0).astype(np.float32)
IMAGES = FLAT.reshape(-1, 1, 8, 8)
LABELS = _Y[:240]
SEQ = np.random.default_rng(0).normal(size=(120, 7, 3)).astype(np.float32)
SEQ_Y = SEQ[:, :, 0].sum(axis=1)
CNN = dict(module=SmallCNN, module__channels=(4,), max_epochs=2, batch_size=64, random_state=0)


# ------------------------------------------------------------------ images
def test_images_train_and_predict_with_their_shape_recorded(backend):
    clf = NeuralNetClassifier(backend=backend.name, **{**CNN, "max_epochs": 8, "lr": 0.05}).fit(IMAGES, LABELS)
    assert clf.input_shape_ == (1, 8, 8) and clf.n_features_in_ == 64
    assert clf.predict(IMAGES[:5]).shape == (5,) and clf.predict_proba(IMAGES).shape == (240, 10)
    assert clf.score(IMAGES, LABELS) > 0.8


@pytest.mark.parametrize("method", ["predict", "partial_fit"])
def test_samples_of_another_shape_are_refused_naming_the_expected_one(method):
    clf = NeuralNetClassifier(backend="numpy", **CNN).fit(IMAGES, LABELS)
    for wrong in (FLAT, IMAGES.reshape(-1, 1, 4, 16)):
        with pytest.raises(ValueError, match=r"fitted on samples of shape \(1, 8, 8\).*\(n_samples, 1, 8, 8\)"):
            getattr(clf, method)(*((wrong,) if method == "predict" else (wrong, LABELS)))
    flat = NeuralNetClassifier(backend="numpy", **CNN).fit(FLAT, LABELS)
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(64,\)"):
        flat.predict(IMAGES)


def test_nd_input_is_checked_like_tabular_input():
    est = NeuralNetClassifier(backend="numpy", **CNN)
    bad = IMAGES.copy()
    bad[3, 0, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(bad, LABELS)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(IMAGES, LABELS[:-1])
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(IMAGES[:0], LABELS[:0])
    assert not hasattr(est, "module_")


def test_flat_input_through_unflatten_trains_exactly_as_shaped_input():
    body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(192, 10))
    flat_net = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), *copy.deepcopy(list(body)))
    kw = dict(max_epochs=2, batch_size=64, random_state=0, backend="numpy")
    shaped = NeuralNetClassifier(module=body, **kw).fit(IMAGES, LABELS)
    flat = NeuralNetClassifier(module=flat_net, **kw).fit(FLAT, LABELS)
    assert flat.input_shape_ == (64,) and flat.n_features_in_ == shaped.n_features_in_ == 64
    assert np.array_equal(flat.predict_proba(FLAT), shaped.predict_proba(IMAGES))


def test_the_default_network_flattens_nd_samples():
    clf = NeuralNetClassifier(module__hidden=(16,), max_epochs=8, lr=0.05, random_state=0, backend="numpy")
    clf.fit(IMAGES, LABELS)
    assert isinstance(clf.module_[0], nn.Flatten) and clf.module_[1].in_features == 64
    assert clf.score(IMAGES, LABELS) > 0.8
    flat = NeuralNetClassifier(module__hidden=(16,), max_epochs=1, backend="numpy").fit(FLAT, LABELS)
    assert isinstance(flat.module_[0], nn.Linear)


def test_nd_estimators_pickle_and_save(tmp_path):
    clf = NeuralNetClassifier(backend="numpy", **CNN).fit(IMAGES, LABELS)
    path = tmp_path / "cnn.safetensors"
    mt.save(clf, path)
    for twin in (pickle.loads(pickle.dumps(clf)), mt.load(path)):
        assert twin.input_shape_ == (1, 8, 8)
        assert np.array_equal(twin.predict_proba(IMAGES), clf.predict_proba(IMAGES))


def test_grid_search_tunes_the_cnn_builder_on_images():
    grid = {"module__kernel_size": [1, 3], "module__batch_norm": [True, False]}
    search = GridSearchCV(NeuralNetClassifier(backend="numpy", **CNN), grid, cv=2).fit(IMAGES, LABELS)
    assert len(search.cv_results_["params"]) == 4
    best = search.best_estimator_.module_
    conv = next(m for m in best.modules() if isinstance(m, nn.Conv2d))
    assert conv.kernel_size == (search.best_params_["module__kernel_size"],) * 2


# ------------------------------------------------------------------ sequences and token ids
def test_sequences_train_a_recurrent_regressor_and_survive_partial_fit():
    reg = NeuralNetRegressor(
        module=RecurrentNet, module__hidden_size=8, module__kind="gru", max_epochs=3, random_state=0, backend="numpy"
    ).fit(SEQ, SEQ_Y)
    assert reg.input_shape_ == (7, 3) and reg.n_features_in_ == 21 and reg.predict(SEQ).shape == (120,)
    reg.partial_fit(SEQ[:40], SEQ_Y[:40], X_val=SEQ[40:60], y_val=SEQ_Y[40:60])
    assert reg.n_epochs_ == 4


def test_token_ids_stay_integers_for_an_embedding():
    tokens = (FLAT * 4).astype(np.int64)
    clf = NeuralNetClassifier(
        module=RecurrentNet, module__num_embeddings=5, module__embedding_dim=4, module__hidden_size=8,
        max_epochs=2, random_state=0, backend="numpy",
    ).fit(tokens, LABELS)  # fmt: skip
    assert clf._x_dtype == np.int64 and clf.predict(tokens).shape == (240,)
    with pytest.raises(ValueError, match="token ids"):
        clf.predict(tokens.astype(np.float64))


def test_integer_features_without_an_embedding_are_cast_to_floats():
    ints = (FLAT * 16).astype(np.int64)
    kw = dict(module__hidden=(8,), max_epochs=2, random_state=0, backend="numpy")
    a = NeuralNetClassifier(**kw).fit(ints, LABELS)
    b = NeuralNetClassifier(**kw).fit(ints.astype(np.float64), LABELS)
    assert not a._tokens and np.array_equal(a.predict_proba(ints), b.predict_proba(ints.astype(np.float64)))


def test_array_dataset_carries_nd_and_integer_samples(backend):
    data = ArrayDataset(IMAGES[:10], LABELS[:10], backend=backend)
    xb, yb, _ = data.take(backend.asarray(np.array([3, 1])))
    assert xb.shape == (2, 1, 8, 8) and np.array_equal(backend.to_numpy(xb), IMAGES[[3, 1]])
    assert backend.to_numpy(yb).tolist() == LABELS[[3, 1]].tolist()
    tokens = ArrayDataset(np.arange(20).reshape(5, 4), backend=backend, x_dtype=np.int64)
    assert tokens.X.dtype == np.int64 and backend.to_numpy(tokens.take(slice(1, 3))[0]).tolist()[0] == [4, 5, 6, 7]


# ------------------------------------------------------------------ builders and layers
def test_build_module_passes_the_sample_shape_to_builders_that_take_it():
    seen = {}

    def builder(n_features, n_outputs, input_shape, hidden=4):
        seen.update(n_features=n_features, n_outputs=n_outputs, input_shape=input_shape)
        return nn.Sequential(nn.Flatten(), nn.Linear(n_features, n_outputs))

    NeuralNetRegressor(module=builder, max_epochs=1, backend="numpy").fit(SEQ, SEQ_Y)
    assert seen == {"n_features": 21, "n_outputs": 1, "input_shape": (7, 3)}


def test_small_cnn_builds_what_its_parameters_say():
    net = SmallCNN(64, 3, channels=(4, 6), kernel_size=5, dropout=0.25, batch_norm=False, backend="numpy")
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Reshape", "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Dropout",
                     "Linear"]  # fmt: skip
    assert [m.out_channels for m in net if isinstance(m, nn.Conv2d)] == [4, 6] and net[1].kernel_size == (5, 5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in SmallCNN(12, 2, input_shape=(3, 2, 2), backend="numpy"))
    with pytest.raises(ValueError, match="module__input_shape"):
        SmallCNN(10, 2)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_net_builds_what_its_parameters_say(kind, bidirectional):
    net = RecurrentNet(21, 2, input_shape=(7, 3), kind=kind, hidden_size=5, num_layers=2, bidirectional=bidirectional,
                       backend="numpy")  # fmt: skip
    rnn = net[1]
    assert type(rnn).__name__ == kind.upper() and rnn.num_layers == 2 and rnn.hidden_size == 5
    assert net[-1].in_features == (10 if bidirectional else 5) and net(SEQ[:4]).shape == (4, 2)
    with pytest.raises(ValueError, match="'lstm' or 'gru'"):
        RecurrentNet(21, 2, kind="rnn")


def test_unflatten_and_reshape_shape_samples_and_pass_gradients_back(backend):
    x = mt.Tensor(np.arange(24.0).reshape(2, 12), requires_grad=True, backend=backend)
    out = nn.Unflatten(1, (3, -1), backend=backend)(x)
    assert out.shape == (2, 3, 4)
    (nn.Reshape(2, 6, backend=backend)(out) * 2.0).sum().backward()
    assert x.grad.shape == (2, 12) and np.allclose(backend.to_numpy(x.grad), 2.0)
    with pytest.raises(ValueError, match="positive sizes"):
        nn.Reshape(0, 3)
