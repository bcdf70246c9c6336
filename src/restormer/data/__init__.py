"""The training data pipeline: official BasicSR dataset options -> batches for the training loop.

Typical use by a trainer::

    train_set = build_training_set(opt["datasets"]["train"], cache_dir=cache)
    schedule = StageSchedule.from_options(opt["datasets"]["train"])
    data = TrainingData(train_set, schedule, seed=opt["manual_seed"], mixup=Mixup(1.2))
    for current_iter, lq, gt in data.prefetch(start_iter, total_iter):
        ...

Modules: :mod:`~restormer.data.options` (checking the option dicts),
:mod:`~restormer.data.folders` (listing, pairing by name), :mod:`~restormer.data.cache`
(decode once, memory-map), :mod:`~restormer.data.augment` (windows, flips/rotations),
:mod:`~restormer.data.noise` (Gaussian noise), :mod:`~restormer.data.datasets` (the three
official dataset types, and ``Dataset_SyntheticDegradation``: clean photos degraded on the fly
by :mod:`restormer.degradations`), :mod:`~restormer.data.schedule` (progressive learning) and
:mod:`~restormer.data.sampling` (the deterministic sample stream, mixup, prefetching).
"""

from restormer.data.cache import DecodeCache, DecodedImage, default_cache_dir
from restormer.data.datasets import (
    SyntheticTrainingSet,
    SyntheticValidationSet,
    TrainingSet,
    ValidationSet,
    build_training_set,
    build_validation_set,
)
from restormer.data.options import DATASET_TYPES, DatasetOptionError
from restormer.data.sampling import Mixup, TrainingData
from restormer.data.schedule import StageSchedule

__all__ = [
    "DATASET_TYPES",
    "DatasetOptionError",
    "DecodeCache",
    "DecodedImage",
    "Mixup",
    "StageSchedule",
    "SyntheticTrainingSet",
    "SyntheticValidationSet",
    "TrainingData",
    "TrainingSet",
    "ValidationSet",
    "build_training_set",
    "build_validation_set",
    "default_cache_dir",
]
