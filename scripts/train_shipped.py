"""Train (or keep training) the shipped model of one task, on CPU, resumable across sessions.

    python scripts/train_shipped.py TASK [--hours H] [--until ITERATION | --cycle ITERATIONS]
                                    [--cycle-lr LR] [--cycle-patch SIZE]
                                    [--cycle-loss L1Loss|MSELoss] [--threads N]
                                    [--from OTHER_TASK | --restart-from OTHER_TASK]
                                    [--precision auto|fp32|bf16]

Runs ``restormer train configs/shipped/TASK.yml`` with these rules, so that a run killed at
any moment, or a machine that lost its ``experiments/`` folder, costs at most the iterations
since the last checkpoint, never the model:

1. ``experiments/TASK`` holds a training state: resume it (``--resume auto``).
2. Otherwise, when the package ships a model for TASK with the option file's architecture:
   warm-start from it, and record its training iterations and hours in
   ``experiments/TASK/lineage.json`` so that ``scripts/ship_model.py`` reports the totals of
   the whole lineage. When the option file's model is the shipped one with more blocks per
   level (same widths), the shipped model is grown to it first (:mod:`restormer.train.deepen`:
   the added blocks start as identities), so the deeper model starts where the shipped one is;
   likewise when it is the shipped one with twice the ``dim`` (:mod:`restormer.train.widen`).
3. Otherwise, with ``--from OTHER_TASK`` (a shipped model of the same widths and depths):
   warm-start from that task's shipped model (its lineage recorded likewise), its first and
   last convolutions adapted to this task's channels (:func:`adapt_channels`); a dual-pixel
   model from a single-image one also gets its skip path fitted (:func:`fit_skip_path`), so
   it starts as that model on the mean of its two views. ``--restart-from OTHER_TASK`` does
   the same even where the package ships a model for TASK: a new lineage, which
   ``scripts/ship_model.py`` ships only if it restores better than the shipped model.
4. Otherwise: from scratch. So a model of another width in the option file starts afresh (its
   ``experiments/TASK`` must not hold the old model's states), and ``scripts/ship_model.py``
   replaces the shipped one only if it restores better.

``--cycle N`` replaces the option file's learning-rate schedule by one cosine cycle of N
iterations, from ``--cycle-lr`` (3e-4) down to 1e-5, and stops there: a warm restart of the
shipped model (SGDR) short enough to end, be judged and shipped within one session on a slow
machine, so a lost ``experiments/`` folder costs nothing shipped. A cycle counts its
iterations from 1, so it trains at the recipe's first progressive stage (its smallest patches)
unless ``--cycle-patch SIZE`` names a later stage, e.g. the one the shipped model's training
had reached, or a size beyond the last stage (a multiple of 8, the model's downsampling), with
the batch shrunk to keep the last stage's pixels per step, as progressive learning goes on to
larger patches; ``--cycle-loss MSELoss`` trains it with the squared error that PSNR measures
instead of the recipe's L1. The cycle is recorded in ``lineage.json``: a resumed run keeps it, and
``scripts/ship_model.py`` puts it in the command.

Training runs in bf16 autocast where the CPU has native bfloat16 (``--precision auto``,
the default), else in fp32. The training photos are ``datasets/photos/train`` (make them with
``python scripts/prepare_photos.py``). Run it in the background with low priority::

    OMP_NUM_THREADS=1 nohup nice -n 19 python scripts/train_shipped.py deraining &
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from restormer.data.schedule import StageSchedule
from restormer.io import read_image, to_float
from restormer.shipped import TRAINING_METADATA_KEY, shipped_path
from restormer.tasks import TASKS
from restormer.train.checkpoint import ExperimentDir, newest_state
from restormer.train.deepen import deepen_state_dict, depth_change
from restormer.train.options import LOSSES
from restormer.train.widen import widen_state_dict, width_change
from restormer.weights import (
    CONFIG_METADATA_KEY,
    native_bfloat16,
    read_checkpoint,
    save_weights,
)

ROOT = Path(__file__).resolve().parent.parent


def adapt_channels(
    state: dict[str, torch.Tensor], in_channels: int, out_channels: int
) -> dict[str, torch.Tensor]:
    """A state dict with its input and output convolutions changed to other channel counts.

    3 -> 1 input: the RGB filters summed (a gray image is three equal channels). 3 -> 6
    (dual-pixel, left and right views): the RGB filters halved for each view (the mean of the
    two views is the ordinary photo). 3 -> 1 output: the mean of the RGB filters. The
    dual-pixel ``skip_conv`` is not in a single-image model; it starts from its initialisation.
    """
    state = dict(state)
    embed = state["patch_embed.proj.weight"]
    if embed.shape[1] != in_channels:
        if embed.shape[1] == 3 and in_channels == 1:
            embed = embed.sum(dim=1, keepdim=True)
        elif embed.shape[1] == 3 and in_channels == 6:
            embed = torch.cat([embed / 2, embed / 2], dim=1)
        else:
            raise SystemExit(f"cannot adapt {embed.shape[1]} input channels to {in_channels}")
        state["patch_embed.proj.weight"] = embed
    output = state["output.weight"]
    if output.shape[0] != out_channels:
        if output.shape[0] == 3 and out_channels == 1:
            output = output.mean(dim=0, keepdim=True)
        else:
            raise SystemExit(f"cannot adapt {output.shape[0]} output channels to {out_channels}")
        state["output.weight"] = output
    return state


def fit_skip_path(
    state: dict[str, torch.Tensor],
    photos: list[np.ndarray],
    crop: int = 64,
    crops_per_photo: int = 3,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """``state`` with its ``skip_conv`` chosen so that the dual-pixel skip path reproduces the
    mean of the two views: output(skip_conv(patch_embed(x))) ~ x, least squares over random
    crops of ``photos`` (float RGB) seen as both views.

    The dual-pixel Restormer has no global residual (out = output(features +
    skip_conv(shallow))), while a single-image model's output convolution makes a residual
    (out = x + output(features)). With this skip path, a single-image model adapted by
    :func:`adapt_channels` computes what it computed on the mean view, except on the outermost
    pixel ring (zero padding), instead of having to learn to pass the image through.
    """
    embed = state["patch_embed.proj.weight"].double()  # (dim, 6, 3, 3)
    output = state["output.weight"].double()  # (3, width, 3, 3)
    dim, width = embed.shape[0], output.shape[1]
    normal = torch.zeros(width * dim, width * dim, dtype=torch.float64)
    moment = torch.zeros(width * dim, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    inner = slice(2, crop - 2)  # pixels whose 5x5 reach stays inside the crop
    for photo in photos:
        height, breadth = photo.shape[:2]
        for _ in range(crops_per_photo):
            top = int(rng.integers(0, height - crop + 1))
            left = int(rng.integers(0, breadth - crop + 1))
            x = torch.from_numpy(photo[top : top + crop, left : left + crop, :3].copy())
            x = x.permute(2, 0, 1)[None].double()
            shallow = F.conv2d(torch.cat([x, x], dim=1), embed, padding=1)[0]  # (dim, H, W)
            # what each skip weight (o, i) adds to the output: output's o-th filter on map i
            basis = torch.stack(
                [F.conv2d(shallow[:, None], output[:, o : o + 1], padding=1) for o in range(width)]
            )  # (width, dim, 3, H, W)
            design = basis[..., inner, inner].reshape(width * dim, -1)
            normal += design @ design.T
            moment += design @ x[0, :, inner, inner].reshape(-1)
    ridge = 1e-9 * normal.diagonal().mean() * torch.eye(width * dim, dtype=torch.float64)
    weights = torch.linalg.solve(normal + ridge, moment)
    state = dict(state)
    state["skip_conv.weight"] = weights.reshape(width, dim, 1, 1).float()
    return state


def _training_photos() -> list[np.ndarray]:
    folder = ROOT / "datasets" / "photos" / "train"
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".tif"))
    if not paths:
        raise SystemExit(f"{folder}: no photos (run python scripts/prepare_photos.py)")
    photos = []
    for path in paths:
        pixels = to_float(read_image(path).pixels)
        photos.append(np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels)
    return photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("--hours", type=float, default=None, help="stop cleanly after this long")
    parser.add_argument(
        "--until",
        type=int,
        default=None,
        metavar="ITERATION",
        help="stop at this iteration, e.g. the end of a learning-rate cycle (default: the "
        "option file's total_iter)",
    )
    parser.add_argument(
        "--cycle",
        type=int,
        default=None,
        metavar="ITERATIONS",
        help="one cosine learning-rate cycle of this many iterations (from --cycle-lr down to "
        "1e-5) instead of the option file's schedule, then stop",
    )
    parser.add_argument(
        "--cycle-lr",
        type=float,
        default=None,
        metavar="LR",
        help=f"the learning rate a --cycle starts from (default {CYCLE_LR:g})",
    )
    parser.add_argument(
        "--cycle-patch",
        type=int,
        default=None,
        metavar="SIZE",
        help="train a --cycle at the option file's progressive stage of this patch size (and "
        "its batch size) instead of its first stage, or at a size beyond the last stage (a "
        "multiple of 8) with the batch that keeps the last stage's pixels per step",
    )
    parser.add_argument(
        "--cycle-loss",
        choices=list(LOSSES),
        default=None,
        help="train a --cycle with this pixel loss instead of the recipe's (MSELoss: the one "
        "PSNR measures, where the recipes train with L1Loss)",
    )
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads (default 1)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--from",
        dest="source",
        choices=list(TASKS),
        default=None,
        help="warm-start from that task's shipped model when TASK ships none",
    )
    source.add_argument(
        "--restart-from",
        choices=list(TASKS),
        default=None,
        metavar="OTHER_TASK",
        help="warm-start from that task's shipped model even when TASK ships one",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="training arithmetic (auto: bf16 autocast where the CPU has native bfloat16)",
    )
    parser.add_argument("--experiments", type=Path, default=ROOT / "experiments")
    args = parser.parse_args()

    options = ROOT / "configs" / "shipped" / f"{args.task}.yml"
    experiment = ExperimentDir(args.experiments / args.task)
    command = [sys.executable, "-m", "restormer", "train", str(options), "--resume", "auto"]
    command += ["--keep-states", "2", "--no-progress"]
    command += ["--experiments-root", str(args.experiments)]
    if args.hours is not None:
        command += ["--max-hours", str(args.hours)]
    command += ["--set", f"train.precision={_precision(args.precision)}"]
    if args.until is not None:
        if args.until < 1:
            raise SystemExit(f"--until {args.until}: expected an iteration >= 1")
        command += ["--set", f"train.total_iter={args.until}"]
    resuming = newest_state(experiment) is not None
    cycle = _cycle(args, experiment, resuming)
    if cycle is not None:
        command += cycle_overrides(cycle, _stages(options))

    if not resuming:
        if args.restart_from is not None:
            warm = _warm_start_from(args.restart_from, args.task, experiment, "--restart-from")
        else:
            warm = _warm_start(args.task, args.source, experiment)
        if warm is not None:
            command += ["--set", f"path.pretrain_network_g={warm}"]
            if warm.name.startswith("warm_start_from_"):  # another task's: dual-pixel adds keys
                command += ["--set", "path.strict_load_g=false"]
    experiment.root.mkdir(parents=True, exist_ok=True)
    if cycle is not None and not resuming:
        _record_cycle(experiment, cycle)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(" ".join(command), flush=True)
    raise SystemExit(subprocess.call(command, cwd=ROOT, env=env))


CYCLE_LR = 3e-4
"""Where a ``--cycle`` starts: the restart of the dual-pixel recipe, which improved its model."""

CYCLE_END_LR = 1e-5


def cycle_overrides(cycle: dict[str, Any], stages: StageSchedule) -> list[str]:
    """``restormer train`` options that make the run one cosine cycle of
    ``cycle["iterations"]`` from ``cycle["lr"]`` down to 1e-5, ending the run there, all at the
    progressive stage (of ``stages``, the recipe's) with patch size ``cycle["patch"]``, if
    given (a cycle counts its iterations from 1, so it would otherwise train at the first), or
    at that size beyond the stages with the batch of :func:`cycle_batch`, with the pixel loss
    ``cycle["loss"]``, if given."""
    iterations, lr = int(cycle["iterations"]), float(cycle["lr"])
    settings: dict[str, Any] = {
        "train.total_iter": iterations,
        "train.optim_g.lr": lr,
        "train.scheduler.periods": f"[{iterations}]",
        "train.scheduler.restart_weights": "[1]",
        "train.scheduler.eta_mins": f"[{CYCLE_END_LR:g}]",
    }
    if cycle.get("patch") is not None:
        patch = int(cycle["patch"])
        settings |= {
            "datasets.train.iters": f"[{iterations}]",
            "datasets.train.gt_sizes": f"[{patch}]",
            "datasets.train.mini_batch_sizes": f"[{cycle_batch(patch, stages)}]",
        }
    if cycle.get("loss") is not None:
        settings["train.pixel_opt.type"] = cycle["loss"]
    return [part for key, value in settings.items() for part in ("--set", f"{key}={value}")]


def cycle_batch(patch: int, stages: StageSchedule) -> int:
    """The batch size of a cycle at ``patch``-pixel patches: the recipe's at its stage of that
    size; beyond its last stage, the one that keeps the last stage's pixels per step (at least
    one patch), so a step costs about what it did."""
    if patch in stages.gt_sizes:
        return stages.mini_batch_sizes[stages.gt_sizes.index(patch)]
    pixels = stages.gt_sizes[-1] ** 2 * stages.mini_batch_sizes[-1]
    return max(1, round(pixels / patch**2))


def _cycle(args: argparse.Namespace, experiment: ExperimentDir, resuming: bool) -> dict | None:
    """The run's ``--cycle`` (a resumed run keeps the one it started with)."""
    if args.cycle is not None and args.until is not None:
        raise SystemExit("--cycle and --until: give one (a cycle ends the run)")
    if args.cycle is not None and args.cycle < 1:
        raise SystemExit(f"--cycle {args.cycle}: expected a number of iterations >= 1")
    if args.cycle_lr is not None and not args.cycle_lr > 0:
        raise SystemExit(f"--cycle-lr {args.cycle_lr:g}: expected a learning rate > 0")
    given = (
        ("--cycle-lr", args.cycle_lr),
        ("--cycle-patch", args.cycle_patch),
        ("--cycle-loss", args.cycle_loss),
    )
    for option, value in given:
        if value is not None and args.cycle is None:
            raise SystemExit(f"{option} needs --cycle ITERATIONS")
    asked = None
    if args.cycle is not None:
        asked = {"iterations": args.cycle, "lr": args.cycle_lr or CYCLE_LR}
        if args.cycle_patch is not None:
            sizes = _stages(ROOT / "configs" / "shipped" / f"{args.task}.yml").gt_sizes
            beyond = args.cycle_patch > sizes[-1] and args.cycle_patch % 8 == 0
            if args.cycle_patch not in sizes and not beyond:
                raise SystemExit(
                    f"--cycle-patch {args.cycle_patch}: not a patch size of the recipe's "
                    f"stages ({', '.join(map(str, sizes))}) nor a multiple of 8 beyond them"
                )
            asked["patch"] = args.cycle_patch
        if args.cycle_loss is not None:
            asked["loss"] = args.cycle_loss
    if not resuming:
        return asked
    recorded = _lineage(experiment).get("cycle")
    if asked is not None and asked != recorded:
        raise SystemExit(
            f"--cycle: the run in {experiment.root} was started with "
            f"{'cycle ' + json.dumps(recorded) if recorded else 'no --cycle'}; it resumes as "
            "it began (move the folder away to start another run)"
        )
    return recorded


def _stages(options: Path) -> StageSchedule:
    """The progressive-learning stages of an option file."""
    from restormer.train import load_options

    return StageSchedule.from_options(load_options(options).train_dataset)


def _lineage(experiment: ExperimentDir) -> dict[str, Any]:
    path = experiment.root / "lineage.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _record_cycle(experiment: ExperimentDir, cycle: dict[str, Any]) -> None:
    lineage = {**_lineage(experiment), "cycle": cycle}
    (experiment.root / "lineage.json").write_text(json.dumps(lineage))


def _precision(choice: str) -> str:
    """bf16 autocast where the CPU multiplies bfloat16 natively (AVX512-BF16 / AMX): about
    1.8x the steps per hour of fp32 on one thread, with gradients within a few percent of
    fp32's (validation and the shipped weights stay fp32). Elsewhere emulated bf16 would be
    slower than fp32, so fp32."""
    if choice != "auto":
        return choice
    return "bf16" if native_bfloat16("cpu") else "fp32"


ARCHITECTURE_KEYS = (
    "dim",
    "num_blocks",
    "num_refinement_blocks",
    "heads",
    "ffn_expansion_factor",
    "bias",
    "LayerNorm_type",
)
"""What a warm start must share with the option file: all but the image channels."""


def architecture_change(checkpoint: Any, network: dict) -> str | None:
    """How the option file's ``network`` differs from a model file's (``checkpoint``, as read by
    :func:`read_checkpoint`) in anything that shapes its weights other than the image
    channels, e.g. ``"dim 16 -> 24"``; None if not."""
    config = _config(checkpoint)
    changes = [
        f"{key} {config.get(key)} -> {network.get(key)}"
        for key in ARCHITECTURE_KEYS
        if config.get(key) != network.get(key)
    ]
    return ", ".join(changes) or None


def _warm_start(task: str, source: str | None, experiment: ExperimentDir) -> Path | None:
    """Prepare warm-start weights for a run without a state; None: start from scratch."""
    from restormer.train import load_options

    network = load_options(ROOT / "configs" / "shipped" / f"{task}.yml").network.to_dict()
    own = shipped_path(task)
    if own.is_file():
        checkpoint = read_checkpoint(own)
        change = architecture_change(checkpoint, network)
        if change is None:
            lineage = _start_lineage(experiment, checkpoint)
            print(f"warm start from the shipped {task} model ({lineage})", flush=True)
            return own
        grown = _grown(checkpoint, network, experiment)
        if grown is not None:
            return grown
        print(f"not warm-started from the shipped {task} model: the option file has {change}")
    if source is None:
        return None
    return _warm_start_from(source, task, experiment, network=network)


def _start_lineage(experiment: ExperimentDir, checkpoint: Any, **extra: str) -> dict[str, Any]:
    """Write the run's ``lineage.json``: the iterations and hours of the shipped model it
    starts from (``checkpoint``), plus ``extra``; returns what it wrote."""
    record = json.loads(checkpoint.metadata.get(TRAINING_METADATA_KEY, "{}"))
    carried = ("iterations", "hours", "gpu_minutes")
    lineage = {k: v for k, v in record.items() if k in carried} | extra
    experiment.root.mkdir(parents=True, exist_ok=True)
    (experiment.root / "lineage.json").write_text(json.dumps(lineage))
    return lineage


def _config(checkpoint: Any) -> dict[str, Any]:
    """The architecture recorded in a model file."""
    return json.loads(checkpoint.metadata.get(CONFIG_METADATA_KEY, "{}"))


def _grown(checkpoint: Any, network: dict, experiment: ExperimentDir) -> Path | None:
    """The shipped model (``checkpoint``) grown to the recipe's depth
    (:mod:`restormer.train.deepen`: added blocks start as identities) or width
    (:mod:`restormer.train.widen`: twice the ``dim``, every channel copied), saved in the run's
    folder as its warm start; None unless the recipe is that model deeper or wider."""
    config = _config(checkpoint)
    growth = _growth(config, network)
    if growth is None:
        return None
    label, change = growth
    state = {k: v.float() for k, v in checkpoint.state_dict.items()}
    torch.manual_seed(0)  # the added blocks' or channels' fresh weights
    if label == "deepened":
        state = deepen_state_dict(state, config, network)
    else:
        state = widen_state_dict(state, config, network, torch.Generator().manual_seed(0))
    _start_lineage(experiment, checkpoint, **{label: change})
    target = experiment.root / f"warm_start_{label}.safetensors"
    save_weights(state, target, overwrite=True)
    print(f"warm start from the shipped model, {label} ({change}): it computes what that "
          "model computes until the new weights learn", flush=True)  # fmt: skip
    return target


def _growth(config: dict, network: dict) -> tuple[str, str] | None:
    """("deepened" or "widened", what changed) if ``network`` is ``config`` with more blocks or
    twice the width; None if it is the same model or differs otherwise."""
    for label, describe in (("deepened", depth_change), ("widened", width_change)):
        try:
            change = describe(config, network)
        except ValueError:  # differs in more than this
            continue
        if change is not None:
            return label, change
    return None


def _warm_start_from(
    source: str,
    task: str,
    experiment: ExperimentDir,
    option: str = "--from",
    network: dict | None = None,
) -> Path:
    """Another task's shipped model, adapted to ``task``'s channels (and skip path), saved in
    the run's folder as its warm start. ``network``: the recipe's, if already read."""
    if network is None:
        from restormer.train import load_options

        network = load_options(ROOT / "configs" / "shipped" / f"{task}.yml").network.to_dict()
    other = shipped_path(source)
    if not other.is_file():
        raise SystemExit(f"{option} {source}: no shipped model for that task")
    checkpoint = read_checkpoint(other)
    change = architecture_change(checkpoint, network)
    if change is not None:
        raise SystemExit(f"{option} {source}: its model has another architecture ({change})")
    _start_lineage(experiment, checkpoint, **{"from": source})
    state = {k: v.float() for k, v in checkpoint.state_dict.items()}
    state = adapt_channels(state, network["inp_channels"], network["out_channels"])
    if network["dual_pixel_task"] and "skip_conv.weight" not in state:
        state = fit_skip_path(state, _training_photos())
        print("skip path fitted: the model starts as the single-image one on the mean view")
    experiment.root.mkdir(parents=True, exist_ok=True)
    target = experiment.root / f"warm_start_from_{source}.safetensors"
    save_weights(state, target, overwrite=True)
    print(f"warm start from the shipped {source} model, channels adapted", flush=True)
    return target


if __name__ == "__main__":
    main()
