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

    def scaled(self, k: int) -> "Tile":
        """The same rectangle on a grid ``k`` times finer."""
        return Tile(self.y * k, self.x * k, self.h * k, self.w * k)


def tile_count(size: int, tile: int, overlap: int) -> int:
    """The fewest tiles of length ``tile`` that cover ``size`` while overlapping by >= ``overlap``."""
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"need tile > overlap >= 0, got tile {tile}, overlap {overlap}")
    return 1 if size <= tile else math.ceil((size - overlap) / (tile - overlap))


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of length ``min(tile, size)`` covering ``size``, overlapping by >= ``overlap``.

    The tiles are spread evenly, so the last one ends exactly at ``size``.
    """
    count = tile_count(size, tile, overlap)
    if count == 1:
        return [0]
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def even_tile(size: int, tile: int, overlap: int) -> int:
    """The shortest tile length (at most ``tile``) that covers ``size`` with as few tiles as
    ``tile`` itself needs.

    For networks that take any size (VAE encoder, hint encoder, RRDBNet): tiles of the full
    length would overlap far more than asked where the size is just over a multiple of the tile
    (1.5x the work per side at 1024 px with 512 px tiles); equal shorter tiles keep the redundant
    work near the overlap's share at every size, so time grows linearly with the pixels.
    """
    count = tile_count(size, tile, overlap)
    return size if count == 1 else math.ceil((size - overlap) / count) + overlap


def tile_grid(height: int, width: int, tile: int, overlap: int, even: bool = False) -> list[Tile]:
    """Row-major tiles of one common size covering a ``height x width`` grid.

    ``even``: tiles only as long as needed on each axis (``even_tile``) instead of ``tile``.
    """
    def axis(size: int) -> tuple[int, list[int]]:
        length = even_tile(size, tile, overlap) if even else min(tile, size)
        return length, tile_starts(size, length, overlap) if length < size else [0]

    (th, ys), (tw, xs) = axis(height), axis(width)
    return [Tile(y, x, th, tw) for y in ys for x in xs]


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
              tiles: Sequence[Tile], overlap: int, batch_tiles: int = 1,
              zoom: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """Blend ``fn`` applied to tiles of ``x`` (B, C, H, W) into one full-size result.

    ``fn(xs, chunk)`` gets up to ``batch_tiles`` tiles stacked along the batch
    (tile-major: all of tile 1's batch, then tile 2's, ...). Tiles and overlap
    are in cells of a grid; a cell is ``zoom[0]`` px of ``x`` and ``zoom[1]`` px
    of ``fn``'s output (an encoder: (8, 1); a x4 upscaler: (1, 4)), whose
    channels may differ from ``x``'s. The result is on ``x``'s device.
    """
    inner, outer = zoom
    height, width = x.shape[-2] // inner * outer, x.shape[-1] // inner * outer
    out = None
    norm = torch.zeros((height, width), dtype=torch.float32, device=x.device)
    for first in range(0, len(tiles), max(1, batch_tiles)):
        chunk = tiles[first:first + max(1, batch_tiles)]
        ys = fn(torch.cat([t.scaled(inner).of(x) for t in chunk]), chunk).split(x.shape[0])
        for t, y in zip(chunk, ys):
            if out is None:
                out = torch.zeros((x.shape[0], y.shape[1], height, width), dtype=torch.float32,
                                  device=x.device)
            t = t.scaled(outer)
            window = blend_window(t, height, width, overlap * outer).to(out)
            t.of(out).add_(y.to(out) * window)
            t.of(norm).add_(window)
    return (out / norm).to(x.dtype)
