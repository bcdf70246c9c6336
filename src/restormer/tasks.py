"""The seven restoration tasks, named the same everywhere: CLI, API, configs, shipped models."""

from __future__ import annotations

TASKS: dict[str, str] = {
    "deraining": "remove rain streaks",
    "motion-deblurring": "remove camera-shake and motion blur",
    "defocus-deblurring": "sharpen an out-of-focus photo (single image)",
    "dual-pixel-defocus-deblurring": "sharpen an out-of-focus photo from its dual-pixel views",
    "gaussian-color-denoising": "remove Gaussian noise from a colour photo (blind, sigma 0-50)",
    "gaussian-gray-denoising": "remove Gaussian noise from a grayscale photo (blind, sigma 0-50)",
    "real-denoising": "remove real camera noise",
}
