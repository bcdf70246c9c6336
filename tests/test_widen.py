"""restormer.train.widen: a twice-as-wide model that starts as the trained one, then learns."""

from __future__ import annotations

import pytest
import torch

from restormer.model import Restormer
from restormer.train.widen import widen_state_dict, width_change

from .train_fixtures import SMALL_NETWORK, random_model

SMALL = SMALL_NETWORK


def _wide(config: dict) -> dict:
    return {**config, "dim": 2 * config["dim"]}


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"bias": True, "LayerNorm_type": "WithBias"},
        {"inp_channels": 6, "dual_pixel_task": True},
        {"inp_channels": 1, "out_channels": 1, "dim": 6},  # int(12 * 2.66) - 2 * int(6 * 2.66) = 1
    ],
)
def test_wider_model_computes_what_the_trained_one_did(variant: dict) -> None:
    small = {**SMALL, **variant}
    model = random_model(small)
    wide = Restormer(**_wide(small)).eval()
    wide.load_state_dict(widen_state_dict(model.state_dict(), small, _wide(small)))
    x = torch.rand(2, small["inp_channels"], 24, 32)
    with torch.no_grad():
        expected = model(x)
        scale = expected.abs().max().item()  # random weights: outputs in the hundreds
        torch.testing.assert_close(wide(x), expected, rtol=0, atol=2e-6 * scale)
    size = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in wide.parameters()) > 3 * size


def test_copies_learn_apart() -> None:
    """The split weights give the two copies of a channel different gradients."""
    model = random_model(SMALL)
    wide = Restormer(**_wide(SMALL))
    wide.load_state_dict(widen_state_dict(model.state_dict(), SMALL, _wide(SMALL)))
    loss = (wide(torch.rand(1, 3, 16, 16)) - torch.rand(1, 3, 16, 16)).abs().mean()
    loss.backward()
    grad = wide.encoder_level1[0].ffn.project_in.weight.grad.flatten(1)
    hidden = wide.encoder_level1[0].ffn.project_out.in_channels // 2  # old hidden channels
    assert not torch.allclose(grad[:hidden], grad[hidden : 2 * hidden])


def test_splits_follow_the_generator() -> None:
    state = random_model(SMALL).state_dict()
    widened = []
    for seed in (1, 1, 2):
        torch.manual_seed(0)  # the spare channels' fresh weights
        generator = torch.Generator().manual_seed(seed)
        widened.append(widen_state_dict(state, SMALL, _wide(SMALL), generator))
    assert all(torch.equal(widened[0][k], widened[1][k]) for k in widened[0])
    assert not all(torch.equal(widened[0][k], widened[2][k]) for k in widened[0])


def test_width_change_says_what_grew_and_refuses_other_changes() -> None:
    assert width_change(SMALL, _wide(SMALL)) == "dim 8 -> 16"
    assert width_change(SMALL, SMALL) is None
    with pytest.raises(ValueError, match="only doubling"):
        width_change(SMALL, {**SMALL, "dim": 12})
    with pytest.raises(ValueError, match="heads differ"):
        width_change(SMALL, {**_wide(SMALL), "heads": [2, 4, 8, 16]})
    with pytest.raises(ValueError, match="same width"):
        widen_state_dict(random_model(SMALL).state_dict(), SMALL, SMALL)
