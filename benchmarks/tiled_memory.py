"""Peak memory of ``restormer restore --tile N`` as the image grows (it should stay flat).

Each size runs the real command in a fresh process (read PNG, restore in tiles, write PNG);
the peak resident memory of that process is what ``wait4`` reports when it exits.

    python benchmarks/tiled_memory.py [--model small|full | --weights W] [--sizes 6 24]
                                      [--tile 256] [--bands N] [--repeat 3] [--name NAME]

The default model is a small random Restormer (dim 8), where fixed costs are lowest and
image buffers weigh the most: the hardest case for a flat profile. With ``--bands N`` the
child does what ``restormer restore`` does (read, restore in place, write) but stops the
restore after N rows of tiles: every row of tiles needs the same memory, so the peak is the
same while a full-size model takes minutes instead of an hour. Prints a table and writes
``benchmarks/results/tiled_memory[-NAME].json``.

The same command's peak varies from run to run by up to about 50 MiB: glibc's malloc moves
its mmap threshold as large blocks are freed, so how much of the forward pass's freed memory
stays resident depends on the order in which threads allocate. Each size therefore runs
``--repeat`` times (sizes interleaved) and the median peak is reported, with every run in
the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from result_file import write_result

from restormer import Restormer, save_weights
from restormer.io import write_image

SMALL = {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1, "heads": (1, 1, 2, 2)}
MODEL_NAMES = {
    "small": "random dim-8 Restormer",
    "full": "random full-size Restormer (default config)",
}


def synthetic_photo(megapixels: float, seed: int = 0) -> np.ndarray:
    """A 3:2 RGB image with smooth structure and texture (compresses like a photo)."""
    width = round(math.sqrt(megapixels * 1e6 * 3 / 2))
    height = round(width * 2 / 3)
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    image = np.empty((height, width, 3), dtype=np.uint8)
    for c in range(3):
        wave = 0.5 + 0.25 * np.sin(2 * np.pi * (3 + c) * x) * np.cos(2 * np.pi * (2 + c) * y)
        noise = rng.normal(0, 0.03, (height, width)).astype(np.float32)
        image[..., c] = np.clip((wave + noise) * 255, 0, 255).astype(np.uint8)
    return image


# Runs the measured command and prints its peak RSS in KiB. A fresh, small interpreter does
# the waiting: ru_maxrss counts the moment after fork, when a child still maps its parent's
# pages, so waiting from this (large) process would report this process's size instead.
_LAUNCHER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))\n"
)


def run_child(args: list[str]) -> tuple[float, float]:
    """Run a command; return (peak RSS of that process in MiB, wall seconds)."""
    start = time.perf_counter()
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *args], capture_output=True, text=True, check=True
    )
    seconds = time.perf_counter() - start
    peak_kib, returncode = (int(v) for v in launched.stdout.split())
    if returncode != 0:
        raise subprocess.CalledProcessError(returncode, args, stderr=launched.stderr)
    return peak_kib / 1024, seconds  # Linux reports kilobytes


class _Enough(Exception):
    pass


def child(src: str, weights: str, tile: int, out: str, bands: int) -> None:
    """The CLI's path (read, restore in place, write), stopping after ``bands`` tile rows."""
    from restormer.inference import restore_into
    from restormer.io import read_image
    from restormer.weights import load_model

    model = load_model(weights)
    image = read_image(src)
    pixels = image.pixels
    width = pixels.shape[1]
    per_band = max(1, math.ceil((width - tile) / (tile - 32)) + 1) if width > tile else 1

    def stop_after(done: int, total: int) -> None:
        if done >= bands * per_band:
            raise _Enough

    with contextlib.suppress(_Enough):
        restore_into(pixels, model, pixels, tile=tile, progress=stop_after)
    write_image(Path(out) / "out.png", pixels, overwrite=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, src, weights, tile, out, bands = sys.argv
        child(src, weights, int(tile), out, int(bands))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="a weights file (instead of --model)")
    parser.add_argument(
        "--model",
        choices=("small", "full"),
        default="small",
        help="random weights: dim 8 (small) or the official default size (full)",
    )
    parser.add_argument("--sizes", type=float, nargs="+", default=[6, 24], help="megapixels")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--bands", type=int, help="stop each restore after N tile rows")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median reported)")
    parser.add_argument("--name", default="", help="suffix of the JSON file name")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        weights = args.weights
        if weights is None:
            torch.manual_seed(0)
            model = Restormer(**SMALL) if args.model == "small" else Restormer()
            weights = save_weights(model, work / f"{args.model}.safetensors")
            del model
        commands = {}
        for megapixels in sorted(args.sizes):
            image = synthetic_photo(megapixels)
            src = write_image(work / f"{megapixels:g}mp.png", image)
            del image
            if args.bands:
                (work / "out").mkdir(exist_ok=True)
                command = [sys.executable, __file__, "--child", str(src), str(weights),
                           str(args.tile), str(work / "out"), str(args.bands)]  # fmt: skip
            else:
                command = [sys.executable, "-m", "restormer", "restore", str(src), "-o",
                           str(work / "out"), "-w", str(weights), "--tile", str(args.tile),
                           "--overwrite"]  # fmt: skip
            commands[megapixels] = command
        runs: dict[float, list[tuple[float, float]]] = {mp: [] for mp in commands}
        for _ in range(max(1, args.repeat)):  # interleaved: drifting load hits every size alike
            for megapixels, command in commands.items():
                peak, seconds = run_child(command)
                runs[megapixels].append((peak, seconds))
                print(f"{megapixels:>6g} MP  tile {args.tile}  peak {peak:8.1f} MiB  "
                      f"{seconds:6.1f} s", flush=True)  # fmt: skip
        for megapixels, samples in runs.items():
            peak = statistics.median(p for p, _ in samples)
            seconds = statistics.median(t for _, t in samples)
            rows.append({"megapixels": megapixels, "peak_rss_mib": round(peak, 1),
                         "seconds": round(seconds, 1),
                         "peak_rss_mib_runs": [round(p, 1) for p, _ in samples]})  # fmt: skip
            print(f"{megapixels:>6g} MP  median peak {peak:8.1f} MiB", flush=True)
    ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(f"largest / smallest median peak: {ratio:.3f}")
    report = {
        "benchmark": "tiled_memory",
        "weights": str(args.weights) if args.weights else MODEL_NAMES[args.model],
        "tile": args.tile,
        "bands": args.bands or "all",
        "repeat": max(1, args.repeat),
        "rows": rows,
        "peak_ratio": round(ratio, 4),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    write_result("tiled_memory", args.name, report)


if __name__ == "__main__":
    main()
