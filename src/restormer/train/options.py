"""Official BasicSR option files (``<Task>/Options/*.yml``), read as they are and checked.

Everything is validated before any work starts: an unknown key or a bad value raises
:class:`OptionError` naming the key (``train.optim_g.lr: expected a number, got 'fast'``).
Keys that mean nothing here (``num_gpu``, ``dist_params``, ``wandb``, ``io_backend`` ...)
are accepted and ignored. The dataset sections are checked by :mod:`restormer.data`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from restormer.model import RestormerConfig

# Top-level and per-section keys that the official files carry but that change nothing here.
_IGNORED = {
    "": {
        "model_type",
        "num_gpu",
        "dist_params",
        "scale",
        "is_train",
        "dist",
        "rank",
        "world_size",
        "auto_resume",
    },
    "path": {
        "resume_state",
        "root",
        "experiments_root",
        "models",
        "training_states",
        "log",
        "visualization",
        "param_key_g",
    },
    "train": {"ema_decay_legacy"},
    "val": {"max_minibatch", "suffix"},
    "logger": {"wandb"},
}
OPTIMIZERS = ("AdamW", "Adam")
SCHEDULERS = ("CosineAnnealingRestartCyclicLR", "CosineAnnealingRestartLR", "ConstantLR")
LOSSES = ("L1Loss", "MSELoss")
FREQUENCY_LOSSES = ("FFTLoss",)
PRECISIONS = ("fp32", "bf16", "fp16")


class OptionError(ValueError):
    """A problem in an option file, as one line naming the key."""


@dataclass(frozen=True)
class OptimizerOptions:
    type: str = "AdamW"
    lr: float = 3e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class SchedulerOptions:
    type: str = "CosineAnnealingRestartCyclicLR"
    periods: tuple[int, ...] = (92000, 208000)
    restart_weights: tuple[float, ...] = (1.0, 1.0)
    eta_mins: tuple[float, ...] = (3e-4, 1e-6)


@dataclass(frozen=True)
class LossOptions:
    type: str = "L1Loss"
    loss_weight: float = 1.0
    reduction: str = "mean"


@dataclass(frozen=True)
class MixupOptions:
    beta: float = 1.2
    use_identity: bool = True


@dataclass(frozen=True)
class MetricOptions:
    type: str  # calculate_psnr or calculate_ssim
    crop_border: int = 0
    test_y_channel: bool = False


@dataclass(frozen=True)
class ValOptions:
    val_freq: int
    window_size: int = 8
    save_img: bool = False
    rgb2bgr: bool = True
    use_image: bool = True
    metrics: Mapping[str, MetricOptions] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggerOptions:
    print_freq: int = 100
    save_checkpoint_freq: int = 4000
    use_tb_logger: bool = False


@dataclass(frozen=True)
class TrainOptions:
    """A whole option file, checked. ``raw`` is the dict as read (with ``--set`` applied)."""

    name: str
    manual_seed: int
    network: RestormerConfig
    train_dataset: Mapping[str, Any]
    val_dataset: Mapping[str, Any] | None
    total_iter: int
    warmup_iter: int
    use_grad_clip: bool
    grad_clip_norm: float
    optimizer: OptimizerOptions
    scheduler: SchedulerOptions
    loss: LossOptions
    frequency_loss: LossOptions | None
    mixup: MixupOptions | None
    ema_decay: float | None
    precision: str
    micro_batch_pixels: int
    val: ValOptions | None
    logger: LoggerOptions
    pretrain_network_g: Path | None
    strict_load_g: bool
    raw: Mapping[str, Any]


# --------------------------------------------------------------------------- reading


def load_options(path: str | Path, overrides: Sequence[str] = ()) -> TrainOptions:
    """Read and check an option file; ``overrides`` are ``key.sub=value`` (YAML values)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OptionError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise OptionError(f"{path}: cannot read ({e})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise OptionError(f"{path}: not valid YAML{line}") from None
    if not isinstance(raw, dict):
        raise OptionError(f"{path}: expected a mapping of options at the top level")
    for item in overrides:
        apply_override(raw, item)
    return parse_options(raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in ``raw`` (value parsed as YAML, so ``1e-4``, ``[1, 2]`` work)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise OptionError(f"--set {item!r}: expected KEY=VALUE, e.g. train.total_iter=1000")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise OptionError(f"--set {item!r}: the value is not valid YAML") from None
    node = raw
    parts = key.strip().split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise OptionError(f"--set {key}: {'.'.join(parts[: depth + 1])} is not a section")
        node = child
    node[parts[-1]] = _yaml_number(value)


def _yaml_number(value: Any) -> Any:
    """YAML 1.1 reads ``3e-4`` as a string (hence ``!!float`` in official files): fix that."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def parse_options(raw: Mapping[str, Any]) -> TrainOptions:
    """Check a loaded option dict and turn it into :class:`TrainOptions`."""
    raw = copy.deepcopy(dict(raw))
    top = _Section(raw, "")
    name = top.string("name")
    seed = top.integer("manual_seed", default=0, minimum=0)
    network = _network(top.section("network_g"))
    datasets = top.section("datasets")
    train_dataset = datasets.mapping("train")
    val_dataset = datasets.mapping("val", default=None)
    datasets.done(ignore_unknown_prefix="test")
    train = top.section("train")
    total_iter = train.integer("total_iter", minimum=1)
    warmup_iter = train.integer("warmup_iter", default=-1)
    use_grad_clip = train.boolean("use_grad_clip", default=False)
    grad_clip_norm = train.number("grad_clip_norm", default=0.01, positive=True)
    optimizer = _optimizer(train.section("optim_g"))
    scheduler = _scheduler(train.section("scheduler", default={"type": "ConstantLR"}), total_iter)
    loss = _loss(train.section("pixel_opt", default={"type": "L1Loss"}), LOSSES)
    fft = train.section("fft_opt", default=None)  # absent or empty: no frequency loss
    frequency_loss = _loss(fft, FREQUENCY_LOSSES, default_weight=0.1) if fft.data else None
    mixup = _mixup(train.section("mixing_augs", default={"mixup": False}))
    ema = train.number("ema_decay", default=None)
    if ema is not None and not 0 <= ema < 1:
        raise OptionError("train.ema_decay: expected a number in [0, 1), e.g. 0.999")
    precision = train.choice("precision", PRECISIONS, default="fp32")
    micro_batch_pixels = _micro_batch_pixels(train)
    train.done()
    val = _val(top.section("val", default=None)) if "val" in raw else None
    if val is not None and val_dataset is None:
        raise OptionError("val: validation is configured but datasets.val is missing")
    logger = _logger(top.section("logger", default={}))
    path = top.section("path", default={})
    pretrain = path.string("pretrain_network_g", default=None)
    strict = path.boolean("strict_load_g", default=True)
    path.done()
    top.done()
    return TrainOptions(
        name=name,
        manual_seed=seed,
        network=network,
        train_dataset=train_dataset,
        val_dataset=val_dataset,
        total_iter=total_iter,
        warmup_iter=warmup_iter,
        use_grad_clip=use_grad_clip,
        grad_clip_norm=grad_clip_norm,
        optimizer=optimizer,
        scheduler=scheduler,
        loss=loss,
        frequency_loss=frequency_loss,
        mixup=mixup,
        ema_decay=ema,
        precision=precision,
        micro_batch_pixels=micro_batch_pixels,
        val=val,
        logger=logger,
        pretrain_network_g=Path(pretrain) if pretrain else None,
        strict_load_g=strict,
        raw=raw,
    )


def _micro_batch_pixels(train: _Section) -> int:
    """``train.micro_batch_pixels``: 0 (the default: never split a batch) or the most pixels
    one forward/backward pass may take, to bound the memory of a step."""
    if "micro_batch_pixels" not in train.data:
        return 0
    try:
        return train.integer("micro_batch_pixels", minimum=0)
    except OptionError:
        value = train.data["micro_batch_pixels"]
        raise OptionError(
            f"train.micro_batch_pixels: expected 0 (never split a batch) or a number of "
            f"pixels, e.g. 32768; got {value!r}"
        ) from None


def _network(s: _Section) -> RestormerConfig:
    kind = s.string("type", default="Restormer")
    if kind != "Restormer":
        raise OptionError(f"network_g.type: only 'Restormer' is supported, not {kind!r}")
    defaults = RestormerConfig()
    values = {
        "inp_channels": s.integer("inp_channels", default=defaults.inp_channels, minimum=1),
        "out_channels": s.integer("out_channels", default=defaults.out_channels, minimum=1),
        "dim": s.integer("dim", default=defaults.dim, minimum=1),
        "num_blocks": tuple(s.int_list("num_blocks", default=defaults.num_blocks, length=4)),
        "num_refinement_blocks": s.integer(
            "num_refinement_blocks", default=defaults.num_refinement_blocks, minimum=0
        ),
        "heads": tuple(s.int_list("heads", default=defaults.heads, length=4, minimum=1)),
        "ffn_expansion_factor": s.number(
            "ffn_expansion_factor", default=defaults.ffn_expansion_factor, positive=True
        ),
        "bias": s.boolean("bias", default=defaults.bias),
        "LayerNorm_type": s.choice("LayerNorm_type", ("WithBias", "BiasFree"), default="WithBias"),
        "dual_pixel_task": s.boolean("dual_pixel_task", default=defaults.dual_pixel_task),
    }
    s.done()
    try:
        return RestormerConfig(**values)
    except ValueError as e:  # combinations the architecture cannot build
        raise OptionError(f"network_g: {e}") from None


def _optimizer(s: _Section) -> OptimizerOptions:
    betas = s.number_list("betas", default=(0.9, 0.999), length=2)
    options = OptimizerOptions(
        type=s.choice("type", OPTIMIZERS),
        lr=s.number("lr", positive=True),
        weight_decay=s.number("weight_decay", default=0.0, minimum=0.0),
        betas=(betas[0], betas[1]),
    )
    s.done()
    return options


def _scheduler(s: _Section, total_iter: int) -> SchedulerOptions:
    kind = s.choice("type", SCHEDULERS)
    if kind == "ConstantLR":
        s.done()
        return SchedulerOptions(
            type=kind, periods=(total_iter,), restart_weights=(1.0,), eta_mins=(0.0,)
        )
    periods = tuple(s.int_list("periods", minimum=1))
    weights = tuple(s.number_list("restart_weights", default=[1.0] * len(periods)))
    if kind == "CosineAnnealingRestartLR":
        eta_min = s.number("eta_min", default=0.0, minimum=0.0)
        eta_mins: tuple[float, ...] = (eta_min,) * len(periods)
    else:
        eta_mins = tuple(s.number_list("eta_mins", minimum=0.0))
    s.done()
    for key, values in (("restart_weights", weights), ("eta_mins", eta_mins)):
        if len(values) != len(periods):
            raise OptionError(
                f"train.scheduler.{key}: {len(values)} values for {len(periods)} periods"
            )
    return SchedulerOptions(kind, periods, weights, eta_mins)


def _loss(s: _Section, kinds: Sequence[str], default_weight: float = 1.0) -> LossOptions:
    """A loss section; ``type`` may be left out where only one kind exists."""
    options = LossOptions(
        type=s.choice("type", kinds, default=kinds[0] if len(kinds) == 1 else _REQUIRED),
        loss_weight=s.number("loss_weight", default=default_weight, positive=True),
        reduction=s.choice("reduction", ("mean", "sum"), default="mean"),
    )
    s.done()
    return options


def _mixup(s: _Section) -> MixupOptions | None:
    enabled = s.boolean("mixup", default=False)
    options = MixupOptions(
        beta=s.number("mixup_beta", default=1.2, positive=True),
        use_identity=s.boolean("use_identity", default=True),
    )
    s.done()
    return options if enabled else None


def _val(s: _Section) -> ValOptions:
    metrics = {}
    section = s.section("metrics", default={})
    for name in list(section.data):
        m = section.section(name)
        kind = m.choice("type", ("calculate_psnr", "calculate_ssim"))
        metrics[name] = MetricOptions(
            type=kind,
            crop_border=m.integer("crop_border", default=0, minimum=0),
            test_y_channel=m.boolean("test_y_channel", default=False),
        )
        m.done()
    options = ValOptions(
        val_freq=s.integer("val_freq", minimum=1),
        window_size=s.integer("window_size", default=8, minimum=1),
        save_img=s.boolean("save_img", default=False),
        rgb2bgr=s.boolean("rgb2bgr", default=True),
        use_image=s.boolean("use_image", default=True),
        metrics=metrics,
    )
    s.done()
    return options


def _logger(s: _Section) -> LoggerOptions:
    options = LoggerOptions(
        print_freq=s.integer("print_freq", default=100, minimum=1),
        save_checkpoint_freq=s.integer("save_checkpoint_freq", default=4000, minimum=1),
        use_tb_logger=s.boolean("use_tb_logger", default=False),
    )
    s.done()
    return options


# --------------------------------------------------------------------------- checking

_REQUIRED = object()


class _Section:
    """One mapping of the option file; reads typed values and reports leftovers."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise OptionError(f"{path}: expected a section (key: value lines)")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        value = self.data.get(key, _REQUIRED if default is _REQUIRED else default)
        if value is _REQUIRED:
            raise OptionError(f"{self._key(key)}: missing (required)")
        return value

    def _fail(self, key: str, expected: str, value: Any) -> OptionError:
        return OptionError(f"{self._key(key)}: expected {expected}, got {value!r}")

    def section(self, key: str, default: Any = _REQUIRED) -> _Section:
        value = self._get(key, default)
        return _Section({} if value is None else value, self._key(key))

    def mapping(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default)
        if value is not None and not isinstance(value, dict):
            raise self._fail(key, "a section", value)
        return value

    def string(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str) or not value:
            raise self._fail(key, "a non-empty string", value)
        return value

    def choice(self, key: str, choices: Sequence[str], default: Any = _REQUIRED) -> str:
        value = self._get(key, default)
        if value not in choices:
            raise OptionError(
                f"{self._key(key)}: {value!r} is not one of {', '.join(map(str, choices))}"
            )
        return str(value)

    def boolean(self, key: str, default: Any = _REQUIRED) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def integer(self, key: str, default: Any = _REQUIRED, minimum: int | None = None) -> int:
        value = _yaml_number(self._get(key, default))
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # e.g. val_freq: !!float 4e3
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "a whole number", value)
        if minimum is not None and value < minimum:
            raise self._fail(key, f"a whole number >= {minimum}", value)
        return value

    def number(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        positive: bool = False,
        minimum: float | None = None,
    ) -> Any:
        value = _yaml_number(self._get(key, default))
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number", value)
        if positive and value <= 0:
            raise self._fail(key, "a number > 0", value)
        if minimum is not None and value < minimum:
            raise self._fail(key, f"a number >= {minimum}", value)
        return float(value)

    def _list(self, key: str, default: Any, length: int | None) -> list[Any]:
        value = self._get(key, default)
        if not isinstance(value, list | tuple) or not value:
            raise self._fail(key, "a list", value)
        if length is not None and len(value) != length:
            raise self._fail(key, f"a list of {length} values", value)
        return [_yaml_number(v) for v in value]

    def int_list(
        self, key: str, default: Any = _REQUIRED, length: int | None = None, minimum: int = 0
    ) -> list[int]:
        values = self._list(key, default, length)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
            raise self._fail(key, f"a list of whole numbers >= {minimum}", values)
        return values

    def number_list(
        self,
        key: str,
        default: Any = _REQUIRED,
        length: int | None = None,
        minimum: float | None = None,
    ) -> list[float]:
        values = self._list(key, default, length)
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            raise self._fail(key, "a list of numbers", values)
        if minimum is not None and any(v < minimum for v in values):
            raise self._fail(key, f"a list of numbers >= {minimum}", values)
        return [float(v) for v in values]

    def done(self, ignore_unknown_prefix: str | None = None) -> None:
        """Raise for any key neither read nor known to be meaningless here."""
        ignored = _IGNORED.get(self.path, set())
        for key in self.data:
            if key in self.used or key in ignored:
                continue
            if ignore_unknown_prefix and key.startswith(ignore_unknown_prefix):
                continue
            raise OptionError(f"{self._key(key)}: unknown option")
