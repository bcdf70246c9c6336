"""The parts of one optimisation step that every training loop shares.

The trainer (``restormer.train.trainer``) and ``scripts/gpu_burst.py`` build their steps from
these, so a recipe's optimiser, loss, mixed precision and weight averaging mean the same thing
whichever loop runs it.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restormer.train.options import TrainOptions


def make_optimizer(
    model: nn.Module, options: TrainOptions, *, fused: bool = False
) -> torch.optim.Optimizer:
    """The recipe's Adam or AdamW over the model's trainable parameters; ``fused``: PyTorch's
    one-kernel implementation (CUDA), else its default."""
    o = options.optimizer
    kind = torch.optim.AdamW if o.type == "AdamW" else torch.optim.Adam
    params = [p for p in model.parameters() if p.requires_grad]
    extra = {"fused": True} if fused else {}
    return kind(params, lr=o.lr, weight_decay=o.weight_decay, betas=o.betas, **extra)


def recipe_loss(outputs: Tensor, targets: Tensor, options: TrainOptions) -> Tensor:
    """The recipe's loss between restored and target images: its weighted L1 or MSE loss, plus
    the weighted frequency loss where the recipe has one (``train.fft_opt``)."""
    loss_fn = F.l1_loss if options.loss.type == "L1Loss" else F.mse_loss
    loss = options.loss.loss_weight * loss_fn(outputs, targets, reduction=options.loss.reduction)
    frequency = options.frequency_loss
    if frequency is not None:
        spectra = spectrum_l1(outputs, targets, reduction=frequency.reduction)
        loss = loss + frequency.loss_weight * spectra
    return loss


def spectrum_l1(outputs: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """L1 distance of the images' 2-D spectra (real and imaginary parts), as deblurring papers
    add to the pixel loss (MIMO-UNet's FFT loss): it weighs the small high-frequency
    coefficients that a blur removes as much as the large ones a pixel loss is ruled by.

    The transform is orthonormal, so the term keeps its scale at every patch size of a
    progressive schedule (an unnormalised one grows with the patch's side).
    """
    spectrum = torch.fft.rfft2(outputs.float() - targets.float(), norm="ortho")
    magnitudes = torch.view_as_real(spectrum).abs()
    return magnitudes.mean() if reduction == "mean" else magnitudes.sum()


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for the forward pass: none for fp32, else bf16 or fp16 autocast."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


class WeightAverage:
    """Exponential moving average of a model's weights (and a copy of its buffers)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the averages towards the model's weights; copy its other buffers.

        One batched lerp over all floating-point tensors: a few kernel launches on a GPU
        instead of one per tensor (hundreds for this model), the same values.
        """
        averages, values = [], []
        for name, value in model.state_dict().items():
            average = self.params[name]
            if average.is_floating_point():
                averages.append(average)
                values.append(value.detach())
            else:
                average.copy_(value)
        if averages:
            torch._foreach_lerp_(averages, values, 1 - self.decay)

    def state_dict(self) -> dict[str, Tensor]:
        return self.params

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for name, value in state.items():
            self.params[name].copy_(value)

    def model_like(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` carrying the averaged weights (for validation)."""
        twin = copy.deepcopy(model)
        twin.load_state_dict(self.params)
        return twin
