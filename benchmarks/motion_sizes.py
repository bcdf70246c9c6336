"""What the motion deblurring model gains at each blur size, on held-out photos.

    python benchmarks/motion_sizes.py [--weights motion-deblurring | FILE ...]
                                      [--sizes 7 11 15 21 31 41] [--photos datasets/photos/val]
                                      [--seed 2026] [--name NAME]

``benchmarks/quality.py`` scores one mean over blur sizes drawn from 7 to 41 px; this splits
it by size, to tell a model that sharpens every blur a little from one that restores the
small ones and gives up on the large. Every held-out photo is blurred at each size by a
camera-shake and a near-linear kernel (kernel seeds from ``[seed, size, photo, kind]``, sensor
noise of 1 level), restored by each model with its test-time defaults, and scored by RGB PSNR
on 8 bits. Prints the input's and each model's mean PSNR per size; writes
``benchmarks/results/motion_sizes[-NAME].json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from restormer import load_model, restore
from restormer.degradations.blur import MOTION_KINDS, MotionBlurParams, apply_motion_blur
from restormer.weights import WeightsError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import _psnr, held_out_photos
from result_file import write_result

ROOT = Path(__file__).resolve().parent.parent
NOISE_SIGMA = 1.0


def blurred(clean: np.ndarray, size: int, kind: str, seed: list[int]) -> np.ndarray:
    """``clean`` through one motion kernel of ``size`` px and ``kind``, with sensor noise."""
    rng = np.random.default_rng(seed)
    params = MotionBlurParams(kind, size, int(rng.integers(0, 2**63 - 1)), NOISE_SIGMA)
    return apply_motion_blur(clean, rng, params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=["motion-deblurring"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[7, 11, 15, 21, 31, 41])
    parser.add_argument("--photos", type=Path, default=ROOT / "datasets" / "photos" / "val")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--name", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bad = [size for size in args.sizes if size < 1 or size % 2 == 0]
    if bad:
        raise SystemExit(f"--sizes: kernel sides are odd and positive, not {bad}")
    try:
        models = {str(source): load_model(source) for source in args.weights}
    except WeightsError as error:
        raise SystemExit(f"--weights: {error}") from None
    photos = held_out_photos(args.photos)

    print(f"{'size':>5} {'input':>7} " + " ".join(f"{Path(n).stem[:18]:>18}" for n in models))
    rows = []
    for size in args.sizes:
        scores: dict[str, list[float]] = {"input": [], **{name: [] for name in models}}
        for index, (_, clean) in enumerate(photos):
            for kind_index, kind in enumerate(MOTION_KINDS):
                degraded = blurred(clean, size, kind, [args.seed, size, index, kind_index])
                scores["input"].append(_psnr(degraded, clean, False))
                for name, model in models.items():
                    scores[name].append(_psnr(restore(degraded, model), clean, False))
        means = {name: float(np.mean(values)) for name, values in scores.items()}
        rows.append({"size": size, **means})
        cells = " ".join(f"{means[n]:>18.2f}" for n in models)
        print(f"{size:>5} {means['input']:>7.2f} {cells}", flush=True)

    report = {
        "command": "python benchmarks/motion_sizes.py " + " ".join(sys.argv[1:]),
        "photos": [name for name, _ in photos],
        "seed": args.seed,
        "rows": rows,
    }
    write_result("motion_sizes", args.name, report)


if __name__ == "__main__":
    main()
