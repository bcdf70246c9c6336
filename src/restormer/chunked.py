"""Inference forward pass of a Restormer in tiles: the same function, less memory traffic.

The transformer blocks dominate the cost, and most of their work is per pixel (LayerNorm,
1x1 convolutions, GELU gating) or needs only the neighbouring pixels (3x3 depthwise
convolutions). Run over a tile of a few thousand pixels at a time, every intermediate stays
in the CPU cache instead of making a round trip through RAM per operation, and none of the
wide intermediates (3C channels for q/k/v, 2 x 2.66 C for the feed-forward) ever exists for
the whole image. The one global step, MDTA's C x C attention map, is a sum over pixels, so
it is accumulated tile by tile in a first pass and applied in a second. With TLC switched on
(:mod:`restormer.local_attention`), the same two passes accumulate it per local window.

Tiles: a map is cut into bands of rows and every band into the same pieces of columns, so
that a tile holds about ``chunk_pixels`` pixels whatever the map's shape, in a square where
the map allows (the fewest halo pixels, see below). What must fit in cache is the tile's
intermediates: with bands of whole rows only, a wide image (rows of 4000 pixels or more)
ran two to three times slower per pixel than a square one.

Per block, with ``x`` updated in place:

1. attention statistics, tile by tile: the Gram matrix q k^T and the squared norms of q
   and k, summed; then the attention maps, folded into the output projection (one C x C
   matrix). v is stored for the second pass;
2. new values, tile by tile: x plus the attention output (v times that matrix), plus the
   whole GDFN of that sum.

A tile reads one pixel more on each side where the map has one (the depthwise convolutions'
halo) and computes the attention output for those pixels as well, so its result depends on
the block's input alone. Results wait in a buffer of their band and are written to ``x``
only when no tile still to run reads the old values there: the band's pieces read each
other's columns, and the next band reads its last row, so a band's new values are written
while the next band runs, piece by piece, once that band's tiles have read them. With TLC,
pass 2's attention output is computed for a band's whole rows at once (see
:class:`_LocalAttend`). LayerNorm's affine transform is folded into the 1x1 convolution that
follows it. The result equals :class:`restormer.Restormer`'s forward up to float rounding
(tested against it and against the official golden outputs).
"""

from __future__ import annotations

import math
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

DEFAULT_CHUNK_PIXELS = 4096  # per tile; its GDFN hidden layer is then 4 MB at 48 channels
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


# --------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class _Span:
    """Positions [start, stop) along one axis, read as [lo, hi): with the neighbour on each
    side that the map has (the 3x3 depthwise convolution's halo)."""

    start: int
    stop: int
    lo: int
    hi: int

    @property
    def padding(self) -> int:
        """The depthwise convolution's zero padding along this axis: none where both halo
        positions exist (its output is then exactly [start, stop)), else one."""
        return 0 if self.start - self.lo == self.hi - self.stop == 1 else 1

    @property
    def valid(self) -> slice:
        """Where [start, stop) lies in the depthwise convolution's output."""
        first = self.start - self.lo - 1 + self.padding
        return slice(first, first + self.stop - self.start)

    @property
    def inner(self) -> slice:
        """Where [start, stop) lies in [lo, hi)."""
        return slice(self.start - self.lo, self.stop - self.lo)


def _spans(size: int, step: int) -> list[_Span]:
    """[0, size) cut into spans of ``step`` positions (the last one may be shorter)."""
    return [
        _Span(start, min(start + step, size), max(start - 1, 0), min(start + step + 1, size))
        for start in range(0, size, step)
    ]


def _even_step(size: int, most: int) -> int:
    """A step of at most ``most`` (at least 1) that cuts ``size`` into as few spans as
    possible, all as long as the first but the last, which is at most as long."""
    most = max(most, 1)
    if most >= size:
        return size
    return -(-size // -(-size // most))


@dataclass(frozen=True)
class _Tile:
    """Rows ``rows`` and columns ``cols`` of a (B, H, W, C) map."""

    rows: _Span
    cols: _Span

    def read(self, t: Tensor) -> Tensor:
        """The tile with its halo: rows [lo, hi) and columns [lo, hi) of ``t``."""
        return t[:, self.rows.lo : self.rows.hi, self.cols.lo : self.cols.hi]

    def region(self, t: Tensor) -> Tensor:
        """The tile itself: rows and columns [start, stop) of ``t``."""
        return t[:, self.rows.start : self.rows.stop, self.cols.start : self.cols.stop]

    def inner(self, t: Tensor) -> Tensor:
        """The tile within ``t``, a map of the tile with its halo (as :meth:`read` gives)."""
        return t[:, self.rows.inner, self.cols.inner]


@dataclass(frozen=True)
class _Tiling:
    """A map cut into bands of rows, and every band into the same pieces of columns."""

    bands: list[_Span]
    pieces: list[_Span]

    @staticmethod
    def of(height: int, width: int, chunk_pixels: int) -> _Tiling:
        """Tiles of at most about ``chunk_pixels`` pixels, as square as the map allows.

        Square tiles have the fewest halo pixels for their size. A map no wider than
        ``sqrt(chunk_pixels)`` gets bands of whole rows (one piece each, no column halo);
        a map lower than that, bands of its height. Tiles along an axis have the same
        length but the last, which may be shorter.
        """
        chunk_pixels = max(chunk_pixels, 1)
        side = math.isqrt(chunk_pixels)
        full_rows = chunk_pixels // max(width, 1)
        if full_rows >= min(side, height):
            return _Tiling(_spans(height, _even_step(height, full_rows)), _spans(width, width))
        rows = _even_step(height, side)
        cols = _even_step(width, chunk_pixels // rows)
        return _Tiling(_spans(height, rows), _spans(width, cols))

    def tiles(self) -> Iterator[_Tile]:
        """Every tile, band by band, top to bottom; in a band left to right."""
        for band in self.bands:
            for piece in self.pieces:
                yield _Tile(band, piece)

    def read_from(self, piece: int) -> int:
        """The first column that pieces ``piece`` and later read (the width if none)."""
        return self.pieces[piece].lo if piece < len(self.pieces) else self.pieces[-1].stop


class _PendingBand:
    """A band's new values, held in a buffer until no tile still to run reads the old ones
    (see :func:`_run_block`); columns [0, written) are in the map already."""

    def __init__(self, rows: _Span, buffer: Tensor) -> None:
        self.rows = rows
        self.buffer = buffer[:, : rows.stop - rows.start]
        self.written = 0

    def hold(self, cols: _Span) -> Tensor:
        """The buffer's part for the band's columns ``cols``, to write into."""
        return self.buffer[:, :, cols.start : cols.stop]

    def write_into(self, x: Tensor, stop: int) -> None:
        """Write the held columns before ``stop`` into the map ``x``."""
        if stop > self.written:
            rows = slice(self.rows.start, self.rows.stop)
            x[:, rows, self.written : stop] = self.buffer[:, :, self.written : stop]
            self.written = stop


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class _Depthwise:
    weight: Tensor
    bias: Tensor | None

    def __call__(self, x: Tensor, tile: _Tile) -> Tensor:
        """3x3 depthwise convolution, zero-padded at the map's edges, of a tile read with its
        halo: (B, rows with halo, columns with halo, C) in, (B, rows, columns, C) out."""
        padding = (tile.rows.padding, tile.cols.padding)
        out = F.conv2d(x.permute(0, 3, 1, 2), self.weight, self.bias, padding=padding,
                       groups=self.weight.shape[0])  # fmt: skip
        return out.permute(0, 2, 3, 1)[:, tile.rows.valid, tile.cols.valid]


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


def _qk_tiles(
    block: _Block, x: Tensor, tiling: _Tiling, values: Tensor
) -> Iterator[tuple[_Tile, Tensor, Tensor]]:
    """Pass 1's loop: (tile, q, k) per tile, q and k as (B, rows, cols, heads, ch) views;
    stores v in ``values`` for the second pass."""
    c = x.shape[-1]
    for tile in tiling.tiles():
        qkv = block.qkv_dw(block.qkv(block.norm1(tile.read(x))), tile)
        tile.region(values).copy_(qkv[..., 2 * c :])
        qk = qkv[..., : 2 * c].unflatten(-1, (2, block.heads, c // block.heads))
        yield tile, qk[..., 0, :, :], qk[..., 1, :, :]


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _attention_statistics(block: _Block, x: Tensor, tiling: _Tiling, values: Tensor) -> Tensor:
    """Pass 1: the (B, C, C) matrix M with attention branch output = v M^T (+ bias).

    Computes q, k and v tile by tile, sums the Gram matrices q^T k and the squared norms
    of q and k over all pixels, and stores v in ``values`` for the second pass.
    """
    b, _, _, c = x.shape
    ch = c // block.heads
    acc = _sum_dtype(x.dtype)
    gram = x.new_zeros(b, block.heads, ch, ch, dtype=acc)
    q_sq = x.new_zeros(b, block.heads, ch, dtype=acc)
    k_sq = x.new_zeros(b, block.heads, ch, dtype=acc)
    for _, q, k in _qk_tiles(block, x, tiling, values):
        q, k = q.flatten(1, 2).transpose(1, 2), k.flatten(1, 2).transpose(1, 2)  # B, heads, P, ch
        gram += q.transpose(-2, -1) @ k
        q_sq += q.square().sum(dim=-2, dtype=acc)
        k_sq += k.square().sum(dim=-2, dtype=acc)
    q_norm = q_sq.sqrt().clamp_min(NORM_EPS)
    k_norm = k_sq.sqrt().clamp_min(NORM_EPS)
    attn = (gram / (q_norm[..., :, None] * k_norm[..., None, :]) * block.temperature).softmax(-1)
    w = block.project_out.reshape(c, block.heads, ch).to(acc)
    return torch.einsum("ohi,bhij->bohj", w, attn).flatten(2).to(x.dtype)


def _local_attention_statistics(
    block: _Block, x: Tensor, tiling: _Tiling, values: Tensor, grid: Grid
) -> LocalOutput:
    """Pass 1 with TLC: statistics per cell of the window grid, summed into per-window
    attention maps; returns what applies them in pass 2."""
    b, _, _, c = x.shape
    cells = CellStatistics(grid, b, block.heads, c // block.heads, _sum_dtype(x.dtype), x.device)
    for tile, q, k in _qk_tiles(block, x, tiling, values):
        cells.add(q, k, tile.rows.start, tile.cols.start)
    return LocalOutput(cells.attention_maps(block.temperature), block.project_out, grid, x.dtype)


Attend = Callable[[_Tile], Tensor]


def _global_attend(block: _Block, x: Tensor, values: Tensor, matrix_t: Tensor) -> Attend:
    """Pass 2's attention, global: per tile, x + v M^T (+ bias) over the tile with its halo."""
    b, _, _, c = x.shape
    bias = block.project_out_bias

    def attend(tile: _Tile) -> Tensor:
        inp, v = tile.read(x), tile.read(values)
        out = torch.baddbmm(inp.reshape(b, -1, c), v.reshape(b, -1, c), matrix_t).view(inp.shape)
        return out if bias is None else out.add_(bias)

    return attend


class _LocalAttend:
    """Pass 2's attention with TLC: per tile, x + the blended attention output (+ bias)
    over the tile with its halo, as a view of that sum computed for the band's whole rows.

    :class:`LocalOutput` batches its products over runs of columns between window centres;
    a tile's columns, halo included, would cut those runs into uneven parts, and padding
    them to a common width would waste up to half the product. So the band's rows (with
    their halo rows) are computed once, whole, ``step`` rows at a time.
    """

    def __init__(
        self, block: _Block, x: Tensor, values: Tensor, local: LocalOutput, step: int
    ) -> None:
        self.bias = block.project_out_bias
        self.x, self.values, self.local, self.step = x, values, local, step
        self._band: tuple[_Span, Tensor] | None = None

    def _rows(self, rows: _Span) -> Tensor:
        """x + attention output of the whole rows [lo, hi)."""
        out = self.x[:, rows.lo : rows.hi].clone()
        if self.bias is not None:
            out += self.bias
        for top in range(rows.lo, rows.hi, self.step):
            stop = min(top + self.step, rows.hi)
            part = out[:, top - rows.lo : stop - rows.lo]
            self.local.attend(part, self.values[:, top:stop], top)
        return out

    def __call__(self, tile: _Tile) -> Tensor:
        if self._band is None or self._band[0] != tile.rows:
            self._band = (tile.rows, self._rows(tile.rows))
        return self._band[1][:, :, tile.cols.lo : tile.cols.hi]


def _attention_pass(
    block: _Block,
    x: Tensor,
    tiling: _Tiling,
    values: Tensor,
    window: LevelWindow | None,
    chunk_pixels: int,
) -> Attend:
    """Pass 1, global or with TLC (a ``window`` whose grid has more than one window).

    Returns pass 2's attention: per tile, ``x`` plus the attention branch's output over the
    tile with its halo, a (B, rows, cols, C) map that shares no memory with ``x``. It reads
    ``x``'s values for a tile no later than when called for it.
    """
    height, width = x.shape[1:3]
    grid = None if window is None else window.grid(height, width)
    if grid is None:
        matrix_t = _attention_statistics(block, x, tiling, values).transpose(1, 2)
        return _global_attend(block, x, values, matrix_t)
    local = _local_attention_statistics(block, x, tiling, values, grid)
    return _LocalAttend(block, x, values, local, step=max(1, chunk_pixels // width))


def _feed_forward(block: _Block, attended: Tensor, tile: _Tile, out: Tensor) -> None:
    """out = attended + GDFN(attended) on the tile; ``attended`` holds the tile with its halo."""
    hidden = block.ffn_dw(block.ffn_in(block.norm2(attended)), tile)
    gate, value = hidden.chunk(2, dim=-1)
    gated = F.gelu(gate.contiguous()).mul_(value)  # see fused.gated_gelu: GELU of a view is slow
    torch.add(tile.inner(attended), block.ffn_out(gated), out=out)


def _run_block(
    block: _Block, x: Tensor, chunk_pixels: int, values: Tensor, window: LevelWindow | None = None
) -> None:
    """x <- block(x), in place, tile by tile; ``values`` is scratch of x's shape.

    Pass 2 computes a tile's new values from the block's input alone (x, and v from pass
    1), so they must not reach ``x`` while a tile still to run reads the old ones there:
    the band's later pieces read the column next to each piece, the next band reads the
    band's last row. So they wait in a buffer of their band, and a band is written into
    ``x`` while the next band runs: after each of its tiles has read its input, the columns
    that no later tile of it reads. With a TLC ``window`` whose grid has more than one
    window, the attention statistics are local (:mod:`restormer.local_attention`).
    """
    b, height, width, c = x.shape
    tiling = _Tiling.of(height, width, chunk_pixels)
    attend = _attention_pass(block, x, tiling, values, window, chunk_pixels)
    band_rows = tiling.bands[0].stop
    buffers = [x.new_empty(b, band_rows, width, c) for _ in range(min(2, len(tiling.bands)))]
    previous: _PendingBand | None = None
    for index, band in enumerate(tiling.bands):
        current = _PendingBand(band, buffers[index % len(buffers)])
        for piece_index, piece in enumerate(tiling.pieces):
            tile = _Tile(band, piece)
            attended = attend(tile)
            if previous is not None:
                previous.write_into(x, tiling.read_from(piece_index + 1))
            _feed_forward(block, attended, tile, current.hold(piece))
        previous = current
    if previous is not None:
        previous.write_into(x, width)


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
