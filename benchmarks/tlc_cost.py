"""What TLC (local attention statistics) costs: forward time and peak memory, on and off.

    python benchmarks/tlc_cost.py [--sizes 512 1024] [--windows 96 192 384] [--runs 5]
                                  [--divisor 2] [--threads 1] [--name NAME]

The model is a random dim-16 Restormer with the demo denoiser's configuration (blocks
1/2/2/3, one refinement block, BiasFree; ``examples/demo-denoiser.safetensors``, which was
trained on 64-pixel crops), run on a 1x3xSxS float32 input under ``torch.inference_mode``
(the chunked pass, as ``restormer restore`` runs it). What each number is:

* **cpu s** — CPU seconds of the process for one forward (``time.process_time``, with
  ``--threads`` threads, 1 by default): the least disturbed by other jobs on a shared
  machine. Minimum over ``--runs`` runs after one warm-up; runs with and without TLC
  alternate, so a change in the machine's load hits both alike.
* **wall s** — wall-clock seconds of the same runs (minimum).
* **peak MiB** — peak RSS growth of one forward in a fresh process (``ru_maxrss`` after the
  forward minus the RSS before it, after a 64x64 warm-up).

Prints a table and writes ``benchmarks/results/tlc_cost[-NAME].json``.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import time

import torch
from result_file import write_result

from restormer import Restormer

CONFIG = {"dim": 16, "num_blocks": (1, 2, 2, 3), "num_refinement_blocks": 1,
          "heads": (1, 2, 4, 8), "LayerNorm_type": "BiasFree"}  # fmt: skip


def make_model(window: int | None, divisor: int) -> Restormer:
    torch.manual_seed(0)
    model = Restormer(**CONFIG).eval()
    model.set_local_attention(window, stride_divisor=divisor)
    return model


def forward_seconds(model: Restormer, x: torch.Tensor) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one forward."""
    cpu, wall = time.process_time(), time.perf_counter()
    with torch.inference_mode():
        model(x)
    return time.process_time() - cpu, time.perf_counter() - wall


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(size: int, window: int | None, divisor: int) -> None:
    """Fresh process: print the peak RSS growth (MiB) of one forward."""
    model = make_model(window, divisor)
    with torch.inference_mode():
        model(torch.rand(1, 3, 64, 64))
    x = torch.rand(1, 3, size, size)
    before = _rss_mib()
    with torch.inference_mode():
        model(x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    print(f"{peak - before:.1f}")


def peak_mib(size: int, window: int | None, divisor: int, threads: int) -> float:
    args = [sys.executable, __file__, "--child", str(size), str(window or 0), str(divisor),
            str(threads)]  # fmt: skip
    return float(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        size, window, divisor, threads = (int(v) for v in sys.argv[2:6])
        torch.set_num_threads(threads)
        child(size, window or None, divisor)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--windows", type=int, nargs="+", default=[96, 192, 384])
    parser.add_argument("--divisor", type=int, default=2, help="TLC stride divisor")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings: list[int | None] = [None, *args.windows]
    models = {w: make_model(w, args.divisor) for w in settings}
    rows = []
    for size in args.sizes:
        x = torch.rand(1, 3, size, size)
        for model in models.values():
            forward_seconds(model, x)  # warm-up
        times: dict[int | None, list[tuple[float, float]]] = {w: [] for w in settings}
        for _ in range(args.runs):
            for window, model in models.items():
                times[window].append(forward_seconds(model, x))
        base_cpu = min(t[0] for t in times[None])
        for window in settings:
            cpu = min(t[0] for t in times[window])
            row = {
                "size": size,
                "tlc": window,
                "cpu_s": round(cpu, 3),
                "wall_s": round(min(t[1] for t in times[window]), 3),
                "cpu_vs_off": round(cpu / base_cpu, 3),
                "peak_mib": peak_mib(size, window, args.divisor, args.threads),
            }
            rows.append(row)
            print(f"{size:>5}  tlc {window or 'off':>4}  cpu {row['cpu_s']:7.3f} s  "
                  f"({row['cpu_vs_off']:.2f}x)  wall {row['wall_s']:7.3f} s  "
                  f"peak {row['peak_mib']:7.1f} MiB", flush=True)  # fmt: skip
    result = {
        "benchmark": "tlc_cost",
        "model": {"weights": "random (seed 0)", **CONFIG},
        "stride_divisor": args.divisor,
        "runs": args.runs,
        "rows": rows,
        "machine": platform.platform(),
        "torch": torch.__version__,
        "threads": args.threads,
    }
    write_result("tlc_cost", args.name, result)


if __name__ == "__main__":
    main()
