"""One training step (forward, loss, backward, Adam) of the networks people train, float32."""

from __future__ import annotations

import timeit

from .common import (
    BACKENDS,
    Bench,
    TrainStep,
    backend_or_skip,
    classification_data,
    cnn,
    lstm_classifier,
    mlp,
    recurrent_classifier,
)


class MLPStep(Bench):
    """MLP 784-256-128-10 at batch 128 (the speed targets' network) and 512-256 at batch 256."""

    params = (BACKENDS, ["784-256-128-10/128", "784-512-256-10/256"])
    param_names = ["backend", "layers/batch"]

    def setup(self, backend, spec):
        be = backend_or_skip(backend)
        layers, batch = spec.split("/")
        sizes = tuple(map(int, layers.split("-")))
        X, y = classification_data(int(batch), sizes[0], sizes[-1])
        self.step = TrainStep(mlp(sizes, be), X, y, be)
        self.step()  # compile / allocate outside the timing

    def time_train_step(self, backend, spec):
        self.step()

    def track_samples_per_second(self, backend, spec):
        return _rate(self.step, 20)

    track_samples_per_second.unit = "samples/s"


class CNNStep(Bench):
    """conv32-pool-conv64-pool-fc128-fc10 on 1 x 28 x 28 images, batch 64 and 128 (peers.py's cnn, cnn-128)."""

    params = (BACKENDS, [64, 128])
    param_names = ["backend", "batch"]
    timeout = 300

    def setup(self, backend, batch=64):
        be = backend_or_skip(backend)
        X, y = classification_data(batch, 28 * 28)
        self.step = TrainStep(cnn(be), X.reshape(batch, 1, 28, 28), y, be)
        self.step()

    def time_train_step(self, backend, batch=64):
        self.step()

    def track_samples_per_second(self, backend, batch=64):
        return _rate(self.step, 5)

    track_samples_per_second.unit = "samples/s"


class RecurrentStep(Bench):
    """peers.py's lstm and gru workloads: 50 steps of 8 features, hidden 64, the last step into 5 classes, batch
    128."""

    params = (BACKENDS, ["lstm", "gru"])
    param_names = ["backend", "layer"]
    timeout = 300

    def setup(self, backend, layer):
        be = backend_or_skip(backend)
        X, y = classification_data(128, 50 * 8, 5)
        self.step = TrainStep(recurrent_classifier(layer, 8, 64, 5, be), X.reshape(128, 50, 8), y, be)
        self.step()

    def time_train_step(self, backend, layer):
        self.step()

    def track_samples_per_second(self, backend, layer):
        return _rate(self.step, 10)

    track_samples_per_second.unit = "samples/s"

    def peakmem_train_step(self, backend, layer):
        self.step()


class LSTMStep(Bench):
    """LSTM(32 -> 128) over 50 steps, last step into 10 classes, batch 64."""

    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 300

    def setup(self, backend):
        be = backend_or_skip(backend)
        X, y = classification_data(64, 50 * 32)
        self.step = TrainStep(lstm_classifier(32, 128, be), X.reshape(64, 50, 32), y, be)
        self.step()

    def time_train_step(self, backend):
        self.step()


def _rate(step: TrainStep, reps: int) -> float:
    """Samples per second of ``step``: the best of 3 runs of ``reps`` steps."""
    return reps * step.x.shape[0] / min(timeit.repeat(step, number=reps, repeat=3))
