"""A lent GPU's whole plan in one command: measure the step's speed-ups, then burst the tasks.

    python scripts/gpu_burst.py TASK --pack-photos .gpu/photos/train   # here, once
    # on the device machine (carry .gpu), within one call's 10 minutes:
    PYTHONPATH=$PWD/src python scripts/gpu_lease.py --minutes 8 --out $OUT TASK [TASK...]
    # back here, for each TASK:
    python scripts/gpu_burst.py TASK --adopt FILES_AT/bursts/TASK.state
    python scripts/ship_model.py TASK

Why: device time counts in wall-clock minutes from the machine's start, a task gets about
fifteen of them and one call at most ten, so a session that is lent a GPU should spend them
training, not deciding. This probes the burst step on the first task's model (fp32 eager,
bf16 autocast, and bf16 compiled, through ``benchmarks/gpu_step.py``), keeps a speed-up only
where it pays within the lease (bf16 must be 15% faster with the same first loss; compiling
must win back its compile time), and then runs one ``scripts/gpu_burst.py`` per task at once
for what is left of ``--minutes``, sharing the GPU and the CPU cores (batch-making workers).

It writes ``OUT/bursts/TASK.state`` (the bursts' states), ``OUT/logs/TASK.log`` and
``OUT/lease.json`` (the probe's rows, the flags chosen and each burst's command and exit
status). Without a GPU it skips the probe (a CPU says nothing of a GPU's speed-ups).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from result_file import write_json  # noqa: E402

from restormer.tasks import TASKS  # noqa: E402

# Batch and patch of each task's bursts: the ones the shipped models' bursts ran (motion
# needs larger patches for its long blurs, so fewer of them).
BURST_SHAPES: dict[str, tuple[int, int]] = {"motion-deblurring": (32, 192)}
DEFAULT_SHAPE = (64, 128)
PROBE_RUNGS = ("eager", "bf16", "compile")
PROBE_STEPS = 20
BF16_MIN_SPEEDUP = 1.15
BF16_LOSS_TOLERANCE = 0.02  # relative difference of the first step's loss to fp32's


def burst_shape(task: str) -> tuple[int, int]:
    return BURST_SHAPES.get(task, DEFAULT_SHAPE)


def probe(task: str) -> list[dict[str, Any]]:
    """``benchmarks/gpu_step.py``'s rows for the probe's rungs on ``task``'s burst shape."""
    import gpu_step

    batch, patch = burst_shape(task)
    args = argparse.Namespace(task=task, batch=batch, patch=patch, steps=PROBE_STEPS, lr=3e-4)
    device = torch.device("cuda")
    rows = []
    for rung in PROBE_RUNGS:
        print(f"probe: {rung} ...", flush=True)
        rows.append(gpu_step.measure_rung(rung, args, device))
        print(f"probe: {rung} {rows[-1]['step_ms']:.1f} ms/step", flush=True)
    return rows


def choose_flags(rows: list[dict[str, Any]], burst_seconds: float) -> list[str]:
    """The ``gpu_burst.py`` flags the probe's ``rows`` justify for a burst this long.

    bf16 autocast when it steps ``BF16_MIN_SPEEDUP`` times faster than fp32 and its first loss
    agrees; compiling (measured on top of bf16) when the steps it saves over the burst are
    worth more than twice its compile time (each burst process compiles on its own).
    """
    by_rung = {row["rung"]: row for row in rows}
    eager, bf16, compiled = (by_rung.get(r) for r in PROBE_RUNGS)
    if eager is None or bf16 is None:
        return []
    loss_agrees = abs(bf16["first_loss"] - eager["first_loss"]) <= BF16_LOSS_TOLERANCE * abs(
        eager["first_loss"]
    )
    if not (loss_agrees and eager["step_ms"] >= BF16_MIN_SPEEDUP * bf16["step_ms"]):
        return []
    flags = ["--precision", "bf16"]
    if compiled is not None:
        saved = burst_seconds * (1 - compiled["step_ms"] / bf16["step_ms"])
        if saved > 2 * compiled["first_step_s"]:
            flags += ["--compile", "default"]
    return flags


def burst_command(
    task: str, minutes: float, out: Path, photos: str, workers: int, flags: list[str]
) -> list[str]:
    """The ``gpu_burst.py`` command line of ``task``'s burst, warm-started from its shipped
    model."""
    batch, patch = burst_shape(task)
    return [
        sys.executable,
        str(ROOT / "scripts" / "gpu_burst.py"),
        task,
        *("--minutes", f"{minutes:.2f}", "--batch", str(batch), "--patch", str(patch)),
        *("--lr", "0.0003", "--photos", photos, "--out", str(out / "bursts")),
        *("--workers", str(workers), *flags),
    ]


def run_bursts(commands: dict[str, list[str]], logs: Path) -> dict[str, int]:
    """Run the bursts at once; each one's exit status."""
    logs.mkdir(parents=True, exist_ok=True)
    running = {}
    for task, command in commands.items():
        log = (logs / f"{task}.log").open("w")
        running[task] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
    statuses = {}
    for task, (process, log) in running.items():
        statuses[task] = process.wait()
        log.close()
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="+", choices=TASKS, metavar="TASK")
    parser.add_argument("--minutes", type=float, default=8.0, help="probe and bursts together")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "lease")))
    parser.add_argument("--photos", default=".gpu/photos/train")
    args = parser.parse_args()
    if not Path(args.photos).is_dir():
        sys.exit(f"error: no photos at {args.photos} (gpu_burst.py TASK --pack-photos makes them)")
    started = time.monotonic()
    rows = probe(args.tasks[0]) if torch.cuda.is_available() else []
    minutes = args.minutes - (time.monotonic() - started) / 60
    if minutes <= 0:
        sys.exit(f"error: the probe took all of --minutes {args.minutes:g}")
    flags = choose_flags(rows, minutes * 60)
    workers = max(1, (os.cpu_count() or 2) // len(args.tasks) - 1)
    commands = {
        task: burst_command(task, minutes, args.out, args.photos, workers, flags)
        for task in args.tasks
    }
    print(f"bursts: {minutes:.2f} minutes each, flags {flags or 'none'}", flush=True)
    statuses = run_bursts(commands, args.out / "logs")
    record = {
        "probe": rows,
        "flags": flags,
        "bursts": {t: {"command": commands[t][1:], "status": statuses[t]} for t in args.tasks},
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(args.out / "lease.json", record)
    for task, status in statuses.items():
        print(f"{task}: {'done' if status == 0 else f'failed ({status})'}")
    sys.exit(1 if any(statuses.values()) else 0)  # a burst killed by a signal is negative


if __name__ == "__main__":
    main()
