"""The Restormer architecture (Zamir et al., CVPR 2022), exact to the official implementation.

Parameter names and their order are a contract: they equal those of the official
``restormer_arch.py``, so official checkpoints load with ``load_state_dict`` unchanged.
The code shape is our own: levels are built from lists and walked in loops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LayerNormType = Literal["WithBias", "BiasFree"]
NUM_LEVELS = 4
EPS = 1e-5


@dataclass(frozen=True)
class RestormerConfig:
    """Constructor arguments of :class:`Restormer`, named as in the official code."""

    inp_channels: int = 3
    out_channels: int = 3
    dim: int = 48
    num_blocks: tuple[int, ...] = (4, 6, 6, 8)
    num_refinement_blocks: int = 4
    heads: tuple[int, ...] = (1, 2, 4, 8)
    ffn_expansion_factor: float = 2.66
    bias: bool = False
    LayerNorm_type: LayerNormType = "WithBias"
    dual_pixel_task: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_blocks", tuple(int(n) for n in self.num_blocks))
        object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))
        if len(self.num_blocks) != NUM_LEVELS or len(self.heads) != NUM_LEVELS:
            raise ValueError(f"num_blocks and heads need {NUM_LEVELS} entries, one per level")
        if self.LayerNorm_type not in ("WithBias", "BiasFree"):
            raise ValueError(
                f"LayerNorm_type must be 'WithBias' or 'BiasFree', not {self.LayerNorm_type!r}"
            )
        for level, h in enumerate(self.heads):
            if (self.dim * 2**level) % h:
                raise ValueError(
                    f"level {level + 1}: {self.dim * 2**level} channels do not split into {h} heads"
                )

    def to_dict(self) -> dict:
        """A JSON-ready dict (lists, not tuples), spelled as in the official option files."""
        d = asdict(self)
        d["num_blocks"] = list(self.num_blocks)
        d["heads"] = list(self.heads)
        return d


class BiasFreeLayerNorm(nn.Module):
    """Scales each pixel's channel vector by its inverse standard deviation; no centring."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return x * torch.rsqrt(var + EPS) * self.weight[:, None, None]


class WithBiasLayerNorm(nn.Module):
    """Standard LayerNorm over the channels of each pixel, with affine weight and bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)
        return (x - mean) * torch.rsqrt(var + EPS) * self.weight[:, None, None] + self.bias[
            :, None, None
        ]


class LayerNorm(nn.Module):
    """Channel LayerNorm of an NCHW map; ``body`` holds the variant (its name is in the keys)."""

    def __init__(self, channels: int, kind: LayerNormType) -> None:
        super().__init__()
        self.body = (
            BiasFreeLayerNorm(channels) if kind == "BiasFree" else WithBiasLayerNorm(channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class MDTA(nn.Module):
    """Multi-Dconv head Transposed Attention: a C x C attention map per head, linear in pixels.

    Queries, keys and values come from a 1x1 conv and a 3x3 depthwise conv; queries and keys
    are L2-normalised over pixels and their product is scaled by a learned temperature.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(
            dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias
        )
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.unbind(dim=1)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv Feed-forward Network: GELU(dwconv(x1)) * dwconv(x2), then a 1x1 projection."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(
            hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias
        )
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    """Pre-norm residual block: x + MDTA(LN(x)), then x + GDFN(LN(x))."""

    def __init__(
        self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, norm: LayerNormType
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, norm)
        self.attn = MDTA(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, norm)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """Shallow features: one 3x3 convolution from image channels to ``dim``."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve the resolution, double the channels: 3x3 conv to C/2, then pixel-unshuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1, bias=False),
            nn.PixelUnshuffle(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution, halve the channels: 3x3 conv to 2C, then pixel-shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * 2, kernel_size=3, padding=1, bias=False),
            nn.PixelShuffle(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def _stage(channels: int, num_blocks: int, heads: int, cfg: RestormerConfig) -> nn.Sequential:
    return nn.Sequential(
        *(
            TransformerBlock(
                channels, heads, cfg.ffn_expansion_factor, cfg.bias, cfg.LayerNorm_type
            )
            for _ in range(num_blocks)
        )
    )


class Restormer(nn.Module):
    """Encoder-decoder Transformer for image restoration, with the official constructor.

    Four levels (width ``dim * 2**level``); the decoder concatenates the encoder's skip features
    and reduces them with a 1x1 conv, except at level 1 where it keeps both (width ``2 * dim``).
    A refinement stage follows, then ``out = input + R`` — or, for the dual-pixel task
    (6-channel left/right input), a 1x1 skip from the shallow features and no global residual.
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: LayerNormType = "WithBias",
        dual_pixel_task: bool = False,
    ) -> None:
        super().__init__()
        cfg = RestormerConfig(
            inp_channels, out_channels, dim, tuple(num_blocks), num_refinement_blocks,
            tuple(heads), ffn_expansion_factor, bias, LayerNorm_type, dual_pixel_task,
        )  # fmt: skip
        self.config = cfg
        width = [dim * 2**level for level in range(NUM_LEVELS)]
        decoder_width = [2 * dim, *width[1:3]]  # level 1 keeps the concatenated skip channels

        # Registration order fixes the state_dict order, which must equal the official one.
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        for lv in range(1, NUM_LEVELS):
            self.add_module(
                f"encoder_level{lv}", _stage(width[lv - 1], num_blocks[lv - 1], heads[lv - 1], cfg)
            )
            self.add_module(f"down{lv}_{lv + 1}", Downsample(width[lv - 1]))
        self.latent = _stage(width[3], num_blocks[3], heads[3], cfg)
        for lv in range(NUM_LEVELS - 1, 0, -1):
            self.add_module(f"up{lv + 1}_{lv}", Upsample(width[lv]))
            if lv > 1:
                reduce = nn.Conv2d(width[lv], width[lv - 1], kernel_size=1, bias=bias)
                self.add_module(f"reduce_chan_level{lv}", reduce)
            self.add_module(
                f"decoder_level{lv}",
                _stage(decoder_width[lv - 1], num_blocks[lv - 1], heads[lv - 1], cfg),
            )
        self.refinement = _stage(decoder_width[0], num_refinement_blocks, heads[0], cfg)
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, decoder_width[0], kernel_size=1, bias=bias)
        self.output = nn.Conv2d(decoder_width[0], out_channels, kernel_size=3, padding=1, bias=bias)

    @property
    def inp_channels(self) -> int:
        return self.config.inp_channels

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    @property
    def dual_pixel_task(self) -> bool:
        return self.config.dual_pixel_task

    def encoder_stages(self) -> list[tuple[nn.Module, nn.Module]]:
        """(encoder stage, downsampling) for levels 1..3, top to bottom."""
        return [
            (getattr(self, f"encoder_level{lv}"), getattr(self, f"down{lv}_{lv + 1}"))
            for lv in range(1, NUM_LEVELS)
        ]

    def decoder_stages(self) -> list[tuple[nn.Module, nn.Module | None, nn.Module]]:
        """(upsampling, channel reduction or None, decoder stage) for levels 3..1, bottom up."""
        return [
            (
                getattr(self, f"up{lv + 1}_{lv}"),
                getattr(self, f"reduce_chan_level{lv}", None),
                getattr(self, f"decoder_level{lv}"),
            )
            for lv in range(NUM_LEVELS - 1, 0, -1)
        ]

    def forward(self, inp_img: Tensor) -> Tensor:
        shallow = self.patch_embed(inp_img)
        x, skips = shallow, []
        for encoder, down in self.encoder_stages():
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.latent(x)
        for (up, reduce, decoder), skip in zip(self.decoder_stages(), reversed(skips), strict=True):
            x = torch.cat([up(x), skip], dim=1)
            if reduce is not None:
                x = reduce(x)
            x = decoder(x)
        x = self.refinement(x)
        if self.dual_pixel_task:
            return self.output(x + self.skip_conv(shallow))
        return self.output(x) + inp_img
