"""Train the small demo denoiser that README's first command uses (until shipped models exist).

A plain loop, not the full training recipe: blind colour Gaussian denoising (sigma ~ U[0, 50],
added in float), random 64x64 crops with the 8 flips/rotations from the training photos,
batch 8, L1, AdamW (lr 1e-3, weight decay 1e-4) on a cosine to 1e-6, gradient norm clipped at
0.01. Resumable: the state is saved atomically every 250 iterations.

    python scripts/train_demo_denoiser.py PHOTOS_DIR OUT.safetensors [--iters 4000]
"""

from __future__ import annotations

import argparse
import math
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from restormer.files import write_atomically
from restormer.io import read_image
from restormer.model import Restormer
from restormer.weights import save_weights

CONFIG = {"dim": 16, "num_blocks": (1, 2, 2, 3), "num_refinement_blocks": 1,
          "heads": (1, 2, 4, 8), "LayerNorm_type": "BiasFree"}  # fmt: skip
HELD_OUT = 6  # the last photos are kept for validation


def batches(photos: list[np.ndarray], rng: np.random.Generator, size: int = 64, n: int = 8):
    while True:
        crops = []
        for _ in range(n):
            img = photos[rng.integers(len(photos))]
            y, x = rng.integers(img.shape[0] - size), rng.integers(img.shape[1] - size)
            crop = np.rot90(img[y : y + size, x : x + size], k=rng.integers(4))
            crops.append(crop[:, ::-1] if rng.integers(2) else crop)
        clean = torch.from_numpy(np.stack(crops).astype(np.float32) / 255).permute(0, 3, 1, 2)
        sigma = torch.from_numpy(rng.uniform(0, 50, (n, 1, 1, 1)).astype(np.float32)) / 255
        yield clean + torch.randn_like(clean) * sigma, clean


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("photos", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--iters", type=int, default=4000)
    args = parser.parse_args()
    files = sorted(args.photos.glob("*.png"))[:-HELD_OUT]
    photos = [read_image(f).pixels for f in files]
    state_path = args.out.with_suffix(".state.pt")
    torch.manual_seed(0)
    model = Restormer(**CONFIG)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    start = 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["iter"]
    rng = np.random.default_rng(start)
    data = batches(photos, rng)
    t0, losses = time.time(), []
    for it in range(start, args.iters):
        lr = 1e-6 + (1e-3 - 1e-6) * 0.5 * (1 + math.cos(math.pi * it / args.iters))
        for g in opt.param_groups:
            g["lr"] = lr
        noisy, clean = next(data)
        loss = F.l1_loss(model(noisy), clean)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
        opt.step()
        losses.append(loss.item())
        if (it + 1) % 250 == 0 or it + 1 == args.iters:
            state = {"model": model.state_dict(), "opt": opt.state_dict(), "iter": it + 1}
            write_atomically(state_path, partial(torch.save, state), overwrite=True)
            print(f"iter {it + 1} loss {np.mean(losses):.4f} lr {lr:.2e} "
                  f"{(it + 1 - start) / (time.time() - t0):.2f} it/s", flush=True)  # fmt: skip
            losses = []
    meta = {
        "description": "DEMO ONLY: a small blind colour Gaussian denoiser (sigma 0-50) trained "
        f"for {args.iters} iterations on CPU by scripts/train_demo_denoiser.py; "
        "not a shipped model",
        "training": f"python scripts/train_demo_denoiser.py PHOTOS OUT --iters {args.iters}",
    }
    half = {k: v.half() for k, v in model.state_dict().items()}  # same results, half the size
    save_weights(half, args.out, config=model.config, metadata=meta, overwrite=True)


if __name__ == "__main__":
    main()
