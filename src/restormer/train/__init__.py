"""Training with official option files: ``load_options`` then ``train``.

>>> from restormer.train import RunSettings, load_options, train
>>> result = train(load_options("Options/Deraining_Restormer.yml"), RunSettings(resume="auto"))
"""

from restormer.train.checkpoint import CheckpointError
from restormer.train.options import OptionError, TrainOptions, load_options, parse_options
from restormer.train.trainer import RunSettings, TrainResult, train

__all__ = [
    "CheckpointError",
    "OptionError",
    "RunSettings",
    "TrainOptions",
    "TrainResult",
    "load_options",
    "parse_options",
    "train",
]
