"""Restormer image restoration (Zamir et al., CVPR 2022), exact to the official checkpoints.

>>> import restormer
>>> model = restormer.load_model("weights.pth")          # official .pth or our .safetensors
>>> clean = restormer.restore(noisy_hxwxc_array, model)  # float32 H x W x C in [0, 1]
"""

from restormer.model import Restormer, RestormerConfig

__version__ = "0.1.0"

__all__ = [
    "Restormer",
    "RestormerConfig",
    "__version__",
    "load_model",
    "restore",
    "save_weights",
]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """Import the heavier parts on first use, so ``import restormer`` stays quick."""
    if name in ("load_model", "save_weights"):
        from restormer import weights

        return getattr(weights, name)
    if name == "restore":
        from restormer.inference import restore

        return restore
    raise AttributeError(f"module 'restormer' has no attribute {name!r}")
