"""`restormer restore` on a machine other programs keep busy: its thread choice against all cores.

    python benchmarks/busy_machine.py [--busy 0 2] [--runs 3] [--name NAME]

Restores ``examples/noisy.png`` (512x600) with the shipped colour denoiser while ``--busy``
other processes spin on the CPU (plain Python loops at normal priority), once with the
command's default thread count (the cores the load average leaves idle) and once with
``--threads`` set to every core. Each number is the median wall-clock time of ``--runs``
whole commands (start-up and model loading included); the two settings alternate, and each
busy level first waits until the 1-minute load average has caught up with it, since the
default reads that average. Run it on an otherwise idle machine.

Prints a table and writes ``benchmarks/results/busy_machine[-NAME].json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from result_file import write_result

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "examples" / "noisy.png"
SPIN = "while True: pass"


def restore_seconds(threads: int | None, folder: Path) -> float:
    """Wall-clock seconds of one ``restormer restore`` command."""
    out = folder / "out"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "restormer", "restore", str(PHOTO), "-o", str(out)]
    command += ["--task", "gaussian-color-denoising"]
    if threads is not None:
        command += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def wait_for_load(target: float, timeout: float = 240.0) -> float:
    """Wait (up to ``timeout`` s) until the 1-minute load average is within 0.3 of ``target``."""
    deadline = time.monotonic() + timeout
    while abs(os.getloadavg()[0] - target) > 0.3 and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--name", default="")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for busy in args.busy:
            spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
            try:
                load = wait_for_load(busy)
                times: dict[str, list[float]] = {"default": [], "all cores": []}
                for _ in range(args.runs):
                    times["default"].append(restore_seconds(None, Path(tmp)))
                    times["all cores"].append(restore_seconds(cores, Path(tmp)))
            finally:
                for spinner in spinners:
                    spinner.kill()
                    spinner.wait()
            medians = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"busy": busy, "load": round(load, 2), "seconds": medians})
            print(f"busy {busy}: load {load:.2f}, default {medians['default']:.1f} s, "
                  f"all {cores} cores {medians['all cores']:.1f} s", flush=True)  # fmt: skip
    print(f"\n| other busy processes | load | default threads | --threads {cores} |")
    print("|---|---|---|---|")
    for row in rows:
        s = row["seconds"]
        cells = [str(row["busy"]), f"{row['load']:.1f}", f"{s['default']:.1f} s"]
        print("| " + " | ".join([*cells, f"{s['all cores']:.1f} s"]) + " |")
    machine = platform.processor() or platform.machine()
    record = {"cores": cores, "runs": args.runs, "machine": machine, "rows": rows}
    print()
    write_result("busy_machine", args.name, record)


if __name__ == "__main__":
    main()
