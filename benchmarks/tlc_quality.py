"""Does TLC help? PSNR of the demo denoiser with and without local attention statistics.

    python benchmarks/tlc_quality.py [--photos ../shared/data/photos] [--windows 64 96 128 192]
                                     [--weights examples/demo-denoiser.safetensors] [--name NAME]

The demo denoiser (``examples/demo-denoiser.safetensors``) was trained on 64 x 64 crops, and
the last six photos of ``../shared/data/photos`` were held out of its training. Each of them
gets Gaussian noise of sigma 15, 25 and 50 (``np.random.default_rng([2022, i, sigma])``,
rounded and clipped to 8 bit), is restored by ``restormer.restore`` without TLC and with each
window (default stride divisor), and scored by ``restormer.metrics.calculate_psnr`` (RGB,
8 bit, no border crop) against the clean photo. Prints per-photo gains and the means; writes
``benchmarks/results/tlc_quality[-NAME].json``. A demo model, one noise type: a sanity
check that TLC does what it should, not a measurement for the shipped models.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from result_file import write_result

import restormer
from restormer.io import read_image
from restormer.metrics import calculate_psnr

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = 6
SIGMAS = (15, 25, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared/data/photos")
    parser.add_argument("--weights", type=Path, default=ROOT / "examples/demo-denoiser.safetensors")
    parser.add_argument("--windows", type=int, nargs="+", default=[64, 96, 128, 192])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = restormer.load_model(args.weights)
    photos = sorted(args.photos.glob("*.png"))[-HELD_OUT:]
    settings: list[int | None] = [None, *args.windows]
    psnr: dict[int | None, list[float]] = {w: [] for w in settings}
    rows = []
    for index, path in enumerate(photos):
        clean = read_image(path).pixels
        for sigma in SIGMAS:
            noise = np.random.default_rng([2022, index, sigma]).normal(0, sigma, clean.shape)
            noisy = np.clip(np.round(clean + noise), 0, 255).astype(np.uint8)
            row: dict[str, object] = {"photo": path.name, "sigma": sigma}
            for window in settings:
                out = np.round(restormer.restore(noisy, model, tlc=window) * 255).astype(np.uint8)
                psnr[window].append(calculate_psnr(out, clean, crop_border=0))
                row[f"psnr_{window or 'off'}"] = round(psnr[window][-1], 4)
            rows.append(row)
            gains = " ".join(f"{w}: {psnr[w][-1] - psnr[None][-1]:+.3f}" for w in args.windows)
            print(f"{path.name} sigma {sigma:>2}: off {psnr[None][-1]:.3f} dB, gain {gains}")
    summary = {}
    for window in settings:
        gain = np.subtract(psnr[window], psnr[None])
        summary[str(window or "off")] = {
            "mean_psnr": round(float(np.mean(psnr[window])), 4),
            "mean_gain": round(float(gain.mean()), 4),
            "min_gain": round(float(gain.min()), 4),
        }
        mean = np.mean(psnr[window])
        print(f"tlc {window or 'off':>4}: mean {mean:.3f} dB, gain {gain.mean():+.3f} "
              f"(min {gain.min():+.3f})")  # fmt: skip
    result = {
        "benchmark": "tlc_quality",
        "weights": args.weights.name,
        "sigmas": list(SIGMAS),
        "summary": summary,
        "rows": rows,
        "torch": torch.__version__,
    }
    write_result("tlc_quality", args.name, result)


if __name__ == "__main__":
    main()
