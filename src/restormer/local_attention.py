"""TLC, the test-time local converter (Chu et al., ECCV 2022), for MDTA's attention statistics.

MDTA's C x C attention map is a statistic of the whole feature map: Gram matrix and norms
summed over every pixel. Training sees crops (128-384 pixels), so at test time a large photo
feeds the same statistic from a far larger area than any the model was trained on. TLC
computes it over a local window around each position instead, with the window a little
larger than the training crop, so that test-time statistics look like training-time ones.
No weights change; the model is the same.

How a level's map of H x W pixels is covered (one axis at a time, the same rule on both):

* **Windows.** ``k`` pixels wide, starting every ``s`` pixels (``s = k / stride_divisor``,
  half a window by default); the last one is shifted back to end at the map's edge, so
  every window lies inside the map. A map no larger than ``k`` gets one window spanning it.
* **Per-window attention.** Each window gets its own attention matrix, computed exactly as
  the global one (Gram matrix and norms of q and k, temperature, softmax, folded into the
  output projection) but from its own pixels only.
* **Blend.** A pixel's attention matrix is the bilinear interpolation of the matrices of the
  (up to four) windows whose centres surround it; outside the outermost centres the nearest
  window's matrix is kept. The weights are tent functions of the window centres: they sum
  to 1 at every pixel and are zero outside their window, so no pixel uses statistics of a
  window it does not belong to, and the matrices vary smoothly (no seams). Since the output
  is linear in the matrix, the result is the blend of the window outputs ``v M_w^T``.
* **Scale.** The window is given in full-resolution pixels; level ``l`` (resolution
  ``2^-l``) uses ``ceil(window / 2^l)`` rounded up to a multiple of ``stride_divisor``.

Where one window spans the whole map (both axes), the global computation runs unchanged,
so TLC is exactly a no-op on images no larger than the window.

Two implementations compute the same function. :func:`local_attention_output` follows the
definition window by window and serves the autograd forward (and the tests).
:class:`CellStatistics` and :class:`LocalOutput` serve the chunked inference pass
(:mod:`restormer.chunked`): the window boundaries cut the map into cells of at most ``s x s``
pixels; pass 1 sums the Gram matrix and squared norms per cell, tile by tile (a tile: a
block of rows and columns of the map), so every pixel enters one sum as in the global pass;
a window's statistics are then sums of its cells. Pass 2 applies, a few whole rows at a
time, the four corner matrices of each pixel in one matrix product and interpolates the
results. Extra memory, while a block runs: the cell and window statistics, a few times
``(H/s + 2)(W/s + 2) C^2/heads`` floats, and the transposed matrices of the four corner
windows of each run of columns, about ``4 (W/s + 2) C^2`` floats. It does not grow with the
tile or the image beyond that: for a 1024 x 1024 image and a 384-pixel window, about 25 MB
at the full model's latent level (C = 384), where the forward pass itself needs about 12 GB.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from restormer.model import NORM_EPS, attention_maps, attention_output_matrix

__all__ = [
    "DEFAULT_STRIDE_DIVISOR",
    "MIN_WINDOW",
    "CellStatistics",
    "LevelWindow",
    "LocalAttention",
    "LocalOutput",
    "WindowAxis",
    "local_attention",
    "local_attention_output",
]

DEFAULT_STRIDE_DIVISOR = 2  # windows start every half window
MIN_WINDOW = 16  # full-resolution pixels: two pixels at the lowest level

Grid = tuple["WindowAxis", "WindowAxis"]  # (rows, columns)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LocalAttention:
    """TLC switched on: attention statistics over ``window``-pixel windows (full resolution).

    ``stride_divisor`` windows start per window length along each axis (at least 2, so that
    the blend weights of a window stay inside it); more means each pixel's statistics come
    from windows centred closer to it, at the cost of more, smaller cells and runs to batch
    (on the demo denoiser, 4 instead of 2 cost 10% more time for the same PSNR).
    """

    window: int
    stride_divisor: int = DEFAULT_STRIDE_DIVISOR

    def __post_init__(self) -> None:
        for name, value, least in (
            ("window", self.window, MIN_WINDOW),
            ("stride_divisor", self.stride_divisor, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"the TLC {name} must be an integer, got {value!r}")
            if value < least:
                raise ValueError(f"the TLC {name} must be at least {least}, got {value}")
            object.__setattr__(self, name, int(value))  # numpy integers become ints

    def at_level(self, level: int) -> LevelWindow:
        """The window at ``level`` (resolution 2^-level), in that level's pixels."""
        nominal = -(-self.window // 2**level)
        stride = -(-nominal // self.stride_divisor)
        return LevelWindow(stride * self.stride_divisor, stride)


@dataclass(frozen=True)
class LevelWindow:
    """Window size and stride at one level, in that level's pixels (size >= 2 * stride)."""

    size: int
    stride: int

    def grid(self, height: int, width: int) -> Grid | None:
        """The windows covering a ``height x width`` map, or None when one window spans it
        (then the global attention is computed, unchanged)."""
        rows = WindowAxis.make(height, self.size, self.stride)
        cols = WindowAxis.make(width, self.size, self.stride)
        if rows.count == 1 and cols.count == 1:
            return None
        return rows, cols


def check_window(window: object) -> int | None:
    """A TLC window as given by a user: None or 0 switch TLC off; else an integer >= 16.

    Raises ValueError with a one-line message for anything else.
    """
    if window is None or (
        not isinstance(window, bool) and isinstance(window, (int, np.integer)) and window == 0
    ):
        return None
    return LocalAttention(window).window  # type: ignore[arg-type]


@contextmanager
def local_attention(
    model: nn.Module, window: int | None, *, stride_divisor: int = DEFAULT_STRIDE_DIVISOR
) -> Iterator[None]:
    """Run ``model`` with TLC at ``window`` pixels (None: off) inside the block, then restore
    its previous setting. ``model`` must have ``set_local_attention`` (a Restormer)."""
    previous = model.local_attention
    model.set_local_attention(window, stride_divisor=stride_divisor)
    try:
        yield
    finally:
        model.set_local_attention(previous)


# --------------------------------------------------------------------------- window geometry


@dataclass(frozen=True)
class WindowAxis:
    """The windows along one axis of a map: their common extent and start positions."""

    size: int
    window: int  # extent of every window (== size when one window spans the axis)
    stride: int
    starts: tuple[int, ...]

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def make(size: int, window: int, stride: int) -> WindowAxis:
        """Windows every ``stride`` pixels, the last one shifted back to end at the edge."""
        if window >= size:
            return WindowAxis(size, size, size, (0,))
        if not 1 <= stride <= window // 2:
            raise ValueError(f"the stride must be in [1, window / 2], got {stride} for {window}")
        return WindowAxis(size, window, stride, (*range(0, size - window, stride), size - window))

    @property
    def count(self) -> int:
        return len(self.starts)

    @functools.cached_property
    def centres(self) -> np.ndarray:
        return np.asarray(self.starts, dtype=np.float64) + self.window / 2

    @functools.cached_property
    def interpolation(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, t) per position: its weights are ``1 - t`` for window ``lo`` and ``t`` for
        window ``lo + 1`` (t = 0 where a single window spans the axis).

        Positions are pixel centres (index + 0.5); ``lo`` is the last window whose centre
        is not after the position (clamped to a valid pair), ``t`` the position's linear
        coordinate between the two centres, clamped to [0, 1] beyond the outermost ones.
        """
        if self.count == 1:
            return np.zeros(self.size, dtype=np.int64), np.zeros(self.size)
        pos = np.arange(self.size) + 0.5
        centres = self.centres
        lo = np.clip(np.searchsorted(centres, pos, side="right") - 1, 0, self.count - 2)
        t = np.clip((pos - centres[lo]) / (centres[lo + 1] - centres[lo]), 0.0, 1.0)
        return lo.astype(np.int64), t

    @functools.cached_property
    def weights(self) -> np.ndarray:
        """(count, size) float64 blend weights: tents peaking at the window centres."""
        lo, t = self.interpolation
        weights = np.zeros((self.count, self.size))
        index = np.arange(self.size)
        np.add.at(weights, (lo, index), 1.0 - t)
        if self.count > 1:
            np.add.at(weights, (lo + 1, index), t)
        return weights

    def support(self, index: int) -> tuple[int, int]:
        """[first, stop) of the positions where window ``index`` has a nonzero weight."""
        nonzero = np.flatnonzero(self.weights[index])
        return int(nonzero[0]), int(nonzero[-1]) + 1

    @functools.cached_property
    def cell_bounds(self) -> tuple[int, ...]:
        """Boundaries of the cells: every window start and end (each window is whole cells)."""
        ends = (start + self.window for start in self.starts)
        return tuple(sorted({0, self.size, *self.starts, *ends}))

    @functools.cached_property
    def membership(self) -> np.ndarray:
        """(count, cells) 0/1 matrix: which cells make up each window."""
        bounds = self.cell_bounds
        member = np.zeros((self.count, len(bounds) - 1))
        for index, start in enumerate(self.starts):
            member[index, bounds.index(start) : bounds.index(start + self.window)] = 1.0
        return member

    def cells_in(self, start: int, stop: int) -> tuple[int, np.ndarray, np.ndarray, int]:
        """(first, index, padding, width): the cells that meet positions [start, stop), from
        cell ``first`` on, each cut to that range and padded to the widest part.

        ``index`` (cells * width) lists the positions of each cell's part, counted from
        ``start``, followed by filler (position 0); ``padding`` holds the filler slots,
        which callers zero. Tiles of a map call it with their columns.
        """
        bounds = np.asarray(self.cell_bounds)
        first, last = int(self.cell_of[start]), int(self.cell_of[stop - 1]) + 1
        lo = np.maximum(bounds[first:last], start)
        hi = np.minimum(bounds[first + 1 : last + 1], stop)
        index, padding, width = _padded_runs(hi - lo, lo - start)
        return first, index, padding, width

    @functools.cached_property
    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(lo, index, inverse, width): the axis cut into runs of constant ``lo`` of at most
        ``stride`` positions, for batching pass 2. ``index`` lists each run's positions
        padded to ``width``; ``inverse[p]`` is the slot of position ``p`` in ``index``."""
        lo, _ = self.interpolation
        piece = self.stride if self.count > 1 else self.size
        starts, lengths, seg_lo = [], [], []
        for run_start, run_stop in _runs(lo):
            for start in range(run_start, run_stop, piece):
                starts.append(start)
                lengths.append(min(piece, run_stop - start))
                seg_lo.append(lo[start])
        index, _, width = _padded_runs(np.asarray(lengths), np.asarray(starts))
        inverse = np.concatenate(
            [seg * width + np.arange(n) for seg, n in enumerate(lengths)]
        ).astype(np.int64)
        return np.asarray(seg_lo, dtype=np.int64), index, inverse, width

    @functools.cached_property
    def run_stop(self) -> np.ndarray:
        """For each position, the end of its run of constant ``lo``."""
        lo, _ = self.interpolation
        stops = np.empty(self.size, dtype=np.int64)
        for start, stop in _runs(lo):
            stops[start:stop] = stop
        return stops

    @functools.cached_property
    def cell_of(self) -> np.ndarray:
        """For each position, the index of its cell."""
        return np.searchsorted(np.asarray(self.cell_bounds), np.arange(self.size), "right") - 1


def _runs(values: np.ndarray) -> Iterator[tuple[int, int]]:
    """[start, stop) of each run of equal consecutive values."""
    edges = np.flatnonzero(np.diff(values)) + 1
    bounds = [0, *edges.tolist(), len(values)]
    return itertools.pairwise(bounds)


def _padded_runs(lengths: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Positions of runs (start, length) laid out at a common width; filler slots hold 0."""
    width = int(lengths.max())
    offsets = np.arange(width)
    positions = starts[:, None] + offsets[None, :]
    filler = offsets[None, :] >= lengths[:, None]
    positions[filler] = 0
    return positions.reshape(-1).astype(np.int64), np.flatnonzero(filler.reshape(-1)), width


# --------------------------------------------------------------------------- the definition


def local_attention_output(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    size: tuple[int, int],
    temperature: Tensor,
    num_heads: int,
    project_out: nn.Conv2d,
    grid: Grid,
) -> Tensor:
    """MDTA's attention branch with TLC, before the projection's bias: (B, H*W, C).

    ``q``, ``k``, ``v`` are (B, H*W, C) maps of ``size`` (H, W). Window by window: its
    attention maps from its own pixels (:func:`restormer.model.attention_maps`), folded into
    the output projection, applied to the pixels where its blend weight is nonzero and
    weighted by it. Differentiable; every pixel's statistics enter each window that holds
    it, so the chunked pass (:class:`CellStatistics`) is the one to use for large maps.
    """
    b, _, c = q.shape
    height, width = size
    rows, cols = grid
    q, k, v = (t.reshape(b, height, width, c) for t in (q, k, v))
    row_weights = torch.as_tensor(rows.weights, dtype=v.dtype, device=v.device)
    col_weights = torch.as_tensor(cols.weights, dtype=v.dtype, device=v.device)
    out = v.new_zeros(b, height, width, c)
    for i, top in enumerate(rows.starts):
        y0, y1 = rows.support(i)
        window_rows = slice(top, top + rows.window)
        for j, left in enumerate(cols.starts):
            x0, x1 = cols.support(j)
            window_cols = slice(left, left + cols.window)
            qw = q[:, window_rows, window_cols].reshape(b, -1, c)
            kw = k[:, window_rows, window_cols].reshape(b, -1, c)
            attn = attention_maps(qw, kw, temperature, num_heads)
            matrix_t = attention_output_matrix(attn, project_out).transpose(1, 2)[:, None]
            weight = row_weights[i, y0:y1, None, None] * col_weights[j, None, x0:x1, None]
            out[:, y0:y1, x0:x1] += weight * (v[:, y0:y1, x0:x1] @ matrix_t)
    return out.reshape(b, height * width, c)


# --------------------------------------------------------------------------- chunked pass


def fold_projection(attn: Tensor, project_out: Tensor) -> Tensor:
    """(..., C, C) matrices M with project_out(attn @ v) == v M^T, from per-head maps
    (..., heads, ch, ch) and the (C, C) projection weight; batched over leading dims."""
    heads, ch = attn.shape[-3], attn.shape[-2]
    w = project_out.reshape(-1, heads, ch).to(attn.dtype)
    return torch.einsum("ohi,...hij->...ohj", w, attn).flatten(-2)


class CellStatistics:
    """Pass 1 of the chunked TLC attention: Gram matrices and squared norms per cell.

    Tiles of the map arrive in any order (:meth:`add`); each tile's rows are cut at the cell
    boundaries and its columns gathered cell by cell, so one batched product gives the
    contribution to every cell the tile meets.
    """

    def __init__(
        self, grid: Grid, batch: int, heads: int, ch: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.rows, self.cols = grid
        self.dtype = dtype  # of the sums
        self.device = device
        n_rows, n_cols = len(self.rows.cell_bounds) - 1, len(self.cols.cell_bounds) - 1
        self.gram = torch.zeros(batch, heads, n_rows, n_cols, ch, ch, dtype=dtype, device=device)
        self.q_sq = torch.zeros(batch, heads, n_rows, n_cols, ch, dtype=dtype, device=device)
        self.k_sq = torch.zeros_like(self.q_sq)
        self._columns: dict[tuple[int, int], _CellColumns] = {}

    def _cells(self, left: int, stop: int) -> _CellColumns:
        """The column cells of columns [left, stop), as tensors; tiles repeat, so cached."""
        key = (left, stop)
        if key not in self._columns:
            first, index, padding, width = self.cols.cells_in(left, stop)
            self._columns[key] = _CellColumns(
                slice(first, first + len(index) // width),
                torch.as_tensor(index, device=self.device),
                torch.as_tensor(padding, device=self.device) if len(padding) else None,
                width,
            )
        return self._columns[key]

    @staticmethod
    def _gather(x: Tensor, cells: _CellColumns) -> Tensor:
        """(B, r, w, heads, ch) -> (B, heads, column cells, pixels of the cell, ch)."""
        b, r, _, heads, ch = x.shape
        gathered = x.permute(0, 3, 2, 1, 4).index_select(2, cells.index)  # B, heads, slots, r, ch
        if cells.padding is not None:
            gathered.index_fill_(2, cells.padding, 0)
        return gathered.view(b, heads, -1, cells.width * r, ch)

    def add(self, q: Tensor, k: Tensor, top: int, left: int = 0) -> None:
        """Add the tile of q and k at rows [top, top + r), columns [left, left + w); each
        (B, r, w, heads, ch)."""
        stop = top + q.shape[1]
        cells = self._cells(left, left + q.shape[2])
        bounds = self.rows.cell_bounds
        y = top
        while y < stop:
            cell = int(self.rows.cell_of[y])
            end = min(stop, bounds[cell + 1])
            qc = self._gather(q[:, y - top : end - top], cells)
            kc = self._gather(k[:, y - top : end - top], cells)
            self.gram[:, :, cell, cells.span] += qc.transpose(-2, -1) @ kc
            self.q_sq[:, :, cell, cells.span] += qc.square().sum(dim=-2, dtype=self.dtype)
            self.k_sq[:, :, cell, cells.span] += kc.square().sum(dim=-2, dtype=self.dtype)
            y = end

    def attention_maps(self, temperature: Tensor) -> Tensor:
        """Per-window attention maps (B, row windows, column windows, heads, ch, ch)."""
        rows = torch.as_tensor(self.rows.membership, dtype=self.dtype, device=self.gram.device)
        cols = torch.as_tensor(self.cols.membership, dtype=self.dtype, device=self.gram.device)
        gram = torch.einsum("ia,jb,zhabpq->zijhpq", rows, cols, self.gram)
        q_norm = torch.einsum("ia,jb,zhabp->zijhp", rows, cols, self.q_sq).sqrt()
        k_norm = torch.einsum("ia,jb,zhabp->zijhp", rows, cols, self.k_sq).sqrt()
        q_norm, k_norm = q_norm.clamp_min(NORM_EPS), k_norm.clamp_min(NORM_EPS)
        logits = gram / (q_norm[..., :, None] * k_norm[..., None, :]) * temperature.to(self.dtype)
        return logits.softmax(dim=-1)


@dataclass(frozen=True)
class _CellColumns:
    """The column cells a range of columns meets (see :meth:`WindowAxis.cells_in`)."""

    span: slice  # of the column cells
    index: Tensor
    padding: Tensor | None
    width: int


class LocalOutput:
    """Pass 2 of the chunked TLC attention: adds the blended ``v M_w^T`` to rows of x.

    Rows arrive top to bottom. A run of rows between two window centres shares its pair of
    row windows; for it, the columns are gathered in runs that share their pair of column
    windows, and one batched product with the stacked transposed matrices of the four
    corner windows gives the four outputs, which are then interpolated (columns, then rows).
    """

    def __init__(self, attn: Tensor, project_out: Tensor, grid: Grid, dtype: torch.dtype) -> None:
        self.attn = attn
        self.project_out = project_out
        self.rows, self.cols = grid
        self.dtype = dtype
        device = attn.device
        seg_lo, index, inverse, self._width = self.cols.segments
        self._seg_lo = torch.as_tensor(seg_lo, device=device)
        self._index = torch.as_tensor(index, device=device)
        self._inverse = torch.as_tensor(inverse, device=device)
        self._col_pairs = 2 if self.cols.count > 1 else 1
        self._row_pairs = 2 if self.rows.count > 1 else 1
        _, col_t = self.cols.interpolation
        t = torch.as_tensor(col_t, dtype=dtype, device=device)
        self._col_t = t[self._index].view(len(seg_lo), self._width, 1, 1, 1)
        self._row_t = torch.as_tensor(self.rows.interpolation[1], dtype=dtype, device=device)
        self._cached: tuple[int, Tensor] | None = None

    def _corner_matrices(self, lo: int) -> Tensor:
        """(B, segments, C, corners * C): transposed matrices of the corner windows of each
        column run, for the row-window pair (lo, lo + 1); corner order (row, column)."""
        if self._cached is not None and self._cached[0] == lo:
            return self._cached[1]
        col_index = [self._seg_lo, self._seg_lo + 1][: self._col_pairs]
        parts = []
        for row in range(lo, lo + self._row_pairs):
            matrices_t = fold_projection(self.attn[:, row], self.project_out).to(self.dtype)
            matrices_t = matrices_t.transpose(-2, -1)  # B, column windows, C_in, C_out
            parts += [matrices_t[:, index] for index in col_index]
        stacked = torch.cat(parts, dim=-1)
        self._cached = (lo, stacked)
        return stacked

    def attend(self, target: Tensor, v: Tensor, top: int) -> None:
        """target += attention output of rows [top, top + r); both (B, r, W, C), in place."""
        b, r, _, c = v.shape
        lo_rows, _ = self.rows.interpolation
        y, stop = top, top + r
        while y < stop:
            end = min(stop, int(self.rows.run_stop[y]))
            rows = end - y
            matrices = self._corner_matrices(int(lo_rows[y]))
            gathered = v[:, y - top : end - top].permute(0, 2, 1, 3).index_select(1, self._index)
            out = gathered.view(b, -1, self._width * rows, c) @ matrices
            out = out.view(b, -1, self._width, rows, self._row_pairs, self._col_pairs, c)
            if self._col_pairs == 2:
                out = torch.lerp(out[..., 0, :], out[..., 1, :], self._col_t)
            else:
                out = out[..., 0, :]
            if self._row_pairs == 2:
                out = torch.lerp(out[..., 0, :], out[..., 1, :], self._row_t[y:end, None])
            else:
                out = out[..., 0, :]
            out = out.reshape(b, -1, rows, c).index_select(1, self._inverse)  # B, W, rows, C
            target[:, y - top : end - top] += out.permute(0, 2, 1, 3)
            y = end
