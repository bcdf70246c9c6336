"""Tests of restormer.inference: padding, dtypes, channels, tiling, memory, ensemble, batches."""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restormer.inference import (
    InferenceError,
    _Axis,
    _pad_to_multiple,
    default_memory_budget,
    estimate_memory,
    plan_tile,
    restore,
    restore_into,
)
from restormer.model import Restormer

TINY = {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1, "heads": (1, 1, 2, 2)}


def tiny(seed: int = 0, **kwargs) -> Restormer:
    torch.manual_seed(seed)
    return Restormer(**{**TINY, **kwargs}).eval()


@pytest.fixture(scope="module")
def rgb_model() -> Restormer:
    return tiny()


class Pointwise(nn.Module):
    """A per-pixel model (1x1 conv): no context, so tiling and ensembles change nothing."""

    inp_channels = 3
    out_channels = 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 3, 1)
        nn.init.uniform_(self.conv.weight, 0.0, 0.4)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class LocalBlur(nn.Module):
    """A 3x3 box blur with zero padding: output depends on local context only, and the zero
    padding at tile borders would leave a visible seam if tiles were simply stitched."""

    inp_channels = 3
    out_channels = 3

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)
        nn.init.constant_(self.conv.weight, 1 / 9)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Recorder(nn.Module):
    """Records the input dtype and shape; returns ``0.25 * x + 0.25`` of the first channels."""

    def __init__(self, dtype: torch.dtype = torch.float32, inp: int = 3, out: int = 3) -> None:
        super().__init__()
        self.inp_channels, self.out_channels = inp, out
        self.scale = nn.Parameter(torch.tensor(0.25, dtype=dtype))
        self.calls: list[tuple[torch.dtype, tuple[int, ...]]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append((x.dtype, tuple(x.shape)))
        return self.scale * x[:, : self.out_channels] + 0.25


def to_tensor(image: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
    """The official scripts' conversion: uint8 / 255 (uint16 / 65535), HWC -> 1CHW."""
    x = torch.from_numpy(image.astype(np.float64) if image.dtype == np.uint16 else image)
    x = x.to(dtype)
    if image.dtype == np.uint8:
        x = x / 255.0
    elif image.dtype == np.uint16:
        x = x / 65535.0
    return x.permute(2, 0, 1)[None].contiguous()


def official(model: nn.Module, x: Tensor) -> np.ndarray:
    """Reflect-pad bottom/right to x8 (numpy's 'reflect' where torch cannot), run, crop, clip."""
    h, w = x.shape[-2:]
    ph, pw = -h % 8, -w % 8
    if ph < h and pw < w:
        padded = F.pad(x, (0, pw, 0, ph), mode="reflect")
    else:
        padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (0, ph), (0, pw)), "reflect"))
    with torch.inference_mode():
        y = model(padded)[..., :h, :w].clamp(0, 1)
    return y[0].permute(1, 2, 0).float().numpy()


def smooth_image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([xx / w, yy / h, 0.5 + 0.2 * np.sin(xx / 17 + yy / 23)], -1) * 0.8 + 0.1


def seam_ratio(tiled: np.ndarray, full: np.ndarray, size: int, tile: int, overlap: int) -> float:
    """Largest mean |derivative| of the tiled-vs-full error field across a tile edge, relative
    to its mean elsewhere (axis 1 = columns). A visible seam is a jump in that error."""
    axis = _Axis.make(size, tile, overlap)
    ends = {*axis.starts, *(start + axis.extent for start in axis.starts)}
    edges = sorted(end - 1 for end in ends if 0 < end < size)
    deriv = np.abs(np.diff(tiled - full, axis=1)).mean(axis=(0, 2))
    return float(deriv[edges].max() / (np.delete(deriv, edges).mean() + 1e-9))


# --------------------------------------------------------------------------- padding, dtypes


@pytest.mark.parametrize("shape", [(37, 53), (16, 24), (3, 5), (1, 1), (9, 2), (8, 17)])
def test_full_frame_equals_official_padding(rgb_model, shape):
    image = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    expected = official(rgb_model, to_tensor(image))
    result = restore(image, rgb_model)
    assert result.dtype == np.float32 and result.shape == (*shape, 3)
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 9, 12, 17])
def test_pad_equals_numpy_reflect(size):
    x = torch.arange(size * (size + 2), dtype=torch.float32).reshape(1, 1, size, size + 2)
    ph, pw = -size % 8, -(size + 2) % 8
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
    np.testing.assert_array_equal(_pad_to_multiple(x).numpy(), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_inputs_are_scaled(rgb_model, dtype):
    top = np.iinfo(dtype).max
    image = np.random.default_rng(1).integers(0, top, (21, 30, 3), endpoint=True).astype(dtype)
    np.testing.assert_array_equal(restore(image, rgb_model), official(rgb_model, to_tensor(image)))


def test_float64_input_to_float32_model(rgb_model):
    image = np.random.default_rng(2).random((20, 19, 3))
    np.testing.assert_array_equal(restore(image, rgb_model), official(rgb_model, to_tensor(image)))


def test_float_input_is_not_clipped():
    image = np.linspace(-0.5, 1.5, 8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3)
    result = restore(image, Recorder())
    np.testing.assert_allclose(result, np.clip(0.25 * image + 0.25, 0, 1), atol=1e-7)
    assert result.min() < 0.25 and result.max() > 0.5  # would be exactly 0.25..0.5 if clipped


def test_unsupported_dtype(rgb_model):
    with pytest.raises(InferenceError, match="int32"):
        restore(np.zeros((8, 8, 3), np.int32), rgb_model)


# --------------------------------------------------------------------------- channels


def test_gray_through_rgb_model_stays_gray(rgb_model):
    gray = np.random.default_rng(3).integers(0, 256, (19, 26), dtype=np.uint8)
    x = to_tensor(gray[..., None]).repeat(1, 3, 1, 1)
    h, w = gray.shape
    with torch.inference_mode():
        y = rgb_model(F.pad(x, (0, -w % 8, 0, -h % 8), mode="reflect"))[..., :h, :w]
    expected = y.mean(dim=1)[0].clamp(0, 1).numpy()
    result = restore(gray, rgb_model)
    assert result.shape == (h, w)
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(restore(gray[..., None], rgb_model), expected[..., None])


def test_gray_model():
    model = tiny(inp_channels=1, out_channels=1)
    image = np.random.default_rng(4).random((13, 22, 1), dtype=np.float32)
    result = restore(image, model)
    assert result.shape == (13, 22, 1)
    np.testing.assert_array_equal(result, official(model, to_tensor(image)))
    np.testing.assert_array_equal(restore(image[..., 0], model), result[..., 0])


def test_dual_pixel_six_to_three():
    model = tiny(inp_channels=6, out_channels=3, dual_pixel_task=True)
    image = np.random.default_rng(5).integers(0, 65536, (17, 24, 6)).astype(np.uint16)
    result = restore(image, model)
    assert result.shape == (17, 24, 3)
    np.testing.assert_array_equal(result, official(model, to_tensor(image)))


@pytest.mark.parametrize(
    ("model_kwargs", "channels"),
    [
        ({"inp_channels": 1, "out_channels": 1}, 3),  # RGB into a gray model
        ({}, 6),  # dual-pixel input into an RGB model
        ({}, 4),  # RGBA
        ({}, 2),
        ({"inp_channels": 6, "out_channels": 3, "dual_pixel_task": True}, 3),
    ],
)
def test_channel_mismatch(model_kwargs, channels):
    model = tiny(**model_kwargs)
    with pytest.raises(InferenceError) as info:
        restore(np.zeros((8, 8, channels), np.float32), model)
    message = str(info.value)
    assert "\n" not in message
    assert f"{channels} channel" in message and str(model.inp_channels) in message


def test_bad_shapes_and_out(rgb_model):
    with pytest.raises(InferenceError, match="shape"):
        restore(np.zeros((2, 8, 8, 3, 1), np.float32), rgb_model)
    with pytest.raises(InferenceError, match="empty"):
        restore(np.zeros((0, 8, 3), np.float32), rgb_model)
    with pytest.raises(InferenceError, match="expected"):
        restore_into(np.zeros((8, 8, 3), np.float32), rgb_model, np.zeros((8, 9, 3), np.uint8))


# --------------------------------------------------------------------------- tiling


@pytest.mark.parametrize(
    ("tile", "overlap"),
    [(20, 4), (8, 0), (0, 0), (-16, 0), (64, 32), (16, 8), (64, -1), (64.0, 8), (True, 0)],
)
def test_invalid_tile_or_overlap(rgb_model, tile, overlap):
    with pytest.raises(InferenceError) as info:
        restore(np.zeros((40, 40, 3), np.float32), rgb_model, tile=tile, tile_overlap=overlap)
    assert "tile" in str(info.value)


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (64, 40)])
def test_single_tile_equals_full_frame(rgb_model, shape):
    image = np.random.default_rng(6).random((*shape, 3), dtype=np.float32)
    np.testing.assert_array_equal(
        restore(image, rgb_model, tile=64, tile_overlap=16), restore(image, rgb_model)
    )


@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [((70, 130), 32, 8), ((50, 100), 16, 0), ((64, 100), 24, 11), ((41, 17), 16, 7)],
)
def test_tiles_blend_to_full_frame_for_a_pointwise_model(shape, tile, overlap):
    """Weights are normalised exactly: without context, tiles reproduce the full frame."""
    model = Pointwise()
    image = np.random.default_rng(7).random((*shape, 3), dtype=np.float32)
    tiled = restore(image, model, tile=tile, tile_overlap=overlap)
    np.testing.assert_allclose(tiled, restore(image, model), atol=2e-6)


def test_overlap_zero_is_plain_stitching(rgb_model):
    image = smooth_image(64, 96)
    result = restore(image, rgb_model, tile=32, tile_overlap=0)
    for top in (0, 32):
        for left in (0, 32, 64):
            part = image[top : top + 32, left : left + 32]
            np.testing.assert_array_equal(
                result[top : top + 32, left : left + 32], restore(part, rgb_model)
            )


@pytest.mark.parametrize("kind", ["flat", "gradient"])
def test_no_seams_with_a_local_model(kind):
    # A multiple of 8, so the full frame is not padded either and both see the same borders.
    h, w, tile, overlap = 48, 152, 32, 8
    image = np.full((h, w, 3), 0.4, np.float32) if kind == "flat" else smooth_image(h, w)
    model = LocalBlur()
    full = restore(image, model)
    blended = restore(image, model, tile=tile, tile_overlap=overlap)
    stitched = restore(image, model, tile=tile, tile_overlap=0)
    # The zero padding darkens each tile's border pixels: stitching shows it as lines...
    assert np.abs(stitched - full).max() > 0.1
    # ...blending weights those pixels by ~1%, leaving less than 1% of the range anywhere.
    assert np.abs(blended - full).max() < 0.01
    for axis in (0, 1):
        deriv = np.abs(np.diff(blended, axis=axis)).mean(axis=(1 - axis, 2))
        reference = np.abs(np.diff(full, axis=axis)).mean(axis=(1 - axis, 2))
        assert deriv.max() <= reference.max() + 1 / 255


@pytest.mark.parametrize("kind", ["flat", "gradient"])
def test_no_seams_with_a_real_restormer(rgb_model, kind):
    h, w, tile, overlap = 96, 160, 64, 16
    image = np.full((h, w, 3), 0.4, np.float32) if kind == "flat" else smooth_image(h, w)
    full = restore(image, rgb_model)
    blended = restore(image, rgb_model, tile=tile, tile_overlap=overlap)
    stitched = restore(image, rgb_model, tile=tile, tile_overlap=0)
    assert np.abs(blended - full).max() < 0.1
    assert np.abs(blended - full).mean() < 0.03
    cols = seam_ratio(blended, full, w, tile, overlap)
    rows = seam_ratio(blended.transpose(1, 0, 2), full.transpose(1, 0, 2), h, tile, overlap)
    assert cols < 2.0 and rows < 2.0
    # The statistic does see the seams of plain stitching.
    assert seam_ratio(stitched, full, w, tile, 0) > 3.0


def test_tile_grid_covers_the_image_inside_it():
    axis = _Axis.make(100, 32, 8)
    assert axis.starts == (0, 24, 48, 68) and axis.extent == 32
    weights = axis.weight_sum(np.dtype(np.float64))
    assert weights.min() > 0 and weights[0] == 1 and weights[-1] == 1
    np.testing.assert_allclose(weights[:60], 1.0)  # nominal overlaps: a partition of unity
    assert _Axis.make(20, 32, 8).starts == (0,) and _Axis.make(20, 32, 8).extent == 20


# --------------------------------------------------------------------------- output dtypes


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_out_dtype_conversion(rgb_model, dtype):
    image = np.random.default_rng(8).random((30, 45, 3), dtype=np.float32) * 1.4 - 0.2
    reference = restore(image, rgb_model, tile=16, tile_overlap=4)
    out = np.zeros((30, 45, 3), dtype)
    returned = restore_into(image, rgb_model, out, tile=16, tile_overlap=4)
    assert returned is out
    if dtype == np.float64:
        np.testing.assert_allclose(out, reference, atol=1e-7)
    else:
        top = np.iinfo(dtype).max
        np.testing.assert_array_equal(out, np.round(reference * np.float32(top)).astype(dtype))
        assert out.max() == top and out.min() == 0  # clipped inputs saturate


def test_memmap_input_and_output(tmp_path, rgb_model):
    image = np.random.default_rng(9).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    src = np.memmap(tmp_path / "in.raw", np.uint8, "w+", shape=image.shape)
    src[:] = image
    dst = np.memmap(tmp_path / "out.raw", np.uint8, "w+", shape=image.shape)
    restore_into(src, rgb_model, dst, tile=32, tile_overlap=8)
    expected = np.zeros_like(image)
    restore_into(image, rgb_model, expected, tile=32, tile_overlap=8)
    np.testing.assert_array_equal(np.asarray(dst), expected)


@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [((70, 53), 24, 8), ((40, 90), 32, 12), ((33, 33), None, 32), ((3, 64, 40), 16, 4)],
)
def test_in_place_restore_equals_a_separate_output(rgb_model, shape, tile, overlap):
    image = np.random.default_rng(11).integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = np.empty_like(image)
    restore_into(image, rgb_model, expected, tile=tile, tile_overlap=overlap)
    restore_into(image, rgb_model, image, tile=tile, tile_overlap=overlap)
    np.testing.assert_array_equal(image, expected)


# --------------------------------------------------------------------------- memory


def traced_peak(height: int, width: int, model: nn.Module) -> int:
    """numpy/Python peak (bytes) of a tiled uint8 -> uint8 restore, input and out excluded."""
    image = np.random.default_rng(10).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = np.empty_like(image)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        restore_into(image, model, out, tile=64, tile_overlap=16)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_height():
    model = Pointwise()
    small, large = traced_peak(64, 2048, model), traced_peak(1024, 2048, model)
    band_bytes = 64 * 2048 * 3 * 4  # one float32 band of tile rows (1.5 MiB)
    # Measured: ~1.71 MB for both heights; one float32 copy of the large image would be 24 MiB.
    assert large <= 1.1 * small
    assert large < 1.5 * band_bytes


# --------------------------------------------------------------------------- ensemble


def dihedral_average(model: nn.Module, image: np.ndarray) -> np.ndarray:
    """The x8 self-ensemble written out: transform, pad each to x8, run, crop, undo, mean."""
    x = to_tensor(image)
    outputs = []
    for k in range(8):
        t = torch.rot90(x, k % 4, dims=(2, 3))
        t = t.flip(3) if k >= 4 else t
        h, w = t.shape[-2:]
        with torch.inference_mode():
            y = model(F.pad(t, (0, -w % 8, 0, -h % 8), mode="reflect"))[..., :h, :w]
        y = y.flip(3) if k >= 4 else y
        outputs.append(torch.rot90(y, -(k % 4), dims=(2, 3)))
    total = outputs[0]
    for y in outputs[1:]:
        total = total + y
    return (total / 8).clamp(0, 1)[0].permute(1, 2, 0).numpy()


def test_ensemble_equals_manual_average(rgb_model):
    image = np.random.default_rng(11).random((21, 30, 3), dtype=np.float32)
    result = restore(image, rgb_model, ensemble=True)
    np.testing.assert_allclose(result, dihedral_average(rgb_model, image), atol=1e-6)
    assert np.abs(result - restore(image, rgb_model)).max() > 1e-3  # it does change things


@pytest.mark.parametrize("make_model", [Pointwise, LocalBlur], ids=["pointwise", "blur"])
def test_ensemble_of_equivariant_model_changes_nothing(make_model):
    """A 1x1 conv, or a symmetric 3x3 kernel on a frame that needs no padding, commutes with
    every rotation and flip, so averaging over them changes nothing."""
    model = make_model()
    image = np.random.default_rng(12).random((32, 48, 3), dtype=np.float32)
    for tile in (None, 16):
        np.testing.assert_allclose(
            restore(image, model, ensemble=True, tile=tile, tile_overlap=4),
            restore(image, model, tile=tile, tile_overlap=4),
            atol=2e-6,
        )


def test_ensemble_per_tile(rgb_model):
    image = np.random.default_rng(13).random((40, 40, 3), dtype=np.float32)
    calls = []
    result = restore(
        image,
        rgb_model,
        tile=64,
        tile_overlap=16,
        ensemble=True,
        progress=lambda *a: calls.append(a),
    )
    np.testing.assert_allclose(result, dihedral_average(rgb_model, image), atol=1e-6)
    assert calls == [(1, 1)]
    calls.clear()
    restore(
        image,
        rgb_model,
        tile=32,
        tile_overlap=8,
        ensemble=True,
        progress=lambda *a: calls.append(a),
    )
    assert calls == [(i, 4) for i in range(1, 5)]


def dual_pixel_flip_average(model: nn.Module, pair: np.ndarray) -> np.ndarray:
    """The dual-pixel ensemble written out: none, vertical, horizontal with the views swapped,
    both with the views swapped; each padded to x8, run, cropped, flipped back; the mean."""
    x = to_tensor(pair)
    swapped = torch.cat([x[:, 3:], x[:, :3]], dim=1)
    variants = [(x, ()), (x.flip(2), (2,)), (swapped.flip(3), (3,)), (swapped.flip(2, 3), (2, 3))]
    total = None
    for t, dims in variants:
        h, w = t.shape[-2:]
        with torch.inference_mode():
            y = model(F.pad(t, (0, -w % 8, 0, -h % 8), mode="reflect"))[..., :h, :w]
        y = y.flip(dims) if dims else y
        total = y if total is None else total + y
    return (total / 4).clamp(0, 1)[0].permute(1, 2, 0).numpy()


def test_dual_pixel_ensemble_averages_the_four_view_preserving_flips():
    model = tiny(inp_channels=6, dual_pixel_task=True)
    pair = np.random.default_rng(15).random((21, 30, 6), dtype=np.float32)
    for tile in (None, 64):  # the whole frame, or one tile
        result = restore(pair, model, ensemble=True, tile=tile, tile_overlap=16)
        np.testing.assert_allclose(result, dual_pixel_flip_average(model, pair), atol=1e-6)
    assert np.abs(result - restore(pair, model)).max() > 1e-3


def test_flips_ensemble_averages_the_four_flips(rgb_model):
    """A model whose ``ensemble_transforms`` is ``flips`` (deraining) never sees a rotation."""
    image = np.random.default_rng(17).random((21, 30, 3), dtype=np.float32)
    model = tiny()
    model.ensemble_transforms = "flips"
    x = to_tensor(image)
    total = 0
    for dims in ((), (2,), (3,), (2, 3)):
        t = x.flip(dims) if dims else x
        with torch.inference_mode():
            y = model(F.pad(t, (0, -30 % 8, 0, -21 % 8), mode="reflect"))[..., :21, :30]
        total = total + (y.flip(dims) if dims else y)
    expected = (total / 4).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(restore(image, model, ensemble=True), expected, atol=1e-6)
    plain = tiny()  # no ensemble_transforms of its own: the name given chooses
    np.testing.assert_allclose(restore(image, plain, ensemble="flips"), expected, atol=1e-6)
    model.ensemble_transforms = "rot45"
    with pytest.raises(ValueError, match="unknown ensemble 'rot45'"):
        restore(image, model, ensemble=True)
    with pytest.raises(InferenceError, match="unknown ensemble 'rot45'; choose one of"):
        restore(image, plain, ensemble="rot45")


# --------------------------------------------------------------------------- batch, progress


@pytest.mark.parametrize("tile", [None, 16])
def test_batch_equals_per_image(rgb_model, tile):
    images = np.random.default_rng(14).integers(0, 256, (3, 24, 37, 3), dtype=np.uint8)
    calls: list[tuple[int, int]] = []
    batched = restore(
        images, rgb_model, tile=tile, tile_overlap=4, progress=lambda *a: calls.append(a)
    )
    assert batched.shape == (3, 24, 37, 3)
    for i in range(3):
        single = restore(images[i], rgb_model, tile=tile, tile_overlap=4)
        np.testing.assert_allclose(batched[i], single, atol=1e-6)
    # Progress counts tiles, not images: the batch shares each forward.
    assert len(calls) == (1 if tile is None else 2 * 3)


def test_batch_runs_in_one_forward_per_tile():
    model = Recorder()
    restore(np.zeros((4, 40, 40, 3), np.float32), model, tile=32, tile_overlap=8)
    assert [shape for _, shape in model.calls] == [(4, 3, 32, 32)] * 4


def test_progress_calls(rgb_model):
    calls = []
    restore(np.zeros((20, 20, 3), np.uint8), rgb_model, progress=lambda *a: calls.append(a))
    assert calls == [(1, 1)]
    calls.clear()
    restore(np.zeros((50, 70, 3), np.uint8), rgb_model, tile=32, tile_overlap=8,
            progress=lambda *a: calls.append(a))  # fmt: skip
    assert calls == [(i, 6) for i in range(1, 7)]  # 2 rows x 3 columns


# --------------------------------------------------------------------------- auto tiling


def test_auto_tiling_with_tiny_budget_logs_and_tiles(rgb_model, caplog):
    image = smooth_image(100, 90)
    with caplog.at_level(logging.WARNING, logger="restormer"):
        auto = restore(image, rgb_model, memory_budget=1)
    assert "restoring in 64 x 64 tiles" in caplog.text
    assert "full frame would need" in caplog.text and "budget 0.00 GB" in caplog.text
    # The default overlap 32 is not < 64 / 2, so the automatic tile blends over 16 pixels.
    np.testing.assert_array_equal(auto, restore(image, rgb_model, tile=64, tile_overlap=16))


def test_no_auto_tiling_within_budget(rgb_model, caplog):
    image = smooth_image(40, 40)
    with caplog.at_level(logging.WARNING, logger="restormer"):
        result = restore(image, rgb_model, memory_budget=10**12)
    assert caplog.text == ""
    np.testing.assert_array_equal(result, official(rgb_model, to_tensor(image)))


def test_plan_tile_and_estimate(rgb_model):
    model = Restormer()  # estimates need only the config
    budget = estimate_memory(model, 256, 256)
    assert plan_tile(model, 256, 256, memory_budget=budget) is None
    assert plan_tile(model, 250, 251, memory_budget=budget) is None  # padded to 256
    assert plan_tile(model, 1000, 3000, memory_budget=budget) == 256
    assert plan_tile(model, 1000, 3000, memory_budget=budget - 1) == 248
    assert plan_tile(model, 100, 3000, memory_budget=estimate_memory(model, 104, 512)) == 512
    assert plan_tile(model, 4000, 4000, memory_budget=1) == 64
    assert plan_tile(model, 10**5, 10**5, memory_budget=10**12) == 1024
    # Linear in pixels plus a constant; doubled (less the constant) by a batch of 2 and float64.
    one, four = estimate_memory(model, 512, 512), estimate_memory(model, 1024, 1024)
    constant = one - (four - one) / 3
    assert 0 < constant < one / 10
    assert estimate_memory(model, 512, 512, batch=2) == pytest.approx(2 * one - constant)
    assert estimate_memory(model.double(), 512, 512) == pytest.approx(2 * one - constant)
    # The default model needs roughly 10-15 kB per float32 pixel (measured: 10.5 kB).
    per_pixel = (four - one) / (1024**2 - 512**2)
    assert 10_000 < per_pixel < 15_000
    assert estimate_memory(rgb_model, 512, 512) < one / 4  # a tiny model needs far less


def test_default_memory_budget_cpu():
    import psutil

    budget = default_memory_budget(torch.device("cpu"))
    assert 0 < budget <= psutil.virtual_memory().available


# --------------------------------------------------------------------------- dtype, device


def test_float64_model_computes_in_float64():
    model = Recorder(torch.float64)
    restore(np.full((8, 8, 3), 200, np.uint8), model, tile=None)
    assert model.calls == [(torch.float64, (1, 3, 8, 8))]
    real = tiny().double()
    image = np.random.default_rng(15).random((19, 21, 3))
    expected = official(real, to_tensor(image, torch.float64))
    np.testing.assert_array_equal(restore(image, real), expected)
