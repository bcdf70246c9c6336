"""The Restormer architecture (Zamir et al., CVPR 2022), exact to the official implementation.

Parameter names and their order are a contract: they equal those of the official
``restormer_arch.py``, so official checkpoints load with ``load_state_dict`` unchanged.
The code shape is our own: levels are built from lists and walked in loops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restormer.fused import (
    bias_free_norm,
    compiled_bias_free_norm,
    compiled_gated_gelu,
    gated_gelu,
)

if TYPE_CHECKING:
    from restormer.local_attention import LevelWindow, LocalAttention

LayerNormType = Literal["WithBias", "BiasFree"]
NUM_LEVELS = 4
EPS = 1e-5  # LayerNorm's
NORM_EPS = 1e-12  # F.normalize's, as MDTA uses it
DUAL_PIXEL_CHANNELS = 6  # a dual-pixel model's input: the left and right views, stacked


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


def pointwise(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """A 1x1 convolution of a channels-last (N, H, W, C) map.

    It is a matrix product, but oneDNN's channels-last 1x1 convolution runs these narrow
    shapes (48-96 input channels) faster than a BLAS matrix product, forward and backward.
    On one thread PyTorch gives 1x1 convolutions of batches under 16 to its own im2col path
    instead, about 2x slower here (single-threaded training runs that way); as a 1x1
    convolution treats every pixel alike, the map's rows then go in as a batch of one-row
    images, which oneDNN takes.
    """
    if torch.compiler.is_compiling():  # a compiled model picks its own kernels
        return spatial(x, conv)
    b, h, w, c = x.shape
    if b < _ONEDNN_MIN_BATCH and h > 1 and torch.get_num_threads() == 1 and x.is_contiguous():
        return spatial(x.reshape(b * h, 1, w, c), conv).reshape(b, h, w, -1)
    return spatial(x, conv)


_ONEDNN_MIN_BATCH = 16  # below this, on one thread, PyTorch avoids oneDNN for 1x1 convolutions


def spatial(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """A k x k convolution of a channels-last (N, H, W, C) map, returned channels-last.

    The permuted view is an NCHW tensor in channels-last memory, which oneDNN convolves
    without reordering; its output permutes back to a contiguous (N, H, W, C) map.
    """
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class BiasFreeLayerNorm(nn.Module):
    """Scales each pixel's channel vector by its inverse standard deviation; no centring.

    In training mode with autograd on it runs compiled (:mod:`restormer.fused`): eagerly its
    gradient is a dozen passes over the map.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        if self.training and torch.is_grad_enabled():
            return compiled_bias_free_norm(x, self.weight, EPS)
        return bias_free_norm(x, self.weight, EPS)


class WithBiasLayerNorm(nn.Module):
    """Standard LayerNorm over the channels of each pixel, with affine weight and bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, EPS)


class LayerNorm(nn.Module):
    """LayerNorm over the channels of a channels-last map; ``body`` holds the variant."""

    def __init__(self, channels: int, kind: LayerNormType) -> None:
        super().__init__()
        self.body = (
            BiasFreeLayerNorm(channels) if kind == "BiasFree" else WithBiasLayerNorm(channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def attention_maps(q: Tensor, k: Tensor, temperature: Tensor, num_heads: int) -> Tensor:
    """MDTA's softmax(temperature * q_hat k_hat^T) per head, from (B, N, C) queries and keys.

    ``q_hat`` and ``k_hat`` are q and k L2-normalised over the N pixels. Normalising the
    C x C Gram matrix by the outer product of the norms gives the same map without writing
    normalised copies of q and k.
    """
    b, n, c = q.shape
    q = q.reshape(b, n, num_heads, c // num_heads).permute(0, 2, 3, 1)  # B, heads, ch, N
    k = k.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)  # B, heads, N, ch
    gram = q @ k
    q_norm = torch.linalg.vector_norm(q, dim=-1).clamp_min(NORM_EPS)
    k_norm = torch.linalg.vector_norm(k, dim=-2).clamp_min(NORM_EPS)
    logits = gram / (q_norm[..., :, None] * k_norm[..., None, :]) * temperature
    return logits.softmax(dim=-1)


def attention_output_matrix(attn: Tensor, project_out: nn.Conv2d) -> Tensor:
    """(B, C, C) matrix M with project_out(attn @ v) == v @ M^T + bias, per image.

    Folding the per-head maps into the output projection turns two products over all pixels
    into one.
    """
    heads, ch = attn.shape[1], attn.shape[2]
    w = project_out.weight.flatten(1).reshape(-1, heads, ch)  # C_out, heads, ch
    return torch.einsum("ohi,bhij->bohj", w, attn).flatten(2)


class MDTA(nn.Module):
    """Multi-Dconv head Transposed Attention: a C x C attention map per head, linear in pixels.

    Queries, keys and values come from a 1x1 conv and a 3x3 depthwise conv; queries and keys
    are L2-normalised over pixels and their product is scaled by a learned temperature.
    Works on channels-last (B, H, W, C) maps. With ``local_window`` set (TLC, see
    :mod:`restormer.local_attention`; :meth:`Restormer.set_local_attention` sets it per
    level), the statistics come from local windows instead of the whole map.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.local_window: LevelWindow | None = None  # a plain attribute: not in the state dict
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(
            dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias
        )
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        qkv = spatial(pointwise(x, self.qkv), self.qkv_dwconv).reshape(b, h * w, 3 * c)
        q, k, v = qkv.split(c, dim=-1)
        grid = None if self.local_window is None else self.local_window.grid(h, w)
        if grid is None:
            attn = attention_maps(q, k, self.temperature, self.num_heads)
            matrix = attention_output_matrix(attn, self.project_out)
            out = v @ matrix.transpose(1, 2)
        else:
            from restormer.local_attention import local_attention_output  # imports this module

            out = local_attention_output(
                q, k, v, (h, w), self.temperature, self.num_heads, self.project_out, grid
            )
        if self.project_out.bias is not None:
            out = out + self.project_out.bias
        return out.reshape(b, h, w, c)


class GDFN(nn.Module):
    """Gated-Dconv Feed-forward Network: GELU(dwconv(x1)) * dwconv(x2), then a 1x1 projection.

    Works on channels-last (B, H, W, C) maps. In training mode with autograd on the gate runs
    compiled (:mod:`restormer.fused`), one pass each way instead of six.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(
            hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias
        )
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        hidden = spatial(pointwise(x, self.project_in), self.dwconv)
        if self.training and torch.is_grad_enabled():
            return pointwise(compiled_gated_gelu(hidden), self.project_out)
        return pointwise(gated_gelu(hidden), self.project_out)


class TransformerBlock(nn.Module):
    """Pre-norm residual block: x + MDTA(LN(x)), then x + GDFN(LN(x)), on (B, H, W, C) maps."""

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
    """Shallow features: one 3x3 convolution from image channels to ``dim`` (channels-last)."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return spatial(x, self.proj)


def pixel_unshuffle(x: Tensor) -> Tensor:
    """(B, H, W, C) -> (B, H/2, W/2, 4C), channels ordered as ``nn.PixelUnshuffle(2)``'s."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, h // 2, w // 2, 4 * c)


def pixel_shuffle(x: Tensor) -> Tensor:
    """(B, H, W, 4C) -> (B, 2H, 2W, C), channels read as ``nn.PixelShuffle(2)`` reads them."""
    b, h, w, c4 = x.shape
    x = x.reshape(b, h, w, c4 // 4, 2, 2).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, 2 * h, 2 * w, c4 // 4)


class Downsample(nn.Module):
    """Halve the resolution, double the channels: 3x3 conv to C/2, then pixel-unshuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1, bias=False),
            nn.PixelUnshuffle(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return pixel_unshuffle(spatial(x, self.body[0]))


class Upsample(nn.Module):
    """Double the resolution, halve the channels: 3x3 conv to 2C, then pixel-shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * 2, kernel_size=3, padding=1, bias=False),
            nn.PixelShuffle(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return pixel_shuffle(spatial(x, self.body[0]))


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
        self.chunked_inference = True
        self.local_attention: LocalAttention | None = None  # TLC, see set_local_attention
        self.self_ensemble = False  # restore()'s ensemble default, see restormer.restore_defaults
        self.ensemble_transforms: str | None = None  # restormer.ensemble; None: by channels
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

    def stage_levels(self) -> list[tuple[nn.Sequential, int]]:
        """Every transformer stage with its level (0: full resolution, 3: the latent)."""
        stages = [(getattr(self, f"encoder_level{lv}"), lv - 1) for lv in range(1, NUM_LEVELS)]
        stages += [(self.latent, NUM_LEVELS - 1)]
        stages += [(getattr(self, f"decoder_level{lv}"), lv - 1) for lv in range(1, NUM_LEVELS)]
        return [*stages, (self.refinement, 0)]

    def set_local_attention(
        self, window: int | LocalAttention | None, *, stride_divisor: int | None = None
    ) -> None:
        """Switch TLC (test-time local converter) on with ``window`` pixels, or off (None/0).

        MDTA then computes its attention statistics over local windows of ``window``
        full-resolution pixels (scaled by 2^-level at each level) instead of the whole
        image, as the model saw them on its training crops; pick about 1.5x the training
        crop. ``stride_divisor`` (default 2) sets the window spacing, see
        :class:`restormer.local_attention.LocalAttention`. Images no larger than the window
        give exactly the global result. Applies to both forward paths; no weight changes.
        """
        from restormer.local_attention import DEFAULT_STRIDE_DIVISOR, LocalAttention, check_window

        if isinstance(window, LocalAttention):
            setting: LocalAttention | None = window
        else:
            size = check_window(window)
            divisor = DEFAULT_STRIDE_DIVISOR if stride_divisor is None else stride_divisor
            setting = None if size is None else LocalAttention(size, divisor)
        self.local_attention = setting
        for stage, level in self.stage_levels():
            for block in stage:
                block.attn.local_window = None if setting is None else setting.at_level(level)

    def forward(self, inp_img: Tensor) -> Tensor:
        """Restore a (B, C, H, W) batch; H and W must be multiples of 8.

        Inside, feature maps are channels-last (B, H, W, C): 1x1 convolutions become plain
        matrix products and LayerNorm works on contiguous channel vectors. Without autograd
        (``torch.no_grad`` or ``torch.inference_mode``) and with ``chunked_inference`` set,
        the same function is computed a few rows at a time (:mod:`restormer.chunked`):
        faster, and with a fraction of the memory.
        """
        if self.chunked_inference and not torch.is_grad_enabled():
            from restormer.chunked import chunked_forward  # imports this module

            return chunked_forward(self, inp_img)
        shallow = self.patch_embed(inp_img.permute(0, 2, 3, 1).contiguous())
        x, skips = shallow, []
        for encoder, down in self.encoder_stages():
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.latent(x)
        for (up, reduce, decoder), skip in zip(self.decoder_stages(), reversed(skips), strict=True):
            x = torch.cat([up(x), skip], dim=-1)
            if reduce is not None:
                x = pointwise(x, reduce)
            x = decoder(x)
        x = self.refinement(x)
        if self.dual_pixel_task:
            return spatial(x + pointwise(shallow, self.skip_conv), self.output).permute(0, 3, 1, 2)
        return spatial(x, self.output).permute(0, 3, 1, 2) + inp_img
