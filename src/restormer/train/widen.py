"""Grow a trained Restormer twice as wide without changing what it computes (Net2WiderNet).

Every feature channel of the trained model becomes two channels carrying the same values:

* a layer's output channels are copied;
* a dense (1x1 or 3x3) convolution reading duplicated channels splits each weight between
  the two copies, ``a`` and ``1 - a`` with ``a`` drawn from [0.25, 0.75] per weight, so the
  sum is unchanged while the copies get different gradients and learn apart (equal halves
  would keep them identical forever);
* depthwise convolutions, LayerNorm weights and the temperatures are copied: a LayerNorm over
  every channel twice has the same mean and variance, and an attention head whose queries,
  keys and values all come twice gives each key half its weight twice, so the same output.

``int(2 * C * 2.66)`` can exceed twice ``int(C * 2.66)``: GDFN's spare hidden channels start
fresh with zero output weights, adding nothing until they learn (as :mod:`.deepen`'s blocks).
The wider model starts at the trained one's quality and trains on with the new capacity.

Doubling the width (dim 16 -> 32, heads unchanged) quadruples the parameters and doubles the
training step on CPU: 3.7 s against 1.9 s for a batch of 8 at 96x96, bf16, one thread
(``python benchmarks/training_step.py --options configs/shipped/deraining.yml --precision bf16
--batch 8 --size 96 --runs 3 --dim 32``, against the same without ``--dim``; two training runs
beside it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from restormer.model import NUM_LEVELS, Restormer

__all__ = ["widen_state_dict", "width_change"]

_FRESH = -1  # an index map's entry for a channel with no counterpart in the trained model


def width_change(old: dict, new: dict) -> str | None:
    """``"dim 16 -> 32"`` if configuration ``new`` is ``old`` twice as wide; None if the
    widths agree. A ValueError for any other difference (heads must stay as they are)."""
    keys = (set(old) | set(new)) - {"dim"}
    differing = sorted(key for key in keys if old.get(key) != new.get(key))
    if differing:
        raise ValueError(f"not the same model but wider: {', '.join(differing)} differ")
    if old.get("dim") == new.get("dim"):
        return None
    if new.get("dim") != 2 * old["dim"]:
        raise ValueError(f"dim {old['dim']} -> {new.get('dim')}: only doubling keeps the function")
    return f"dim {old['dim']} -> {new['dim']}"


def widen_state_dict(
    state: dict[str, Tensor], old: dict, new: dict, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """The weights of configuration ``new`` (``old`` with twice the ``dim``) that compute what
    ``state``, the weights of configuration ``old``, computes (see the module docstring).
    ``generator`` draws the splits; the spare channels' fresh weights come from the global
    torch generator."""
    if width_change(old, new) is None:
        raise ValueError("the configurations have the same width")
    fresh = Restormer(**new).state_dict()
    maps = _channel_maps(Restormer(**old))
    missing = sorted(set(fresh) - set(state))
    if missing:
        raise ValueError(f"{missing[0]}: missing from the weights")
    result = {}
    for key, template in fresh.items():
        out_map, in_map, depthwise = maps[key.rsplit(".", 1)[0]]
        value = _widen(state[key], out_map, in_map, depthwise, generator)
        if value.shape != template.shape:
            raise ValueError(f"{key}: widened to {tuple(value.shape)}, the model has "
                             f"{tuple(template.shape)}")  # fmt: skip
        unmapped = out_map < 0
        if unmapped.any():
            value[unmapped] = template[unmapped]
        result[key] = value
    return result


_Maps = tuple[Tensor, Tensor | None, bool]  # output channels, input channels, depthwise


def _channel_maps(model: Restormer) -> dict[str, _Maps]:
    """For every weight-holding module of ``model`` (by state-dict prefix): which trained
    channel each output and input channel of the wider model copies."""
    cfg = model.config
    dim, heads = cfg.dim, cfg.heads
    width = [dim * 2**level for level in range(NUM_LEVELS)]
    maps: dict[str, _Maps] = {}
    identity_in = torch.arange(cfg.inp_channels)
    maps["patch_embed.proj"] = (_tile(dim), identity_in, False)
    stream = [_tile(w) for w in width]
    for lv in range(1, NUM_LEVELS):
        _stage_maps(maps, f"encoder_level{lv}", model, stream[lv - 1], heads[lv - 1])
        maps[f"down{lv}_{lv + 1}.body.0"] = (_tile(width[lv - 1] // 2), stream[lv - 1], False)
    _stage_maps(maps, "latent", model, stream[3], heads[3])
    x = stream[3]
    for lv in range(NUM_LEVELS - 1, 0, -1):
        maps[f"up{lv + 1}_{lv}.body.0"] = (_tile(2 * width[lv]), x, False)
        up = width[lv] // 2
        joined = torch.cat([_tile(up), up + stream[lv - 1]])
        if lv > 1:
            maps[f"reduce_chan_level{lv}"] = (stream[lv - 1], joined, False)
            x = stream[lv - 1]
        else:
            x = joined
        _stage_maps(maps, f"decoder_level{lv}", model, x, heads[lv - 1])
    _stage_maps(maps, "refinement", model, x, heads[0])
    maps["skip_conv"] = (x, stream[0], False)
    maps["output"] = (torch.arange(cfg.out_channels), x, False)
    return maps


def _stage_maps(
    maps: dict[str, _Maps], name: str, model: Restormer, stream: Tensor, heads: int
) -> None:
    """The maps of one stage's Transformer blocks, whose residual stream follows ``stream``."""
    channels = len(stream) // 2
    per_head = _per_head(channels, heads)
    qkv = torch.cat([per_head + i * channels for i in range(3)])
    for i, block in enumerate(getattr(model, name)):
        hidden = block.ffn.project_out.in_channels
        spare = int(2 * channels * model.config.ffn_expansion_factor) - 2 * hidden
        gate = torch.cat([_tile(hidden), torch.full((spare,), _FRESH)])
        p = f"{name}.{i}"
        maps[f"{p}.norm1.body"] = maps[f"{p}.norm2.body"] = (stream, None, True)
        maps[f"{p}.attn"] = (torch.arange(heads), None, True)  # the temperatures
        maps[f"{p}.attn.qkv"] = (qkv, stream, False)
        maps[f"{p}.attn.qkv_dwconv"] = (qkv, None, True)
        maps[f"{p}.attn.project_out"] = (stream, per_head, False)
        both = torch.cat([gate, torch.where(gate >= 0, gate + hidden, _FRESH)])
        maps[f"{p}.ffn.project_in"] = (both, stream, False)
        maps[f"{p}.ffn.dwconv"] = (both, None, True)
        maps[f"{p}.ffn.project_out"] = (stream, gate, False)


def _tile(n: int) -> Tensor:
    """Channels 0..n-1 twice over: ``[x, x]``. PixelUnshuffle of a tiled map is tiled, and so
    is the PixelShuffle input whose output is tiled, so every level's stream is ``[x, x]``."""
    return torch.arange(2 * n) % n


def _per_head(channels: int, heads: int) -> Tensor:
    """Each head's channels twice over within that head: ``[h0, h0, h1, h1, ...]``, so that a
    head's duplicated queries and keys stay in one softmax."""
    per = channels // heads
    index = torch.arange(2 * channels)
    return index // (2 * per) * per + index % per


def _widen(
    weight: Tensor,
    out_map: Tensor,
    in_map: Tensor | None,
    depthwise: bool,
    generator: torch.Generator | None,
) -> Tensor:
    """``weight`` with rows copied along ``out_map`` (fresh rows zero for now) and, for dense
    convolutions, columns copied along ``in_map`` with each weight split between its copies."""
    value = weight.float()[out_map.clamp_min(0)].clone()
    if depthwise or in_map is None or value.dim() < 2:
        return value
    columns = value[:, in_map.clamp_min(0)]
    share = torch.rand(columns.shape[0], weight.shape[1], *columns.shape[2:], generator=generator)
    share = share * 0.5 + 0.25
    first = torch.ones(len(in_map), dtype=torch.bool)
    copies = torch.zeros(weight.shape[1], dtype=torch.long)
    for j, source in enumerate(in_map.tolist()):
        if source >= 0:
            first[j] = copies[source] == 0
            copies[source] += 1
    if int(copies.max()) > 2:
        raise ValueError("an input channel copied more than twice")
    sources = in_map.clamp_min(0)
    split = torch.where(
        first.view(1, -1, *[1] * (columns.dim() - 2)), share[:, sources], 1 - share[:, sources]
    )
    single = (copies[sources] == 1).view(1, -1, *[1] * (columns.dim() - 2))
    columns = columns * torch.where(single, torch.ones_like(split), split)
    columns[:, in_map < 0] = 0
    return columns
