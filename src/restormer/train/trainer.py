"""The training loop: the official recipe, resumable to the bit, single- or multi-process.

Iterations are counted from 1 as in the official ``basicsr/train.py``. Everything an
iteration uses is either saved in the training state (weights, optimizer, EMA, scaler) or a
pure function of the iteration number (learning rate, stage, batch), so a run resumed from
the state of iteration N continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from restormer.data import (
    Mixup,
    StageSchedule,
    TrainingData,
    TrainingSet,
    ValidationSet,
    build_training_set,
    build_validation_set,
)
from restormer.model import Restormer
from restormer.train import distributed
from restormer.train.checkpoint import (
    CheckpointError,
    ExperimentDir,
    load_state,
    newest_state,
    save_state,
    save_weights_file,
)
from restormer.train.log import TrainingLog
from restormer.train.options import OptionError, TrainOptions
from restormer.train.schedule import LearningRateSchedule
from restormer.train.step import WeightAverage, autocast, make_optimizer, recipe_loss
from restormer.train.validation import validate


@dataclass(frozen=True)
class RunSettings:
    """How to run (not what to train): from the command line, never from the option file."""

    resume: str | None = None  # None: fresh; "auto": newest state if any; else a state file
    max_hours: float | None = None
    experiments_root: Path = Path("experiments")
    device: str | None = None  # None: CUDA if available, else CPU
    show_progress: bool = True
    cache_dir: Path | None = None
    keep_states: int | None = None  # None: keep every training state, as BasicSR does


@dataclass(frozen=True)
class TrainResult:
    experiment: Path
    iteration: int  # the last iteration trained
    weights: Path  # models/net_g_latest.pth
    finished: bool  # False when stopped early (time budget, signal)


def train(options: TrainOptions, settings: RunSettings = RunSettings()) -> TrainResult:
    """Train as ``options`` say; resume, stop and log as ``settings`` say."""
    info = distributed.setup(settings.device)
    try:
        return _Trainer(options, settings, info).run()
    finally:
        distributed.teardown(info)


class _Trainer:
    def __init__(
        self, options: TrainOptions, settings: RunSettings, info: distributed.ProcessInfo
    ) -> None:
        self.options = options
        self.settings = settings
        self.info = info
        self._pending_notes: list[str] = []
        if options.precision == "fp16" and info.device.type != "cuda":
            raise OptionError("train.precision: fp16 needs a CUDA device; use bf16 on CPU")
        # Datasets first: a bad folder is reported before any work or any file is written.
        self.training_set = build_training_set(options.train_dataset, cache_dir=settings.cache_dir)
        self.validation_set = (
            build_validation_set(options.val_dataset, cache_dir=settings.cache_dir)
            if options.val is not None and options.val_dataset is not None
            else None
        )
        _check_channels(options, self.training_set, "datasets.train")
        if self.validation_set is not None:
            _check_channels(options, self.validation_set, "datasets.val")
        self.stages = StageSchedule.from_options(options.train_dataset)
        mixup = (
            Mixup(beta=options.mixup.beta, use_identity=options.mixup.use_identity)
            if options.mixup is not None
            else None
        )
        self.data = TrainingData(
            self.training_set,
            self.stages,
            seed=options.manual_seed,
            rank=info.rank,
            world_size=info.world_size,
            mixup=mixup,
        )
        self.lr_schedule = LearningRateSchedule.from_options(
            options.scheduler, options.optimizer.lr, options.warmup_iter
        )
        torch.manual_seed(options.manual_seed)
        self.model = Restormer(**options.network.to_dict()).to(info.device)
        if options.pretrain_network_g is not None:
            self._load_pretrained(options.pretrain_network_g, options.strict_load_g)
        self.optimizer = make_optimizer(self.model, options)
        self.ema = (
            WeightAverage(self.model, options.ema_decay) if options.ema_decay is not None else None
        )
        self.scaler = torch.amp.GradScaler("cuda") if options.precision == "fp16" else None
        self.net: nn.Module = (
            DistributedDataParallel(
                self.model, device_ids=[info.device.index] if info.device.type == "cuda" else None
            )
            if info.distributed
            else self.model
        )
        self.micro_batch_pixels = options.micro_batch_pixels
        self.experiment = ExperimentDir(settings.experiments_root / options.name)
        self.start_iter = 1
        self.elapsed_before = 0.0
        self.cpu_seconds_before = 0.0
        self._cpu_started = time.process_time()
        self.best: dict[str, Any] = {}
        self._stop_signal: str | None = None

    # ------------------------------------------------------------------ setup

    def _load_pretrained(self, path: Path, strict: bool) -> None:
        from restormer.weights import WeightsError, read_checkpoint

        try:
            state = read_checkpoint(path).state_dict
        except WeightsError as e:
            raise OptionError(f"path.pretrain_network_g: {e}") from None
        result = self.model.load_state_dict(state, strict=strict)
        if not strict and (result.missing_keys or result.unexpected_keys):
            self._pending_notes.append(
                f"pretrained weights: {len(result.missing_keys)} missing and "
                f"{len(result.unexpected_keys)} unexpected keys ignored (strict_load_g: false)"
            )

    def _prepare_experiment(self) -> Path | None:
        """Create or reuse the folder; returns the state to resume from, if any."""
        resume = self.settings.resume
        state_path: Path | None = None
        if resume == "auto":
            state_path = newest_state(self.experiment)
        elif resume is not None:
            state_path = Path(resume)
            if not state_path.is_file():
                raise CheckpointError(f"--resume {resume}: no such training state")
        elif (
            self.info.is_main
            and self.experiment.root.exists()
            and any(self.experiment.root.iterdir())
        ):
            archived = self.experiment.root.with_name(
                f"{self.experiment.root.name}_archived_{time.strftime('%Y%m%d_%H%M%S')}"
            )
            self.experiment.root.rename(archived)  # never lose an earlier run
            self._pending_notes.append(f"an earlier run of this name moved to {archived}")
        distributed.barrier(self.info)
        if self.info.is_main:
            self.experiment.create()
        distributed.barrier(self.info)
        return state_path

    def _resume(self, path: Path) -> None:
        state = load_state(path)
        if state.get("network") not in (None, self.options.network.to_dict()):
            raise CheckpointError(f"{path}: saved for a different network_g than this option file")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if state.get("ema") is None:  # EMA switched on now: start it here
                self.ema = WeightAverage(self.model, self.ema.decay)
            else:
                self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        self.start_iter = int(state["iter"]) + 1
        self.elapsed_before = float(state.get("elapsed_seconds", 0.0))
        # States saved before "cpu_seconds" existed: assume this run's threads throughout.
        self.cpu_seconds_before = float(
            state.get("cpu_seconds", self.elapsed_before * self._threads())
        )
        self.best = dict(state.get("best", {}))

    # ------------------------------------------------------------------ the loop

    def run(self) -> TrainResult:
        options = self.options
        state_path = self._prepare_experiment()
        if state_path is not None:
            self._resume(state_path)
        total = options.total_iter
        log = TrainingLog(
            self.experiment.log_file(options.name) if self.info.is_main else None,
            self.experiment.tb_logger if options.logger.use_tb_logger else None,
            total=total,
            start=self.start_iter - 1,
            enabled=self.info.is_main,
            show_progress=self.settings.show_progress,
        )
        self._announce(log, state_path)
        started = time.perf_counter()
        self._cpu_started = time.process_time()
        last_saved = self.start_iter - 1
        iteration = self.start_iter - 1
        finished = True
        try:
            with self._signals_stop_training():
                for iteration, inputs, targets in self._batches():
                    lr = self.lr_schedule.at_iteration(iteration)
                    loss = self._step(inputs, targets, lr)
                    print_now = iteration % options.logger.print_freq == 0
                    log.step(iteration, lr, loss, print_now, total)
                    if options.val is not None and iteration % options.val.val_freq == 0:
                        self._validate(iteration, log)
                    if iteration % options.logger.save_checkpoint_freq == 0:
                        self._save(iteration, started)
                        last_saved = iteration
                    if self._should_stop(started, log):
                        finished = iteration == total
                        break
            if iteration > last_saved:
                self._save(iteration, started)
            if finished and options.val is not None and iteration % options.val.val_freq:
                self._validate(iteration, log)  # BasicSR validates once more at the end
        finally:
            log.close()
        weights = self.experiment.models / "net_g_latest.pth"
        return TrainResult(self.experiment.root, iteration, weights, finished)

    def _announce(self, log: TrainingLog, state_path: Path | None) -> None:
        options, info = self.options, self.info
        for note in self._pending_notes:
            log.write(f"note: {note}")
        params = sum(p.numel() for p in self.model.parameters())
        where = f"{info.world_size} processes" if info.distributed else "1 process"
        log.write(
            f"training {options.name}: {params:,} parameters, {len(self.training_set)} "
            f"training images, {where} on {info.device}, {options.total_iter:,} "
            f"iterations, precision {options.precision}"
            + (
                f", micro-batches of <= {self.micro_batch_pixels:,} pixels"
                if self.micro_batch_pixels
                else ""
            )
        )
        if state_path is not None:
            log.write(f"resumed from {state_path} at iteration {self.start_iter:,}")
        if self.info.is_main:
            _write_options(self.experiment.root / "options.yml", options)

    def _batches(self) -> Iterator[tuple[int, Tensor, Tensor]]:
        """(iteration, input, target) on the training device, prepared one step ahead."""
        device = self.info.device
        stream = self.data.prefetch(self.start_iter, self.options.total_iter)
        try:
            for iteration, inputs, targets in stream:
                yield iteration, inputs.to(device), targets.to(device)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _step(self, inputs: Tensor, targets: Tensor, lr: float) -> float:
        """One optimizer step on the batch, its gradient accumulated over micro-batches
        (:func:`micro_batches`); returns the batch's loss."""
        options = self.options
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        parts = micro_batches(inputs.shape, self.micro_batch_pixels)
        total = 0.0
        for index, (start, stop) in enumerate(parts):
            # DDP: gradients are averaged across processes once, after the last micro-batch
            sync = index == len(parts) - 1 or not self.info.distributed
            with contextlib.nullcontext() if sync else self.net.no_sync():  # type: ignore[operator]
                with autocast(options.precision, self.info.device):
                    outputs = self.net(inputs[start:stop])
                loss = recipe_loss(outputs.float(), targets[start:stop], options)
                if options.loss.reduction == "mean":
                    loss = loss * ((stop - start) / inputs.shape[0])
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            total += float(loss.detach())
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if options.use_grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), options.grad_clip_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return total

    def _validate(self, iteration: int, log: TrainingLog) -> None:
        assert self.options.val is not None and self.validation_set is not None
        if self.info.is_main:
            model = self.ema.model_like(self.model) if self.ema is not None else self.model
            save_dir = (
                self.experiment.visualization / str(iteration)
                if self.options.val.save_img
                else None
            )
            scores = validate(model, self.validation_set, self.options.val, save_dir=save_dir)
            for name, value in scores.items():
                if name not in self.best or value > self.best[name]["value"]:
                    self.best[name] = {"value": value, "iter": iteration}
            text = ", ".join(
                f"{k} {v:.4f} (best {self.best[k]['value']:.4f} @ {self.best[k]['iter']:,})"
                for k, v in scores.items()
            )
            log.write(f"[iter {iteration:,}] validation: {text}")
            log.scalars(iteration, scores, "metrics")
        distributed.barrier(self.info)

    def _save(self, iteration: int, started: float) -> None:
        if self.info.is_main:
            params = self.model.state_dict()
            ema = self.ema.state_dict() if self.ema is not None else None
            elapsed = time.perf_counter() - started
            for name in (f"net_g_{iteration}.pth", "net_g_latest.pth"):
                save_weights_file(self.experiment.models / name, params, ema)
            state = {
                "iter": iteration,
                "network": self.options.network.to_dict(),
                "model": params,
                "optimizer": self.optimizer.state_dict(),
                "ema": ema,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "torch_rng": torch.get_rng_state(),
                "elapsed_seconds": self.elapsed_before + elapsed,
                "cpu_seconds": self.cpu_seconds_before + self._cpu_seconds(),
                # The photos this launch trained on: the folder may grow between launches.
                "training_images": len(self.training_set),
                "best": self.best,
            }
            save_state(self.experiment, iteration, state, keep=self.settings.keep_states)
        distributed.barrier(self.info)

    def _threads(self) -> int:
        """CPU threads that all processes of this run compute with."""
        return torch.get_num_threads() * self.info.world_size

    def _cpu_seconds(self) -> float:
        """CPU time this launch has used, all its threads together (the data is prepared in
        the same process). Measured, not wall time x threads: time spent paused (SIGSTOP) or
        waiting for cores another job holds costs nothing. Processes of a distributed run
        are taken to cost what the main one does."""
        return (time.process_time() - self._cpu_started) * self.info.world_size

    def _should_stop(self, started: float, log: TrainingLog) -> bool:
        """A time budget spent or a stop signal: every rank stops at the same iteration."""
        reason = self._stop_signal
        hours = self.settings.max_hours
        if reason is None and hours is not None and time.perf_counter() - started > hours * 3600:
            reason = f"the --max-hours budget of {hours:g} h is spent"
        if not self.info.distributed and reason is None:
            return False
        stop = distributed.broadcast_flag(self.info, reason is not None)
        if stop:
            log.write(f"stopping: {reason or 'rank 0 stopped'}; saving a checkpoint")
        return stop

    @contextlib.contextmanager
    def _signals_stop_training(self) -> Iterator[None]:
        """SIGTERM (Slurm pre-emption) and Ctrl-C end the run cleanly, with a checkpoint."""

        def request_stop(signum: int, frame: object) -> None:
            self._stop_signal = signal.Signals(signum).name

        previous = {}
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, request_stop)
        except ValueError:  # not the main thread: leave signals alone
            pass
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# --------------------------------------------------------------------------- pieces


def micro_batches(shape: torch.Size | tuple[int, ...], pixels: int) -> list[tuple[int, int]]:
    """(start, stop) sample ranges splitting a (B, C, H, W) batch into nearly equal parts of
    at most ``pixels`` pixels each (at least one sample per part; 0: one part)."""
    batch, per_sample = shape[0], shape[-2] * shape[-1]
    if pixels <= 0 or batch * per_sample <= pixels:
        return [(0, batch)]
    count = min(batch, math.ceil(batch * per_sample / pixels))
    bounds = [round(i * batch / count) for i in range(count + 1)]
    return list(itertools.pairwise(bounds))


def _check_channels(
    options: TrainOptions, dataset: TrainingSet | ValidationSet, dataset_key: str
) -> None:
    """The network must take the dataset's input channels and make its target channels.

    Checked before any work, so that (say) a dual-pixel dataset under a 3-channel network is
    one line naming the key rather than a shape error at the first training step.
    """
    network = options.network
    for key, wanted, given, what in (
        ("inp_channels", network.inp_channels, dataset.in_channels, "inputs"),
        ("out_channels", network.out_channels, dataset.out_channels, "targets"),
    ):
        if wanted != given:
            raise OptionError(
                f"network_g.{key}: {wanted}, but {dataset_key} gives {given}-channel {what}"
            )


def _write_options(path: Path, options: TrainOptions) -> None:
    import yaml

    from restormer.files import write_atomically

    text = yaml.safe_dump(_plain(options.raw), sort_keys=False)
    write_atomically(path, text.encode(), overwrite=True)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
