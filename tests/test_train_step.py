"""restormer.train.step: the step pieces the trainer and gpu_burst.py share."""

from __future__ import annotations

import torch
from torch import nn

from restormer.train.step import WeightAverage, autocast


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
