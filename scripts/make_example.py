"""Make ``examples/noisy.png`` and measure what the demo denoiser does to it.

The clean photo is ``photo_030.png`` of ``../shared/data/photos`` (Grace Hopper, a US Navy
photo in the public domain), one of the photos the demo model never saw in training. Gaussian
noise of sigma 25 (seeded) is added, then rounded and clipped to 8 bit as a saved photo is.

    python scripts/make_example.py ../shared/data/photos/photo_030.png examples/noisy.png \\
        [--weights examples/demo-denoiser.safetensors]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from restormer.inference import restore
from restormer.io import read_image, write_image
from restormer.weights import load_model

SIGMA = 25
SEED = 2022


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two 8-bit images (as float arrays in 0..255)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clean", type=Path)
    parser.add_argument("noisy", type=Path)
    parser.add_argument(
        "--weights", help="weights file or shipped task name: also restore it, report the PSNR"
    )
    args = parser.parse_args()
    clean = read_image(args.clean).pixels
    noise = np.random.default_rng(SEED).normal(0, SIGMA, clean.shape)
    noisy = np.clip(np.round(clean + noise), 0, 255).astype(np.uint8)
    write_image(args.noisy, noisy, overwrite=True)
    print(f"{args.noisy}: sigma {SIGMA}, PSNR {psnr(noisy, clean):.2f} dB")
    if args.weights:
        model = load_model(args.weights)
        start = time.perf_counter()
        restored = np.round(restore(noisy, model) * 255)
        seconds = time.perf_counter() - start
        print(f"restored by {args.weights}: PSNR {psnr(restored, clean):.2f} dB ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
