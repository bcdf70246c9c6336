"""restormer.train.deepen: a deeper model that starts as the trained one, and then learns."""

from __future__ import annotations

import pytest
import torch

from restormer.model import Restormer
from restormer.train.deepen import deepen_state_dict, depth_change

from .train_fixtures import SMALL_NETWORK, random_model

SMALL = SMALL_NETWORK
DEEP = {**SMALL, "num_blocks": [1, 2, 3, 4], "num_refinement_blocks": 2}


@pytest.mark.parametrize("bias", [False, True])
def test_deeper_model_computes_what_the_trained_one_did(bias: bool) -> None:
    small, deep = {**SMALL, "bias": bias}, {**DEEP, "bias": bias}
    model = random_model(small)
    grown = Restormer(**deep).eval()
    grown.load_state_dict(deepen_state_dict(model.state_dict(), small, deep))
    x = torch.rand(2, 3, 24, 32)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), model(x), rtol=0, atol=1e-6)
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in model.parameters())


def test_added_blocks_learn() -> None:
    """Zero output projections get gradients, so the identity blocks start training."""
    model = random_model(SMALL)
    grown = Restormer(**DEEP)
    grown.load_state_dict(deepen_state_dict(model.state_dict(), SMALL, DEEP))
    loss = (grown(torch.rand(1, 3, 16, 16)) - torch.rand(1, 3, 16, 16)).abs().mean()
    loss.backward()
    gradient = grown.latent[3].ffn.project_out.weight.grad
    assert gradient is not None and gradient.abs().max() > 0
    assert grown.latent[3].attn.project_out.weight.abs().max() == 0


def test_depth_change_says_what_grew_and_refuses_other_changes() -> None:
    assert depth_change(SMALL, SMALL) is None
    assert depth_change(SMALL, DEEP) == (
        "num_blocks [1, 1, 1, 2] -> [1, 2, 3, 4]; num_refinement_blocks 1 -> 2"
    )
    with pytest.raises(ValueError, match="dim differ"):
        depth_change(SMALL, {**DEEP, "dim": 16})
    with pytest.raises(
        ValueError, match=r"num_blocks \[1, 2, 3, 4\] -> \[1, 1, 1, 2\]: not deeper"
    ):
        depth_change(DEEP, SMALL)
    with pytest.raises(ValueError, match="not deeper"):
        deepen_state_dict(random_model(DEEP).state_dict(), DEEP, SMALL)
