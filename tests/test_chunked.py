"""The chunked inference pass computes the model's function: golden outputs, any chunking."""

from __future__ import annotations

import pytest
import torch

from restormer.chunked import ChunkedRestormer, chunked_forward
from restormer.model import Restormer

from .test_model import GOLDEN_CASES, _float32_tolerance, _golden

TINY = {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1, "heads": (1, 1, 2, 2)}


@pytest.mark.parametrize("chunk_pixels", [1, 40, 10**9])
@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_float64_exact_for_any_chunk_size(name: str, chunk_pixels: int) -> None:
    """One row per chunk, uneven chunks, a single chunk: all equal the official output."""
    model, io = _golden(name)
    out = ChunkedRestormer(model.double(), chunk_pixels)(io["input_batch"].double())
    assert (out - io["output_batch_float64"]).abs().max().item() <= 1e-10


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_float32_in_small_chunks(name: str) -> None:
    model, io = _golden(name)
    out = ChunkedRestormer(model, chunk_pixels=48)(io["input_batch"])
    assert (out - io["output_batch"]).abs().max().item() <= _float32_tolerance(io)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"LayerNorm_type": "BiasFree", "inp_channels": 1, "out_channels": 1},
        {"bias": True},
        {"inp_channels": 6, "dual_pixel_task": True},
    ],
)
def test_equals_the_autograd_forward_on_wide_images(config: dict) -> None:
    torch.manual_seed(0)
    model = Restormer(**{**TINY, **config}).double().eval()
    x = torch.rand(2, model.inp_channels, 40, 72, dtype=torch.float64)
    expected = model(x)  # gradients enabled: the plain channels-last forward
    for chunk_pixels in (72, 150, 1000):
        out = ChunkedRestormer(model, chunk_pixels)(x)
        assert (out - expected).abs().max().item() <= 1e-11


def test_model_uses_the_chunked_pass_without_autograd_and_follows_weight_changes() -> None:
    torch.manual_seed(0)
    model = Restormer(**TINY).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        first = model(x)
        assert model._chunked is not None
        model.output.weight.mul_(2)  # in place: the prepared weights must be rebuilt
        second = model(x)
    assert not torch.equal(first, second)
    assert torch.allclose(second, model(x), atol=1e-5)  # autograd path, new weights
    model.chunked_inference = False
    with torch.no_grad():
        assert torch.allclose(model(x), second, atol=1e-5)
    assert torch.allclose(chunked_forward(model, x), second, atol=1e-6)


def test_input_is_not_modified() -> None:
    torch.manual_seed(0)
    model = Restormer(**TINY).eval()
    x = torch.rand(1, 3, 16, 24)
    copy = x.clone()
    with torch.inference_mode():
        model(x)
    assert torch.equal(x, copy)
