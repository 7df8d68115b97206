"""Data augmentation on training batches, on the backend's device, seeded per model.

Each transform is a callable ``transform(x, y, generator) -> (x, y)`` that changes one training batch: it draws
its random numbers from ``generator`` (a generator of the batch's backend, ``Backend.generator``) with array
operations over the whole batch (no loop over samples), and returns new arrays. Two runs from the same seed give
the same batches, on NumPy and Numba alike. ``Compose([...])`` chains them.

The estimators take ``augment=`` (a transform or a list of them) and :class:`~minitrain.training.Trainer` takes
``augment``: they apply it to training batches only, never to validation batches or to predictions; the
estimators own the generator, seeded from ``random_state``, and it continues across ``partial_fit`` and warm
starts and is saved with them.

- images ``(n, C, H, W)``: :class:`RandomHorizontalFlip`, :class:`RandomVerticalFlip`, :class:`RandomCrop`,
  :class:`RandomRotation`, :class:`RandomTranslation`, :class:`RandomAffine`, :class:`RandomErasing`,
  :class:`Cutout`
- sequences ``(n, T, ...)``: :class:`TimeShift`, :class:`TimeMask`
- any batch: :class:`GaussianNoise`, :class:`RandomMasking`, :class:`Mixup` (which also blends the targets)

Examples
--------
>>> import numpy as np
>>> from minitrain import augment
>>> aug = augment.Compose([augment.RandomCrop(8, padding=1), augment.RandomHorizontalFlip()])
>>> x = np.ones((16, 3, 8, 8), dtype=np.float32)
>>> a, _ = aug(x, None, np.random.default_rng(0))
>>> b, _ = aug(x, None, np.random.default_rng(0))
>>> a.shape, bool((a == b).all())
((16, 3, 8, 8), True)
"""

from ._base import Compose, RandomSource, Transform, as_transform
from ._generic import GaussianNoise, Mixup, RandomMasking, TimeMask, TimeShift
from ._image import (
    Cutout,
    RandomAffine,
    RandomCrop,
    RandomErasing,
    RandomHorizontalFlip,
    RandomRotation,
    RandomTranslation,
    RandomVerticalFlip,
)

__all__ = [
    "Compose",
    "Cutout",
    "GaussianNoise",
    "Mixup",
    "RandomAffine",
    "RandomCrop",
    "RandomErasing",
    "RandomHorizontalFlip",
    "RandomMasking",
    "RandomRotation",
    "RandomSource",
    "RandomTranslation",
    "RandomVerticalFlip",
    "TimeMask",
    "TimeShift",
    "Transform",
    "as_transform",
]
