"""Grow a trained Restormer deeper without changing what it computes.

Every Transformer block is residual (``x + attn(norm1(x))``, then ``x + ffn(norm2(x))``), so a
block whose two output projections are zero is the identity. A model with more blocks per
level (``num_blocks``, ``num_refinement_blocks``) and the same widths starts as the trained
one: its old blocks come first in each level, the added ones follow as identities, with their
other weights freshly initialised so that they learn as soon as their projections move off
zero (the zero-initialised residual branch of ReZero/Fixup). Training then continues from the
trained model's quality instead of from scratch.

Blocks in the lower levels are cheap: a level has twice the channels and a quarter of the
pixels of the one above, so its 1x1 convolutions cost the same and its per-pixel work
(normalisation, depthwise convolutions, gating) half. The compact model (dim 16) with blocks
[2, 3, 6, 8] instead of [2, 3, 3, 4] has 66% more parameters and took 1.04-1.20x the time per
training step (``python benchmarks/training_step.py --runs 3 --blocks 2 3 6 8``, against
``--blocks 2 3 3 4``; fp32, one thread, two training runs beside it).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from restormer.model import Restormer

__all__ = ["DEPTH_KEYS", "deepen_state_dict", "depth_change"]

DEPTH_KEYS = ("num_blocks", "num_refinement_blocks")
"""The configuration entries :func:`deepen_state_dict` may grow; all others must agree."""

_LEVELS = (  # the block lists of the state dict
    "encoder_level1",
    "encoder_level2",
    "encoder_level3",
    "latent",
    "decoder_level3",
    "decoder_level2",
    "decoder_level1",
    "refinement",
)
_BLOCK_KEY = re.compile(r"^(" + "|".join(_LEVELS) + r")\.(\d+)\.(.+)$")
_IDENTITY_KEYS = ("attn.project_out.", "ffn.project_out.")  # zeroed: the block adds nothing


def depth_change(old: dict, new: dict) -> str | None:
    """How configuration ``new`` is deeper than ``old``, e.g. ``"num_blocks [2, 3, 3, 4] ->
    [2, 3, 6, 8]"``; None if they have the same depth. A ValueError if ``new`` is not
    ``old`` with at least as many blocks everywhere (any other difference, or fewer blocks)."""
    others = [key for key in set(old) | set(new) if key not in DEPTH_KEYS]
    differing = sorted(key for key in others if old.get(key) != new.get(key))
    if differing:
        raise ValueError(f"not the same model but deeper: {', '.join(differing)} differ")
    changes = []
    for key in DEPTH_KEYS:
        before, after = _blocks(old, key), _blocks(new, key)
        if len(before) != len(after) or any(b > a for b, a in zip(before, after, strict=True)):
            raise ValueError(f"{key} {old.get(key)} -> {new.get(key)}: not deeper")
        if before != after:
            changes.append(f"{key} {old.get(key)} -> {new.get(key)}")
    return "; ".join(changes) or None


def deepen_state_dict(state: dict[str, Tensor], old: dict, new: dict) -> dict[str, Tensor]:
    """The weights of configuration ``new`` (:class:`restormer.Restormer` keyword arguments)
    that compute what ``state``, the weights of configuration ``old``, computes: the blocks
    of ``state`` first in each level, identity blocks after them (see the module docstring).
    The fresh weights of the added blocks come from the global torch generator."""
    depth_change(old, new)  # raises unless new is old, deeper
    grown = Restormer(**new).state_dict()
    unknown = sorted(set(state) - set(grown))
    if unknown:
        raise ValueError(f"weights not in the deeper model: {', '.join(unknown[:3])}")
    result: dict[str, Tensor] = {}
    for key, fresh in grown.items():
        if key in state:
            if state[key].shape != fresh.shape:
                raise ValueError(f"{key}: shape {tuple(state[key].shape)} in the weights, "
                                 f"{tuple(fresh.shape)} in the deeper model")  # fmt: skip
            result[key] = state[key].clone()
            continue
        match = _BLOCK_KEY.match(key)
        if match is None:
            raise ValueError(f"{key}: missing from the weights")
        result[key] = torch.zeros_like(fresh) if match[3].startswith(_IDENTITY_KEYS) else fresh
    return result


def _blocks(config: dict, key: str) -> list[int]:
    value = config.get(key)
    return list(value) if isinstance(value, (list, tuple)) else [int(value or 0)]
