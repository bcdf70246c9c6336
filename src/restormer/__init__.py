"""Restormer image restoration (Zamir et al., CVPR 2022), exact to the official checkpoints.

>>> import restormer
>>> model = restormer.load_model("weights.pth")          # official .pth or our .safetensors
>>> clean = restormer.restore(noisy_hxwxc_array, model)  # float32 H x W x C in [0, 1]
"""

from restormer.inference import restore
from restormer.model import Restormer, RestormerConfig
from restormer.weights import load_model, save_weights

__version__ = "0.1.0"

__all__ = [
    "Restormer",
    "RestormerConfig",
    "__version__",
    "load_model",
    "restore",
    "save_weights",
]
