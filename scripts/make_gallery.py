"""Before/after crops of every shipped model on a held-out photo: ``docs/gallery/``.

    python scripts/make_gallery.py [--photos datasets/photos/val] [--crop 192] [--seed 7]

For each task with a shipped model: one held-out photo (never trained on) is degraded afresh
(``restormer.degradations``: Gaussian noise at sigma 25, heavy rain, other tasks a random
draw), restored with ``restormer.restore`` (the model's test-time defaults), and a crop of
the input, our result and the clean original is written side by side to
``docs/gallery/TASK.png``, with its PSNR numbers in ``docs/gallery.md``. Dual-pixel inputs
show the left view.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from restormer import degradations, load_model, restore
from restormer.io import read_image, to_float, to_gray, write_image
from restormer.metrics import calculate_psnr
from restormer.shipped import shipped_models
from restormer.tasks import TASKS

ROOT = Path(__file__).resolve().parent.parent
# Which held-out photo shows each task best (by name order in the folder).
PHOTO_FOR = {task: index % 6 for index, task in enumerate(TASKS)}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    to8 = lambda x: np.round(np.clip(x, 0, 1) * 255)  # noqa: E731
    return calculate_psnr(to8(a), to8(b))


def _degrade(task: str, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A telling degradation: Gaussian noise of sigma 25, heavy rain, else any draw."""
    params = degradations.sample(task, rng)
    if task.startswith("gaussian-"):
        params = dataclasses.replace(params, sigma=25.0)
    while task == "deraining" and not params.heavy:
        params = degradations.sample(task, rng)
    return degradations.apply(task, clean, rng, params)


def _rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x[..., :3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=ROOT / "datasets" / "photos" / "val")
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()

    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() == ".png")
    folder = args.out / "gallery"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Gallery: the shipped models on held-out photos",
        "",
        "Each row: the degraded input, the shipped model's result, the clean original (a crop;",
        "PSNR over the whole photo). Photos never used in training, degraded afresh by",
        f"`restormer.degradations`; made with `python scripts/make_gallery.py --seed {args.seed}`.",
        "",
    ]
    for task, shipped in shipped_models().items():
        if shipped is None:
            continue
        photo = to_float(read_image(photos[PHOTO_FOR[task] % len(photos)]).pixels)
        photo = photo[..., :3].astype(np.float32)
        clean = to_gray(photo) if "gray" in task else photo
        rng = np.random.default_rng([args.seed, list(TASKS).index(task)])
        degraded = _degrade(task, clean, rng)
        restored = restore(degraded, load_model(task))
        shown = degraded[..., :3] if degraded.shape[2] == 6 else degraded
        view = degradations.combined_view(degraded) if degraded.shape[2] == 6 else degraded
        h, w = clean.shape[:2]
        c = min(args.crop, h, w)
        top, left = (h - c) // 2, (w - c) // 2
        row = np.concatenate(
            [_rgb(x[top : top + c, left : left + c]) for x in (shown, restored, clean)], axis=1
        )
        pixels = np.round(np.clip(row, 0, 1) * 255).astype(np.uint8)
        write_image(folder / f"{task}.png", pixels, overwrite=True)
        lines += [
            f"## {task}",
            "",
            f"![{task}: input, ours, clean](gallery/{task}.png)",
            "",
            f"input {_psnr(view, clean):.2f} dB -> ours {_psnr(restored, clean):.2f} dB",
            "",
        ]
        print(f"{task}: done", flush=True)
    (args.out / "gallery.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
