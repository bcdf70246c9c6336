"""The ``datasets.train`` / ``datasets.val`` sections of official option files, checked.

The dicts are taken exactly as PyYAML loads the official ``<Task>/Options/*.yml`` files. Every
problem is found here, before a single image is decoded or a training step runs, and reported
as one :class:`DatasetOptionError` line that starts with the full option key::

    datasets.train.sigma_range: expected [low, high] with 0 <= low <= high <= 255, got [50, 0]

Keys that the official loader reads but that mean nothing to this pipeline (worker counts,
shuffling, prefetch modes, the progressive-learning keys, which :mod:`restormer.data.schedule`
reads) are accepted and ignored; any other key is an error, because a misspelt key silently
ignored is a training run wasted.

Besides the three official types there is one of our own, ``Dataset_SyntheticDegradation``: a
folder of clean photos (``dataroot_gt``) degraded on the fly by :mod:`restormer.degradations`
for the task named by ``degradation`` (required, one of the seven task names). Its channels
follow the task (gray for ``gaussian-gray-denoising``, a 6-channel left + right input for
``dual-pixel-defocus-deblurring``). ``seed`` (validation only, default 0) fixes the one
degradation of each validation image; training samples draw theirs from ``manual_seed``.
``clean_fraction`` (training only, default 0, below 1) is the share of training samples left
undegraded (:func:`restormer.degradations.undegraded`), so the model learns to leave clean
content alone. ``sampler_options`` (training only) reshape the draw of degradation parameters
(:func:`restormer.degradations.sample`), e.g. ``{size_distribution: log-uniform}`` for motion.

``detail_candidates`` (training only, any type, default 1) is ours too: each sample draws that
many windows and keeps the one whose target has the most detail, so that photos which are mostly
sky, bokeh or walls spend fewer steps on patches with nothing to restore (see
:meth:`restormer.data.datasets.TrainingSet.sample`).

``downscale: [low, high]`` (training only, Gaussian and synthetic sets, whose inputs are made
from the targets; default none) is ours as well: each sample's clean window is cut 1/s times
larger and shrunk by s, s log-uniform in [low, high] with 0 < low <= high <= 1. Photos saved at
wallpaper size hold less detail per pixel than camera photos; shrinking packs more into each
patch and averages away the photo's own noise and compression before the degradation is added.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from restormer.tasks import TASKS

__all__ = [
    "DATASET_TYPES",
    "MAX_SIGMA",
    "DatasetOptionError",
    "DatasetOptions",
    "SigmaOptions",
    "parse_dataset_options",
]


class DatasetOptionError(ValueError):
    """A bad dataset option, as one line naming the key (``datasets.train.gt_size: ...``)."""


Kind = Literal["paired", "gaussian", "dual_pixel", "synthetic"]

DATASET_TYPES: dict[str, Kind] = {
    "Dataset_PairedImage": "paired",
    "Dataset_GaussianDenoising": "gaussian",
    "Dataset_DefocusDeblur_DualPixel_16bit": "dual_pixel",
    "Dataset_SyntheticDegradation": "synthetic",
}
"""Dataset ``type`` names -> the kind of pipeline that reproduces them (the first three are
the official types; ``Dataset_SyntheticDegradation`` is ours: clean photos degraded on the
fly)."""

MAX_SIGMA = 255.0
"""Largest noise standard deviation (in 8-bit levels) accepted for Gaussian denoising."""

# Read by the official loader or training loop, meaningless (or read elsewhere) here.
_IGNORED = frozenset(
    {
        "name",
        "phase",
        "use_shuffle",
        "num_worker_per_gpu",
        "batch_size_per_gpu",
        "dataset_enlarge_ratio",
        "prefetch_mode",
        "pin_memory",
        "persistent_workers",
        "mini_batch_sizes",
        "iters",
        "gt_sizes",
    }
)
# Keys each type understands (besides "type" and the ignored ones). The Gaussian options carry
# ``dataroot_lq: none`` and ``filename_tmpl`` although the official class never reads them.
_COMMON_KEYS = frozenset(
    {
        "dataroot_gt",
        "filename_tmpl",
        "geometric_augs",
        "gt_size",
        "scale",
        "io_backend",
        "detail_candidates",
    }
)
_KEYS: dict[Kind, frozenset[str]] = {
    "paired": _COMMON_KEYS | {"dataroot_lq"},
    "gaussian": _COMMON_KEYS
    | {"dataroot_lq", "sigma_type", "sigma_range", "sigma_test", "in_ch", "downscale"},
    "dual_pixel": _COMMON_KEYS | {"dataroot_lqL", "dataroot_lqR"},
    "synthetic": _COMMON_KEYS
    | {"degradation", "seed", "clean_fraction", "sampler_options", "downscale"},
}
# Official keys whose feature is not implemented: refusing them beats silently ignoring them.
_UNSUPPORTED = {
    "meta_info_file": "reading pairs from a meta-information file is not supported; use folders",
    "mean": "input normalisation is not supported",
    "std": "input normalisation is not supported",
}
# Ours, but meaningless where the inputs are files: refusing them beats "unknown option".
_TARGET_ONLY = {
    "downscale": "only for sets whose inputs are made from the targets (Gaussian, synthetic)",
}
# Input folders of each kind, in channel order (dual-pixel: left view, then right view).
INPUT_KEYS: dict[Kind, tuple[str, ...]] = {
    "paired": ("dataroot_lq",),
    "gaussian": (),
    "dual_pixel": ("dataroot_lqL", "dataroot_lqR"),
    "synthetic": (),
}


@dataclass(frozen=True)
class SigmaOptions:
    """How the training noise level is chosen (``sigma_type`` and ``sigma_range``).

    ``random``: uniform in ``values[0]..values[1]``; ``constant``: always ``values[0]``;
    ``choice``: one of ``values``, equally likely. Levels are in 8-bit units (x / 255).
    """

    kind: Literal["random", "constant", "choice"]
    values: tuple[float, ...]


@dataclass(frozen=True)
class DatasetOptions:
    """One dataset section, checked and typed. Paths are as written (relative to the cwd)."""

    kind: Kind
    key_prefix: str
    target_folder: Path
    input_folders: tuple[tuple[str, Path], ...]
    """(option key, folder) for each input view, in channel order; empty for Gaussian noise
    and synthetic degradations (inputs made from the targets)."""
    filename_tmpl: str
    geometric_augs: bool
    gt_size: int | None
    in_ch: int
    """Channels of the target images: 1 (gray) or 3."""
    sigma: SigmaOptions | None
    sigma_test: float | None
    degradation: str | None = None
    """Synthetic degradations: the task whose degradation makes the inputs; else None."""
    seed: int = 0
    """Synthetic degradations, validation: validation image i is degraded with
    ``np.random.default_rng([seed, i])``."""
    clean_fraction: float = 0.0
    """Synthetic degradations, training: the share of samples left undegraded."""
    sampler_options: Mapping[str, Any] = field(default_factory=dict)
    """Synthetic degradations, training: keyword arguments of the task's parameter sampler."""
    detail_candidates: int = 1
    """Training: windows drawn per sample, the most detailed one kept (1: plain random crop)."""
    downscale: tuple[float, float] | None = None
    """Training, Gaussian and synthetic sets: (low, high) of the log-uniform shrink factor of
    each clean window; None: windows are cut at the photo's own scale."""

    def key(self, name: str) -> str:
        """The full option key, for messages: ``datasets.train.<name>``."""
        return f"{self.key_prefix}.{name}"


def parse_dataset_options(
    opt: object, *, key_prefix: str, phase: Literal["train", "val"]
) -> DatasetOptions:
    """Check one dataset section; raise :class:`DatasetOptionError` on the first problem.

    Folder existence is checked later, when the folders are scanned; here only the values.
    """
    if not isinstance(opt, Mapping):
        raise DatasetOptionError(f"{key_prefix}: expected a mapping, got {_show(opt)}")
    kind = _dataset_kind(opt, key_prefix)
    _check_keys(opt, kind, key_prefix)
    _check_io_backend(opt, key_prefix)
    scale = _optional_int(opt, "scale", key_prefix, minimum=1)
    if scale not in (None, 1):
        raise DatasetOptionError(f"{key_prefix}.scale: must be 1 for restoration, got {scale}")
    gaussian = kind == "gaussian"
    train = phase == "train"
    degradation = _degradation(opt, key_prefix) if kind == "synthetic" else None
    if degradation is not None:
        in_ch = 1 if degradation == _GRAY_TASK else 3
    else:
        in_ch = _in_ch(opt, key_prefix) if gaussian else 3
    return DatasetOptions(
        kind=kind,
        key_prefix=key_prefix,
        target_folder=_folder_value(opt, "dataroot_gt", key_prefix),
        input_folders=tuple((key, _folder_value(opt, key, key_prefix)) for key in INPUT_KEYS[kind]),
        filename_tmpl=_filename_tmpl(opt, key_prefix),
        geometric_augs=_optional_bool(opt, "geometric_augs", key_prefix, default=False),
        gt_size=_training_gt_size(opt, key_prefix) if train else None,
        in_ch=in_ch,
        sigma=_sigma_options(opt, key_prefix) if gaussian and train else None,
        sigma_test=_sigma_test(opt, key_prefix) if gaussian and not train else None,
        degradation=degradation,
        seed=_validation_seed(opt, key_prefix, train) if kind == "synthetic" else 0,
        clean_fraction=_clean_fraction(opt, key_prefix, train) if kind == "synthetic" else 0.0,
        sampler_options=_sampler_options(opt, key_prefix, train, degradation),
        detail_candidates=_detail_candidates(opt, key_prefix, train),
        downscale=_downscale(opt, key_prefix, train),
    )


# --------------------------------------------------------------------------- keys and types


def _dataset_kind(opt: Mapping[str, Any], prefix: str) -> Kind:
    if "type" not in opt:
        raise DatasetOptionError(f"{prefix}.type: required (one of {', '.join(DATASET_TYPES)})")
    name = opt["type"]
    if not isinstance(name, str) or name not in DATASET_TYPES:
        raise DatasetOptionError(
            f"{prefix}.type: unknown dataset type {_show(name)} "
            f"(expected one of {', '.join(DATASET_TYPES)})"
        )
    return DATASET_TYPES[name]


def _check_keys(opt: Mapping[str, Any], kind: Kind, prefix: str) -> None:
    for key in opt:
        if not isinstance(key, str):
            raise DatasetOptionError(f"{prefix}: option names must be strings, got {_show(key)}")
        if key in _UNSUPPORTED:
            raise DatasetOptionError(f"{prefix}.{key}: {_UNSUPPORTED[key]}")
        if key in _TARGET_ONLY and key not in _KEYS[kind]:
            raise DatasetOptionError(f"{prefix}.{key}: {_TARGET_ONLY[key]}")
        if key != "type" and key not in _IGNORED and key not in _KEYS[kind]:
            raise DatasetOptionError(f"{prefix}.{key}: unknown option for {opt['type']}")


def _check_io_backend(opt: Mapping[str, Any], prefix: str) -> None:
    backend = opt.get("io_backend")
    if backend is None:
        return
    if not isinstance(backend, Mapping):
        raise DatasetOptionError(f"{prefix}.io_backend: expected a mapping like {{type: disk}}")
    kind = backend.get("type", "disk")
    if kind != "disk":
        raise DatasetOptionError(
            f"{prefix}.io_backend.type: only 'disk' (image folders) is supported, got {_show(kind)}"
        )


def _folder_value(opt: Mapping[str, Any], key: str, prefix: str) -> Path:
    if key not in opt or opt[key] is None:
        raise DatasetOptionError(f"{prefix}.{key}: required (a folder of images)")
    value = opt[key]
    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise DatasetOptionError(f"{prefix}.{key}: expected a folder path, got {_show(value)}")
    return Path(value).expanduser()


def _filename_tmpl(opt: Mapping[str, Any], prefix: str) -> str:
    tmpl = opt.get("filename_tmpl", "{}")
    if not isinstance(tmpl, str):
        raise DatasetOptionError(f"{prefix}.filename_tmpl: expected a string, got {_show(tmpl)}")
    try:
        probe = tmpl.format("x")
    except (IndexError, KeyError, ValueError):
        probe = None
    if probe is None or "{}" not in tmpl:
        raise DatasetOptionError(
            f"{prefix}.filename_tmpl: expected a template with one '{{}}' for the target's "
            f"name, e.g. '{{}}' or '{{}}_rain', got {tmpl!r}"
        )
    return tmpl


def _optional_bool(opt: Mapping[str, Any], key: str, prefix: str, *, default: bool) -> bool:
    value = opt.get(key, default)
    if not isinstance(value, bool):
        raise DatasetOptionError(f"{prefix}.{key}: expected true or false, got {_show(value)}")
    return value


def _optional_int(opt: Mapping[str, Any], key: str, prefix: str, *, minimum: int) -> int | None:
    if key not in opt or opt[key] is None:
        return None
    return checked_int(opt[key], f"{prefix}.{key}", minimum=minimum)


def checked_int(value: object, key: str, *, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (integral floats such as ``4e3`` are accepted)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DatasetOptionError(f"{key}: expected a whole number, got {_show(value)}")
    if value < minimum:
        raise DatasetOptionError(f"{key}: must be at least {minimum}, got {value}")
    return value


def checked_int_list(value: object, key: str, *, minimum: int) -> tuple[int, ...]:
    """A non-empty list of ints >= ``minimum``."""
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise DatasetOptionError(f"{key}: expected a non-empty list of whole numbers")
    return tuple(checked_int(item, f"{key}[{i}]", minimum=minimum) for i, item in enumerate(value))


def _training_gt_size(opt: Mapping[str, Any], prefix: str) -> int | None:
    """``gt_size``: the official loader's crop size (the progressive windows are cut from it).

    Absent is allowed when ``gt_sizes`` is given (the largest of them is used then); the
    schedule itself (:class:`StageSchedule`) reports a missing patch size.
    """
    return _optional_int(opt, "gt_size", prefix, minimum=1)


def _in_ch(opt: Mapping[str, Any], prefix: str) -> int:
    value = opt.get("in_ch", 3)
    if isinstance(value, bool) or value not in (1, 3):
        raise DatasetOptionError(
            f"{prefix}.in_ch: must be 1 (grayscale) or 3 (RGB), got {_show(value)}"
        )
    return int(value)


_GRAY_TASK = "gaussian-gray-denoising"  # the one task whose images are gray


def _degradation(opt: Mapping[str, Any], prefix: str) -> str:
    """``degradation``: the task name whose synthetic degradation makes the inputs."""
    key = f"{prefix}.degradation"
    if opt.get("degradation") is None:
        raise DatasetOptionError(f"{key}: required (one of {', '.join(TASKS)})")
    value = opt["degradation"]
    if not isinstance(value, str) or value not in TASKS:
        raise DatasetOptionError(
            f"{key}: unknown task {_show(value)} (expected one of {', '.join(TASKS)})"
        )
    return value


def _validation_seed(opt: Mapping[str, Any], prefix: str, train: bool) -> int:
    """``seed`` of a synthetic validation set (default 0); training sets take none."""
    if opt.get("seed") is None:  # absent or ``seed: ~``
        return 0
    if train:
        raise DatasetOptionError(
            f"{prefix}.seed: only for validation sets (training draws from manual_seed)"
        )
    return checked_int(opt["seed"], f"{prefix}.seed", minimum=0)


def _training_only(
    opt: Mapping[str, Any], name: str, prefix: str, train: bool
) -> tuple[str, Any] | None:
    """(full key, value) of a training-only option, None where it is not given; an error
    naming the key where a validation set gives it."""
    value = opt.get(name)
    if value is None:
        return None
    key = f"{prefix}.{name}"
    if not train:
        raise DatasetOptionError(f"{key}: only for training sets")
    return key, value


def _detail_candidates(opt: Mapping[str, Any], prefix: str, train: bool) -> int:
    """``detail_candidates`` of a training set: an integer >= 1, default 1."""
    given = _training_only(opt, "detail_candidates", prefix, train)
    return 1 if given is None else checked_int(given[1], given[0], minimum=1)


def _downscale(opt: Mapping[str, Any], prefix: str, train: bool) -> tuple[float, float] | None:
    """``downscale`` of a training set: [low, high] with 0 < low <= high <= 1, default none."""
    given = _training_only(opt, "downscale", prefix, train)
    if given is None:
        return None
    key, value = given
    expected = f"{key}: expected [low, high] with 0 < low <= high <= 1"
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise DatasetOptionError(f"{expected}, got {_show(value)}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise DatasetOptionError(f"{expected}, got {_show(value)}")
    low, high = (float(v) for v in value)
    if not 0 < low <= high <= 1:
        raise DatasetOptionError(f"{expected}, got {_show(value)}")
    return low, high


def _clean_fraction(opt: Mapping[str, Any], prefix: str, train: bool) -> float:
    """``clean_fraction`` of a synthetic training set: in [0, 1), default 0."""
    given = _training_only(opt, "clean_fraction", prefix, train)
    if given is None:
        return 0.0
    key, value = given
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetOptionError(f"{key}: expected a number in [0, 1), got {_show(value)}")
    if not 0 <= value < 1:
        raise DatasetOptionError(f"{key}: expected a number in [0, 1), got {value}")
    return float(value)


def _sampler_options(
    opt: Mapping[str, Any], prefix: str, train: bool, task: str | None
) -> dict[str, Any]:
    """``sampler_options`` of a synthetic training set: a mapping the task's sampler accepts
    (:func:`restormer.degradations.check_sampler_options`), default none."""
    value = opt.get("sampler_options")
    if value is None or task is None:
        return {}
    key = f"{prefix}.sampler_options"
    if not train:
        raise DatasetOptionError(
            f"{key}: only for training sets (validation draws as the benchmarks do)"
        )
    if not isinstance(value, Mapping):
        raise DatasetOptionError(f"{key}: expected a mapping, got {_show(value)}")
    from restormer.degradations import check_sampler_options

    try:
        check_sampler_options(task, value)
    except ValueError as exc:
        raise DatasetOptionError(f"{key}: {exc}") from None
    return dict(value)


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetOptionError(f"{key}: expected a number, got {_show(value)}")
    number = float(value)
    if not math.isfinite(number) or not 0 <= number <= MAX_SIGMA:
        raise DatasetOptionError(
            f"{key}: noise level must be between 0 and {MAX_SIGMA:g}, got {value}"
        )
    return number


def _sigma_options(opt: Mapping[str, Any], prefix: str) -> SigmaOptions:
    kind = opt.get("sigma_type")
    if kind not in ("random", "constant", "choice"):
        raise DatasetOptionError(
            f"{prefix}.sigma_type: required, one of random, constant, choice; got {_show(kind)}"
        )
    key = f"{prefix}.sigma_range"
    if "sigma_range" not in opt:
        raise DatasetOptionError(f"{key}: required with sigma_type {kind}")
    raw = opt["sigma_range"]
    if kind == "random":
        return SigmaOptions("random", _sigma_interval(raw, key))
    if kind == "constant":
        if isinstance(raw, Sequence) and not isinstance(raw, str) and len(raw) == 1:
            raw = raw[0]  # [25] reads as 25, as torch.FloatTensor([[25]]) broadcasts officially
        return SigmaOptions("constant", (_number(raw, key),))
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise DatasetOptionError(f"{key}: expected a non-empty list of noise levels to choose from")
    return SigmaOptions("choice", tuple(_number(v, f"{key}[{i}]") for i, v in enumerate(raw)))


def _sigma_interval(raw: object, key: str) -> tuple[float, float]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) != 2:
        raise DatasetOptionError(f"{key}: expected [low, high] for sigma_type random, got {raw!r}")
    low, high = (_number(v, f"{key}[{i}]") for i, v in enumerate(raw))
    if low > high:
        raise DatasetOptionError(
            f"{key}: expected [low, high] with 0 <= low <= high <= {MAX_SIGMA:g}, got {list(raw)}"
        )
    return low, high


def _sigma_test(opt: Mapping[str, Any], prefix: str) -> float:
    if "sigma_test" not in opt:
        raise DatasetOptionError(f"{prefix}.sigma_test: required for Gaussian validation")
    return _number(opt["sigma_test"], f"{prefix}.sigma_test")


def _show(value: object) -> str:
    """A short rendering of a bad value for a message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
