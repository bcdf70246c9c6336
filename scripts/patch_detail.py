"""How much detail training windows hold: plain random crops against the best of k.

Prints, for the training and the held-out photos, quantiles of
:func:`restormer.data.augment.detail` (in 8-bit levels) over random windows, as
``detail_candidates: k`` would choose them. It shows whether the training photos' crops are
as busy as the photos a model is judged on, and which k brings them closer::

    python scripts/patch_detail.py            # datasets/photos/{train,val}, 96-px windows
    python scripts/patch_detail.py --downscale 0.5 1   # training windows as downscale cuts them
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from restormer.data.augment import (
    crop,
    detail,
    draw_detailed_window,
    draw_scale,
    shrink,
    source_size,
)
from restormer.io import read_image

ROOT = Path(__file__).resolve().parent.parent
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def window_details(
    photos: list[np.ndarray],
    patch: int,
    candidates: int,
    per_photo: int,
    seed: int,
    downscale: tuple[float, float] | None = None,
) -> np.ndarray:
    """Detail of ``per_photo`` windows per photo, each the best of ``candidates`` (with
    ``downscale``: cut larger and shrunk to ``patch``, as the training option does)."""
    rng = np.random.default_rng(seed)
    values = []
    for photo in photos:
        for _ in range(per_photo):
            size = patch if downscale is None else source_size(patch, draw_scale(rng, *downscale))
            w = draw_detailed_window(rng, photo, size, None, False, candidates)
            window = crop(photo, w.top, w.left, w.size).astype(np.float32)
            values.append(detail(shrink(window, patch)))
    return np.array(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=ROOT / "datasets" / "photos")
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--per-photo", type=int, default=200)
    parser.add_argument("--max-candidates", type=int, default=4)
    parser.add_argument(
        "--downscale", type=float, nargs=2, metavar=("LOW", "HIGH"), help="as the dataset option"
    )
    args = parser.parse_args()
    header = "photos  k  " + "  ".join(f"q{int(q * 100):02d}" for q in QUANTILES)
    print(f"detail of {args.patch}-px windows, in 8-bit levels\n{header}")
    for split in ("train", "val"):
        folder = args.photos / split
        if not folder.is_dir():
            raise SystemExit(f"{folder}: no such folder (run python scripts/prepare_photos.py)")
        photos = [read_image(p).pixels for p in sorted(folder.iterdir()) if p.suffix == ".png"]
        for k in range(1, (args.max_candidates if split == "train" else 1) + 1):
            shrunk = args.downscale if split == "train" else None
            values = window_details(photos, args.patch, k, args.per_photo, k, shrunk)
            row = "  ".join(f"{v:5.1f}" for v in np.quantile(values, QUANTILES))
            print(f"{split:6}  {k}  {row}")


if __name__ == "__main__":
    main()
