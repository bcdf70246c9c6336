"""Self-ensemble: restore transformed copies of an image, undo each transform, average.

Which transforms are fair depends on what the degradation looks like turned around. A model
only gains from copies that still look like its training inputs:

* ``dihedral`` — the 8 flips and 90-degree rotations: noise and blur look the same turned
  any way (the official test scripts' x8).
* ``flips`` — none, horizontal, vertical, both: rain streaks fall within 40 degrees of the
  vertical, and a 90-degree rotation lays them across, which no training patch had (the x8
  ensemble cost our deraining model 2-7 dB); flipped, they are still rain.
* ``dual-pixel`` — the same 4 flips of a dual-pixel pair (left view, right view: 6
  channels), a horizontal flip swapping the two views: mirroring a view mirrors its half-disk
  blur into the other view's. A rotation would make the views' disparity vertical, which no
  dual-pixel sensor records (the x8 ensemble gained nothing for our dual-pixel model).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from restormer.model import DUAL_PIXEL_CHANNELS

__all__ = [
    "ENSEMBLES",
    "FOR_TASK",
    "check_ensemble",
    "default_ensemble",
    "ensemble_for_task",
    "ensemble_mean",
]

ENSEMBLES: dict[str, int] = {"dihedral": 8, "flips": 4, "dual-pixel": 4}
"""Each ensemble's name and its number of transforms (the cost, in forward passes)."""

FOR_TASK: dict[str, str] = {"deraining": "flips", "dual-pixel-defocus-deblurring": "dual-pixel"}
"""The ensemble of each task whose degradation is not the same turned any way."""


def check_ensemble(name: object) -> str:
    """``name`` if it is one of :data:`ENSEMBLES`, else a ValueError saying which are."""
    if name not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {name!r}; choose one of: {', '.join(ENSEMBLES)}")
    return str(name)


def ensemble_for_task(task: str) -> str:
    """The ensemble that fits ``task``'s degradation (:data:`FOR_TASK`, else ``dihedral``)."""
    return FOR_TASK.get(task, "dihedral")


def default_ensemble(in_channels: int) -> str:
    """The ensemble of a model that names none: ``dual-pixel`` for a 6-channel input."""
    return "dual-pixel" if in_channels == DUAL_PIXEL_CHANNELS else "dihedral"


def ensemble_mean(
    run: Callable[[Tensor], Tensor], x: Tensor, name: str, dtype: torch.dtype
) -> Tensor:
    """The mean, in ``dtype``, of ``run`` over the transforms of ensemble ``name`` of the
    N x C x H x W batch ``x``, each output transformed back."""
    transform, inverse = _TRANSFORMS[check_ensemble(name)]
    total = None
    for k in range(ENSEMBLES[name]):
        y = inverse(run(transform(x, k)), k).to(dtype)
        total = y if total is None else total + y
    assert total is not None
    return total / ENSEMBLES[name]


def _dihedral(x: Tensor, k: int) -> Tensor:
    """The k-th (0..7) of the 8 rotations/reflections of the square, on the last two dims."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


def _dihedral_inverse(y: Tensor, k: int) -> Tensor:
    if k >= 4:
        y = y.flip(-1)
    return torch.rot90(y, -(k % 4), dims=(-2, -1))


def _flip(x: Tensor, k: int) -> Tensor:
    """The k-th (0..3) flip: none, vertical, horizontal, both (each its own inverse)."""
    dims = [d for bit, d in ((1, -2), (2, -1)) if k & bit]
    return x.flip(dims) if dims else x


def _dual_pixel_flip(x: Tensor, k: int) -> Tensor:
    """:func:`_flip` of a dual-pixel pair, the views swapped when flipped horizontally."""
    if k & 2:
        half = x.shape[-3] // 2
        x = torch.cat([x[..., half:, :, :], x[..., :half, :, :]], dim=-3)
    return _flip(x, k)


_TRANSFORMS: dict[str, tuple[Callable[[Tensor, int], Tensor], Callable[[Tensor, int], Tensor]]] = {
    "dihedral": (_dihedral, _dihedral_inverse),
    "flips": (_flip, _flip),
    "dual-pixel": (_dual_pixel_flip, _flip),
}
