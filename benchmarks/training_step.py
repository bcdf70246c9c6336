"""What each CPU training option buys: one training step of a shipped model's architecture,
eager and with each optimisation added in turn.

    python benchmarks/training_step.py [--options configs/shipped/TASK.yml] [--blocks N N N N]
                                       [--dim D]
                                       [--batch 16] [--size 64] [--runs 5] [--threads 1]
                                       [--precision fp32|bf16] [--name NAME]

The rungs, each adding one thing to the one above:

* **eager** — the model's training path with the bias-free LayerNorm and GDFN's gate computed
  eagerly (as before ``restormer.fused``), the whole batch in one pass;
* **+ compiled norm** — the LayerNorm through ``torch.compile`` (``fused.compiled_bias_free_norm``);
* **+ fused gate** — GDFN's ``GELU(x1) * x2`` compiled forward and backward;
* **+ micro-batches** — the batch in parts of at most 32,768 pixels (``train.micro_batch_pixels:
  32768``), gradients accumulated, as ``restormer train`` runs it: the same step in less
  memory. It was the CPU default for a session, on the theory that halves stay in cache;
  this benchmark found it 5-9% slower, alone and with a second process beside it.

A step is forward, L1 loss, backward, gradient clipping and AdamW, on a random batch of
``--batch`` crops of ``--size`` pixels (the ``network_g`` of ``--options``; the shipped compact
model by default). Every rung starts from the same weights; their first steps are compared
(largest gradient difference relative to the largest eager gradient) and are the warm-up
(compilation). Then the rungs take turns, ``--runs`` steps each, so a change in the machine's
load hits them alike; reported are medians of CPU seconds of the process (least disturbed by
other jobs) and wall seconds.

Prints a table and writes ``benchmarks/results/training_step[-NAME].json``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from torch import Tensor

from restormer import fused
from restormer.model import Restormer
from restormer.train import load_options
from restormer.train.trainer import micro_batches

ROOT = Path(__file__).resolve().parent.parent
MICRO_BATCH_PIXELS = 32_768  # a batch of 16 x 64x64 in two halves, 4 x 128x128 likewise
sys.path.insert(0, str(Path(__file__).resolve().parent))

from performance import machine_info  # noqa: E402
from result_file import write_result  # noqa: E402


@dataclass(frozen=True)
class Rung:
    """One configuration of the training step."""

    name: str
    compiled_norm: bool
    fused_gate: bool
    micro_batch_pixels: int


RUNGS = (
    Rung("eager", False, False, 0),
    Rung("+ compiled norm", True, False, 0),
    Rung("+ fused gate", True, True, 0),
    Rung("+ micro-batches", True, True, MICRO_BATCH_PIXELS),
)


@contextlib.contextmanager
def optimisations(rung: Rung) -> Iterator[None]:
    """The model's training path with the rung's compiled pieces, the others eager."""
    with contextlib.ExitStack() as stack:
        if not rung.compiled_norm:
            stack.enter_context(
                mock.patch("restormer.model.compiled_bias_free_norm", fused.bias_free_norm)
            )
        if not rung.fused_gate:
            stack.enter_context(mock.patch("restormer.model.compiled_gated_gelu", fused.gated_gelu))
        yield


def training_step(
    model: Restormer, batch: tuple[Tensor, Tensor], rung: Rung, precision: str
) -> Callable[[], None]:
    """One optimizer step of ``model`` on ``batch`` as the rung computes it."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4)
    inputs, targets = batch
    parts = micro_batches(inputs.shape, rung.micro_batch_pixels)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with optimisations(rung):
            for start, stop in parts:
                with autocast:
                    outputs = model(inputs[start:stop])
                loss = F.l1_loss(outputs.float(), targets[start:stop])
                (loss * ((stop - start) / inputs.shape[0])).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
        optimizer.step()

    return step


def gradient_difference(model: Restormer, reference: Restormer) -> float:
    """Largest gradient difference between two models, relative to the reference's largest."""
    pairs = [
        (p.grad, q.grad)
        for p, q in zip(model.parameters(), reference.parameters(), strict=True)
        if q.grad is not None
    ]
    largest = max(q.abs().max().item() for _, q in pairs)
    return max((p - q).abs().max().item() for p, q in pairs) / largest


def measure(args: argparse.Namespace) -> dict[str, Any]:
    network = load_options(args.options).network.to_dict()
    if args.blocks is not None:
        network["num_blocks"] = args.blocks
    if args.dim is not None:
        network["dim"] = args.dim
    torch.manual_seed(0)
    first = Restormer(**network)
    models = [first] + [Restormer(**network) for _ in RUNGS[1:]]
    for model in models[1:]:
        model.load_state_dict(first.state_dict())
    g = torch.Generator().manual_seed(1)
    channels_in, channels_out = network.get("inp_channels", 3), network.get("out_channels", 3)
    inputs = torch.rand(args.batch, channels_in, args.size, args.size, generator=g)
    targets = torch.rand(args.batch, channels_out, args.size, args.size, generator=g)
    steps = [
        training_step(model, (inputs, targets), rung, args.precision)
        for model, rung in zip(models, RUNGS, strict=True)
    ]
    warm_up = []
    for step in steps:
        began = time.perf_counter()
        step()
        warm_up.append(time.perf_counter() - began)
    differences = [gradient_difference(model, models[0]) for model in models]
    cpu: list[list[float]] = [[] for _ in RUNGS]
    wall: list[list[float]] = [[] for _ in RUNGS]
    for run in range(args.runs):
        for index, step in enumerate(steps):
            began_cpu, began = time.process_time(), time.perf_counter()
            step()
            cpu[index].append(time.process_time() - began_cpu)
            wall[index].append(time.perf_counter() - began)
        print(f"  round {run + 1}/{args.runs} done", flush=True)
    rows = []
    for index, rung in enumerate(RUNGS):
        rows.append(
            {
                "rung": rung.name,
                "micro_batch_pixels": rung.micro_batch_pixels,
                "cpu_s": statistics.median(cpu[index]),
                "wall_s": statistics.median(wall[index]),
                "cpu_runs": cpu[index],
                "wall_runs": wall[index],
                "first_step_s": warm_up[index],
                "grad_relative_diff": differences[index],
            }
        )
    parameters = sum(p.numel() for p in first.parameters())
    return {
        "options": str(args.options),
        "network": network,
        "parameters": parameters,
        "batch": args.batch,
        "size": args.size,
        "precision": args.precision,
        "runs": args.runs,
        "machine": machine_info(args.threads),
        "rows": rows,
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\ntraining step: {result['parameters']:,} parameters, batch {result['batch']} of "
        f"{result['size']}x{result['size']}, {result['precision']}, "
        f"{result['machine']['threads']} thread(s), medians of {result['runs']}"
    )
    print("| rung | CPU s | wall s | vs eager (CPU) | gradients vs eager |")
    print("|---|---|---|---|---|")
    eager = result["rows"][0]["cpu_s"]
    for row in result["rows"]:
        print(
            f"| {row['rung']} | {row['cpu_s']:.2f} | {row['wall_s']:.2f} | "
            f"{eager / row['cpu_s']:.2f}x | {row['grad_relative_diff']:.1e} |"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--options",
        type=Path,
        default=ROOT / "configs" / "shipped" / "gaussian-color-denoising.yml",
        help="option file whose network_g is measured (default: the shipped compact model)",
    )
    parser.add_argument(
        "--blocks",
        type=int,
        nargs=4,
        default=None,
        metavar="N",
        help="blocks per level instead of the option file's (e.g. 2 3 6 8: a deeper model)",
    )
    parser.add_argument(
        "--dim",
        type=int,
        default=None,
        help="width instead of the option file's (e.g. 32: the shipped model widened)",
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--name", default="", help="suffix of the JSON file's name")
    args = parser.parse_args()
    if (
        min(args.batch, args.size, args.runs, args.threads, args.dim or 1, *(args.blocks or [1]))
        < 1
    ):
        parser.error("--batch, --size, --runs, --threads, --dim and --blocks must be >= 1")
    if not args.options.is_file():
        parser.error(f"--options {args.options}: no such file")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    result = measure(args)
    print_table(result)
    write_result("training_step", args.name, result)


if __name__ == "__main__":
    main()
