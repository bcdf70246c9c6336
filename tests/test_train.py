"""Training end to end: official option file, kill -9 and resume, exact resumption, DDP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from restormer.train import RunSettings, load_options, train
from restormer.train import trainer as trainer_module
from restormer.train.checkpoint import ExperimentDir, load_state, newest_state
from restormer.train.options import OptionError
from restormer.train.trainer import micro_batches
from restormer.weights import load_model

from .train_fixtures import write_options

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "restormer", *map(str, args)],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _params(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["params"]


def test_kill_9_then_resume_auto_finishes(tmp_path: Path) -> None:
    options = write_options(tmp_path, name="killed")
    args = [
        "train",
        options,
        "--no-progress",
        "--set",
        "train.total_iter=100",
        "--set",
        "train.scheduler.periods=[30, 70]",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "restormer", *map(str, args)],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    states = tmp_path / "experiments" / "killed" / "training_states"
    deadline = time.monotonic() + 240
    while not (states.is_dir() and any(states.glob("*.state"))):
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _cli(*args[:2], "--resume", "auto", *args[2:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stderr
    experiment = tmp_path / "experiments" / "killed"
    model = load_model(experiment / "models" / "net_g_latest.pth")
    assert model.config.dim == 8
    assert (experiment / "models" / "net_g_100.pth").exists()
    scored = _cli(
        "evaluate",
        "--task",
        "gaussian-color-denoising",
        "--weights",
        experiment / "models" / "net_g_latest.pth",
        "--dataset",
        tmp_path / "val_photos",
        "--sigma",
        "25",
        "--output",
        tmp_path / "scores",
        cwd=tmp_path,
    )
    assert scored.returncode == 0, scored.stderr
    assert (tmp_path / "scores" / "results.json").exists()
    log = (experiment / "train_killed.log").read_text()
    assert "validation: psnr" in log and "[iter 100/100]" in log
    assert list((experiment / "tb_logger").glob("events.out.tfevents.*"))


def test_resumed_run_equals_uninterrupted(tmp_path: Path) -> None:
    path = write_options(tmp_path, name="exact")
    straight = train(
        load_options(path), RunSettings(experiments_root=tmp_path / "a", show_progress=False)
    )
    assert straight.finished and straight.iteration == 8
    half = train(
        load_options(path, ["train.total_iter=4"]),
        RunSettings(experiments_root=tmp_path / "b", show_progress=False),
    )
    assert half.iteration == 4
    rest = train(
        load_options(path),
        RunSettings(resume="auto", experiments_root=tmp_path / "b", show_progress=False),
    )
    assert rest.iteration == 8
    a = _params(tmp_path / "a" / "exact" / "models" / "net_g_8.pth")
    b = _params(tmp_path / "b" / "exact" / "models" / "net_g_8.pth")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_state_counts_the_cpu_time_each_launch_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_options(tmp_path, name="cpu")
    settings = RunSettings(resume="auto", experiments_root=tmp_path, show_progress=False)
    experiment = ExperimentDir(tmp_path / "cpu")
    used_before = time.process_time()
    train(load_options(path, ["train.total_iter=4"]), settings)
    used = time.process_time() - used_before
    first = load_state(newest_state(experiment))
    assert 0 < first["cpu_seconds"] <= used
    assert first["training_images"] == 6  # write_options: 6 photos
    # A launch whose process got no CPU (paused, or the cores busy elsewhere) adds wall time
    # but no CPU time.
    monkeypatch.setattr(trainer_module.time, "process_time", lambda: 123.0)
    train(load_options(path), settings)
    second = load_state(newest_state(experiment))
    assert second["iter"] == 8
    assert second["elapsed_seconds"] > first["elapsed_seconds"]
    assert second["cpu_seconds"] == pytest.approx(first["cpu_seconds"])


def test_ddp_step_equals_single_process_step_with_the_joint_batch(tmp_path: Path) -> None:
    path = write_options(tmp_path, name="ddp")
    common = [
        "--no-progress",
        "--set",
        "train.total_iter=1",
        "--set",
        "train.mixing_augs.mixup=false",
        "--set",
        "datasets.train.iters=[1]",
        "--set",
        "datasets.train.gt_sizes=[32]",
    ]
    single = _cli(
        "train",
        path,
        *common,
        "--set",
        "datasets.train.mini_batch_sizes=[4]",
        "--experiments-root",
        "single",
        cwd=tmp_path,
    )
    assert single.returncode == 0, single.stderr
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "restormer",
        "train",
        str(path),
        *common,
        "--set",
        "datasets.train.mini_batch_sizes=[2]",
        "--set",  # and each process's batch in two micro-batches (gradients synced once)
        "train.micro_batch_pixels=1024",
        "--experiments-root",
        "ddp",
    ]
    ddp = subprocess.run(
        launcher, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300, check=False
    )
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    a = _params(tmp_path / "single" / "ddp" / "models" / "net_g_1.pth")
    b = _params(tmp_path / "ddp" / "ddp" / "models" / "net_g_1.pth")
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-5
    moved = max((a[k] - _params_init(path)[k]).abs().max().item() for k in a)
    assert moved > 1e-6  # the step did change the weights


def test_micro_batches_give_the_step_of_the_whole_batch(tmp_path: Path) -> None:
    """A batch run in parts (gradients accumulated, each part weighted by its share of the
    mean loss) moves the weights as the whole batch does, up to float rounding."""
    path = write_options(tmp_path, name="micro")
    common = ["train.total_iter=2", "train.mixing_augs.mixup=false"]
    runs = {}
    for pixels in (0, 1024, 3000):  # batch 4 of 32x32: whole; one sample each; two of two
        result = train(
            load_options(path, [*common, f"train.micro_batch_pixels={pixels}"]),
            RunSettings(experiments_root=tmp_path / str(pixels), show_progress=False),
        )
        runs[pixels] = _params(result.weights)
    whole = runs[0]
    for pixels in (1024, 3000):
        worst = max((runs[pixels][k] - whole[k]).abs().max().item() for k in whole)
        assert worst <= 1e-6, pixels
    moved = max((whole[k] - _params_init(path)[k]).abs().max().item() for k in whole)
    assert moved > 1e-5


def test_micro_batch_sizes(tmp_path: Path) -> None:
    assert micro_batches((16, 3, 64, 64), 32_768) == [(0, 8), (8, 16)]
    assert micro_batches((8, 3, 96, 96), 32_768) == [(0, 3), (3, 5), (5, 8)]
    assert micro_batches((4, 3, 128, 128), 32_768) == [(0, 2), (2, 4)]
    assert micro_batches((16, 3, 64, 64), 0) == [(0, 16)]
    assert micro_batches((2, 3, 256, 256), 32_768) == [(0, 1), (1, 2)]  # one sample at least
    with pytest.raises(OptionError, match=r"micro_batch_pixels: expected 0 .* got 'big'"):
        load_options(write_options(tmp_path), ["train.micro_batch_pixels=big"])


def _params_init(path: Path) -> dict[str, torch.Tensor]:
    from restormer.model import Restormer

    torch.manual_seed(load_options(path).manual_seed)
    return Restormer(**load_options(path).network.to_dict()).state_dict()


def test_bad_option_file_is_one_line(tmp_path: Path) -> None:
    path = write_options(tmp_path, name="bad")
    result = _cli("train", path, "--set", "train.optim_g.lr=fast", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "train.optim_g.lr" in result.stderr
    assert not (tmp_path / "experiments").exists()  # nothing written before the checks


def test_fresh_start_archives_an_earlier_run(tmp_path: Path) -> None:
    path = write_options(tmp_path, name="again")
    settings = RunSettings(experiments_root=tmp_path / "x", show_progress=False)
    train(load_options(path, ["train.total_iter=2"]), settings)
    train(load_options(path, ["train.total_iter=2"]), settings)
    names = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert names[0] == "again" and names[1].startswith("again_archived_")


@pytest.mark.parametrize("extra", [["train.ema_decay=0.9"], ["train.precision=bf16"]])
def test_ema_and_bf16_options_train(tmp_path: Path, extra: list[str]) -> None:
    path = write_options(tmp_path, name="opt")
    result = train(
        load_options(path, ["train.total_iter=2", *extra]),
        RunSettings(experiments_root=tmp_path / "e", show_progress=False),
    )
    saved = torch.load(result.weights, weights_only=True)
    assert ("params_ema" in saved) == ("ema_decay" in extra[0])
    load_model(result.weights)


def test_max_hours_stops_cleanly_with_a_resumable_state(tmp_path: Path) -> None:
    path = write_options(tmp_path, name="budget")
    root = tmp_path / "m"
    stopped = train(
        load_options(path), RunSettings(experiments_root=root, max_hours=1e-9, show_progress=False)
    )
    assert not stopped.finished and stopped.iteration == 1
    assert (root / "budget" / "training_states" / "1.state").exists()
    done = train(
        load_options(path),
        RunSettings(
            resume=str(root / "budget" / "training_states" / "1.state"),
            experiments_root=root,
            show_progress=False,
        ),
    )
    assert done.finished and done.iteration == 8
