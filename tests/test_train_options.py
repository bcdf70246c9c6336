"""Option files and the learning-rate schedule, against the official numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from restormer.model import RestormerConfig
from restormer.train.options import OptionError, SchedulerOptions, load_options
from restormer.train.schedule import LearningRateSchedule

from .conftest import SHARED, require_reference
from .train_fixtures import write_options


def test_lr_after_steps_equals_the_official_scheduler() -> None:
    require_reference()
    reference = json.loads((SHARED / "reference" / "lr_schedule.json").read_text())
    cfg = reference["config"]
    schedule = LearningRateSchedule(
        cfg["base_lr"], tuple(cfg["periods"]), tuple(cfg["restart_weights"]), tuple(cfg["eta_mins"])
    )
    for steps, lr in reference["lr_after_steps"].items():
        assert schedule.after_steps(int(steps)) == pytest.approx(lr, rel=1e-12, abs=1e-18), steps


def test_iteration_i_trains_with_the_rate_after_i_minus_1_steps() -> None:
    schedule = LearningRateSchedule.from_options(SchedulerOptions(), 3e-4)
    assert schedule.at_iteration(1) == schedule.after_steps(0) == 3e-4
    assert schedule.at_iteration(92002) == schedule.after_steps(92001) < 3e-4
    assert schedule.at_iteration(10**7) == pytest.approx(1e-6)  # past the end: the last value


def test_warmup_and_constant() -> None:
    constant = LearningRateSchedule.from_options(
        SchedulerOptions(type="ConstantLR", periods=(10,)), 1e-3, warmup_iter=4
    )
    assert [constant.at_iteration(i) for i in (1, 2, 4, 100)] == [2.5e-4, 5e-4, 1e-3, 1e-3]


def test_official_option_file_is_read_as_is(tmp_path: Path) -> None:
    options = load_options(write_options(tmp_path))
    assert options.name == "tiny" and options.manual_seed == 100
    assert options.network == RestormerConfig(
        dim=8,
        num_blocks=(1, 1, 1, 1),
        num_refinement_blocks=1,
        heads=(1, 1, 2, 2),
        LayerNorm_type="BiasFree",
    )
    assert options.optimizer.lr == 3e-4 and options.optimizer.weight_decay == 1e-4
    assert options.scheduler.periods == (3, 5) and options.use_grad_clip
    assert options.mixup is not None and options.mixup.beta == 1.2
    assert options.val is not None and options.val.val_freq == 4
    assert options.logger.save_checkpoint_freq == 4 and options.logger.use_tb_logger


def test_set_overrides(tmp_path: Path) -> None:
    path = write_options(tmp_path)
    options = load_options(
        path,
        [
            "train.total_iter=20",
            "train.optim_g.lr=1e-3",
            "network_g.num_blocks=[2, 1, 1, 1]",
            "train.ema_decay=0.99",
        ],
    )
    assert options.total_iter == 20 and options.optimizer.lr == 1e-3
    assert options.network.num_blocks == (2, 1, 1, 1) and options.ema_decay == 0.99


def test_a_frequency_loss_is_added_only_where_the_recipe_asks(tmp_path: Path) -> None:
    path = write_options(tmp_path)
    assert load_options(path).frequency_loss is None
    options = load_options(path, ["train.fft_opt.loss_weight=0.5"])
    assert options.frequency_loss is not None
    assert (options.frequency_loss.type, options.frequency_loss.loss_weight) == ("FFTLoss", 0.5)
    assert options.loss.type == "L1Loss"  # the pixel loss stays


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.optim_g.lr=fast", "train.optim_g.lr: expected a number, got 'fast'"),
        ("train.bogus=1", "train.bogus: unknown option"),
        ("network_g.LayerNorm_type=Foo", "network_g.LayerNorm_type: 'Foo' is not one of"),
        ("train.scheduler.eta_mins=[0.1]", "train.scheduler.eta_mins: 1 values for 2 periods"),
        ("train.optim_g.type=SGD", "train.optim_g.type: 'SGD' is not one of"),
        ("network_g.heads=[1, 3, 2, 2]", "network_g: level 2: 16 channels do not split into 3"),
        ("train.total_iter=0", "train.total_iter: expected a whole number >= 1"),
        ("train.ema_decay=2", "train.ema_decay: expected a number in [0, 1)"),
        ("train.precision=fp8", "train.precision: 'fp8' is not one of"),
        ("train.pixel_opt.type=PerceptualLoss", "train.pixel_opt.type: 'PerceptualLoss'"),
        ("train.fft_opt.type=L1Loss", "train.fft_opt.type: 'L1Loss' is not one of FFTLoss"),
        ("train.fft_opt.loss_weight=-1", "train.fft_opt.loss_weight: expected a number > 0"),
        ("trainn.total_iter=3", "trainn: unknown option"),
        ("novalue", "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(OptionError, match=re.escape(message)):
        load_options(write_options(tmp_path), [override])


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="no such file"):
        load_options(tmp_path / "missing.yml")
    (tmp_path / "bad.yml").write_text("name: [unclosed\n")
    with pytest.raises(OptionError, match="not valid YAML"):
        load_options(tmp_path / "bad.yml")
    (tmp_path / "list.yml").write_text("- 1\n- 2\n")
    with pytest.raises(OptionError, match="expected a mapping"):
        load_options(tmp_path / "list.yml")


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "configs").rglob("*.yml")), ids=lambda p: p.name
)
def test_shipped_option_files_are_valid(path: Path) -> None:
    options = load_options(path)
    assert options.total_iter == sum(options.train_dataset["iters"])
    assert options.network.LayerNorm_type == (
        "BiasFree" if "denoising" in path.name else "WithBias"
    )
    if "paper" in path.parts:
        assert options.network == RestormerConfig(
            inp_channels=options.network.inp_channels,
            out_channels=options.network.out_channels,
            LayerNorm_type=options.network.LayerNorm_type,
            dual_pixel_task=options.network.dual_pixel_task,
        )
