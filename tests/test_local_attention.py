"""TLC (local attention statistics): the definition, its exactness limits and every entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from restormer.chunked import ChunkedRestormer, _Block, _run_block
from restormer.cli import app
from restormer.inference import InferenceError, restore, restore_into
from restormer.local_attention import LevelWindow, LocalAttention, WindowAxis, local_attention
from restormer.model import MDTA, Restormer, TransformerBlock
from restormer.weights import save_weights

from .conftest import tiny_model

CONFIGS = {
    "WithBias": {},
    "BiasFree-gray": {"LayerNorm_type": "BiasFree", "inp_channels": 1, "out_channels": 1},
    "bias": {"bias": True},
    "dual-pixel": {"inp_channels": 6, "dual_pixel_task": True},
}


def _double(config: dict, seed: int = 0) -> Restormer:
    model = tiny_model(seed, **config).double()
    with torch.no_grad():  # temperatures away from 1, so that a misplaced one would show
        for module in model.modules():
            if isinstance(module, MDTA):
                module.temperature.uniform_(0.5, 2.0)
    return model


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --------------------------------------------------------------------------- window geometry


@pytest.mark.parametrize(
    ("size", "window", "stride"),
    [(40, 16, 4), (37, 16, 8), (72, 24, 6), (9, 4, 1), (20, 20, 5), (12, 40, 10), (61, 33, 11)],
)
def test_blend_weights_are_tents_that_sum_to_one_inside_their_windows(
    size: int, window: int, stride: int
) -> None:
    axis = WindowAxis.make(size, window, stride)
    weights = axis.weights
    assert axis.starts[0] == 0 and axis.starts[-1] + axis.window == size
    assert all(0 < b - a <= stride for a, b in zip(axis.starts, axis.starts[1:], strict=False))
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=0, atol=1e-15)
    assert weights.min() >= 0
    pos = np.arange(size) + 0.5
    for index, start in enumerate(axis.starts):
        outside = (np.arange(size) < start) | (np.arange(size) >= start + axis.window)
        assert not weights[index, outside].any()
        # The definition: linear interpolation between window centres, constant beyond them.
        one_hot = np.eye(axis.count)[index]
        np.testing.assert_allclose(
            weights[index], np.interp(pos, axis.centres, one_hot), atol=1e-15
        )
    # Each window is a whole number of cells.
    widths = np.diff(axis.cell_bounds)
    assert widths.max() <= (stride if axis.count > 1 else size)
    np.testing.assert_array_equal(axis.membership @ widths, axis.window)


def test_level_windows_scale_with_resolution() -> None:
    assert LocalAttention(384).at_level(1) == LevelWindow(192, 96)  # default: half-window steps
    setting = LocalAttention(384, stride_divisor=4)
    assert [setting.at_level(lv) for lv in range(4)] == [
        LevelWindow(384, 96), LevelWindow(192, 48), LevelWindow(96, 24), LevelWindow(48, 12)
    ]  # fmt: skip
    # ceil(100 / 2^l) rounded up to a multiple of the divisor: never smaller than asked for.
    assert [LocalAttention(100, 4).at_level(lv) for lv in range(4)] == [
        LevelWindow(100, 25), LevelWindow(52, 13), LevelWindow(28, 7), LevelWindow(16, 4)
    ]  # fmt: skip
    assert LocalAttention(64, stride_divisor=2).at_level(3) == LevelWindow(8, 4)
    assert LevelWindow(16, 4).grid(16, 16) is None  # one window: global
    assert LevelWindow(16, 4).grid(16, 17) is not None
    for bad in (8, 0, -5, 16.0, True, "32"):
        with pytest.raises(ValueError, match="TLC window"):
            LocalAttention(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stride_divisor"):
        LocalAttention(64, stride_divisor=1)


# --------------------------------------------------------------------------- the definition


def test_hand_computed_one_layer_two_windows() -> None:
    """MDTA on a 4 x 6 map with 4-pixel windows every 2 pixels: one row of windows, columns
    starting at 0 and 2 (centres 2 and 4). Each window's output follows the official code
    (normalise over the window's pixels, softmax, attn @ v, project_out with its bias); pixel
    columns 0-1 take window 0 only, 4-5 window 1 only, 2 and 3 blend 3:1 and 1:3."""
    torch.manual_seed(0)
    mdta = MDTA(dim=4, num_heads=2, bias=True).double()
    with torch.no_grad():
        mdta.temperature.copy_(torch.tensor([0.7, 1.9]).view(2, 1, 1))
        mdta.project_out.bias.uniform_(-1, 1)
    x = torch.randn(1, 4, 6, 4, dtype=torch.float64)  # B, H, W, C

    qkv = mdta.qkv_dwconv(mdta.qkv(x.permute(0, 3, 1, 2)))  # the official NCHW route
    q, k, v = qkv.chunk(3, dim=1)
    outputs = []
    for left in (0, 2):
        cols = slice(left, left + 4)
        heads = [t[..., cols].reshape(1, 2, 2, 16) for t in (q, k)]  # B, head, ch, pixels
        qn, kn = (F.normalize(t, dim=-1) for t in heads)
        attn = (qn @ kn.transpose(-2, -1) * mdta.temperature).softmax(dim=-1)
        full_v = v.reshape(1, 2, 2, 24)  # applied to every pixel; the weights select
        out = (attn @ full_v).reshape(1, 4, 4, 6)
        outputs.append(mdta.project_out(out))
    blend = torch.tensor([1.0, 1.0, 0.75, 0.25, 0.0, 0.0], dtype=torch.float64)
    expected = (blend * outputs[0] + (1 - blend) * outputs[1]).permute(0, 2, 3, 1)

    mdta.local_window = LevelWindow(4, 2)
    assert _max_diff(mdta(x), expected) <= 1e-14
    # Through a whole block, the chunked pass agrees with the autograd one.
    torch.manual_seed(1)
    block = TransformerBlock(4, 2, 2.66, True, "WithBias").double()
    block.attn.local_window = LevelWindow(4, 2)
    with torch.no_grad():
        block.attn.temperature.uniform_(0.5, 2.0)
    y = torch.randn(2, 7, 10, 4, dtype=torch.float64)
    expected_block = block(y)
    for chunk_pixels in (1, 25, 1000):
        z = y.clone()
        with torch.no_grad():
            _run_block(
                _Block.prepare(block), z, chunk_pixels, torch.empty_like(z), LevelWindow(4, 2)
            )
        assert _max_diff(z, expected_block) <= 1e-13


@pytest.mark.parametrize("name", CONFIGS)
def test_window_covering_the_image_equals_the_global_model(name: str) -> None:
    model = _double(CONFIGS[name])
    x = torch.rand(2, model.inp_channels, 40, 56, dtype=torch.float64)
    expected = model(x)
    with torch.no_grad():
        expected_chunked = model(x)
    for window in (56, 57, 1000):
        model.set_local_attention(window)
        assert _max_diff(model(x), expected) <= 1e-14
        with torch.no_grad():
            assert _max_diff(model(x), expected_chunked) <= 1e-14
    model.set_local_attention(48)  # smaller than the width: now it changes the result
    assert _max_diff(model(x), expected) > 1e-6


@pytest.mark.parametrize("name", CONFIGS)
def test_chunked_pass_equals_the_autograd_pass_with_tlc(name: str) -> None:
    model = _double(CONFIGS[name], seed=2)
    for shape, window, divisor in (
        ((2, 40, 72), 16, 4),
        ((1, 24, 88), 24, 2),
        ((1, 56, 32), 33, 3),
    ):
        model.set_local_attention(window, stride_divisor=divisor)
        x = torch.rand(shape[0], model.inp_channels, *shape[1:], dtype=torch.float64)
        expected = model(x)  # autograd: the window-by-window definition
        for chunk_pixels in (40, 150, 10**6):
            assert _max_diff(ChunkedRestormer(model, chunk_pixels)(x), expected) <= 1e-12


def test_autograd_pass_is_differentiable() -> None:
    model = tiny_model()
    model.set_local_attention(16)
    x = torch.rand(1, 3, 32, 40, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert model.encoder_level1[0].attn.temperature.grad is not None


def test_float32_and_bfloat16_follow_float64() -> None:
    model = _double({}, seed=3)
    model.set_local_attention(16)
    x = torch.rand(1, 3, 32, 48, dtype=torch.float64)
    with torch.no_grad():
        exact = model(x)
        assert _max_diff(model.float()(x.float()), exact) <= 1e-4
        assert _max_diff(model.bfloat16()(x.bfloat16()).double(), exact) <= 0.1


# --------------------------------------------------------------------------- switching it on


def test_setting_is_per_level_and_not_in_the_state_dict() -> None:
    model = tiny_model()
    keys = list(model.state_dict())
    model.set_local_attention(100, stride_divisor=2)
    assert model.local_attention == LocalAttention(100, 2)
    assert model.encoder_level1[0].attn.local_window == LevelWindow(100, 50)
    assert model.decoder_level1[0].attn.local_window == LevelWindow(100, 50)
    assert model.refinement[0].attn.local_window == LevelWindow(100, 50)
    assert model.encoder_level2[0].attn.local_window == LevelWindow(50, 25)
    assert model.latent[0].attn.local_window == LevelWindow(14, 7)
    assert list(model.state_dict()) == keys
    with local_attention(model, 32):
        assert model.local_attention == LocalAttention(32)
    assert model.local_attention == LocalAttention(100, 2)
    for off in (None, 0):
        model.set_local_attention(off)
        assert model.local_attention is None
        assert all(m.local_window is None for m in model.modules() if isinstance(m, MDTA))
    with pytest.raises(ValueError, match="at least 16"):
        model.set_local_attention(12)


@pytest.fixture(scope="module")
def rgb_model() -> Restormer:
    return tiny_model(seed=4)


def test_restore_with_tlc_tiles_ensemble_and_dtypes(rgb_model: Restormer) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((45, 61, 3)).astype(np.float32)
    plain = restore(image, rgb_model)
    assert np.array_equal(restore(image, rgb_model, tlc=64), plain)  # padded 48 x 64: a no-op
    local = restore(image, rgb_model, tlc=16)
    assert rgb_model.local_attention is None  # the model's setting is restored
    assert np.abs(local - plain).max() > 1e-4
    rgb_model.set_local_attention(16)
    try:
        assert np.array_equal(restore(image, rgb_model), local)  # the model-level setting
    finally:
        rgb_model.set_local_attention(None)
    for kwargs in ({"tile": 32, "tile_overlap": 8}, {"ensemble": True}):
        out = restore(image, rgb_model, tlc=16, **kwargs)
        assert out.shape == image.shape and np.isfinite(out).all()
        assert np.abs(out - restore(image, rgb_model, **kwargs)).max() > 1e-4
    gray = tiny_model(seed=5, inp_channels=1, out_channels=1)
    assert restore(image[..., 0], gray, tlc=16).shape == (45, 61)
    dual = tiny_model(seed=6, inp_channels=6, dual_pixel_task=True).double()
    dual_image = rng.random((40, 52, 6))
    out = np.empty((40, 52, 3), dtype=np.uint16)
    assert restore_into(dual_image, dual, out, tlc=24) is out


def test_onnx_export_refuses_a_model_with_tlc(tmp_path: Path) -> None:
    from restormer.export import ExportError, export_onnx

    model = tiny_model()
    model.set_local_attention(32)
    with pytest.raises(ExportError, match="TLC"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_restore_rejects_bad_tlc(rgb_model: Restormer) -> None:
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    for bad, message in ((8, "at least 16"), (-1, "at least 16"), (2.5, "integer")):
        with pytest.raises(InferenceError, match=message):
            restore(image, rgb_model, tlc=bad)  # type: ignore[arg-type]
    with pytest.raises(InferenceError, match="Restormer"):
        restore(image, torch.nn.Conv2d(3, 3, 1), tlc=32)


# --------------------------------------------------------------------------- command line


def test_cli_tlc(tmp_path: Path, rgb_model: Restormer) -> None:
    weights = save_weights(rgb_model, tmp_path / "rgb.safetensors")
    rng = np.random.default_rng(1)
    pixels = (rng.random((45, 61, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    runner = CliRunner()
    args = ["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "-w", str(weights)]
    result = runner.invoke(app, [*args, "--tlc", "16"])
    assert result.exit_code == 0, result.output
    expected = np.empty_like(pixels)
    restore_into(pixels, rgb_model, expected, tlc=16)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "in.png")), expected)
    for bad in ("5", "-16"):
        result = runner.invoke(app, [*args, "--overwrite", "--tlc", bad])
        assert result.exit_code != 0 and "--tlc" in result.output and "at least 16" in result.output
        assert len([line for line in result.output.splitlines() if line.strip()]) == 1
        assert "Traceback" not in result.output


def test_evaluate_cli_tlc(tmp_path: Path, rgb_model: Restormer) -> None:
    weights = save_weights(rgb_model, tmp_path / "rgb.safetensors")
    rng = np.random.default_rng(2)
    for folder in ("input", "target"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        pixels = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "data" / folder / "a.png")
    args = ["evaluate", "-t", "deraining", "-d", str(tmp_path / "data"), "-w", str(weights)]
    runner = CliRunner()
    psnr = {}
    for window in (0, 16):
        out = tmp_path / f"out{window}"
        result = runner.invoke(app, [*args, "-o", str(out), "--tlc", str(window)])
        assert result.exit_code == 0, result.output
        document = json.loads((out / "results.json").read_text())
        assert document["tlc"] == (window or None)
        psnr[window] = document["images"][0]["psnr"]
    assert psnr[0] != psnr[16]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "bad"), "--tlc", "7"])
    assert result.exit_code != 0 and "at least 16" in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
