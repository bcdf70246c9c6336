"""scripts/gpu_burst.py: a timed training burst on a lent GPU, brought back as an experiment."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restormer.data import StageSchedule
from restormer.tasks import TASKS
from restormer.train import load_options
from restormer.train.checkpoint import ExperimentDir, load_state, newest_state

from .script_modules import load_script
from .test_shipped import ROOT, _script


def _burst_args(**changes: object) -> argparse.Namespace:
    args = dict(
        batch=64, patch=128, lr=3e-4, photos=None, warm_start=None, seed=7, precision="fp32"
    )
    args["compile"] = None
    return argparse.Namespace(**{**args, **changes})


def test_learning_rate_warms_up_then_follows_one_cosine_to_the_floor() -> None:
    cosine_lr = _script("gpu_burst").cosine_lr
    assert cosine_lr(0.0, 1, 3e-4, 1e-6) == pytest.approx(3e-6)  # step 1 of 100 warming up
    assert cosine_lr(0.0, 100, 3e-4, 1e-6) == pytest.approx(3e-4)
    assert cosine_lr(0.5, 500, 3e-4, 1e-6) == pytest.approx((3e-4 + 1e-6) / 2)
    assert cosine_lr(0.25, 500, 3e-4, 1e-6) == pytest.approx(
        1e-6 + 0.5 * (3e-4 - 1e-6) * (1 + math.cos(math.pi / 4))
    )
    assert cosine_lr(1.0, 900, 3e-4, 1e-6) == pytest.approx(1e-6)
    assert cosine_lr(1.3, 900, 3e-4, 1e-6) == pytest.approx(1e-6)  # a late step stays there


@pytest.mark.parametrize("task", TASKS)
def test_a_burst_is_the_recipe_with_one_stage_of_its_batches(task: str) -> None:
    module = _script("gpu_burst")
    overrides = module.burst_overrides(_burst_args(batch=32, patch=192, photos="elsewhere"))
    options = load_options(ROOT / "configs" / "shipped" / f"{task}.yml", overrides)
    stages = StageSchedule.from_options(options.train_dataset)
    for iteration in (1, 5_000_000):
        assert (stages.batch(iteration), stages.patch(iteration)) == (32, 192)
    assert options.train_dataset["dataroot_gt"] == "elsewhere"
    assert options.optimizer.lr == 3e-4
    assert options.precision == "fp32"
    overrides = module.burst_overrides(_burst_args(precision="bf16"))
    assert load_options(ROOT / "configs" / "shipped" / f"{task}.yml", overrides).precision == "bf16"


def test_a_burst_state_becomes_an_experiment_that_ship_model_can_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst cut off before its first step still leaves a whole state (the shipped weights,
    its lineage); ``--adopt`` makes ``experiments/TASK`` of it with the burst's command."""
    module = _script("gpu_burst")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        pixels = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"{name}.png")
    out = tmp_path / "out"
    task = "gaussian-gray-denoising"
    args = _burst_args(batch=2, patch=64, photos=str(photos), out=out, task=task)
    args.minutes, args.workers, args.save_every = 0.0, 0, 60.0
    module.train(args)
    state = load_state(out / f"{task}.state")
    assert state["iter"] == 0 and state["burst"]["steps"] == 0
    assert state["training_images"] == 2
    assert all(v.dtype == torch.float16 for v in state["model"].values())
    shipped = state["burst"]["from"]
    assert shipped["iterations"] > 0

    root = tmp_path / "root"
    root.mkdir()
    (root / "configs").symlink_to(ROOT / "configs")
    monkeypatch.setattr(module, "ROOT", root)
    module.adopt(argparse.Namespace(task=task, adopt=out / f"{task}.state"))
    experiment = ExperimentDir(root / "experiments" / task)
    assert newest_state(experiment) == experiment.states / "0.state"
    lineage = json.loads((experiment.root / "lineage.json").read_text())
    assert lineage["iterations"] == shipped["iterations"]
    assert lineage["burst"]["batch"] == 2 and "from" not in lineage["burst"]
    assert load_options(experiment.root / "options.yml").val is not None  # ship_model judges
    assert _script("ship_model")._command(task, lineage) == (
        f"python scripts/gpu_burst.py {task} --minutes 0 --batch 2 --patch 64 --lr 0.0003 --seed 7 "
        "--photos .gpu/photos/train --out bursts"
    )
    with pytest.raises(SystemExit, match="exists: move it aside"):
        module.adopt(argparse.Namespace(task=task, adopt=out / f"{task}.state"))


def test_a_second_burst_records_the_first_and_counts_on_from_its_steps(tmp_path: Path) -> None:
    module = _script("gpu_burst")
    first = {"minutes": 8.0, "steps": 500, "batch": 64, "patch": 128, "lr": 3e-4, "seed": 1}
    earlier = tmp_path / "first.state"
    weights = {"w": torch.ones(2, dtype=torch.float16)}
    origin = {"iterations": 100, "hours": 1.0}
    state = {"iter": 500, "model": weights, "optimizer": {}, "burst": {**first, "from": origin}}
    torch.save(state, earlier)
    loaded, lineage, steps = module.starting_point(_burst_args(warm_start=earlier), {})
    assert steps == 500 and loaded["w"].dtype == torch.float32
    assert lineage == {"iterations": 100, "hours": 1.0, "bursts": [first]}
    second = {"minutes": 3.0, "batch": 64, "patch": 128, "lr": 2e-4, "seed": 2}
    second |= {"precision": "bf16", "compile": "default"}  # the first burst recorded neither
    command = _script("ship_model")._command("deraining", {**lineage, "burst": second})
    assert command == (
        "python scripts/gpu_burst.py deraining --minutes 8 --batch 64 --patch 128 --lr 0.0003 "
        "--seed 1 --photos .gpu/photos/train --out bursts && python scripts/gpu_burst.py "
        "deraining --minutes 3 --batch 64 --patch 128 --lr 0.0002 --seed 2 --photos "
        ".gpu/photos/train --out bursts --precision bf16 --compile default "
        "--warm-start bursts/deraining.state"
    )


def test_the_gpu_step_benchmark_measures_its_rungs_here() -> None:
    """benchmarks/gpu_step.py's rungs run on this CPU (the GPU-only ones are left out)."""
    module = load_script("benchmarks/gpu_step.py")
    args = argparse.Namespace(
        task="gaussian-gray-denoising", batch=1, patch=16, steps=1, lr=3e-4, compile=None
    )
    eager, bf16 = (module.measure_rung(n, args, torch.device("cpu")) for n in ("eager", "bf16"))
    assert (eager["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert not bf16["fused_adamw"]  # fused AdamW only on CUDA
    assert eager["first_loss"] == pytest.approx(bf16["first_loss"], rel=0.05)
    assert eager["steps_per_s"] > 0
