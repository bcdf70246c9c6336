"""Train a shipped model's recipe on a GPU for a fixed number of minutes, then judge it here.

    python scripts/gpu_burst.py TASK --pack-photos .gpu/photos/train   # here, once
    python scripts/gpu_burst.py TASK --minutes 8 --out DIR --photos .gpu/photos/train
                                [--batch 64] [--patch 128] [--lr 3e-4] [--workers 3] [--seed N]
                                [--warm-start DIR/TASK.state] [--precision fp32|bf16]
                                [--compile default|reduce-overhead|max-autotune]
    python scripts/gpu_burst.py TASK --adopt DIR/TASK.state   # back here: an experiment
    python scripts/ship_model.py TASK                          # the usual judge

(``scripts/gpu_lease.py`` runs the bursts of several tasks at once, after probing which of
bf16 and compiling pay on the lent GPU: a lease's plan in one command.)

Why: this project trains on 2 CPU cores, where a model sees ~2 patches a second; a GPU lent
for a few minutes sees far more, so minutes there are days here. The lease is short and
counted in wall-clock time, so this trains for a time, not an iteration count: the learning
rate follows one cosine from ``--lr`` down to the recipe's floor over ``--minutes`` (after a
warm-up of 100 steps, as the optimiser starts afresh), whatever the step rate turns out to be.

What it trains is the recipe of ``configs/shipped/TASK.yml`` (model, degradation, loss,
optimiser, EMA, gradient clipping) from the shipped model, grown first where the option file
is deeper (:mod:`restormer.train.deepen`), or from an earlier burst (``--warm-start``), with
one stage of ``--batch`` patches of ``--patch`` pixels. Batches are made as ``restormer
train`` makes them (:class:`restormer.data.TrainingData`: each one a function of the seed and
its iteration), in ``--workers`` processes, since one CPU core cannot keep a GPU fed. Several
tasks share one GPU by running one process each.

Measured on one H200 (2026-12-04, torch 2.11): four tasks at once, 16 CPU cores, ran 1.0-1.5
steps a second each (64 x 128 px; motion 32 x 192) with the GPU busy all the time; one task
alone 4.7 steps a second (~300 patches a second, against ~2 for a CPU trainer here). Those
bursts ran the step in fp32, eagerly; ``--precision bf16``, ``--compile MODE`` and the fused
AdamW (always on CUDA now) are what ``benchmarks/gpu_step.py`` measures, in one short run.
Making the batches is not the limit: one CPU core makes 180-680 patches a second (motion to
gray denoising, 2026-12-04), so three workers keep up with several times that rate.

The lease carries at most 64 MiB of files, the package's weights included, so the training
photos travel as JPEG (quality 95, no chroma subsampling: 21.8 MB for the 95, PSNR ~45 dB to
the PNGs; ``--pack-photos``): the noise and blur are added to those copies on the GPU
machine, so a model learns nothing of their artefacts but to keep them.

Every ``--save-every`` seconds and at the end it writes ``OUT/TASK.state``: a training state
(:mod:`restormer.train.checkpoint`) with the weights and their moving average in float16 and
no optimiser moments (small enough to bring back from a lent machine), plus the run's step
count, batch, patch, GPU seconds and step rate. ``--adopt`` turns that file into
``experiments/TASK`` (options, state, ``lineage.json`` naming the shipped model it started
from and the bursts), which ``scripts/ship_model.py`` judges and ships like any run.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from restormer.data import StageSchedule, TrainingData, build_training_set
from restormer.files import write_atomically
from restormer.model import Restormer
from restormer.shipped import TRAINING_METADATA_KEY, TrainingRecord, shipped_path
from restormer.tasks import TASKS
from restormer.train import load_options
from restormer.train.checkpoint import ExperimentDir, load_state, save_state
from restormer.train.deepen import deepen_state_dict, depth_change
from restormer.train.step import WeightAverage, autocast, make_optimizer, recipe_loss
from restormer.weights import CONFIG_METADATA_KEY, read_checkpoint

ROOT = Path(__file__).resolve().parent.parent
WARMUP_STEPS = 100
STAGE_ITERS = 10**7  # one stage longer than any burst: the clock ends it


class _Batches(Dataset):
    """Batch ``i`` of the stream, for a DataLoader whose workers make whole batches."""

    def __init__(self, data: TrainingData, first: int) -> None:
        self.data = data
        self.first = first

    def __len__(self) -> int:
        return STAGE_ITERS - self.first

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.batch(self.first + index)


def burst_overrides(args: argparse.Namespace) -> list[str]:
    """Option-file overrides of a burst: one long stage of the burst's batches, no validation."""
    overrides = [
        f"datasets.train.iters=[{STAGE_ITERS}]",
        f"datasets.train.gt_sizes=[{args.patch}]",
        f"datasets.train.mini_batch_sizes=[{args.batch}]",
        f"datasets.train.gt_size={args.patch}",
        f"train.optim_g.lr={args.lr}",
        f"train.precision={args.precision}",
    ]
    if args.photos:
        overrides.append(f"datasets.train.dataroot_gt={args.photos}")
    return overrides


def warm_start(task: str, network: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """The shipped model's weights, grown to the option file's depth; and its training record."""
    checkpoint = read_checkpoint(shipped_path(task))
    config = json.loads(checkpoint.metadata[CONFIG_METADATA_KEY])
    state = {k: v.float() for k, v in checkpoint.state_dict.items()}
    if depth_change(config, network) is not None:
        state = deepen_state_dict(state, config, network)
    record = TrainingRecord.from_json(checkpoint.metadata.get(TRAINING_METADATA_KEY))
    lineage = {"iterations": record.iterations, "hours": record.hours}
    return state, lineage | ({"gpu_minutes": record.gpu_minutes} if record.gpu_minutes else {})


def cosine_lr(fraction: float, step: int, peak: float, floor: float) -> float:
    """The learning rate ``fraction`` of the way through the burst (its step ``step``)."""
    warm = min(1.0, step / WARMUP_STEPS)
    return warm * (floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, fraction))))


def train(args: argparse.Namespace) -> None:
    """Train ``args.task`` for ``args.minutes``, saving ``OUT/TASK.state`` as it goes."""
    options = load_options(ROOT / "configs" / "shipped" / f"{args.task}.yml", burst_overrides(args))
    training_set = build_training_set(options.train_dataset)
    schedule = StageSchedule.from_options(options.train_dataset)
    loader = DataLoader(
        _Batches(TrainingData(training_set, schedule, seed=args.seed), 1),
        batch_size=None,
        num_workers=args.workers,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if args.workers else None,
        persistent_workers=bool(args.workers),
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True  # one patch size: let cuDNN pick its kernels once
    model = Restormer(**options.network.to_dict()).to(device)
    weights, origin, first_step = starting_point(args, options.network.to_dict())
    model.load_state_dict(weights)
    step = BurstStep(model, options, device, compile=args.compile)
    args.out.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(
        f"{args.task}: {sum(p.numel() for p in model.parameters()):,} parameters on "
        f"{device_name}, {len(training_set)} photos, batch {args.batch} x {args.patch} px",
        flush=True,
    )

    def save(steps: int, seconds: float) -> None:
        burst = {
            "minutes": args.minutes,
            "seconds": round(seconds, 1),
            "steps": steps,
            "batch": args.batch,
            "patch": args.patch,
            "lr": args.lr,
            "seed": args.seed,
            "precision": args.precision,
            "compile": args.compile,
            "device": device_name,
            "from": origin,
        }
        state = step.state(first_step + steps, len(training_set), burst)
        # whole or not at all: the lease may end the run at any moment
        path = args.out / f"{args.task}.state"
        write_atomically(path, partial(torch.save, state), overwrite=True)

    budget = args.minutes * 60
    start = last_save = time.monotonic()
    steps, losses = 0, []
    for inputs, targets in loader:
        elapsed = time.monotonic() - start
        if elapsed >= budget:
            break
        steps += 1
        lr = cosine_lr(elapsed / budget, steps, args.lr, step.floor)
        loss = step(inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True), lr)
        if steps % 50 == 0:  # reading the loss waits for the GPU: only now and then
            losses.append(float(loss))
        if steps % 200 == 0:
            print(
                f"{args.task}: step {steps:,}, {elapsed:.0f} s, lr {lr:.2e}, "
                f"{steps / elapsed:.1f} steps/s, loss {sum(losses) / len(losses):.4e}",
                flush=True,
            )
            losses = []
        if time.monotonic() - last_save >= args.save_every:
            save(steps, time.monotonic() - start)
            last_save = time.monotonic()
    seconds = time.monotonic() - start
    save(steps, seconds)
    print(f"{args.task}: {steps:,} steps in {seconds:.0f} s ({steps / seconds:.2f}/s)", flush=True)


def starting_point(
    args: argparse.Namespace, network: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any], int]:
    """The weights a burst starts from, the lineage they carry and the steps already taken:
    an earlier burst's (``--warm-start``) or the shipped model's."""
    if not args.warm_start:
        weights, shipped = warm_start(args.task, network)
        return weights, shipped, 0
    earlier = load_state(args.warm_start)
    origin = {**earlier["burst"]["from"]}
    origin["bursts"] = [*origin.get("bursts", []), _without_from(earlier["burst"])]
    weights = {k: v.float() for k, v in earlier["model"].items()}
    return weights, origin, int(earlier["iter"])


class BurstStep:
    """One optimiser step of the recipe (loss, optimiser, clipping, autocast) and the moving
    average of the weights, with ``restormer train``'s own pieces.

    ``fused_optimizer``: PyTorch's one-kernel AdamW (default: on CUDA). ``compile`` names a
    ``torch.compile`` mode for the forward pass (``"default"``, ``"reduce-overhead"``: CUDA
    graphs, ``"max-autotune"``), or None for eager; see ``benchmarks/gpu_step.py``.
    """

    def __init__(
        self,
        model: Restormer,
        options: Any,
        device: torch.device,
        *,
        compile: str | None = None,
        fused_optimizer: bool | None = None,
    ) -> None:
        self.model = model
        self.options = options
        self.device = device
        # at train.optim_g.lr: the burst's --lr
        fused = device.type == "cuda" if fused_optimizer is None else fused_optimizer
        self.optimizer = make_optimizer(model, options, fused=fused)
        eta_mins = options.scheduler.eta_mins
        self.floor = min(eta_mins) if eta_mins else 1e-6
        self.ema = WeightAverage(model, options.ema_decay or 0.999)
        self.forward = model if compile is None else torch.compile(model, mode=compile)
        model.train()

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, lr: float) -> torch.Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.options.precision, self.device):
            outputs = self.forward(inputs)
        loss = recipe_loss(outputs.float(), targets, self.options)
        loss.backward()
        if self.options.use_grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.options.grad_clip_norm)
        self.optimizer.step()
        self.ema.update(self.model)
        return loss.detach()

    def state(self, iteration: int, photos: int, burst: dict[str, Any]) -> dict[str, Any]:
        """A training state small enough to bring back: float16 weights and moving average,
        no optimiser moments (a burst's schedule ends at the floor; nothing resumes it)."""
        return {
            "iter": iteration,
            "model": _half(self.model.state_dict()),
            "ema": _half(self.ema.state_dict()),
            "optimizer": {},
            "cpu_seconds": 0.0,
            "training_images": photos,
            "burst": burst,
        }


def _half(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float16) for k, v in params.items()}


def _without_from(burst: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in burst.items() if k != "from"}


def adopt(args: argparse.Namespace) -> None:
    """``experiments/TASK`` from a burst's state, for ``scripts/ship_model.py`` to judge."""
    state = load_state(args.adopt)
    burst = state["burst"]
    experiment = ExperimentDir(ROOT / "experiments" / args.task)
    if experiment.root.exists():
        raise SystemExit(f"{experiment.root} exists: move it aside first")
    experiment.create()
    args.batch, args.patch, args.lr, args.photos = burst["batch"], burst["patch"], burst["lr"], None
    args.precision = burst.get("precision", "fp32")  # the first bursts ran in fp32
    source = ROOT / "configs" / "shipped" / f"{args.task}.yml"
    options_text = source.read_text()
    (experiment.root / "options.yml").write_text(options_text)
    load_options(experiment.root / "options.yml", burst_overrides(args))  # still a valid recipe
    save_state(experiment, state["iter"], state)
    lineage = {**burst["from"], "burst": {k: v for k, v in burst.items() if k != "from"}}
    (experiment.root / "lineage.json").write_text(json.dumps(lineage))
    shutil.copy2(args.adopt, experiment.root / "burst.state")
    print(
        f"{experiment.root}: {state['iter']:,} steps of {burst['batch']} x {burst['patch']} px "
        f"in {burst['seconds']:.0f} s on {burst['device']}"
    )


def pack_photos(task: str, folder: Path) -> None:
    """The option file's training photos as JPEG copies in ``folder`` (see the module's
    docstring: the lease's size limit)."""
    options = load_options(ROOT / "configs" / "shipped" / f"{task}.yml")
    source = ROOT / str(options.train_dataset["dataroot_gt"])
    folder.mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in source.iterdir() if p.suffix.lower() == ".png")
    for photo in photos:
        with Image.open(photo) as image:
            image.convert("RGB").save(folder / f"{photo.stem}.jpg", quality=95, subsampling=0)
    print(f"{folder}: {len(photos)} photos")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "bursts")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--photos", help="training photos (default: the option file's folder)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--save-every", type=float, default=60.0)
    parser.add_argument("--warm-start", type=Path, help="an earlier burst's TASK.state")
    parser.add_argument("--pack-photos", type=Path, help="write JPEG copies of the photos here")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="forward pass in fp32 (default) or bf16 autocast",
    )
    parser.add_argument(
        "--compile",
        choices=["default", "reduce-overhead", "max-autotune"],
        help="torch.compile the forward pass in this mode (benchmarks/gpu_step.py measures them)",
    )
    parser.add_argument("--adopt", type=Path, help="a burst's TASK.state: make experiments/TASK")
    args = parser.parse_args()
    if args.pack_photos:
        pack_photos(args.task, args.pack_photos)
    elif args.adopt:
        adopt(args)
    else:
        train(args)


if __name__ == "__main__":
    sys.exit(main())
