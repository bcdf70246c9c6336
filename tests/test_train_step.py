"""restormer.train.step: the step pieces the trainer and gpu_burst.py share."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restormer.train.options import load_options
from restormer.train.step import WeightAverage, autocast, recipe_loss, spectrum_l1

from .train_fixtures import write_options


class _WithCounter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.register_buffer("count", torch.tensor(0))


def test_weight_average_moves_each_weight_towards_the_model() -> None:
    model = _WithCounter()
    average = WeightAverage(model, decay=0.9)
    before = {k: v.clone() for k, v in average.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        model.count += 5
    average.update(model)
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(average.params[name], before[name].lerp(value, 0.1)), name
        else:  # integer buffers are copied, not averaged
            assert torch.equal(average.params[name], value)


def test_weight_average_model_like_carries_the_averages() -> None:
    model = _WithCounter()
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.linear.weight.add_(1.0)
    average.update(model)
    twin = average.model_like(model)
    assert twin is not model
    assert torch.equal(twin.linear.weight, average.params["linear.weight"])
    assert not torch.equal(twin.linear.weight, model.linear.weight)


def test_autocast_fp32_is_a_no_op() -> None:
    with autocast("fp32", torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")


def test_the_spectrum_loss_keeps_its_scale_at_every_patch_size() -> None:
    """Orthonormal: white noise of one strength scores alike on 64- and 192-px patches."""
    generator = torch.Generator().manual_seed(0)
    scores = []
    for side in (64, 192):
        target = torch.rand(4, 3, side, side, generator=generator)
        noisy = target + 0.1 * torch.randn(target.shape, generator=generator)
        scores.append(float(spectrum_l1(noisy, target)))
    assert scores[0] == pytest.approx(scores[1], rel=0.03)
    assert float(spectrum_l1(target, target)) == 0.0


def test_the_recipe_loss_adds_the_weighted_spectrum_loss(tmp_path: Path) -> None:
    path = write_options(tmp_path)
    outputs, targets = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    plain = recipe_loss(outputs, targets, load_options(path))
    assert torch.equal(plain, F.l1_loss(outputs, targets))
    with_fft = recipe_loss(outputs, targets, load_options(path, ["train.fft_opt.loss_weight=0.5"]))
    assert torch.allclose(with_fft, plain + 0.5 * spectrum_l1(outputs, targets))
