"""Load and save Restormer weights safely, inferring the configuration from tensor shapes.

Accepted: official ``.pth`` checkpoints (weights under ``params``, ``params_ema`` or
``state_dict``, or a bare state dict; ``module.`` prefixes from DataParallel are removed) and our
``.safetensors`` files (weights plus the configuration as metadata). ``.pth`` files are read with
``torch.load(weights_only=True)``, so no pickled code ever runs. Every failure is a
:class:`WeightsError` with a one-line message naming the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import BinaryIO, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

from restormer.files import write_atomically
from restormer.model import NUM_LEVELS, Restormer, RestormerConfig
from restormer.restore_defaults import RestoreDefaults
from restormer.tasks import TASKS

WRAPPER_KEYS = ("params", "params_ema", "state_dict", "model", "net_g")
CONFIG_METADATA_KEY = "restormer_config"
_BLOCK_KEY = re.compile(r"^(encoder_level[1-3]|latent|decoder_level[1-3]|refinement)\.(\d+)\.")
_REQUIRED_KEYS = ("patch_embed.proj.weight", "encoder_level1.0.attn.qkv.weight", "output.weight")

_GRAY = {"inp_channels": 1, "out_channels": 1}
#: The 13 released official checkpoints (file names as the official scripts expect them) and
#: their constructors; every one uses dim 48, blocks (4, 6, 6, 8), 4 refinement blocks.
OFFICIAL_CHECKPOINTS: dict[str, RestormerConfig] = {
    "deraining.pth": RestormerConfig(),
    "motion_deblurring.pth": RestormerConfig(),
    "single_image_defocus_deblurring.pth": RestormerConfig(),
    "dual_pixel_defocus_deblurring.pth": RestormerConfig(inp_channels=6, dual_pixel_task=True),
    "real_denoising.pth": RestormerConfig(LayerNorm_type="BiasFree"),
    "gaussian_color_denoising_blind.pth": RestormerConfig(LayerNorm_type="BiasFree"),
    "gaussian_color_denoising_sigma15.pth": RestormerConfig(LayerNorm_type="BiasFree"),
    "gaussian_color_denoising_sigma25.pth": RestormerConfig(LayerNorm_type="BiasFree"),
    "gaussian_color_denoising_sigma50.pth": RestormerConfig(LayerNorm_type="BiasFree"),
    "gaussian_gray_denoising_blind.pth": RestormerConfig(LayerNorm_type="BiasFree", **_GRAY),
    "gaussian_gray_denoising_sigma15.pth": RestormerConfig(LayerNorm_type="BiasFree", **_GRAY),
    "gaussian_gray_denoising_sigma25.pth": RestormerConfig(LayerNorm_type="BiasFree", **_GRAY),
    "gaussian_gray_denoising_sigma50.pth": RestormerConfig(LayerNorm_type="BiasFree", **_GRAY),
}
#: Names of the four distinct official state-dict layouts.
OFFICIAL_LAYOUTS: dict[RestormerConfig, str] = {
    RestormerConfig(): "withbias_rgb",
    RestormerConfig(LayerNorm_type="BiasFree"): "biasfree_rgb",
    RestormerConfig(LayerNorm_type="BiasFree", **_GRAY): "biasfree_gray",
    RestormerConfig(inp_channels=6, dual_pixel_task=True): "dual_pixel",
}


class WeightsError(ValueError):
    """A weights file that cannot be used, with a one-line reason naming the file."""


@dataclass
class Checkpoint:
    """A state dict as found in a file, with where it came from."""

    state_dict: dict[str, Tensor]
    source: str  # e.g. "official .pth, key 'params'" or "safetensors"
    metadata: dict[str, str]


# --------------------------------------------------------------------------- reading


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read the weights of a ``.pth`` or ``.safetensors`` file, judged by content, not name."""
    path = Path(path)
    _check_readable(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise WeightsError(f"{path}: empty file")
    if _looks_like_safetensors(head):
        return _read_safetensors(path)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return _read_torch(path)
    raise WeightsError(f"{path}: not a weights file (neither a PyTorch .pth nor safetensors)")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise WeightsError(f"{path}: no such file")
    if path.is_dir():
        raise WeightsError(f"{path}: is a directory, not a weights file")
    if not os.access(path, os.R_OK):
        raise WeightsError(f"{path}: permission denied")


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            state_dict = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(
            f"{path}: truncated or corrupt safetensors file ({_first_line(e)})"
        ) from e
    return Checkpoint(state_dict, "safetensors", metadata)


def _read_torch(path: Path) -> Checkpoint:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad files; all mean the same to users
        text = str(e)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise WeightsError(
                f"{path}: refused: the file holds pickled Python objects besides tensors "
                "(only plain weights are loaded, for safety)"
            ) from e
        raise WeightsError(f"{path}: truncated or corrupt PyTorch file ({_first_line(e)})") from e
    state_dict, where = _unwrap(obj, path)
    return Checkpoint(state_dict, f"PyTorch .pth{where}", {})


def _unwrap(obj: object, path: Path) -> tuple[dict[str, Tensor], str]:
    """Find the state dict inside a checkpoint object and strip DataParallel prefixes."""
    where = ""
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj, where = obj[key], f", key '{key}'"
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path}: not a Restormer checkpoint (no state dict found)")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise WeightsError(f"{path}: not a Restormer checkpoint (it holds no tensors)")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors, where


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:160]


# --------------------------------------------------------------------------- configuration


def infer_config(state_dict: Mapping[str, Tensor], name: str = "weights") -> RestormerConfig:
    """The constructor arguments that produce exactly these tensor shapes."""
    missing = [k for k in _REQUIRED_KEYS if k not in state_dict]
    if missing:
        found = ", ".join(f"'{k}'" for k in list(state_dict)[:3])
        expected = ", ".join(f"'{k}'" for k in _REQUIRED_KEYS)
        raise WeightsError(
            f"{name}: not a Restormer checkpoint: expected keys such as {expected}; "
            f"found {found}{', ...' if len(state_dict) > 3 else ''}"
        )
    try:
        return _infer(state_dict)
    except (ValueError, IndexError, KeyError) as e:
        raise WeightsError(f"{name}: inconsistent Restormer weights ({e})") from e


def _infer(sd: Mapping[str, Tensor]) -> RestormerConfig:
    dim, inp_channels = sd["patch_embed.proj.weight"].shape[:2]
    counts: dict[str, int] = {}
    for key in sd:
        if m := _BLOCK_KEY.match(key):
            counts[m[1]] = max(counts.get(m[1], 0), int(m[2]) + 1)
    stages = [f"encoder_level{lv}" for lv in range(1, NUM_LEVELS)] + ["latent"]
    num_blocks = tuple(counts.get(s, 0) for s in stages)
    heads = tuple(_heads(sd, level) for level in range(NUM_LEVELS))
    return RestormerConfig(
        inp_channels=int(inp_channels),
        out_channels=int(sd["output.weight"].shape[0]),
        dim=int(dim),
        num_blocks=num_blocks,
        num_refinement_blocks=counts.get("refinement", 0),
        heads=heads,
        ffn_expansion_factor=_ffn_factor(sd),
        bias="encoder_level1.0.attn.qkv.bias" in sd,
        LayerNorm_type="WithBias" if "encoder_level1.0.norm1.body.bias" in sd else "BiasFree",
        dual_pixel_task="skip_conv.weight" in sd,
    )


def _heads(sd: Mapping[str, Tensor], level: int) -> int:
    """Heads of a level, from the first block's temperature in the encoder or decoder there."""
    stages = (
        ["latent"] if level == 3 else [f"encoder_level{level + 1}", f"decoder_level{level + 1}"]
    )
    if level == 0:
        stages.append("refinement")
    for stage in stages:
        key = f"{stage}.0.attn.temperature"
        if key in sd:
            return int(sd[key].shape[0])
    return 1  # a level without blocks: heads do not change any shape


def _ffn_factor(sd: Mapping[str, Tensor]) -> float:
    """The shortest decimal ``f`` with ``int(channels * f) == hidden`` at every block.

    Only ``int(channels * f)`` is visible in the shapes, so any ``f`` in an interval fits; the
    official factors (2.66) are the shortest decimals in theirs.
    """
    pairs = {
        (int(w.shape[1]), int(w.shape[0]) // 2)
        for k, w in sd.items()
        if k.endswith(".ffn.project_in.weight")
    }
    if not pairs:
        return 2.66  # no blocks at all: the factor changes nothing
    lo = max(Decimal(h) / c for c, h in pairs)
    for digits in range(0, 8):
        step = Decimal(1).scaleb(-digits)
        start = (lo / step).to_integral_value(rounding="ROUND_FLOOR") * step
        for k in range(0, 3):
            f = float(start + k * step)
            if all(int(c * f) == h for c, h in pairs):
                return f
    raise ValueError("FFN hidden widths fit no single expansion factor")


def official_checkpoints_like(config: RestormerConfig) -> list[str]:
    """Names of the official released checkpoints whose constructor equals ``config``."""
    return [name for name, cfg in OFFICIAL_CHECKPOINTS.items() if cfg == config]


def official_layout(config: RestormerConfig) -> str | None:
    """Which of the four official state-dict layouts ``config`` produces, if any."""
    return OFFICIAL_LAYOUTS.get(config)


# --------------------------------------------------------------------------- models


def build_model(
    state_dict: Mapping[str, Tensor], config: RestormerConfig, name: str = "weights"
) -> Restormer:
    """A Restormer with ``config`` holding exactly ``state_dict`` (strict: no key left over)."""
    with torch.device("meta"):
        model = Restormer(**config.__dict__)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        raise WeightsError(f"{name}: {_key_report(missing, unexpected)}")
    for key, tensor in expected.items():
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"{name}: shape mismatch at '{key}': file has {tuple(state_dict[key].shape)}, "
                f"the inferred configuration needs {tuple(tensor.shape)}"
            )
        if not state_dict[key].is_floating_point():
            raise WeightsError(f"{name}: '{key}' is not a floating-point tensor")
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model


def _key_report(missing: list[str], unexpected: list[str]) -> str:
    def few(keys: list[str]) -> str:
        return ", ".join(f"'{k}'" for k in keys[:3]) + (
            f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        )

    parts = []
    if missing:
        parts.append(f"missing keys {few(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {few(unexpected)}")
    return "weights do not fit a Restormer: " + "; ".join(parts)


def model_from_checkpoint(ckpt: Checkpoint, name: str = "weights") -> Restormer:
    """Build the model of a checkpoint; the metadata config is used when it fits the shapes."""
    config = infer_config(ckpt.state_dict, name)
    if text := ckpt.metadata.get(CONFIG_METADATA_KEY):
        try:
            stored = RestormerConfig(**json.loads(text))
        except (ValueError, TypeError) as e:
            raise WeightsError(f"{name}: unreadable configuration metadata ({e})") from e
        if _same_shapes(stored, config):
            config = stored
    return build_model(ckpt.state_dict, config, name)


def _same_shapes(a: RestormerConfig, b: RestormerConfig) -> bool:
    with torch.device("meta"):
        sa, sb = Restormer(**a.__dict__).state_dict(), Restormer(**b.__dict__).state_dict()
    return [(k, v.shape) for k, v in sa.items()] == [(k, v.shape) for k, v in sb.items()]


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def native_bfloat16(device: str | torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively (CPU: AVX512-BF16 or AMX; CUDA)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def load_model(
    source: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    precision: str | None = None,
) -> Restormer:
    """An eval-mode Restormer from a weights file (official ``.pth`` or our ``.safetensors``)
    or a task name (``"deraining"``...: the model shipped in the package, see
    :mod:`restormer.shipped`; a file of that name in the working directory comes first).

    Test-time defaults recorded in the file (:mod:`restormer.restore_defaults`: TLC window,
    x8 self-ensemble) become the model's own settings.

    ``precision`` ("fp32" or "bf16") overrides ``dtype``. With "bf16" the weights are
    rounded to bfloat16; the model computes in bfloat16 where ``device`` does so natively
    (:func:`native_bfloat16`) and in float32 elsewhere, because emulated bfloat16 convolutions
    are many times slower than float32 ones: the results are then those of the bf16 weights
    at float32 speed.
    """
    if precision is not None:
        if precision not in PRECISIONS:
            raise WeightsError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        dtype = PRECISIONS[precision]
    path = Path(source)
    if str(source) in TASKS and not path.exists():
        from restormer.shipped import shipped_path

        path = shipped_path(str(source))
        if not path.is_file():
            raise WeightsError(f"{source}: this install has no shipped model for the task")
    checkpoint = read_checkpoint(path)
    model = model_from_checkpoint(checkpoint, str(path))
    try:
        RestoreDefaults.from_metadata(checkpoint.metadata, str(path)).apply(model)
    except ValueError as e:
        raise WeightsError(str(e)) from None
    if dtype == torch.bfloat16 and not native_bfloat16(device):
        model = model.to(torch.bfloat16)
        dtype = torch.float32
    return model.to(device=device, dtype=dtype).eval()


# --------------------------------------------------------------------------- saving


def save_weights(
    model_or_state: nn.Module | Mapping[str, Tensor],
    path: str | Path,
    *,
    config: RestormerConfig | None = None,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write weights atomically: ``.safetensors`` with the configuration as metadata, or ``.pth``
    in the official format (``{'params': state_dict}``), chosen by the suffix."""
    path = Path(path)
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    if config is None:
        config = getattr(model_or_state, "config", None) or infer_config(state, str(path))
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pth", ".pt"):
        raise WeightsError(f"{path}: unknown weights format (use .safetensors or .pth)")
    if path.exists() and not overwrite:
        raise WeightsError(f"{path}: already exists (use --overwrite)")

    if suffix == ".safetensors":
        meta = {CONFIG_METADATA_KEY: json.dumps(config.to_dict()), **(metadata or {})}
        payload: bytes | Callable[[BinaryIO], object] = safetensors_save(state, metadata=meta)
    else:
        payload = partial(torch.save, {"params": state})
    try:
        write_atomically(path, payload, overwrite=overwrite)
    except FileExistsError as e:
        raise WeightsError(f"{path}: already exists (use --overwrite)") from e
    except OSError as e:
        raise WeightsError(f"{path}: cannot write ({e.strerror or e})") from e
    return path


# --------------------------------------------------------------------------- cost


class MacCount(NamedTuple):
    """Multiply-accumulates of one forward pass, split as papers report them."""

    convolutions: int  # what the paper's "GMACs" counts (141 G for Restormer at 256x256)
    attention: int  # MDTA's two C x C matrix products, which the paper leaves out

    @property
    def total(self) -> int:
        return self.convolutions + self.attention


def count_macs(config: RestormerConfig, height: int = 256, width: int = 256) -> MacCount:
    """Multiply-accumulates of one forward pass on a ``height`` x ``width`` image.

    The input is padded to a multiple of 8 first, as inference does.
    """
    pixels = [(-(-height // 8) * 8 >> lv) * (-(-width // 8) * 8 >> lv) for lv in range(NUM_LEVELS)]
    dim, blocks = config.dim, config.num_blocks
    width_at = [dim * 2**lv for lv in range(NUM_LEVELS)]
    conv = attn = 0

    def blocks_at(channels: int, count: int, heads: int, n: int) -> None:
        nonlocal conv, attn
        hidden = int(channels * config.ffn_expansion_factor)
        per_pixel = 3 * channels * channels + 3 * channels * 9 + channels * channels  # MDTA
        per_pixel += 2 * hidden * channels + 2 * hidden * 9 + hidden * channels  # GDFN
        conv += count * per_pixel * n
        attn += count * 2 * channels * (channels // heads) * n

    conv += pixels[0] * dim * config.inp_channels * 9  # patch embedding
    for lv in range(NUM_LEVELS - 1):
        blocks_at(width_at[lv], blocks[lv], config.heads[lv], pixels[lv])  # encoder
        conv += pixels[lv] * width_at[lv] * (width_at[lv] // 2) * 9  # downsampling
    blocks_at(width_at[3], blocks[3], config.heads[3], pixels[3])  # latent
    for lv in range(NUM_LEVELS - 2, -1, -1):
        conv += pixels[lv + 1] * width_at[lv + 1] * 2 * width_at[lv + 1] * 9  # upsampling
        decoder_width = 2 * dim if lv == 0 else width_at[lv]
        if lv > 0:
            conv += pixels[lv] * 2 * width_at[lv] * width_at[lv]  # channel reduction
        blocks_at(decoder_width, blocks[lv], config.heads[lv], pixels[lv])
    blocks_at(2 * dim, config.num_refinement_blocks, config.heads[0], pixels[0])
    if config.dual_pixel_task:
        conv += pixels[0] * dim * 2 * dim  # skip convolution
    conv += pixels[0] * 2 * dim * config.out_channels * 9  # output convolution
    return MacCount(conv, attn)


def describe(path: str | Path) -> dict[str, object]:
    """What ``restormer info`` reports about a weights file."""
    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, str(path))
    cfg = model.config
    return {
        "file": str(path),
        "format": ckpt.source,
        "config": cfg.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "macs_256": count_macs(cfg, 256, 256),
        "official_layout": official_layout(cfg),
        "official_checkpoints": official_checkpoints_like(cfg),
        "dtype": str(next(iter(ckpt.state_dict.values())).dtype).removeprefix("torch."),
        "metadata": {k: v for k, v in ckpt.metadata.items() if k != CONFIG_METADATA_KEY},
    }
