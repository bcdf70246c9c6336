"""Tests of restormer.ensemble: the transform groups, their inverses, which task gets which."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restormer.degradations.blur import DefocusParams, dual_pixel_views
from restormer.ensemble import (
    _TRANSFORMS,
    ENSEMBLES,
    _dual_pixel_flip,
    check_ensemble,
    default_ensemble,
    ensemble_for_task,
    ensemble_mean,
)
from restormer.tasks import TASKS


@pytest.mark.parametrize("name", list(ENSEMBLES))
def test_each_transform_is_undone_and_all_differ(name: str) -> None:
    channels = 6 if name == "dual-pixel" else 3
    x = torch.arange(2 * channels * 5 * 7, dtype=torch.float32).reshape(2, channels, 5, 7)
    transform, inverse = _TRANSFORMS[name]
    seen = set()
    for k in range(ENSEMBLES[name]):
        t = transform(x, k)
        seen.add(tuple(t.flatten().tolist()))
        view = t[:, :3]  # a model's output: the first view's geometry
        expected = x[:, :3] if name != "dual-pixel" or not k & 2 else x[:, 3:]
        torch.testing.assert_close(inverse(view, k), expected, rtol=0, atol=0)
    assert len(seen) == ENSEMBLES[name]


def test_mean_of_an_identity_model_is_the_input() -> None:
    x = torch.rand(1, 3, 9, 12)
    for name in ("dihedral", "flips"):
        torch.testing.assert_close(ensemble_mean(lambda t: t, x, name, torch.float64), x.double())


def test_which_task_gets_which() -> None:
    assert ensemble_for_task("deraining") == "flips"
    assert ensemble_for_task("dual-pixel-defocus-deblurring") == "dual-pixel"
    others = set(TASKS) - {"deraining", "dual-pixel-defocus-deblurring"}
    assert {ensemble_for_task(task) for task in others} == {"dihedral"}
    assert default_ensemble(6) == "dual-pixel" and default_ensemble(3) == "dihedral"
    assert default_ensemble(1) == "dihedral"
    with pytest.raises(ValueError, match="unknown ensemble 'x16'; choose one of: dihedral"):
        check_ensemble("x16")


def test_dual_pixel_flip_maps_a_pair_to_the_pair_of_the_flipped_photo():
    """Why a horizontal flip swaps the views: the views of a mirrored photo are the mirrored
    views with left and right exchanged (and a vertical flip keeps them in place)."""
    photo = np.random.default_rng(16).random((48, 64, 3), dtype=np.float32)
    params = DefocusParams(
        radii=(5.0,), softness=1.0, rim=0.3, split=1.0, falloff=0.08,
        map_cell=32.0, map_steepness=4.0, noise_sigma=0.0,
    )  # fmt: skip

    def pair(image: np.ndarray) -> torch.Tensor:
        left, right = dual_pixel_views(
            np.ascontiguousarray(image), np.random.default_rng(0), params
        )
        return torch.from_numpy(np.concatenate([left, right], axis=2)).permute(2, 0, 1)

    for k, flipped in ((1, photo[::-1]), (2, photo[:, ::-1]), (3, photo[::-1, ::-1])):
        expected = _dual_pixel_flip(pair(photo), k)
        torch.testing.assert_close(pair(flipped), expected, atol=1e-5, rtol=0)
