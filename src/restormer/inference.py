"""Restore whole images with a Restormer: padding, memory-bounded tiling, self-ensemble.

The model needs height and width divisible by 8, sees NCHW floats in [0, 1] and can need
many gigabytes for one large frame. This module turns an H x W x C numpy image (any of the
usual dtypes, optionally a batch N x H x W x C) into the restored image:

* **Full frame** — the image is reflect-padded at the bottom/right to a multiple of 8, run
  once and cropped back, exactly as the official test scripts do.
* **Tiles** — for frames too large for the memory budget (or when ``tile`` is given) the
  image is cut into ``tile x tile`` squares that overlap by ``tile_overlap`` pixels. Each
  tile's output is weighted by a raised-cosine window that ramps only on sides that border
  another tile, and the weighted sum is normalised, so no tile grid is visible.
* **Memory** — only one band of tile rows is ever held in floating point: input rows are
  read and converted per tile (the input may be a ``np.memmap``), outputs accumulate in a
  band buffer, and rows that no later band touches are normalised and written straight into
  the caller's output array in its dtype. Peak memory is therefore independent of the image
  height, and a uint8/uint16 output needs no whole-image float buffer at all.
* **Self-ensemble** — transformed copies of each tile are restored and averaged: the 8
  flips/rotations, or the 4 flips where rotations would make inputs the model never saw
  (rain, dual-pixel pairs; :mod:`restormer.ensemble`).
* **TLC** — optionally, MDTA's attention statistics come from local windows
  (:mod:`restormer.local_attention`) instead of the whole tile.
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restormer.ensemble import check_ensemble, default_ensemble, ensemble_mean
from restormer.local_attention import check_window, local_attention
from restormer.model import DUAL_PIXEL_CHANNELS, RestormerConfig

__all__ = [
    "InferenceError",
    "ProgressFn",
    "default_memory_budget",
    "estimate_memory",
    "plan_tile",
    "restore",
    "restore_into",
]

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(tiles_done, tiles_total)`` after each tile (a full frame is one tile)."""

logger = logging.getLogger("restormer")

MULTIPLE = 8  # three 2x downsamplings
MIN_TILE = 16
PLAN_MIN_TILE = 64
PLAN_MAX_TILE = 1024
CPU_BUDGET_FRACTION = 0.5  # of available RAM: leave room for the OS, the image and the rest
CUDA_BUDGET_FRACTION = 0.8  # of free device memory: the GPU is usually ours alone
FALLBACK_AVAILABLE_RAM = 4 * 2**30  # when neither psutil nor sysconf can tell

# Memory model of the forward pass, see estimate_memory (calibrated on CPU, torch 2.13).
GDFN_COPIES = 3.0  # live copies of the widest GDFN activation (project_in, dwconv, gate product)
LEVEL1_COPIES = 10.0  # live full-resolution maps of the level-1 width (block input, norm, q/k/v,
#                       attention output, skips) plus oneDNN reorders
PER_PIXEL_FLOATS = 64.0  # width-independent per-pixel overhead (allocator, scratch)
FIXED_OVERHEAD = 64 * 2**20  # bytes, independent of the frame size
ESTIMATE_MARGIN = 1.2  # keeps every calibration point below the estimate (by 5% to 35%)

_UINT_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_OUT_DTYPES = (np.uint8, np.uint16, np.float16, np.float32, np.float64)


class InferenceError(ValueError):
    """A problem with the caller's image or options, with a one-line, user-facing message."""


# --------------------------------------------------------------------------- public API


def restore(
    image: np.ndarray,
    model: nn.Module,
    *,
    tile: int | None = None,
    tile_overlap: int = 32,
    ensemble: bool | str | None = None,
    tlc: int | None = None,
    progress: ProgressFn | None = None,
    memory_budget: int | None = None,
) -> np.ndarray:
    """Restore ``image`` with ``model`` and return float32 values clipped to [0, 1].

    ``image`` is H x W, H x W x C or a batch N x H x W x C of uint8 (divided by 255), uint16
    (divided by 65535) or float values (used as they are, not clipped: noisy inputs may leave
    [0, 1]). The result has the input's layout with the model's output channels (a gray image
    through an RGB model stays gray). See :func:`restore_into` for the options.
    """
    images = _as_nhwc(image)
    channels = _channel_plan(images.shape[-1], model)
    out = np.empty(_output_shape(image.shape, channels.out), dtype=np.float32)
    return restore_into(
        image,
        model,
        out,
        tile=tile,
        tile_overlap=tile_overlap,
        ensemble=ensemble,
        tlc=tlc,
        progress=progress,
        memory_budget=memory_budget,
    )


def restore_into(
    image: np.ndarray,
    model: nn.Module,
    out: np.ndarray,
    *,
    tile: int | None = None,
    tile_overlap: int = 32,
    ensemble: bool | str | None = None,
    tlc: int | None = None,
    progress: ProgressFn | None = None,
    memory_budget: int | None = None,
) -> np.ndarray:
    """Restore ``image`` into the preallocated ``out`` and return ``out``.

    ``out`` has the shape :func:`restore` would return; its dtype decides the conversion:
    float arrays get values clipped to [0, 1], uint8/uint16 arrays get them clipped, scaled
    to 255/65535 and rounded half-to-even (``np.round``). Rows are written as soon as they are
    final, so ``out`` may be a ``np.memmap`` and no whole-image float buffer is ever made.
    ``out`` may also be ``image`` itself (same shape and dtype): a row is overwritten only
    once no remaining tile reads it, so the restore then needs no second image buffer.

    ``tile`` (a multiple of 8, at least 16) restores in overlapping ``tile x tile`` squares;
    ``tile_overlap`` (0 <= overlap < tile / 2) is the blend width. With ``tile=None`` the full
    frame is used when :func:`estimate_memory` fits ``memory_budget`` (default:
    :func:`default_memory_budget`), else the tile size from :func:`plan_tile`, with a warning
    on the ``restormer`` logger. ``ensemble`` averages transformed copies of each tile
    (None: the model's ``self_ensemble``, see :mod:`restormer.restore_defaults`): with True,
    those of the model's ``ensemble_transforms`` (:mod:`restormer.ensemble`; by default the 8
    flips/rotations, a dual-pixel pair's 4 flips); with a name of
    :data:`restormer.ensemble.ENSEMBLES` (``"dihedral"``, ``"flips"``, ``"dual-pixel"``),
    those.
    ``tlc`` (a window in pixels, at least 16; 0: off; None: the model's own setting, which
    :func:`restormer.load_model` takes from the file) computes the attention statistics over
    local windows of that size instead of the whole image or tile (TLC, see
    :mod:`restormer.local_attention`; about 1.5x the model's training crop); the model's own
    setting is restored afterwards. ``progress(done, total)`` is called after each tile. The
    model runs on the device and floating dtype of its parameters under
    ``torch.inference_mode``.
    """
    images = _as_nhwc(image)
    batch, height, width, channels = images.shape
    chan = _channel_plan(channels, model)
    tlc_context = _tlc_context(model, tlc)
    transforms = _ensemble_transforms(model, ensemble, chan.model_in)
    _check_out(out, _output_shape(image.shape, chan.out))
    scale = _input_scale(images.dtype)
    device, dtype = _model_device_dtype(model)
    tile, overlap = _choose_tiling(
        model, height, width, batch, tile, tile_overlap, memory_budget, device
    )
    job = _Job(
        model=model,
        channels=chan,
        scale=scale,
        device=device,
        dtype=dtype,
        ensemble=transforms,
        rows=_Axis.make(height, tile, overlap),
        cols=_Axis.make(width, tile, overlap),
    )
    with torch.inference_mode(), tlc_context:
        _run_bands(job, images, _as_nhwc(out), progress)
    return out


def estimate_memory(model: nn.Module, height: int, width: int, *, batch: int = 1) -> int:
    """Upper bound, in bytes, of the memory one no-grad forward pass needs for a frame.

    ``height`` and ``width`` are rounded up to the multiple of 8 the model runs at; ``batch``
    images run together. The peak lies at full resolution in decoder level 1 / the refinement
    stage (``c1 = 2 * dim`` channels), where the GDFN expands to ``2 * hidden`` channels
    (``hidden = int(c1 * ffn_expansion_factor)``: project_in output, depthwise output, gate
    product) while the block input, its normalised copy, the attention maps and the level-1
    skip features stay alive. Per pixel, in elements of the model's dtype::

        floats = 3 * (2 * hidden) + 10 * c1 + 64 + inp_channels + out_channels
        bytes  = 1.2 * element_size * batch * pixels * floats + 64 MiB

    Calibration (CPU, torch 2.13): peak RSS growth (``ru_maxrss`` minus the RSS before the
    call, fresh subprocess, after a 16x16 warm-up) of one forward under ``inference_mode``.
    Default ``Restormer()``: 195 / 671 / 1489 MiB at 128² / 256² / 384² (slope 10.5 kB per
    pixel); also dim 24 (147 / 435 / 891 MiB), dim 32 (472 / 922 MiB at 256² / 384²), dim 16
    (850 MiB at 512²) and dim 48 with ffn 1.0 (479 / 911 MiB) and 4.0 (853 MiB at 256²). A
    least-squares fit gives 2.9 * (2 * hidden) + 10.0 * c1 + 79 MiB; the coefficients above
    with the 1.2 margin over-estimate every measurement by 5-35%. The default model comes
    out at 12.3 kB per float32 pixel (about 12.4 GB for one megapixel). Models without a
    ``RestormerConfig`` are estimated as the default architecture.
    """
    cfg = _model_config(model)
    _, dtype = _model_device_dtype(model)
    c1 = 2 * cfg.dim
    hidden = int(c1 * cfg.ffn_expansion_factor)
    floats = (
        GDFN_COPIES * 2 * hidden
        + LEVEL1_COPIES * c1
        + PER_PIXEL_FLOATS
        + cfg.inp_channels
        + cfg.out_channels
    )
    pixels = _round_up(max(height, 1)) * _round_up(max(width, 1)) * max(batch, 1)
    element = torch.empty((), dtype=dtype).element_size()
    return int(ESTIMATE_MARGIN * element * pixels * floats) + FIXED_OVERHEAD


def plan_tile(
    model: nn.Module,
    height: int,
    width: int,
    *,
    memory_budget: int | None = None,
    batch: int = 1,
) -> int | None:
    """Tile size for restoring a ``height x width`` frame within ``memory_budget`` bytes.

    Returns None when the full (padded) frame fits, else the largest multiple of 8 up to
    1024 whose tile fits (a dimension smaller than the tile counts at its own padded size),
    but never less than 64 — below that, tiles lose too much context to be worth it.
    """
    if memory_budget is None:
        memory_budget = default_memory_budget(_model_device_dtype(model)[0])
    if estimate_memory(model, height, width, batch=batch) <= memory_budget:
        return None
    full_h, full_w = _round_up(height), _round_up(width)
    for size in range(PLAN_MAX_TILE, PLAN_MIN_TILE - 1, -MULTIPLE):
        need = estimate_memory(model, min(size, full_h), min(size, full_w), batch=batch)
        if need <= memory_budget:
            return size
    return PLAN_MIN_TILE


def default_memory_budget(device: torch.device | str) -> int:
    """Bytes a forward pass may use on ``device`` by default.

    CUDA: 80% of the free device memory (``torch.cuda.mem_get_info``). Anything else: half of
    the available RAM (``psutil.virtual_memory().available``, or ``sysconf`` free pages when
    psutil is missing), leaving room for the image buffers, the OS and other programs.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_BUDGET_FRACTION)
    return int(_available_ram() * CPU_BUDGET_FRACTION)


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Channels:
    """How the image's channels map onto the model's."""

    model_in: int
    replicate: bool  # gray image through an RGB model: copy to 3, average the output back
    out: int  # channels written to the output


def _model_config(model: nn.Module) -> RestormerConfig:
    cfg = getattr(model, "config", None)
    return cfg if isinstance(cfg, RestormerConfig) else RestormerConfig()


def _model_channels(model: nn.Module) -> tuple[int, int]:
    cfg = _model_config(model)
    return (
        int(getattr(model, "inp_channels", cfg.inp_channels)),
        int(getattr(model, "out_channels", cfg.out_channels)),
    )


def _channel_plan(channels: int, model: nn.Module) -> _Channels:
    """Match image channels to the model, or raise InferenceError naming both counts."""
    model_in, model_out = _model_channels(model)
    if channels == model_in:
        return _Channels(model_in, replicate=False, out=model_out)
    if channels == 1 and model_in == 3 and model_out == 3:
        return _Channels(model_in, replicate=True, out=1)
    hint = ""
    if model_in == DUAL_PIXEL_CHANNELS:
        hint = " (a dual-pixel model takes the left and right views stacked as 6 channels)"
    elif channels == DUAL_PIXEL_CHANNELS:
        hint = " (6-channel dual-pixel input needs a dual-pixel model)"
    raise InferenceError(
        f"the image has {channels} channel(s) but the model takes {model_in}{hint}"
    )


def _as_nhwc(array: np.ndarray) -> np.ndarray:
    """A 4-D N x H x W x C view of an H x W, H x W x C or N x H x W x C array (never a copy)."""
    if array.ndim == 2:
        view = array[None, :, :, None]
    elif array.ndim == 3:
        view = array[None]
    elif array.ndim == 4:
        view = array
    else:
        raise InferenceError(
            f"expected an H x W, H x W x C or N x H x W x C image, got shape {array.shape}"
        )
    if 0 in view.shape:
        raise InferenceError(f"the image is empty (shape {array.shape})")
    return view


def _output_shape(shape: tuple[int, ...], channels: int) -> tuple[int, ...]:
    """The input's layout with ``channels`` channels; an H x W input stays H x W if gray."""
    if len(shape) == 2:
        return shape if channels == 1 else (*shape, channels)
    return (*shape[:-1], channels)


def _check_out(out: np.ndarray, shape: tuple[int, ...]) -> None:
    if tuple(out.shape) != tuple(shape):
        raise InferenceError(f"the output array has shape {out.shape}, expected {shape}")
    if out.dtype not in _OUT_DTYPES:
        raise InferenceError(f"unsupported output dtype {out.dtype} (use uint8, uint16 or float)")
    if not out.flags.writeable:
        raise InferenceError("the output array is read-only")


def _input_scale(dtype: np.dtype) -> float | None:
    """Divisor that maps the input dtype to [0, 1]; None for floats, which are used as is."""
    if dtype in _UINT_SCALE:
        return _UINT_SCALE[dtype]
    if dtype.kind == "f":
        return None
    raise InferenceError(f"unsupported image dtype {dtype} (use uint8, uint16 or float)")


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter (CPU float32 if none)."""
    for param in model.parameters():
        if param.is_floating_point():
            return param.device, param.dtype
    return torch.device("cpu"), torch.float32


def _choose_tiling(
    model: nn.Module,
    height: int,
    width: int,
    batch: int,
    tile: int | None,
    overlap: int,
    memory_budget: int | None,
    device: torch.device,
) -> tuple[int | None, int]:
    """Validated (tile, overlap); tile None means the full frame."""
    overlap = _as_int(overlap, "tile_overlap")
    if overlap < 0:
        raise InferenceError(f"tile_overlap must be >= 0, got {overlap}")
    if tile is not None:
        tile = _as_int(tile, "tile")
        if tile < MIN_TILE or tile % MULTIPLE:
            raise InferenceError(f"tile must be a multiple of 8 and >= {MIN_TILE}, got {tile}")
        if 2 * overlap >= tile:
            raise InferenceError(f"tile_overlap must be < tile / 2 ({tile / 2:g}), got {overlap}")
        return tile, overlap
    budget = memory_budget if memory_budget is not None else default_memory_budget(device)
    planned = plan_tile(model, height, width, memory_budget=budget, batch=batch)
    if planned is None:
        return None, overlap
    need = estimate_memory(model, height, width, batch=batch)
    logger.warning(
        "full frame would need %.2f GB, budget %.2f GB: restoring in %d x %d tiles",
        need / 1e9,
        budget / 1e9,
        planned,
        planned,
    )
    # An automatic tile may be small: keep the requested blend width only where it is valid.
    return planned, overlap if 2 * overlap < planned else planned // 4


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise InferenceError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InferenceError(f"{name} must be an integer, got {value!r}") from None


def _ensemble_transforms(
    model: nn.Module, ensemble: bool | str | None, in_channels: int
) -> str | None:
    """The ensemble a restore runs (a name of :data:`restormer.ensemble.ENSEMBLES`), or None."""
    if isinstance(ensemble, str):
        try:
            return check_ensemble(ensemble)
        except ValueError as e:
            raise InferenceError(str(e)) from None
    if ensemble is None:
        ensemble = bool(getattr(model, "self_ensemble", False))
    if not ensemble:
        return None
    return check_ensemble(
        getattr(model, "ensemble_transforms", None) or default_ensemble(in_channels)
    )


def _tlc_context(model: nn.Module, tlc: object) -> contextlib.AbstractContextManager[None]:
    """Where the forward passes run with TLC as asked: None keeps the model's own setting,
    0 switches it off, a window switches it on; InferenceError for a bad value."""
    if tlc is None:
        return contextlib.nullcontext()
    try:
        window = check_window(tlc)
    except ValueError as e:
        raise InferenceError(str(e)) from None
    if not hasattr(model, "set_local_attention"):
        if window is None:
            return contextlib.nullcontext()
        raise InferenceError("tlc needs a Restormer model (one with set_local_attention)")
    return local_attention(model, window)


def _available_ram() -> int:
    try:
        import psutil
    except ImportError:
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return FALLBACK_AVAILABLE_RAM
    return int(psutil.virtual_memory().available)


def _round_up(size: int) -> int:
    return -(-size // MULTIPLE) * MULTIPLE


# --------------------------------------------------------------------------- tile geometry


@dataclass(frozen=True)
class _Axis:
    """Tile placement along one image axis: starts, common extent and blend windows."""

    size: int
    extent: int
    starts: tuple[int, ...]
    overlap: int

    @staticmethod
    def make(size: int, tile: int | None, overlap: int) -> _Axis:
        """Grid with stride ``tile - overlap``; the last tile is shifted to end at the edge.

        A dimension no larger than the tile (or the full frame, ``tile=None``) gets a single
        tile spanning it; it is padded to a multiple of 8 only when run through the model.
        """
        if tile is None or size <= tile:
            return _Axis(size, size, (0,), overlap)
        starts = (*range(0, size - tile, tile - overlap), size - tile)
        return _Axis(size, tile, starts, overlap)

    def window(self, index: int, dtype: np.dtype) -> np.ndarray:
        """Blend weights of tile ``index``: a raised-cosine ramp over ``overlap`` pixels on
        each side that borders another tile, 1 elsewhere (never 0, image borders flat).

        Opposite ramps of two neighbours sum to exactly 1, so where tiles overlap by the
        nominal amount the blend is a partition of unity; the shifted last tile overlaps more
        and there the normalisation by the summed weights does the averaging.
        """
        weights = np.ones(self.extent, dtype=dtype)
        if self.overlap:
            ramp = _ramp(self.overlap, dtype)
            if index > 0:
                weights[: self.overlap] = ramp
            if index < len(self.starts) - 1:
                weights[-self.overlap :] = ramp[::-1]
        return weights

    def weight_sum(self, dtype: np.dtype) -> np.ndarray:
        """Summed window of all tiles at each pixel of the axis (> 0 everywhere)."""
        total = np.zeros(self.size, dtype=dtype)
        for index, start in enumerate(self.starts):
            total[start : start + self.extent] += self.window(index, dtype)
        return total


def _ramp(length: int, dtype: np.dtype) -> np.ndarray:
    """Raised cosine rising from ~0 to ~1 over ``length`` pixels, sampled at pixel centres."""
    phase = (np.arange(length, dtype=np.float64) + 0.5) / length
    return (0.5 - 0.5 * np.cos(math.pi * phase)).astype(dtype)


# --------------------------------------------------------------------------- model runs


def _pad_to_multiple(x: Tensor) -> Tensor:
    """Reflect-pad the bottom/right of an NCHW tensor to multiples of 8, like the official
    scripts (``F.pad(x, (0, pw, 0, ph), 'reflect')``).

    Where a pad is not smaller than the image (tiny images), torch cannot reflect in one go:
    the reflection is then repeated on the already-padded tensor, which gives the same values
    as ``np.pad(..., mode='reflect')``; a 1-pixel dimension is replicated instead.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % MULTIPLE, -width % MULTIPLE
    if pad_h < height and pad_w < width:
        return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    return _reflect_repeatedly(_reflect_repeatedly(x, pad_w, dim=-1), pad_h, dim=-2)


def _reflect_repeatedly(x: Tensor, pad: int, dim: int) -> Tensor:
    while pad > 0:
        size = x.shape[dim]
        step = pad if size == 1 else min(pad, size - 1)
        mode = "replicate" if size == 1 else "reflect"
        x = F.pad(x, (0, step, 0, 0) if dim == -1 else (0, 0, 0, step), mode=mode)
        pad -= step
    return x


def _run_model(model: nn.Module, x: Tensor) -> Tensor:
    """Pad to multiples of 8, run, crop back to the input's size."""
    height, width = x.shape[-2:]
    return model(_pad_to_multiple(x))[..., :height, :width]


def _forward(job: _Job, x: Tensor, acc_dtype: torch.dtype) -> Tensor:
    """One tile through the model, or with ``job.ensemble`` the mean over the transforms of
    that ensemble (:mod:`restormer.ensemble`; each padded to multiples of 8 on its own, as
    rotations swap height and width)."""
    if job.ensemble is None:
        return _run_model(job.model, x).to(acc_dtype)
    return ensemble_mean(lambda t: _run_model(job.model, t), x, job.ensemble, acc_dtype)


# --------------------------------------------------------------------------- band loop


@dataclass(frozen=True)
class _Job:
    model: nn.Module
    channels: _Channels
    scale: float | None
    device: torch.device
    dtype: torch.dtype
    ensemble: str | None  # the ensemble's name (restormer.ensemble), None: plain
    rows: _Axis
    cols: _Axis

    @property
    def acc_dtype(self) -> np.dtype:
        """Accumulation dtype: float64 for float64 models, else float32."""
        return np.dtype(np.float64 if self.dtype == torch.float64 else np.float32)


def _restore_tile(job: _Job, region: np.ndarray) -> np.ndarray:
    """Restore one N x h x w x C input region; returns N x h x w x C_out in ``acc_dtype``."""
    host = np.float64 if job.dtype == torch.float64 else np.float32
    x = torch.from_numpy(np.ascontiguousarray(region, dtype=host)).to(job.device, job.dtype)
    if job.scale is not None:
        x = x / job.scale
    x = x.permute(0, 3, 1, 2).contiguous()
    if job.channels.replicate:
        x = x.repeat(1, job.channels.model_in, 1, 1)
    acc_torch = torch.float64 if job.acc_dtype == np.float64 else torch.float32
    y = _forward(job, x, acc_torch)
    if job.channels.replicate:
        y = y.mean(dim=1, keepdim=True)
    return y.permute(0, 2, 3, 1).cpu().numpy()


def _run_bands(job: _Job, images: np.ndarray, out: np.ndarray, progress: ProgressFn | None) -> None:
    """Restore band by band, writing rows into ``out`` (N x H x W x C view) once final.

    The band buffer covers the rows of one band of tiles; after a band, the rows above the
    next band's start are final. The blend weight of a pixel is separable (row window times
    column window), so the normalisation needs only a row vector and a column vector.
    """
    rows, cols, dtype = job.rows, job.cols, job.acc_dtype
    batch, _, width, _ = images.shape
    band = np.zeros((batch, rows.extent, width, job.channels.out), dtype=dtype)
    band_weight = np.zeros(rows.extent, dtype=dtype)
    col_weight = cols.weight_sum(dtype)
    col_windows = [cols.window(i, dtype)[None, :, None] for i in range(len(cols.starts))]
    total, done = len(rows.starts) * len(cols.starts), 0
    for row_index, top in enumerate(rows.starts):
        row_window = rows.window(row_index, dtype)
        band_weight += row_window
        for col_index, left in enumerate(cols.starts):
            region = images[:, top : top + rows.extent, left : left + cols.extent]
            weight = row_window[:, None, None] * col_windows[col_index]
            # Not in place: the model's output tensor is not ours to modify.
            band[:, :, left : left + cols.extent] += _restore_tile(job, region) * weight
            done += 1
            if progress is not None:
                progress(done, total)
        is_last = row_index + 1 == len(rows.starts)
        final = (rows.size if is_last else rows.starts[row_index + 1]) - top
        done_rows = band[:, :final]  # normalised in place: these rows are not needed again
        done_rows /= band_weight[:final, None, None]
        done_rows /= col_weight[None, :, None]
        _write_rows(out[:, top : top + final], done_rows)
        _shift_up(band, final)
        _shift_up(band_weight, final)


def _shift_up(buffer: np.ndarray, rows: int) -> None:
    """Move the band buffer up by ``rows`` rows (axis 1 for 4-D, 0 for 1-D) and zero the rest."""
    view = np.moveaxis(buffer, 1 if buffer.ndim == 4 else 0, 0)
    keep = max(view.shape[0] - rows, 0)
    if keep:
        view[:keep] = view[rows:]  # numpy buffers the copy itself where the ranges overlap
    view[keep:] = 0


def _write_rows(target: np.ndarray, values: np.ndarray) -> None:
    """Clip to [0, 1] and store in ``target``'s dtype (uints: scaled, rounded half-to-even).

    Works in place on ``values`` so that no temporary of the band's size is made.
    """
    np.clip(values, 0.0, 1.0, out=values)
    if target.dtype.kind == "u":
        values *= np.iinfo(target.dtype).max
        np.round(values, out=values)
    target[...] = values
