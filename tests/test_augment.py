"""Augmentation: batched transforms on the backend, seeded per model, applied to training batches only."""

from __future__ import annotations

import inspect
import os
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

import minitrain as mt
from minitrain import augment as A
from minitrain import functional as F
from minitrain import nn, optim
from minitrain.callbacks import Callback, Checkpoint
from minitrain.data import ArrayDataset
from minitrain.estimators import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor
from minitrain.estimators._mlp_step import MLPStep
from minitrain.training import Trainer

IMAGES = np.random.default_rng(0).normal(size=(6, 2, 5, 7)).astype(np.float32)
SEQUENCES = np.random.default_rng(1).normal(size=(6, 9, 3)).astype(np.float32)
TRANSFORMS = [
    (A.RandomHorizontalFlip(), IMAGES),
    (A.RandomVerticalFlip(), IMAGES),
    (A.RandomCrop(4, padding=2), IMAGES),
    (A.RandomRotation(15), IMAGES),
    (A.RandomTranslation((0.3, 0.3)), IMAGES),
    (A.RandomAffine(degrees=10, translate=(0.2, 0.1), fill=0.5), IMAGES),
    (A.RandomErasing(p=0.7), IMAGES),
    (A.Cutout(size=3), IMAGES),
    (A.GaussianNoise(0.2), SEQUENCES),
    (A.RandomMasking(0.3), SEQUENCES),
    (A.TimeShift(3), SEQUENCES),
    (A.TimeShift(0.3, wrap=False), SEQUENCES),
    (A.TimeMask(4), SEQUENCES),
    (A.Mixup(0.5), SEQUENCES),
]
IDS = [type(t).__name__ for t, _ in TRANSFORMS]


def run(t, x, seed=0, y=None):
    return t(x, y, np.random.default_rng(seed))


# ------------------------------------------------------------------ every transform
@pytest.mark.parametrize(("transform", "x"), TRANSFORMS, ids=IDS)
def test_same_seed_same_batch_and_input_left_alone(transform, x):
    before = x.copy()
    a, b, c = run(transform, x, 0)[0], run(transform, x, 0)[0], run(transform, x, 1)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(x, before) and a.dtype == x.dtype


@pytest.mark.parametrize(("transform", "x"), TRANSFORMS, ids=IDS)
def test_identical_on_every_backend_with_its_generator(backend, transform, x):
    expected = run(transform, x, 7)[0]
    out, _ = transform(backend.asarray(x), None, backend.generator(7))
    assert np.array_equal(backend.to_numpy(out), expected)


@pytest.mark.parametrize(("transform", "x"), TRANSFORMS, ids=IDS)
def test_transforms_are_sklearn_parameters(transform, x):
    twin = clone(transform)
    assert twin is not transform and twin.get_params() == transform.get_params()
    assert np.array_equal(run(twin, x)[0], run(transform, x)[0])


# ------------------------------------------------------------------ images
def test_flips_mirror_some_samples_and_keep_the_others():
    out = run(A.RandomHorizontalFlip(p=0.5), IMAGES, 3)[0]
    flipped = [np.array_equal(o, x[..., ::-1]) for o, x in zip(out, IMAGES)]
    kept = [np.array_equal(o, x) for o, x in zip(out, IMAGES)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    assert np.array_equal(run(A.RandomVerticalFlip(p=1.0), IMAGES)[0], IMAGES[:, :, ::-1])


def test_random_crop_cuts_a_window_of_the_zero_padded_image():
    out = run(A.RandomCrop((4, 5), padding=2), IMAGES)[0]
    padded = np.pad(IMAGES, ((0, 0), (0, 0), (2, 2), (2, 2)))
    assert out.shape == (6, 2, 4, 5)
    for o, p in zip(out, padded):
        windows = [p[:, i : i + 4, j : j + 5] for i in range(6) for j in range(7)]
        assert any(np.array_equal(o, w) for w in windows)


def test_rotation_by_90_degrees_is_rot90_counter_clockwise():
    square = IMAGES[:, :, :5, :5]
    out = run(A.RandomRotation(degrees=(90, 90)), square)[0]
    np.testing.assert_allclose(out, np.rot90(square, axes=(2, 3)), atol=1e-5)


def test_rotation_samples_bilinearly_and_fills_outside():
    x = np.ones((3, 1, 9, 9), np.float32)
    out = run(A.RandomRotation(degrees=(45, 45), fill=-1.0), x)[0]
    assert np.allclose(out[:, :, 4, 4], 1.0) and np.allclose(out[:, :, 0, 0], -1.0)
    assert np.array_equal(run(A.RandomRotation(0), IMAGES)[0], IMAGES)


def test_translation_moves_each_image_by_whole_pixels():
    out = run(A.RandomTranslation((0.3, 0.3)), IMAGES, 5)[0]
    padded = np.pad(IMAGES, ((0, 0), (0, 0), (5, 5), (7, 7)))
    for o, p in zip(out, padded):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-3, 4)]
        assert any(np.array_equal(o, p[:, 5 - dy : 10 - dy, 7 - dx : 14 - dx]) for dy, dx in shifts)


def test_random_erasing_sets_one_rectangle_within_the_scale():
    x = np.ones((50, 1, 10, 10), np.float32)
    out = run(A.RandomErasing(p=1.0, scale=(0.1, 0.2), ratio=(0.5, 2.0)), x)[0]
    for img in out[:, 0]:
        rows, cols = np.nonzero(img == 0)
        box = img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert (box == 0).all() and 4 <= box.size <= 30
    assert np.array_equal(run(A.RandomErasing(p=0.0), IMAGES)[0], IMAGES)


def test_cutout_blanks_at_most_a_size_by_size_square():
    out = run(A.Cutout(size=4), np.ones((40, 2, 8, 8), np.float32))[0]
    blank = (out == 0).sum(axis=(2, 3))
    assert (blank <= 16).all() and (blank > 0).all() and (blank[:, 0] == blank[:, 1]).all()


def test_image_transforms_refuse_other_layouts():
    with pytest.raises(ValueError, match="channels, height, width"):
        run(A.RandomCrop(2), SEQUENCES)
    with pytest.raises(TypeError, match="floating"):
        run(A.RandomRotation(5), IMAGES.astype(np.int64))


# ------------------------------------------------------------------ sequences and any batch
def test_gaussian_noise_has_the_std_asked_for():
    out = run(A.GaussianNoise(0.5), np.zeros((4000, 5), np.float32))[0]
    assert out.dtype == np.float32 and abs(out.std() - 0.5) < 0.01 and abs(out.mean()) < 0.01


def test_time_shift_rolls_each_sequence_or_fills_the_gap():
    out = run(A.TimeShift(3), SEQUENCES)[0]
    assert all(any(np.array_equal(o, np.roll(s, k, axis=0)) for k in range(-3, 4)) for o, s in zip(out, SEQUENCES))
    x = np.arange(1.0, 11.0).reshape(1, 10, 1).repeat(30, axis=0)
    out = run(A.TimeShift(4, wrap=False, fill=-1.0), x)[0][..., 0]
    for seq in out:
        kept = seq[seq > 0]
        assert np.array_equal(kept, np.arange(kept[0], kept[0] + kept.size)) and kept.size >= 6


def test_time_mask_blanks_one_span_of_consecutive_steps():
    out = run(A.TimeMask(4), np.ones((50, 12, 2)))[0]
    for seq in out[..., 0]:
        blank = np.flatnonzero(seq == 0)
        assert blank.size <= 4 and (blank.size == 0 or np.array_equal(blank, np.arange(blank[0], blank[-1] + 1)))
    assert (out[..., 0] == out[..., 1]).all()


def test_random_masking_masks_the_fraction_asked_for():
    out = run(A.RandomMasking(0.25, value=-5.0), np.ones((400, 10)))[0]
    assert abs((out == -5.0).mean() - 0.25) < 0.02


def test_mixup_blends_inputs_and_targets_alike():
    x, y = np.eye(5, dtype=np.float32).repeat(4, axis=0), np.arange(5).repeat(4)
    xm, ym = A.Mixup(alpha=0.4, num_classes=5)(x, y, np.random.default_rng(0))
    assert ym.shape == (20, 5) and ym.dtype == np.float32
    np.testing.assert_allclose(ym, xm, rtol=1e-6)
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, rtol=1e-6)
    assert not np.array_equal(xm, x)
    xr, yr = A.Mixup(alpha=0.4)(x, x.copy(), np.random.default_rng(0))
    assert np.array_equal(xr, yr)


def test_mixup_needs_the_number_of_classes_for_class_indices():
    with pytest.raises(ValueError, match="num_classes"):
        A.Mixup()(IMAGES, np.arange(6), np.random.default_rng(0))


def test_compose_applies_in_order_and_as_transform_fills_defaults():
    calls = []

    def step(name):
        return lambda x, y, g: (calls.append((name, g)) or x + 1, y)

    gen = np.random.default_rng(0)
    out, _ = A.Compose([step("a"), step("b")])(IMAGES, None, gen)
    assert [c[0] for c in calls] == ["a", "b"] and all(c[1] is gen for c in calls) and np.allclose(out, IMAGES + 2)
    made = A.as_transform([A.Mixup(), A.Mixup(num_classes=2)], num_classes=7)
    assert isinstance(made, A.Compose) and [t.num_classes for t in made.transforms] == [7, 2]
    with pytest.raises(TypeError, match="augment must be"):
        A.as_transform(3)


# ------------------------------------------------------------------ the Trainer
class Recorder:
    def __init__(self):
        self.sizes = []

    def __call__(self, x, y, generator):
        self.sizes.append(x.shape[0])
        return x * 0.0, y


def _trainer(augment, forward_backward=None):
    model = nn.Linear(3, 1, backend="numpy")

    def crit(out, y, w, n):
        return F.mse_loss(out, y.reshape(-1, 1))

    return Trainer(model, crit, optim.SGD(model, lr=0.1), batch_size=4, augment=augment,
                   forward_backward=forward_backward)  # fmt: skip


def test_trainer_augments_each_training_batch_and_never_validation():
    X = np.random.default_rng(0).normal(size=(10, 3))
    data = ArrayDataset(X, X.sum(1), backend="numpy")
    rec = Recorder()
    trainer = _trainer(rec)
    before = trainer.evaluate_loss(data)
    trainer.fit(data, data, epochs=2)
    assert rec.sizes == [4, 4, 2] * 2
    assert trainer.evaluate_loss(data) != 0.0 and before > 0  # validation saw the real inputs
    np.testing.assert_allclose(trainer.history[-1, "valid_loss"], trainer.evaluate_loss(data))


def test_trainer_without_augment_draws_nothing_and_a_fused_step_gathers_its_own():
    assert _trainer(None).augment_generator is None
    rec = Recorder()
    data = ArrayDataset(np.ones((6, 3)), np.ones(6), backend="numpy")
    _trainer(rec, forward_backward=lambda d, rows, w: 0.0).fit(data)
    assert rec.sizes == [] and isinstance(_trainer([rec]).augment, A.Compose)


# ------------------------------------------------------------------ the estimators
RNG = np.random.default_rng(0)
X = RNG.normal(size=(90, 6)).astype(np.float32)
Y = (X[:, 0] + X[:, 1] > 0).astype(int)
NN = dict(module__hidden=(8,), max_epochs=2, batch_size=32, random_state=0, backend="numpy")
AUG = [A.GaussianNoise(0.3), A.Mixup(0.4)]


def identity(x, y, generator):
    return x, y


@pytest.mark.parametrize("cls", [NeuralNetClassifier, NeuralNetRegressor, MLPClassifier, MLPRegressor])
def test_augment_is_a_cloneable_parameter_last_for_the_mlps(cls):
    est = cls(augment=AUG)
    assert est.get_params()["augment"] is AUG and clone(est).get_params()["augment"][0] is not AUG[0]
    if cls in (MLPClassifier, MLPRegressor):  # scikit-learn's parameters first, in their order
        assert list(inspect.signature(cls).parameters)[-1] == "augment"


@pytest.mark.parametrize("cls", [NeuralNetClassifier, NeuralNetRegressor])
def test_an_identity_augment_changes_nothing_in_the_neuralnets(cls):
    y = Y if cls is NeuralNetClassifier else X[:, 0]
    method = "predict_proba" if cls is NeuralNetClassifier else "predict"
    plain = getattr(cls(**NN).fit(X, y), method)(X)
    assert np.array_equal(getattr(cls(augment=identity, **NN).fit(X, y), method)(X), plain)


class StepSpy(Callback):
    def on_train_begin(self, trainer):
        self.step = trainer.forward_backward


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_mlps_keep_their_fused_step_without_augment_and_train_through_autograd_with_it():
    spy = StepSpy()
    fused = MLPClassifier((8,), max_iter=3, random_state=0, backend="numpy", callbacks=[spy]).fit(X, Y)
    assert isinstance(spy.step, MLPStep)
    plain = MLPClassifier((8,), max_iter=3, random_state=0, backend="numpy", augment=identity, callbacks=[spy])
    plain.fit(X, Y)
    assert spy.step is None
    np.testing.assert_allclose(plain.predict_proba(X), fused.predict_proba(X), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="stochastic solver"):
        MLPRegressor(solver="lbfgs", augment=identity).fit(X, X[:, 0])


@pytest.mark.parametrize(
    "est",
    [
        NeuralNetClassifier(augment=AUG, **NN),
        NeuralNetClassifier(augment=AUG, criterion="bce_with_logits", **NN),
        NeuralNetRegressor(augment=AUG, **NN),
        MLPClassifier((8,), max_iter=2, random_state=0, backend="numpy", augment=AUG),
        MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, random_state=0, backend="numpy", augment=AUG),
    ],
    ids=["nn-clf", "nn-bce", "nn-reg", "mlp-clf", "mlp-reg"],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_augmented_fits_are_reproducible_and_differ_from_plain_ones(est):
    y = np.eye(2)[Y] if isinstance(est, (NeuralNetRegressor, MLPRegressor)) else Y + (X[:, 2] > 0)  # 3 classes

    def outputs(e):
        e = e.fit(X, y)
        return e.predict_proba(X) if hasattr(e, "predict_proba") else e.predict(X)

    a, b = outputs(clone(est)), outputs(clone(est))
    plain, other = outputs(clone(est).set_params(augment=None)), outputs(clone(est).set_params(random_state=1))
    assert np.array_equal(a, b) and not np.array_equal(a, plain) and not np.array_equal(a, other)


def test_the_generator_continues_across_partial_fit_pickles_and_saves(tmp_path):
    whole = NeuralNetClassifier(augment=AUG, train_split=None, **{**NN, "max_epochs": 3}).fit(X, Y)
    est = NeuralNetClassifier(augment=AUG, train_split=None, **{**NN, "max_epochs": 1}).fit(X, Y)
    twin = pickle.loads(pickle.dumps(est))
    mt.save(est, os.path.join(tmp_path, "est.safetensors"))
    loaded = mt.load(os.path.join(tmp_path, "est.safetensors"))
    for e in (est, twin, loaded):
        e.partial_fit(X, Y).partial_fit(X, Y)
        assert np.array_equal(e.predict_proba(X), whole.predict_proba(X))


def test_a_refit_starts_the_augmentation_stream_anew():
    est = NeuralNetClassifier(augment=AUG, **NN)
    first = est.fit(X, Y).predict_proba(X)
    assert np.array_equal(est.fit(X, Y).predict_proba(X), first)


def test_grid_search_tunes_the_augmentation():
    grid = {"augment": [None, [A.GaussianNoise(0.1)], [A.GaussianNoise(1.0)]]}
    search = GridSearchCV(NeuralNetClassifier(**NN), grid, cv=2).fit(X, Y)
    assert len(search.cv_results_["params"]) == 3
    assert repr(search.best_estimator_.augment) in map(repr, grid["augment"])


def test_a_checkpointed_augmented_fit_resumes_exactly(tmp_path):
    def make(where):
        keep = Checkpoint(str(where), monitor="train_loss")
        return NeuralNetClassifier(augment=AUG, train_split=None, callbacks=[keep], **NN)

    whole = make(tmp_path / "whole").set_params(max_epochs=4).fit(X, Y)
    make(tmp_path / "part").set_params(max_epochs=2).fit(X, Y)
    resumed = make(tmp_path / "resumed").set_params(max_epochs=4)
    resumed.fit(X, Y, resume_from=tmp_path / "part" / "last.safetensors")
    assert np.array_equal(resumed.predict_proba(X), whole.predict_proba(X))


def test_a_trainer_checkpoint_keeps_the_augmentation_stream(tmp_path):
    def trainer(where):
        with mt.random.seeded(0):
            model = nn.Linear(6, 1, backend="numpy")
        keep = Checkpoint(str(where), monitor="train_loss")
        return Trainer(model, lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1)), optim.SGD(model, lr=0.05),
                       batch_size=30, callbacks=[keep], random_state=np.random.RandomState(0),
                       augment=[A.GaussianNoise(0.5)], augment_generator=np.random.default_rng(1))  # fmt: skip

    data = ArrayDataset(X, X[:, 0], backend="numpy")
    whole = trainer(tmp_path / "whole").fit(data, epochs=4)
    trainer(tmp_path / "part").fit(data, epochs=2)
    resumed = trainer(tmp_path / "resumed")
    resumed.augment_generator = np.random.default_rng(99)  # a different stream: resume must restore it
    resumed.resume(tmp_path / "part" / "last.safetensors").fit(data, epochs=2)
    assert np.array_equal(resumed.module.weight.numpy(), whole.module.weight.numpy())
