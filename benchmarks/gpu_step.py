"""How fast a GPU burst can step: ``scripts/gpu_burst.py``'s training step, as it runs and with
each speed-up added in turn, on random batches (the data pipeline is not measured).

    python benchmarks/gpu_step.py [--task gaussian-color-denoising] [--batch 64] [--patch 128]
                                  [--steps 30] [--rungs eager bf16 fused compile graphs]
                                  [--name NAME]

Why: on a lent H200 one burst stepped 4.7 times a second (64 patches of 128 px, the 2.9 M
parameter compact model), a few percent of what the chip can do; the lease is short, so each
factor here is a factor in what a burst teaches the model. The rungs:

* **eager** — the step as the first bursts ran: fp32, the model eagerly (its bias-free
  LayerNorm and GDFN gate compiled on their own, :mod:`restormer.fused`), the foreach AdamW;
* **bf16** — the forward pass in bf16 autocast (``--precision bf16``);
* **fused** — the fused AdamW (one kernel for all parameters; on CUDA only);
* **compile** — the forward pass through ``torch.compile`` (the whole model one graph);
* **graphs** — ``torch.compile`` in ``reduce-overhead`` mode: CUDA graphs replay the step's
  kernels without launching each from Python (on CUDA only).

Every rung starts from the same weights and batch; its first steps are the warm-up (the
compilation: reported), then ``--steps`` steps are timed (``torch.cuda.synchronize`` around
them). The first step's loss is compared with the eager rung's. Prints a table and writes
``benchmarks/results/gpu_step[-NAME].json``. Without a GPU it measures the CPU, at a small
batch by default, which checks that every rung runs, not how fast a GPU is.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from restormer.model import Restormer
from restormer.tasks import TASKS
from restormer.train import load_options

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_burst import BurstStep, burst_overrides  # noqa: E402
from performance import machine_info  # noqa: E402
from result_file import write_result  # noqa: E402

# rung name -> (precision, fused AdamW, torch.compile mode): each adds one thing
RUNGS: dict[str, tuple[str, bool, str | None]] = {
    "eager": ("fp32", False, None),
    "bf16": ("bf16", False, None),
    "fused": ("bf16", True, None),
    "compile": ("bf16", True, "default"),
    "graphs": ("bf16", True, "reduce-overhead"),
}
CUDA_ONLY = ("fused", "graphs")
WARMUP_STEPS = 3


def measure_rung(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One rung: warm-up (compilation) and ``args.steps`` timed steps."""
    precision, fused, mode = RUNGS[name]
    fused = fused and device.type == "cuda"
    options = _options(args, precision)
    torch.manual_seed(0)
    model = Restormer(**options.network.to_dict()).to(device)
    step = BurstStep(model, options, device, compile=mode, fused_optimizer=fused)
    generator = torch.Generator().manual_seed(1)
    channels = options.network.inp_channels
    shape = (args.batch, channels, args.patch, args.patch)
    inputs = torch.rand(shape, generator=generator).to(device)
    targets = torch.rand(
        (args.batch, options.network.out_channels, args.patch, args.patch), generator=generator
    ).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    first_loss = float(step(inputs, targets, args.lr))
    first_s = time.perf_counter() - start
    for _ in range(WARMUP_STEPS - 1):
        step(inputs, targets, args.lr)
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step(inputs, targets, args.lr)
    _synchronize(device)
    seconds = (time.perf_counter() - start) / args.steps
    return {
        "rung": name,
        "precision": precision,
        "fused_adamw": fused,
        "compile": mode,
        "first_step_s": round(first_s, 2),
        "step_ms": round(seconds * 1000, 2),
        "steps_per_s": round(1 / seconds, 2),
        "patches_per_s": round(args.batch / seconds, 1),
        "peak_memory_gib": (
            round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None
        ),
        "first_loss": first_loss,
        "last_loss": float(loss),
    }


def _options(args: argparse.Namespace, precision: str) -> Any:
    """The task's recipe as a burst with ``args`` runs it, in ``precision``."""
    burst = argparse.Namespace(**{**vars(args), "precision": precision, "photos": None})
    return load_options(ROOT / "configs" / "shipped" / f"{args.task}.yml", burst_overrides(burst))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def print_table(result: dict[str, Any]) -> None:
    print(
        f"{result['task']}: {result['parameters']:,} parameters, batch {result['batch']} x "
        f"{result['patch']} px, {result['device']}"
    )
    print("| rung | first step s | ms/step | steps/s | patches/s | vs eager | peak GiB | loss 1 |")
    print("|---|---|---|---|---|---|---|---|")
    eager = result["rows"][0]["step_ms"]
    for row in result["rows"]:
        memory = "-" if row["peak_memory_gib"] is None else f"{row['peak_memory_gib']:.1f}"
        print(
            f"| {row['rung']} | {row['first_step_s']:.1f} | {row['step_ms']:.1f} | "
            f"{row['steps_per_s']:.2f} | {row['patches_per_s']:.0f} | "
            f"{eager / row['step_ms']:.2f}x | {memory} | {row['first_loss']:.5f} |"
        )


def parse_args() -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=TASKS, default="gaussian-color-denoising")
    parser.add_argument("--batch", type=int, default=64 if cuda else 2)
    parser.add_argument("--patch", type=int, default=128 if cuda else 32)
    parser.add_argument("--steps", type=int, default=30 if cuda else 3)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--rungs", nargs="+", choices=list(RUNGS), default=list(RUNGS))
    parser.add_argument("--name", default="", help="suffix of the JSON file's name")
    args = parser.parse_args()
    if min(args.batch, args.steps) < 1 or args.patch < 8 or args.patch % 8:
        parser.error("--batch and --steps must be >= 1, --patch a multiple of 8")
    if not cuda:
        args.rungs = [r for r in args.rungs if r not in CUDA_ONLY]
    if not args.rungs:
        parser.error("no rung to measure on this device")
    return args


def main() -> None:
    args = parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    args.precision = "fp32"
    network = Restormer(**_options(args).network.to_dict())
    result: dict[str, Any] = {
        "task": args.task,
        "parameters": sum(p.numel() for p in network.parameters()),
        "batch": args.batch,
        "patch": args.patch,
        "steps": args.steps,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "machine": machine_info(torch.get_num_threads()),
        "rows": [],
    }
    for name in args.rungs:
        print(f"{name} ...", flush=True)
        result["rows"].append(measure_rung(name, args, device))
    print_table(result)
    write_result("gpu_step", args.name, result)


if __name__ == "__main__":
    main()
