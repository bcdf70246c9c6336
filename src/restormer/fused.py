"""The bias-free LayerNorm for training, compiled into one kernel each way.

Eagerly, ``x * rsqrt(var(x) + eps) * weight`` and its gradient are a dozen passes over the
feature map: in the compact gray denoiser's training step (dim 24, batch 16 of 64x64, bf16
autocast, one thread) they took a quarter of the time; TorchInductor fuses them and made the
step 25% faster. The with-bias LayerNorm needs none of this (``F.layer_norm`` is fused).

Compilation is an optimisation only: where it cannot run (no C++ compiler, an unsupported
platform) the first call warns once and every call computes eagerly, with the same result.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

import torch
from torch import Tensor


def bias_free_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Each pixel's channel vector (last dimension) scaled by 1 / sqrt(its variance + eps)
    and by ``weight``: the official BiasFree_LayerNorm (variance centred, values not)."""
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return x * torch.rsqrt(var + eps) * weight


class _Compiled:
    """``bias_free_norm`` through ``torch.compile`` (dynamic shapes: one compilation serves
    every level and patch size), or eagerly once compiling has failed."""

    def __init__(self, function: Callable[[Tensor, Tensor, float], Tensor]) -> None:
        self._function = function
        self._compiled: Callable[[Tensor, Tensor, float], Tensor] | None = None
        self._failed = False
        self._lock = threading.Lock()

    def __call__(self, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        if not self._failed:
            try:
                with self._lock:
                    if self._compiled is None:
                        self._compiled = torch.compile(self._function, dynamic=True)
                return self._compiled(x, weight, eps)
            except Exception as error:  # any failure: fall back to the same result, eagerly
                self._failed = True
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                warnings.warn(
                    f"compiling the bias-free LayerNorm failed ({first_line}); "
                    "training continues with the eager one, slower",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self._function(x, weight, eps)


compiled_bias_free_norm = _Compiled(bias_free_norm)
""":func:`bias_free_norm`, compiled on first use; for training steps (autograd on)."""
