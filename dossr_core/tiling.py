"""Overlapping tiles and their seamless blend, for denoising latents larger than the model's size.

The denoiser runs on equal-sized tiles; each tile's output is weighted by a
window that is 0 near the tile's inner edges and rises smoothly to 1 (it stays
1 along the image border), and the weighted outputs are normalised. The
result is one full-size x0_hat, so the solver keeps a single state and a
single noise field for the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass(frozen=True)
class Tile:
    """A rectangle of the latent: rows ``y:y+h``, columns ``x:x+w``."""

    y: int
    x: int
    h: int
    w: int

    def of(self, t: torch.Tensor) -> torch.Tensor:
        return t[..., self.y:self.y + self.h, self.x:self.x + self.w]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of length ``min(tile, size)`` covering ``size``, overlapping by >= ``overlap``.

    The tiles are spread evenly, so the last one ends exactly at ``size``.
    """
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"need tile > overlap >= 0, got tile {tile}, overlap {overlap}")
    if size <= tile:
        return [0]
    count = math.ceil((size - tile) / (tile - overlap)) + 1
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Row-major tiles of one common size covering a ``height x width`` latent."""
    th, tw = min(tile, height), min(tile, width)
    return [Tile(y, x, th, tw) for y in tile_starts(height, tile, overlap)
            for x in tile_starts(width, tile, overlap)]


def _ramp(length: int, start: int, size: int, overlap: int) -> torch.Tensor:
    """1-D window of a tile at ``start`` on the sides that lie inside the image.

    Zero over the outer quarter of the overlap, where a tile's own border
    effects (zero padding, missing context) are strongest, a raised cosine over
    its middle half, one beyond. Two tiles overlapping by exactly ``overlap``
    get complementary weights.
    """
    w = torch.ones(length, dtype=torch.float64)
    if overlap < 4:
        return w
    d = torch.arange(min(overlap, length), dtype=torch.float64) + 0.5
    ramp = 0.5 - 0.5 * torch.cos(math.pi * ((d - overlap / 4) / (overlap / 2)).clamp(0, 1))
    if start > 0:
        w[:len(ramp)] = torch.minimum(w[:len(ramp)], ramp)
    if start + length < size:
        w[-len(ramp):] = torch.minimum(w[-len(ramp):], ramp.flip(0))
    return w


def blend_window(tile: Tile, height: int, width: int, overlap: int) -> torch.Tensor:
    """The tile's (h, w) blending weights."""
    return _ramp(tile.h, tile.y, height, overlap)[:, None] * _ramp(tile.w, tile.x, width, overlap)[None, :]


def tiled_map(fn: Callable[[torch.Tensor, Sequence[Tile]], torch.Tensor], x: torch.Tensor,
              tiles: Sequence[Tile], overlap: int, batch_tiles: int = 1) -> torch.Tensor:
    """Blend ``fn`` applied to tiles of ``x`` (B, C, H, W) into one full-size result.

    ``fn(xs, chunk)`` gets up to ``batch_tiles`` tiles stacked along the batch
    (tile-major: all of tile 1's batch, then tile 2's, ...) and returns outputs
    of the same shape.
    """
    height, width = x.shape[-2:]
    out = torch.zeros_like(x, dtype=torch.float32)
    norm = torch.zeros((height, width), dtype=torch.float32, device=x.device)
    for first in range(0, len(tiles), max(1, batch_tiles)):
        chunk = tiles[first:first + max(1, batch_tiles)]
        ys = fn(torch.cat([t.of(x) for t in chunk]), chunk).split(x.shape[0])
        for t, y in zip(chunk, ys):
            window = blend_window(t, height, width, overlap).to(out)
            t.of(out).add_(y.float() * window)
            t.of(norm).add_(window)
    return (out / norm).to(x.dtype)
