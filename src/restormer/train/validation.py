"""Validation during training, computed as the official ``ImageCleanModel`` computes it.

Each whole validation image is reflect-padded at the bottom/right to a multiple of
``window_size``, restored, cropped back and clipped to [0, 1]. With ``use_image`` (the
official default) the result and the target become 8-bit images (``rgb2bgr`` swaps the
channels first, which matters for the Y channel) before the metrics; otherwise the metrics
see the [0, 1] floats. Each metric is the mean over the images.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from restormer.io import write_image
from restormer.metrics import calculate_psnr, calculate_ssim
from restormer.train.options import ValOptions

_METRICS = {"calculate_psnr": calculate_psnr, "calculate_ssim": calculate_ssim}


@torch.no_grad()
def validate(
    model: nn.Module,
    images: Iterable[tuple[str, np.ndarray, np.ndarray]],
    options: ValOptions,
    *,
    save_dir: Path | None = None,
) -> dict[str, float]:
    """Mean of each configured metric over ``(name, input CHW, target CHW)`` triples."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = dict.fromkeys(options.metrics, 0.0)
    count = 0
    try:
        for name, inputs, target in images:
            restored = _restore(model, inputs, options.window_size, device)
            if save_dir is not None:
                save_dir.mkdir(parents=True, exist_ok=True)
                pixels = np.round(restored.transpose(1, 2, 0) * 255).astype(np.uint8)
                write_image(save_dir / f"{Path(name).stem}.png", pixels, overwrite=True)
            ours, theirs = _as_metric_images(restored, target, options)
            for key, metric in options.metrics.items():
                totals[key] += _METRICS[metric.type](
                    ours,
                    theirs,
                    crop_border=metric.crop_border,
                    test_y_channel=metric.test_y_channel,
                )
            count += 1
    finally:
        model.train(was_training)
    return {key: total / max(count, 1) for key, total in totals.items()}


def _restore(model: nn.Module, inputs: np.ndarray, window: int, device: torch.device) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))[None].to(device)
    height, width = x.shape[-2:]
    x = F.pad(x, (0, -width % window, 0, -height % window), mode="reflect")
    y = model(x)[..., :height, :width].clamp(0, 1)
    return y[0].float().cpu().numpy()


def _as_metric_images(
    restored: np.ndarray, target: np.ndarray, options: ValOptions
) -> tuple[np.ndarray, np.ndarray]:
    """HWC arrays as the official metric functions receive them."""
    pair = []
    for chw in (restored, np.clip(target, 0, 1)):
        hwc = chw.transpose(1, 2, 0)
        if options.use_image:
            hwc = np.round(hwc * 255).astype(np.uint8).astype(np.float64)
            if options.rgb2bgr and hwc.shape[2] == 3:
                hwc = hwc[..., ::-1]
        pair.append(np.ascontiguousarray(hwc, dtype=np.float64))
    return pair[0], pair[1]
