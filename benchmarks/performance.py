"""Our Restormer against the official implementation: speed, agreement and memory, in one run.

    python benchmarks/performance.py [--sizes 128 256 512 [1024]] [--runs 3] [--big] [--tiled]
                                     [--skip-official] [--threads N] [--name NAME]

Both implementations get the same random weights (a full-size model, default configuration,
seed 0), on the same machine, in the same run, with the same number of threads. The official
architecture comes from ``spandrel-extra-arches`` (see ``benchmarks/official.py``). Prints a
table with a target and a pass/fail mark per target, and writes
``benchmarks/results/performance[-NAME].json`` (numbers, settings, machine).

What each number is:

* **load** — seconds of ``restormer.load_model(weights)`` (median of ``--runs``).
* **forward fp32 S** — one 1x3xSxS float32 forward under ``torch.inference_mode()``: ours is
  ``restormer.load_model(weights)``, the official one is the official class holding the same
  state dict. Median of ``--runs`` runs after one warm-up (the official at 1024 and above:
  one run, no warm-up; it takes minutes). Speed-up = official / ours (target >= 4x at 256 and
  512); max |diff| = largest absolute difference between the two outputs (target <= 1e-4).
* **CLI end to end** — wall time of ``restormer restore IMG.png -o OUT -w WEIGHTS --overwrite``
  on a 512x512 photo in a fresh process (interpreter start, imports, loading, reading, restoring
  and writing included; median of ``--runs`` after one warm-up), against the official forward
  alone at 512 (target >= 4x).
* **bf16** — ``restormer.load_model(weights, precision="bf16")`` at 512 against the official
  float32 forward (target >= 8x); on a noisy ``synthetic_photo`` (Gaussian noise, sigma 25/255),
  the PSNR of our float32 output and of our bf16 output against the clean photo, and their
  difference (target within 0.05 dB). The input is float32, or the model's dtype if it takes
  only that (the table says which). Not available when ``load_model`` has no ``precision``.
* **peak RSS** — peak resident memory of a fresh process (``--child``) that builds the model,
  loads the weights and runs one full-frame 512x512 forward; nothing is subtracted (the
  interpreter and torch count). Ratio = ours / official (target <= 1/3). ``--big`` adds ours
  on a full 12-megapixel frame (4240x2832), which must stay under 16 GiB.
* **tiled** (``--tiled``) — ``benchmarks/tiled_memory.py``'s measurement: peak RSS of the tiled
  restore (tile 256, two rows of tiles) of a 6 and a 24 MP photo, full-size model, and the ratio.
* **ONNX** — ``restormer.export.export_onnx`` then ONNX Runtime at 256: seconds and max |diff|
  against our PyTorch output (target <= 1e-4); not available without both.
* **training step** — compact model (dim 24, blocks 2/3/3/4, 2 refinement blocks), batch 8 of
  96x96: forward, L1 loss, backward, AdamW step; median of ``--runs`` steps after a warm-up,
  same initial weights and batch. Speed-up = official / ours (target >= 2x); gradient
  difference = max |g_ours - g_official| / max |g_official| over all parameters at the first
  step (target <= 1e-4).

Timed runs of the two implementations alternate, so that a change in the load of a shared
machine hits both alike. The official model is slow (about 1 minute per forward at 512 on
2 cores): the default run takes tens of minutes, ``--big`` and ``--tiled`` add more.
``--skip-official`` is a quick run of our side alone. Exit status: 1 when a measurement failed
(its row says why), 2 when the official architecture is not installed.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from result_file import write_result
from torch import Tensor, nn

# restormer, the official architecture and tiled_memory are imported where they are used: the
# memory children import only what the implementation they measure needs.

DEFAULT_SIZES = (128, 256, 512)
SPEED_TARGET_SIZES = (256, 512)  # where the forward speed-up target applies
OFFICIAL_ONE_RUN_FROM = 1024  # from this size the official forward runs once, without warm-up
FRAME = 512  # CLI, bf16 and peak-memory measurements
ONNX_SIZE = 256
BIG_FRAME = (2832, 4240)  # 12 megapixels, height x width
TILED_MEGAPIXELS = (6, 24)
TILED_TILE, TILED_BANDS = 256, 2
NOISE_SIGMA = 25 / 255
COMPACT = {
    "dim": 24,
    "num_blocks": [2, 3, 3, 4],
    "num_refinement_blocks": 2,
    "heads": [1, 2, 4, 8],
    "ffn_expansion_factor": 2.66,
    "LayerNorm_type": "WithBias",
}
TRAIN_BATCH, TRAIN_SIZE = 8, 96
ADAMW = {"lr": 3e-4, "weight_decay": 1e-4, "betas": (0.9, 0.999)}  # the official recipe's

# Targets, all against the official implementation.
FORWARD_SPEEDUP = 4.0
MAX_DIFF = 1e-4
CLI_SPEEDUP = 4.0
BF16_SPEEDUP = 8.0
BF16_PSNR_DB = 0.05
MEMORY_RATIO = 1 / 3
BIG_PEAK_MIB = 16 * 1024
TRAIN_SPEEDUP = 2.0
GRAD_DIFF = 1e-4

T = TypeVar("T")


def say(text: str) -> None:
    """Progress line (the full run takes long; each measurement says when it is done)."""
    print(f"[performance] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


def physical_cores() -> int:
    """Physical CPU cores (hyper-threads do not speed up these matrix products)."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int) -> dict[str, Any]:
    """What a reader needs to compare these numbers with another machine's."""
    import psutil

    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
    }


# --------------------------------------------------------------------------- helpers


Timing = tuple[float, list[float], Any]  # (median seconds, every run's seconds, last result)


def timed_together(
    fns: list[Callable[[], Any]], runs: list[int], warmups: list[bool]
) -> list[Timing]:
    """Time several functions, ``runs[i]`` calls each after an optional warm-up.

    The calls alternate (one of each, then again), so that a change in the load of a shared
    machine during the measurement affects every function alike.
    """
    for fn, warmup in zip(fns, warmups, strict=True):
        if warmup:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    results: list[Any] = [None] * len(fns)
    for i in range(max(runs)):
        for k, fn in enumerate(fns):
            if i < runs[k]:
                start = time.perf_counter()
                results[k] = fn()
                times[k].append(time.perf_counter() - start)
    return [(statistics.median(t), t, r) for t, r in zip(times, results, strict=True)]


def timed(fn: Callable[[], T], runs: int, *, warmup: bool = True) -> tuple[float, list[float], T]:
    """(median seconds, every run's seconds, last result) of ``runs`` calls after a warm-up."""
    return timed_together([fn], [runs], [warmup])[0]


def forward(model: nn.Module, x: Tensor) -> Tensor:
    """One inference forward, as both implementations are used to restore images."""
    with torch.inference_mode():
        return model(x)


def random_input(size: int, seed: int = 0) -> Tensor:
    """A 1x3xSxS float32 tensor in [0, 1], the same for both implementations."""
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def square_photo(size: int) -> np.ndarray:
    """A ``size`` x ``size`` uint8 crop of ``tiled_memory.synthetic_photo``."""
    from tiled_memory import synthetic_photo

    return synthetic_photo(1.6 * size * size / 1e6)[:size, :size].copy()


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    """Largest absolute difference between two outputs, computed in float64."""
    return (a.double() - b.double()).abs().max().item()


@dataclass
class Setup:
    """What every measurement shares: weights files, settings, and the official forward times."""

    work: Path
    weights: Path  # our .safetensors
    weights_pth: Path  # the same state dict in the official format, for the official code
    config: dict[str, Any]
    runs: int
    threads: int
    official: bool  # False with --skip-official
    official_forward_s: dict[int, float] = field(default_factory=dict)


def make_setup(work: Path, runs: int, threads: int, official: bool) -> Setup:
    """Random full-size weights (seed 0) written as ``.safetensors`` and official ``.pth``."""
    from restormer import Restormer, save_weights

    torch.manual_seed(0)
    model = Restormer()
    weights = save_weights(model, work / "full.safetensors")
    weights_pth = save_weights(model, work / "full.pth")
    return Setup(work, weights, weights_pth, model.config.to_dict(), runs, threads, official)


def official_model(setup: Setup) -> nn.Module:
    """The official class holding the state dict of ``setup.weights``, as its test scripts do."""
    from official import official_restormer

    model = official_restormer(**setup.config)
    state = torch.load(setup.weights_pth, map_location="cpu", weights_only=True)["params"]
    model.load_state_dict(state, strict=True)
    return model


# --------------------------------------------------------------------------- measurements


def measure_load(setup: Setup) -> dict[str, Any]:
    """Seconds of ``restormer.load_model`` on the full-size weights."""
    import restormer

    seconds, runs, _ = timed(lambda: restormer.load_model(setup.weights), setup.runs)
    return {"seconds": seconds, "runs": runs}


def measure_forward(
    setup: Setup, size: int, ours: nn.Module, official: nn.Module | None
) -> dict[str, Any]:
    """float32 forward on a 1x3xSxS tensor: both times, the speed-up and the max |diff|."""
    x = random_input(size)
    fns, runs, warmups = [lambda: forward(ours, x)], [setup.runs], [True]
    one_run = size >= OFFICIAL_ONE_RUN_FROM
    if official is not None:
        fns.append(lambda: forward(official, x))
        runs.append(1 if one_run else setup.runs)
        warmups.append(not one_run)
    timings = timed_together(fns, runs, warmups)
    ours_s, ours_runs, ours_out = timings[0]
    result: dict[str, Any] = {"size": size, "ours_s": ours_s, "ours_runs": ours_runs}
    result["output_abs_max"] = ours_out.abs().max().item()
    if official is not None:
        official_s, official_runs, official_out = timings[1]
        setup.official_forward_s[size] = official_s
        result |= {
            "official_s": official_s,
            "official_runs": official_runs,
            "official_warmup": not one_run,
            "speedup": official_s / ours_s,
            "max_abs_diff": max_abs_diff(ours_out, official_out),
        }
    return result


def official_forward_seconds(setup: Setup, size: int) -> float | None:
    """The official float32 forward time at ``size``: measured earlier, or measured now."""
    if not setup.official:
        return None
    if size not in setup.official_forward_s:
        model = official_model(setup)
        seconds, _, _ = timed(lambda: forward(model, random_input(size)), setup.runs)
        setup.official_forward_s[size] = seconds
    return setup.official_forward_s[size]


def restormer_command() -> list[str]:
    """The ``restormer`` console script of this environment (``python -m restormer`` if none)."""
    script = Path(sys.executable).with_name("restormer")
    if script.is_file():
        return [str(script)]
    found = shutil.which("restormer")
    return [found] if found else [sys.executable, "-m", "restormer"]


def measure_cli(setup: Setup, size: int) -> dict[str, Any]:
    """Wall time of ``restormer restore`` on a SxS photo in a fresh process, vs the official
    forward alone at the same size."""
    from restormer.io import write_image

    image = write_image(setup.work / f"photo{size}.png", square_photo(size), overwrite=True)
    out = setup.work / "cli-out"
    command = [*restormer_command(), "restore", str(image), "-o", str(out),
               "-w", str(setup.weights), "--overwrite"]  # fmt: skip

    def run() -> None:
        subprocess.run(command, check=True, capture_output=True, text=True)

    seconds, runs, _ = timed(run, setup.runs)
    official_s = official_forward_seconds(setup, size)
    return {
        "size": size,
        "command": f"restormer restore photo{size}.png -o OUT -w WEIGHTS --overwrite",
        "seconds": seconds,
        "runs": runs,
        "official_forward_s": official_s,
        "speedup": ratio(official_s, seconds),
    }


def noisy_photo(size: int) -> tuple[Tensor, np.ndarray]:
    """(noisy 1x3xSxS input, clean S x S x 3 reference in [0, 1]): Gaussian noise, sigma 25."""
    clean = square_photo(size).astype(np.float32) / 255
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(0, NOISE_SIGMA, clean.shape).astype(np.float32)
    return torch.from_numpy(noisy).permute(2, 0, 1)[None].contiguous(), clean


def as_image(output: Tensor) -> np.ndarray:
    """A model output as the restored S x S x C float64 image in [0, 1]."""
    return output[0].double().clamp(0, 1).permute(1, 2, 0).numpy()


def measure_bf16(setup: Setup, size: int, ours: nn.Module) -> dict[str, Any]:
    """``load_model(precision="bf16")``: time vs official float32, PSNR vs our float32."""
    import restormer
    from restormer.metrics import psnr_float

    if "precision" not in inspect.signature(restormer.load_model).parameters:
        return {"available": False, "size": size, "reason": "load_model has no precision keyword"}
    model = restormer.load_model(setup.weights, precision="bf16")
    noisy, clean = noisy_photo(size)
    x = noisy
    try:
        forward(model, x)  # the warm-up, which also finds the input dtype the model takes
    except RuntimeError:  # a model that takes inputs in its parameters' dtype only
        x = noisy.to(next(model.parameters()).dtype)
        forward(model, x)
    seconds, runs, out_bf16 = timed(lambda: forward(model, x), setup.runs, warmup=False)
    out_fp32 = forward(ours, noisy)
    psnr_fp32 = psnr_float(as_image(out_fp32), clean)
    psnr_bf16 = psnr_float(as_image(out_bf16), clean)
    official_s = official_forward_seconds(setup, size)
    return {
        "available": True,
        "size": size,
        "input_dtype": str(x.dtype).removeprefix("torch."),
        "seconds": seconds,
        "runs": runs,
        "official_fp32_s": official_s,
        "speedup": ratio(official_s, seconds),
        "psnr_noisy_db": psnr_float(as_image(noisy), clean),
        "psnr_fp32_db": psnr_fp32,
        "psnr_bf16_db": psnr_bf16,
        "psnr_difference_db": psnr_bf16 - psnr_fp32,
        "psnr_bf16_vs_fp32_db": psnr_float(as_image(out_bf16), as_image(out_fp32)),
    }


def peak_memory(setup: Setup, implementation: str, height: int, width: int) -> dict[str, Any]:
    """Peak RSS of a fresh ``--child`` process: build, load, one full-frame forward."""
    from tiled_memory import run_child

    weights = setup.weights_pth if implementation == "official" else setup.weights
    command = [sys.executable, __file__, "--child", implementation, str(weights), str(height),
               str(width), str(setup.threads), json.dumps(setup.config)]  # fmt: skip
    peak_mib, seconds = run_child(command)
    return {"height": height, "width": width, "peak_rss_mib": peak_mib, "seconds": seconds}


def measure_memory(setup: Setup, size: int) -> dict[str, Any]:
    """Peak RSS of a SxS full-frame forward, official and ours, each in its own process."""
    result: dict[str, Any] = {"size": size, "ours": peak_memory(setup, "ours", size, size)}
    if setup.official:
        result["official"] = peak_memory(setup, "official", size, size)
        result["ratio"] = result["ours"]["peak_rss_mib"] / result["official"]["peak_rss_mib"]
    return result


def measure_big(setup: Setup) -> dict[str, Any]:
    """Peak RSS of our full-frame forward on a 12-megapixel image (no tiling)."""
    return peak_memory(setup, "ours", *BIG_FRAME)


def measure_tiled(setup: Setup) -> dict[str, Any]:
    """``tiled_memory.py``'s measurement: the tiled restore's peak RSS at 6 and 24 MP."""
    import tiled_memory

    from restormer.io import write_image

    (setup.work / "tiled-out").mkdir(exist_ok=True)
    rows = []
    for megapixels in TILED_MEGAPIXELS:
        src = write_image(
            setup.work / f"{megapixels}mp.png", tiled_memory.synthetic_photo(megapixels)
        )
        command = [sys.executable, tiled_memory.__file__, "--child", str(src), str(setup.weights),
                   str(TILED_TILE), str(setup.work / "tiled-out"), str(TILED_BANDS)]  # fmt: skip
        peak_mib, seconds = tiled_memory.run_child(command)
        rows.append({"megapixels": megapixels, "peak_rss_mib": peak_mib, "seconds": seconds})
        src.unlink()
    return {
        "tile": TILED_TILE,
        "bands": TILED_BANDS,
        "rows": rows,
        "ratio": rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"],
    }


def measure_onnx(setup: Setup, size: int, ours: nn.Module) -> dict[str, Any]:
    """Export with ``restormer.export.export_onnx``, run with ONNX Runtime, compare."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return {"available": False, "size": size, "reason": "onnxruntime is not installed"}
    try:
        from restormer.export import export_onnx  # type: ignore[import-not-found]
    except ImportError:
        return {"available": False, "size": size, "reason": "no restormer.export.export_onnx"}
    import onnxruntime as ort

    x = random_input(size)
    # PyTorch first: ONNX Runtime's threads keep spinning for a while after each run.
    torch_s, _, reference = timed(lambda: forward(ours, x), setup.runs)
    path = setup.work / "restormer.onnx"
    export_onnx(ours, path, overwrite=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = setup.threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    seconds, runs, (out,) = timed(lambda: session.run(None, feed), setup.runs)
    return {
        "available": True,
        "size": size,
        "seconds": seconds,
        "runs": runs,
        "pytorch_s": torch_s,
        "max_abs_diff": max_abs_diff(torch.from_numpy(out), reference),
    }


def training_step(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Callable[[], float]:
    """One training step of ``model`` (train mode, its own AdamW): forward, L1, backward, step."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), **ADAMW)
    noisy, clean = batch

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = F.l1_loss(model(noisy), clean)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def gradients(model: nn.Module) -> dict[str, Tensor]:
    """The gradients left by the last backward pass, by parameter name."""
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def measure_training(setup: Setup, batch_size: int, size: int) -> dict[str, Any]:
    """Training step of the compact model: time per step and gradient agreement."""
    from restormer import Restormer

    torch.manual_seed(0)
    ours = Restormer(**COMPACT)
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(batch_size, 3, size, size, generator=g)
    noisy = clean + NOISE_SIGMA * torch.randn(clean.shape, generator=g)
    models: list[nn.Module] = [ours]
    if setup.official:
        from official import official_restormer

        models.append(official_restormer(**COMPACT))
        models[1].load_state_dict(ours.state_dict(), strict=True)
    steps = [training_step(model, (noisy, clean)) for model in models]
    # The warm-up is the first step of each, from the same weights on the same batch: the one
    # whose gradients are compared.
    losses = [step() for step in steps]
    grads = [gradients(model) for model in models]
    timings = timed_together(steps, [setup.runs] * len(steps), [False] * len(steps))
    result: dict[str, Any] = {
        "config": COMPACT,
        "batch": batch_size,
        "size": size,
        "ours_s": timings[0][0],
        "ours_runs": timings[0][1],
    }
    if setup.official:
        ours_grads, official_grads = grads
        official_s, official_runs, _ = timings[1]
        if ours_grads.keys() != official_grads.keys():
            raise RuntimeError("the two models have gradients for different parameters")
        numerator = max(max_abs_diff(ours_grads[k], official_grads[k]) for k in ours_grads)
        denominator = max(v.abs().max().item() for v in official_grads.values())
        result |= {
            "official_s": official_s,
            "official_runs": official_runs,
            "speedup": official_s / result["ours_s"],
            "first_loss_abs_diff": abs(losses[0] - losses[1]),
            "max_grad_abs_diff": numerator,
            "max_official_grad_abs": denominator,
            "grad_relative_diff": numerator / denominator,
        }
    return result


def attempt(name: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one measurement; a failure becomes ``{"error": ...}`` so the others still report."""
    say(f"{name} ...")
    start = time.perf_counter()
    try:
        result = fn(*args)
    except Exception as e:  # any failure: report it in the table, keep the run going
        traceback.print_exc()
        message = f"{type(e).__name__}: {e}"
        if isinstance(e, subprocess.CalledProcessError):  # the child's own last word, not argv
            last = e.stderr.strip().splitlines()[-1:] if e.stderr else []
            message = f"{' '.join(last)} (child exit status {e.returncode})"
        result = {"error": message[:300]}
    say(f"{name} done in {time.perf_counter() - start:.1f} s")
    return result


# --------------------------------------------------------------------------- report


@dataclass
class Check:
    """One row of the table: a measured value, its target and whether it is met."""

    measurement: str
    official: str = ""
    ours: str = ""
    result: str = ""
    target: str = ""
    passed: bool | None = None  # None: no target, or not measured


def seconds_text(value: float | None) -> str:
    """Seconds for the table: three decimals below 10 s, one above."""
    return "skipped" if value is None else f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def mib_text(value: float | None) -> str:
    """Mebibytes for the table."""
    return "skipped" if value is None else f"{value:.0f} MiB"


def at_least(value: float | None, target: float) -> bool | None:
    """Whether ``value`` meets a lower bound; None when it was not measured."""
    return None if value is None else value >= target


def at_most(value: float | None, target: float) -> bool | None:
    """Whether ``value`` meets an upper bound; None when it was not measured."""
    return None if value is None else value <= target


def unavailable(name: str, result: dict[str, Any]) -> Check | None:
    """The row for a measurement that failed or could not run, else None."""
    if "error" in result:
        return Check(name, result=f"error: {result['error']}", passed=False)
    if result.get("available") is False:
        return Check(name, result=f"not available: {result['reason']}")
    return None


def checks_of(results: dict[str, Any], args: argparse.Namespace) -> list[Check]:
    """The table's rows, in the order of the measurements (named from the settings, so that a
    measurement that failed still has its row)."""
    rows = []
    if "load" in results:
        load = results["load"]
        rows.append(
            unavailable("load_model (full size)", load)
            or Check("load_model (full size)", ours=seconds_text(load["seconds"]))
        )
    for size, fwd in zip(sorted(args.sizes), results.get("forward", []), strict=True):
        name = f"forward fp32 {size}x{size}"
        if row := unavailable(name, fwd):
            rows.append(row)
            continue
        speedup = fwd.get("speedup")
        has_target = size in SPEED_TARGET_SIZES
        rows.append(
            Check(
                name,
                official=seconds_text(fwd.get("official_s")),
                ours=seconds_text(fwd["ours_s"]),
                result="" if speedup is None else f"{speedup:.2f}x faster",
                target=f">= {FORWARD_SPEEDUP:g}x" if has_target else "",
                passed=at_least(speedup, FORWARD_SPEEDUP) if has_target else None,
            )
        )
        diff = fwd.get("max_abs_diff")
        rows.append(
            Check(
                f"{name} max |diff|",
                result="skipped" if diff is None else f"{diff:.1e}",
                target=f"<= {MAX_DIFF:.0e}",
                passed=at_most(diff, MAX_DIFF),
            )
        )
    if "cli" in results:
        cli = results["cli"]
        name = f"CLI restore {args.frame}x{args.frame}, fresh process"
        rows.append(
            unavailable(name, cli)
            or Check(
                name,
                official=f"{seconds_text(cli['official_forward_s'])} (forward)",
                ours=f"{seconds_text(cli['seconds'])} (end to end)",
                result="" if cli["speedup"] is None else f"{cli['speedup']:.2f}x faster",
                target=f">= {CLI_SPEEDUP:g}x",
                passed=at_least(cli["speedup"], CLI_SPEEDUP),
            )
        )
    if "bf16" in results:
        rows.extend(bf16_checks(results["bf16"], args.frame))
    if "memory" in results:
        mem = results["memory"]
        name = f"peak RSS, {args.frame}x{args.frame} full frame"
        official = mem.get("official", {}).get("peak_rss_mib")
        rows.append(
            unavailable(name, mem)
            or Check(
                name,
                official=mib_text(official),
                ours=mib_text(mem["ours"]["peak_rss_mib"]),
                result="" if official is None else f"ours/official {mem['ratio']:.3f}",
                target="<= 0.333",
                passed=at_most(mem.get("ratio"), MEMORY_RATIO),
            )
        )
    if "memory_big" in results:
        big = results["memory_big"]
        name = "peak RSS, 12 MP (4240x2832) full frame"
        rows.append(
            unavailable(name, big)
            or Check(
                name,
                ours=mib_text(big["peak_rss_mib"]),
                target=f"< {BIG_PEAK_MIB} MiB",
                passed=big["peak_rss_mib"] < BIG_PEAK_MIB,
            )
        )
    if "tiled" in results:
        tiled = results["tiled"]
        name = f"peak RSS, tiled restore {TILED_MEGAPIXELS[0]} -> {TILED_MEGAPIXELS[1]} MP"
        rows.append(
            unavailable(name, tiled)
            or Check(
                name,
                ours=" -> ".join(mib_text(r["peak_rss_mib"]) for r in tiled["rows"]),
                result=f"ratio {tiled['ratio']:.3f}",
            )
        )
    if "onnx" in results:
        onnx = results["onnx"]
        name = f"ONNX Runtime {args.onnx_size}x{args.onnx_size}"
        rows.append(
            unavailable(name, onnx)
            or Check(
                name,
                ours=f"{seconds_text(onnx['seconds'])} (PyTorch {seconds_text(onnx['pytorch_s'])})",
                result=f"max |diff| {onnx['max_abs_diff']:.1e}",
                target=f"<= {MAX_DIFF:.0e}",
                passed=at_most(onnx["max_abs_diff"], MAX_DIFF),
            )
        )
    if "training" in results:
        batch = f"{args.train_batch}x{args.train_size}x{args.train_size}"
        rows.extend(training_checks(results["training"], batch))
    return rows


def bf16_checks(bf16: dict[str, Any], size: int) -> list[Check]:
    """Rows of the bf16 measurement: speed against official fp32, PSNR against our fp32."""
    name = f"bf16 forward {size}x{size}"
    if row := unavailable(name, bf16):
        return [row]
    speedup = bf16["speedup"]
    difference = bf16["psnr_difference_db"]
    return [
        Check(
            f"{name} vs official fp32",
            official=seconds_text(bf16["official_fp32_s"]),
            ours=f"{seconds_text(bf16['seconds'])} ({bf16['input_dtype']} input)",
            result="" if speedup is None else f"{speedup:.2f}x faster",
            target=f">= {BF16_SPEEDUP:g}x",
            passed=at_least(speedup, BF16_SPEEDUP),
        ),
        Check(
            f"{name} PSNR vs clean (noisy input)",
            ours=f"fp32 {bf16['psnr_fp32_db']:.3f} dB, bf16 {bf16['psnr_bf16_db']:.3f} dB",
            result=f"bf16 - fp32 {difference:+.3f} dB",
            target=f"|diff| <= {BF16_PSNR_DB:g} dB",
            passed=abs(difference) <= BF16_PSNR_DB,
        ),
    ]


def training_checks(train: dict[str, Any], batch: str) -> list[Check]:
    """Rows of the training-step measurement: speed-up and gradient agreement."""
    name = f"training step, compact, {batch}"
    if row := unavailable(name, train):
        return [row]
    speedup, grad = train.get("speedup"), train.get("grad_relative_diff")
    return [
        Check(
            name,
            official=seconds_text(train.get("official_s")),
            ours=seconds_text(train["ours_s"]),
            result="" if speedup is None else f"{speedup:.2f}x faster",
            target=f">= {TRAIN_SPEEDUP:g}x",
            passed=at_least(speedup, TRAIN_SPEEDUP),
        ),
        Check(
            "training gradients max rel. diff",
            result="skipped" if grad is None else f"{grad:.1e}",
            target=f"<= {GRAD_DIFF:.0e}",
            passed=at_most(grad, GRAD_DIFF),
        ),
    ]


def print_table(rows: list[Check], title: str) -> None:
    """The rows as a rich table; the mark is pass, FAIL, or - (no target or not measured)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("measurement", "official", "ours", "result", "target", "ok"):
        table.add_column(column, overflow="fold")
    marks = {True: "[green]pass[/]", False: "[bold red]FAIL[/]", None: "-"}
    for row in rows:
        table.add_row(
            row.measurement, row.official, row.ours, row.result, row.target, marks[row.passed]
        )
    Console(width=max(shutil.get_terminal_size().columns, 160)).print(table)


def rounded(value: Any) -> Any:
    """Floats to 6 significant digits, recursively, for a readable JSON file."""
    if isinstance(value, float):
        return value if not math.isfinite(value) or value == 0 else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


# --------------------------------------------------------------------------- processes


def child(
    implementation: str, weights: str, height: int, width: int, threads: int, config_json: str
) -> None:
    """A memory child: build the model, load the weights, run one full-frame forward."""
    torch.set_num_threads(threads)
    if implementation == "official":
        from official import official_restormer

        model = official_restormer(**json.loads(config_json))
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True)["params"])
    else:
        import restormer

        model = restormer.load_model(weights)
    forward(model, torch.rand(1, 3, height, width))


def parse_args() -> argparse.Namespace:
    """The command line, checked: sizes are multiples of 8 (the model's requirement)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SIZES),
        help="forward image sizes (multiples of 8; add 1024 if wanted)",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--big", action="store_true", help="also ours on a 12 MP full frame")
    parser.add_argument("--tiled", action="store_true", help="also the tiled 6 vs 24 MP memory")
    parser.add_argument(
        "--skip-official",
        action="store_true",
        help="measure ours only (quick; no speed-ups, no agreement)",
    )
    parser.add_argument("--name", default="", help="suffix of the JSON file name")
    parser.add_argument(
        "--threads",
        type=int,
        default=physical_cores(),
        help="torch threads in every process (default: physical cores)",
    )
    # For quick checks while developing; the targets are defined at the default values.
    parser.add_argument("--frame", type=int, default=FRAME, help=argparse.SUPPRESS)
    parser.add_argument("--onnx-size", type=int, default=ONNX_SIZE, help=argparse.SUPPRESS)
    parser.add_argument("--train-batch", type=int, default=TRAIN_BATCH, help=argparse.SUPPRESS)
    parser.add_argument("--train-size", type=int, default=TRAIN_SIZE, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for size in [*args.sizes, args.frame, args.onnx_size, args.train_size]:
        if size <= 0 or size % 8:
            parser.error(f"image sizes must be positive multiples of 8, not {size}")
    if args.runs < 1 or args.threads < 1 or args.train_batch < 1:
        parser.error("--runs, --threads and --train-batch must be at least 1")
    return args


def official_available() -> bool:
    """True when the official architecture loads; else print the install hint."""
    from official import OfficialUnavailable, official_restormer_class

    try:
        official_restormer_class()
    except OfficialUnavailable as e:
        print(e, file=sys.stderr)
        return False
    return True


def main() -> None:
    """Run every measurement, print the table, write the JSON; exit 1 if one of them failed."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, implementation, weights, height, width, threads, config_json = sys.argv
        child(implementation, weights, int(height), int(width), int(threads), config_json)
        return
    args = parse_args()
    if not args.skip_official and not official_available():
        sys.exit(2)
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the CLI and tiled_memory children
    import restormer

    results: dict[str, Any] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="restormer-performance-") as tmp:
        setup = make_setup(Path(tmp), args.runs, args.threads, not args.skip_official)
        results["load"] = attempt("load_model", measure_load, setup)
        ours = restormer.load_model(setup.weights)
        official = official_model(setup) if setup.official else None
        results["forward"] = [
            attempt(f"forward fp32 {size}", measure_forward, setup, size, ours, official)
            for size in sorted(args.sizes)
        ]
        del official
        results["cli"] = attempt("CLI end to end", measure_cli, setup, args.frame)
        results["bf16"] = attempt("bf16", measure_bf16, setup, args.frame, ours)
        results["onnx"] = attempt("ONNX", measure_onnx, setup, args.onnx_size, ours)
        results["training"] = attempt(
            "training step", measure_training, setup, args.train_batch, args.train_size
        )
        del ours
        results["memory"] = attempt("peak RSS", measure_memory, setup, args.frame)
        if args.big:
            results["memory_big"] = attempt("peak RSS 12 MP", measure_big, setup)
        if args.tiled:
            results["tiled"] = attempt("tiled peak RSS", measure_tiled, setup)
    rows = checks_of(results, args)
    machine = machine_info(args.threads)
    print_table(
        rows,
        f"Restormer: ours vs official — {machine['cpu']}, {args.threads} threads, "
        f"torch {torch.__version__}",
    )
    report = {
        "benchmark": "performance",
        "command": " ".join(["python", "benchmarks/performance.py", *sys.argv[1:]]),
        "weights": "random full-size Restormer (default config, seed 0)",
        "settings": {k: v for k, v in vars(args).items() if k != "name"},
        "machine": machine,
        "seconds_total": round(time.perf_counter() - started, 1),
        "results": rounded(results),
        "checks": [asdict(row) for row in rows],
    }
    write_result("performance", args.name, report)
    if any(row.result.startswith("error:") for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
