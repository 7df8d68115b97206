"""One training step (forward, loss, backward, Adam) of the networks people train, float32."""

from __future__ import annotations

import timeit

from .common import BACKENDS, Bench, TrainStep, backend_or_skip, classification_data, cnn, lstm_classifier, mlp


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
        reps = 20
        return reps * self.step.x.shape[0] / min(timeit.repeat(self.step, number=reps, repeat=3))

    track_samples_per_second.unit = "samples/s"


class CNNStep(Bench):
    """conv32-pool-conv64-pool-fc128-fc10 on 1 x 28 x 28 images, batch 64."""

    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 300

    def setup(self, backend):
        be = backend_or_skip(backend)
        X, y = classification_data(64, 28 * 28)
        self.step = TrainStep(cnn(be), X.reshape(64, 1, 28, 28), y, be)
        self.step()

    def time_train_step(self, backend):
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
