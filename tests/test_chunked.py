"""The chunked inference pass computes the model's function: golden outputs, any tiling."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from restormer.chunked import ChunkedRestormer, _Block, _run_block, _Tiling, chunked_forward
from restormer.local_attention import LevelWindow
from restormer.model import MDTA, Restormer, TransformerBlock

from .test_model import GOLDEN_CASES, _float32_tolerance, _golden

TINY = {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1, "heads": (1, 1, 2, 2)}
CONFIGS = {
    "WithBias": {},
    "BiasFree-gray": {"LayerNorm_type": "BiasFree", "inp_channels": 1, "out_channels": 1},
    "bias": {"bias": True},
    "dual-pixel": {"inp_channels": 6, "dual_pixel_task": True},
}


@pytest.mark.parametrize("chunk_pixels", [12, 40, 10**9])
@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_float64_exact_for_any_chunk_size(name: str, chunk_pixels: int) -> None:
    """Tiles of 3 x 4 and 6 x 6 pixels (uneven), a single tile: all equal the official output."""
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


# --------------------------------------------------------------------------- tiles


@pytest.mark.parametrize(
    ("height", "width", "chunk_pixels"),
    [
        (512, 512, 4096),
        (64, 4240, 4096),
        (32, 8192, 4096),
        (2832, 4240, 4096),
        (8, 530, 4096),
        (24, 296, 40),
        (37, 5, 40),
        (3, 1, 40),
        (1, 50, 7),
        (64, 48, 1),
        (10, 10, 10**6),
    ],
)
def test_tiles_cover_the_map_once_and_stay_small(
    height: int, width: int, chunk_pixels: int
) -> None:
    tiling = _Tiling.of(height, width, chunk_pixels)
    for spans, size in ((tiling.bands, height), (tiling.pieces, width)):
        assert spans[0].start == 0 and spans[-1].stop == size
        assert all(a.stop == b.start for a, b in itertools.pairwise(spans))
        for span in spans:
            assert (span.lo, span.hi) == (max(span.start - 1, 0), min(span.stop + 1, size))
        lengths = [span.stop - span.start for span in spans]
        assert min(lengths) >= 1 and all(n == lengths[0] for n in lengths[:-1])
        assert lengths[-1] <= lengths[0]
    rows, cols = tiling.bands[0].stop, tiling.pieces[0].stop
    if width * height <= chunk_pixels:
        assert len(tiling.bands) == len(tiling.pieces) == 1  # the whole map
    assert rows * cols <= max(chunk_pixels, width * min(height, math.isqrt(chunk_pixels)))
    if cols < width:  # pieces of columns only where whole rows do not fit
        assert rows * cols <= chunk_pixels and width * min(rows, height) > chunk_pixels // 2
    if width >= 1000:  # a wide map: tiles of a few thousand pixels, not rows
        assert rows * cols <= chunk_pixels and len(tiling.pieces) > 1


def _block(channels: int, heads: int, bias: bool, norm: str, seed: int) -> TransformerBlock:
    torch.manual_seed(seed)
    block = TransformerBlock(channels, heads, 2.66, bias, norm).double()  # type: ignore[arg-type]
    with torch.no_grad():  # away from the initial values, so that a misplaced term would show
        for parameter in block.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return block


@pytest.mark.parametrize("window", [None, LevelWindow(4, 2), LevelWindow(16, 6)], ids=str)
@pytest.mark.parametrize(("bias", "norm"), [(False, "WithBias"), (True, "BiasFree")])
def test_block_equals_the_autograd_block_for_any_shape_and_tiling(
    window: LevelWindow | None, bias: bool, norm: str
) -> None:
    """Odd sizes, maps narrower or lower than a tile, one-pixel rows and columns, tiles of
    one pixel up to the whole map: one block in place equals the plain forward."""
    block = _block(8, 2, bias, norm, seed=1)
    block.attn.local_window = window
    prepared = _Block.prepare(block)
    for shape, tilings in (
        ((2, 5, 37), (1, 2, 6, 40, 10**6)),
        ((1, 3, 1), (1, 2, 40)),
        ((1, 1, 50), (1, 6, 40)),
        ((1, 9, 11), (1, 2, 6, 40)),
        ((1, 40, 7), (2, 6, 40)),
        ((1, 24, 300), (40, 150)),  # 4 x 50 and 2 x 25 tiles
    ):
        x = torch.randn(*shape, 8, dtype=torch.float64)
        expected = block(x)  # autograd: the plain channels-last forward
        for chunk_pixels in tilings:
            out = x.clone()
            with torch.no_grad():
                _run_block(prepared, out, chunk_pixels, torch.empty_like(out), window)
            assert (out - expected).abs().max().item() <= 1e-12, (shape, chunk_pixels)


def _double(config: dict, seed: int) -> Restormer:
    torch.manual_seed(seed)
    model = Restormer(**{**TINY, **config}).double().eval()
    with torch.no_grad():  # temperatures away from 1, so that a misplaced one would show
        for module in model.modules():
            if isinstance(module, MDTA):
                module.temperature.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("tlc", [None, 16], ids=["global", "tlc"])
@pytest.mark.parametrize("name", CONFIGS)
def test_wide_images_equal_the_autograd_forward(name: str, tlc: int | None) -> None:
    """Maps many tiles wide and high, widths that no piece width divides, narrower than a
    piece at the lower levels (37 columns at level 4); with and without TLC."""
    model = _double(CONFIGS[name], seed=3)
    model.set_local_attention(tlc)
    for shape in ((1, 24, 296), (2, 8, 200)):
        x = torch.rand(shape[0], model.inp_channels, *shape[1:], dtype=torch.float64)
        expected = model(x)  # gradients enabled: the plain channels-last forward
        for chunk_pixels in (20, 300):
            out = ChunkedRestormer(model, chunk_pixels)(x)
            assert (out - expected).abs().max().item() <= 1e-11, (shape, chunk_pixels)


def test_wide_image_in_float32_through_the_model() -> None:
    """The model's own no-grad path on a wide image, default tiles: close to autograd."""
    torch.manual_seed(4)
    model = Restormer(**TINY).eval()
    x = torch.rand(1, 3, 16, 4240)
    expected = model(x)
    with torch.no_grad():
        assert _Tiling.of(16, 4240, 4096).pieces[0].stop < 4240  # several pieces per band
        assert (model(x) - expected).abs().max().item() <= 1e-5
