"""Inference forward pass of a Restormer in row chunks: the same function, less memory traffic.

The transformer blocks dominate the cost, and most of their work is per pixel (LayerNorm,
1x1 convolutions, GELU gating) or needs only the neighbouring rows (3x3 depthwise
convolutions). Run over a few rows at a time, every intermediate stays in the CPU cache
instead of making a round trip through RAM per operation, and none of the wide
intermediates (3C channels for q/k/v, 2 x 2.66 C for the feed-forward) ever exists for the
whole image. The one global step, MDTA's C x C attention map, is a sum over pixels, so it is
accumulated chunk by chunk in a first pass and applied in a second. With TLC switched on
(:mod:`restormer.local_attention`), the same two passes accumulate it per local window.

Per block, with ``x`` updated in place:

1. attention statistics: Gram matrix q k^T and the squared norms of q and k, summed over
   chunks; then the attention maps, folded into the output projection (one C x C matrix);
2. attention output: v per chunk times that matrix, added to ``x``;
3. feed-forward: the whole GDFN per chunk, added to ``x``.

A chunk reads one row above and below itself (the depthwise convolution's halo) and its
result is written back only after the next chunk has read its halo, so in-place updates
never feed into a neighbour. LayerNorm's affine transform is folded into the 1x1
convolution that follows it. The result equals :class:`restormer.Restormer`'s forward up
to float rounding (tested against it and against the official golden outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restormer.local_attention import CellStatistics, Grid, LevelWindow, LocalOutput
from restormer.model import (
    EPS,
    NORM_EPS,
    Restormer,
    TransformerBlock,
    WithBiasLayerNorm,
    pixel_shuffle,
    pixel_unshuffle,
    pointwise,
    spatial,
)

DEFAULT_CHUNK_PIXELS = 4096  # about 2 MB of the widest intermediate at the top level
Normalise = Callable[[Tensor], Tensor]


def _normalise_bias_free(x: Tensor) -> Tensor:
    return x * torch.rsqrt(x.var(dim=-1, keepdim=True, unbiased=False) + EPS)


@dataclass(frozen=True)
class _Pointwise:
    """A 1x1 convolution of channels-last maps: (out, in, 1, 1) weight, optional bias."""

    weight: Tensor
    bias: Tensor | None

    def __call__(self, x: Tensor) -> Tensor:
        # oneDNN's 1x1 convolution beats a BLAS matrix product for these narrow shapes
        return F.conv2d(x.permute(0, 3, 1, 2), self.weight, self.bias).permute(0, 2, 3, 1)


def _norm_then_pointwise(norm: nn.Module, conv: nn.Conv2d) -> tuple[Normalise, _Pointwise]:
    """LayerNorm followed by a 1x1 convolution, split into (normalise, pointwise).

    The with-bias LayerNorm keeps its affine transform, which ``F.layer_norm`` applies in the
    same pass. The bias-free one has only a scale, folded into the convolution's weight
    (W (g * n) == (W g) n), leaving a plain normalisation. Folding a LayerNorm bias would give
    the convolution a bias, and a matrix product with a bias costs a pass more than one
    without.
    """
    weight = conv.weight
    if isinstance(norm, WithBiasLayerNorm):

        def normalise(x: Tensor) -> Tensor:
            return F.layer_norm(x, norm.weight.shape, norm.weight, norm.bias, EPS)

        return normalise, _Pointwise(weight, conv.bias)
    return _normalise_bias_free, _Pointwise(weight * norm.weight[:, None, None], conv.bias)


@dataclass(frozen=True)
class _Depthwise:
    weight: Tensor
    bias: Tensor | None

    def __call__(self, x: Tensor) -> Tensor:
        """3x3 depthwise convolution of (B, rows, W, C); zero padding on all sides."""
        out = F.conv2d(x.permute(0, 3, 1, 2), self.weight, self.bias, padding=1,
                       groups=self.weight.shape[0])  # fmt: skip
        return out.permute(0, 2, 3, 1)


@dataclass(frozen=True)
class _Block:
    """One transformer block's weights, prepared for chunked inference."""

    norm1: Normalise
    qkv: _Pointwise
    qkv_dw: _Depthwise
    temperature: Tensor
    heads: int
    project_out: Tensor  # (C, C)
    project_out_bias: Tensor | None
    norm2: Normalise
    ffn_in: _Pointwise
    ffn_dw: _Depthwise
    ffn_out: _Pointwise

    @staticmethod
    def prepare(block: TransformerBlock) -> _Block:
        attn, ffn = block.attn, block.ffn
        norm1, qkv = _norm_then_pointwise(block.norm1.body, attn.qkv)
        norm2, ffn_in = _norm_then_pointwise(block.norm2.body, ffn.project_in)
        return _Block(
            norm1=norm1,
            qkv=qkv,
            qkv_dw=_Depthwise(attn.qkv_dwconv.weight, attn.qkv_dwconv.bias),
            temperature=attn.temperature,
            heads=attn.num_heads,
            project_out=attn.project_out.weight.flatten(1),
            project_out_bias=attn.project_out.bias,
            norm2=norm2,
            ffn_in=ffn_in,
            ffn_dw=_Depthwise(ffn.dwconv.weight, ffn.dwconv.bias),
            ffn_out=_Pointwise(ffn.project_out.weight, ffn.project_out.bias),
        )


@dataclass(frozen=True)
class _Chunk:
    """Rows [start, stop) of the image, computed from rows [lo, hi) (one-row halo)."""

    start: int
    stop: int
    lo: int
    hi: int

    def valid(self, t: Tensor) -> Tensor:
        """The rows of a halo-including result that belong to this chunk."""
        return t[:, self.start - self.lo : self.stop - self.lo]


def _chunks(height: int, rows: int) -> Iterator[_Chunk]:
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        yield _Chunk(start, stop, max(start - 1, 0), min(stop + 1, height))


def _rows_per_chunk(height: int, width: int, chunk_pixels: int) -> int:
    rows = max(1, chunk_pixels // max(width, 1))
    if rows >= height:
        return height
    return -(-height // -(-height // rows))  # even chunk heights


def _qk_chunks(
    block: _Block, x: Tensor, rows: int, values: Tensor
) -> Iterator[tuple[_Chunk, Tensor, Tensor]]:
    """Pass 1's loop: (chunk, q, k) per chunk, q and k as (B, pixels, heads, ch) views;
    stores v in ``values`` for the second pass."""
    b, height, _, c = x.shape
    ch = c // block.heads
    for chunk in _chunks(height, rows):
        qkv = chunk.valid(block.qkv_dw(block.qkv(block.norm1(x[:, chunk.lo : chunk.hi]))))
        values[:, chunk.start : chunk.stop] = qkv[..., 2 * c :]
        qk = qkv.reshape(b, -1, 3, block.heads, ch)
        yield chunk, qk[:, :, 0], qk[:, :, 1]


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _attention_statistics(block: _Block, x: Tensor, rows: int, values: Tensor) -> Tensor:
    """Pass 1: the (B, C, C) matrix M with attention branch output = v M^T (+ bias).

    Computes q, k and v chunk by chunk, sums the Gram matrices q^T k and the squared norms
    of q and k over all pixels, and stores v in ``values`` for the second pass.
    """
    b, _, _, c = x.shape
    ch = c // block.heads
    acc = _sum_dtype(x.dtype)
    gram = x.new_zeros(b, block.heads, ch, ch, dtype=acc)
    q_sq = x.new_zeros(b, block.heads, ch, dtype=acc)
    k_sq = x.new_zeros(b, block.heads, ch, dtype=acc)
    for _, q, k in _qk_chunks(block, x, rows, values):
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # B, heads, P, ch
        gram += q.transpose(-2, -1) @ k
        q_sq += q.square().sum(dim=-2, dtype=acc)
        k_sq += k.square().sum(dim=-2, dtype=acc)
    q_norm = q_sq.sqrt().clamp_min(NORM_EPS)
    k_norm = k_sq.sqrt().clamp_min(NORM_EPS)
    attn = (gram / (q_norm[..., :, None] * k_norm[..., None, :]) * block.temperature).softmax(-1)
    w = block.project_out.reshape(c, block.heads, ch).to(acc)
    return torch.einsum("ohi,bhij->bohj", w, attn).flatten(2).to(x.dtype)


def _local_attention_statistics(
    block: _Block, x: Tensor, rows: int, values: Tensor, grid: Grid
) -> LocalOutput:
    """Pass 1 with TLC: statistics per cell of the window grid, summed into per-window
    attention maps; returns what applies them in pass 2."""
    b, _, width, c = x.shape
    ch = c // block.heads
    acc = _sum_dtype(x.dtype)
    cells = CellStatistics(grid, b, block.heads, ch, acc, x.device)
    for chunk, q, k in _qk_chunks(block, x, rows, values):
        shape = (b, chunk.stop - chunk.start, width, block.heads, ch)
        cells.add(q.reshape(shape), k.reshape(shape), chunk.start)
    return LocalOutput(cells.attention_maps(block.temperature), block.project_out, grid, x.dtype)


def _run_block(
    block: _Block, x: Tensor, chunk_pixels: int, values: Tensor, window: LevelWindow | None = None
) -> None:
    """x <- block(x), in place, chunk by chunk; ``values`` is scratch of x's shape.

    The second pass adds the attention output to rows just before the feed-forward first
    reads them, so both updates of a row happen while it is in cache. A chunk's feed-forward
    sum is written only after the next chunk has read its input rows, so every chunk sees
    its halo rows as they were before the feed-forward. With a TLC ``window`` whose grid has
    more than one window, the attention statistics are local (:mod:`restormer.local_attention`).
    """
    b, height, width, c = x.shape
    rows = _rows_per_chunk(height, width, chunk_pixels)
    grid = None if window is None else window.grid(height, width)
    attend: Callable[[Tensor, Tensor, int], None]
    if grid is None:
        matrix_t = _attention_statistics(block, x, rows, values).transpose(1, 2)

        def attend(target: Tensor, v: Tensor, top: int) -> None:
            target.view(b, -1, c).baddbmm_(v.view(b, -1, c), matrix_t)

    else:
        attend = _local_attention_statistics(block, x, rows, values, grid).attend
    attended = 0  # rows [0, attended) hold x + attention

    def attend_up_to(stop: int) -> None:
        nonlocal attended
        if stop > attended:
            target = x[:, attended:stop]  # a view: updated in place
            if block.project_out_bias is not None:
                target += block.project_out_bias
            attend(target, values[:, attended:stop], attended)
            attended = stop

    pending: tuple[_Chunk, Tensor] | None = None
    for chunk in _chunks(height, rows):
        attend_up_to(chunk.hi)
        normalised = block.norm2(x[:, chunk.lo : chunk.hi])
        if pending is not None:
            x[:, pending[0].start : pending[0].stop] += pending[1]
        hidden = chunk.valid(block.ffn_dw(block.ffn_in(normalised)))
        gate, value = hidden.chunk(2, dim=-1)
        pending = (chunk, block.ffn_out(F.gelu(gate).mul_(value)))
    if pending is not None:
        x[:, pending[0].start : pending[0].stop] += pending[1]


class ChunkedRestormer:
    """A Restormer's inference forward pass, chunked; built from (and sharing) its weights.

    Call it like the model: (B, C, H, W) in, (B, C_out, H, W) out, H and W multiples of 8.
    Build it again after the model's weights change (:func:`chunked_forward` does).
    """

    def __init__(self, model: Restormer, chunk_pixels: int = DEFAULT_CHUNK_PIXELS) -> None:
        self.model = model
        self.chunk_pixels = chunk_pixels
        with torch.no_grad():
            self._blocks = {
                id(block): _Block.prepare(block)
                for block in model.modules()
                if isinstance(block, TransformerBlock)
            }

    def _stage(self, stage: nn.Sequential, x: Tensor) -> Tensor:
        values = torch.empty_like(x)
        for block in stage:
            window = block.attn.local_window  # TLC, read per call: it may change any time
            _run_block(self._blocks[id(block)], x, self.chunk_pixels, values, window)
        return x

    @torch.inference_mode()
    def __call__(self, inp_img: Tensor) -> Tensor:
        m = self.model
        shallow = m.patch_embed(inp_img.permute(0, 2, 3, 1).contiguous())
        x = shallow.clone() if m.dual_pixel_task else shallow
        skips = []
        for encoder, down in m.encoder_stages():
            x = self._stage(encoder, x)
            skips.append(x)
            x = pixel_unshuffle(spatial(x, down.body[0]))
        x = self._stage(m.latent, x)
        for up, reduce, decoder in m.decoder_stages():
            x = torch.cat([pixel_shuffle(spatial(x, up.body[0])), skips.pop()], dim=-1)
            if reduce is not None:
                x = pointwise(x, reduce)
            x = self._stage(decoder, x)
        x = self._stage(m.refinement, x)
        if m.dual_pixel_task:
            x += pointwise(shallow, m.skip_conv)
            return spatial(x, m.output).permute(0, 3, 1, 2)
        return spatial(x, m.output).permute(0, 3, 1, 2) + inp_img


def _weights_state(model: Restormer) -> tuple[tuple[int, int, torch.dtype], ...]:
    """Identifies the current weights: storage, in-place version counter and dtype of each."""
    return tuple((p.data_ptr(), p._version, p.dtype) for p in model.parameters())


def chunked_forward(model: Restormer, inp_img: Tensor) -> Tensor:
    """``model(inp_img)`` computed chunk by chunk, reusing the prepared weights while the
    model's weights stay the same (a change of values, device or dtype rebuilds them)."""
    state = _weights_state(model)
    cached = getattr(model, "_chunked", None)
    if cached is None or cached[0] != state:
        cached = (state, ChunkedRestormer(model))
        model._chunked = cached  # not a Module attribute: never in the state dict
    return cached[1](inp_img)
