"""Tiles cover the latent, blend seamlessly, and one tile means no tiling at all."""

import pytest
import torch
import torch.nn.functional as F

from dossr_core.sampling import sample_dos_sde
from dossr_core.schedule import DomainShiftSchedule
from dossr_core.tiling import Tile, blend_window, even_tile, tile_count, tile_grid, tile_starts, tiled_map


@pytest.mark.parametrize("size, tile, overlap", [(64, 64, 16), (65, 64, 16), (256, 64, 16),
                                                 (100, 64, 8), (37, 16, 4)])
def test_tiles_cover_evenly_with_at_least_the_overlap(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    length = min(tile, size)
    assert starts[0] == 0 and starts[-1] + length == size
    for a, b in zip(starts, starts[1:]):
        assert length - (b - a) >= overlap        # consecutive tiles overlap enough


@pytest.mark.parametrize("size, tile, overlap", [(128, 64, 8), (256, 64, 8), (512, 64, 8), (65, 64, 8),
                                                 (64, 64, 8), (375, 64, 8), (256, 256, 32),
                                                 (512, 256, 32), (1024, 256, 32), (777, 256, 32)])
def test_even_tiles_are_as_few_as_full_tiles_and_no_longer_than_needed(size, tile, overlap):
    length = even_tile(size, tile, overlap)
    starts = tile_starts(size, length, overlap)
    assert length <= tile
    assert len(starts) == tile_count(size, tile, overlap)
    assert starts[-1] + length == size
    assert all(length - (b - a) >= overlap for a, b in zip(starts, starts[1:]))
    if len(starts) > 1:                               # one shorter and the count would grow
        assert tile_count(size, length - 1, overlap) > len(starts)


def test_even_grid_work_is_the_overlaps_share_at_every_size():
    """Full 64-latent tiles do 2.25x, 1.56x, 1.27x the work of a 1024/2048/4096 px image; even
    ones 1.27x at each, so the encoders' time per megapixel does not depend on the size."""
    ratios = []
    for latent in (128, 256, 512):
        tiles = tile_grid(latent, latent, 64, 8, even=True)
        ratios.append(sum(t.h * t.w for t in tiles) / latent ** 2)
    assert max(ratios) < 1.3 and max(ratios) / min(ratios) < 1.02, ratios


@pytest.mark.parametrize("even", [False, True])
def test_a_grid_smaller_than_one_tile_is_one_tile(even):
    assert tile_grid(15, 40, 64, 16, even=even) == [Tile(0, 0, 15, 40)]
    assert {(t.y, t.h) for t in tile_grid(15, 70, 64, 16, even=even)} == {(0, 15)}   # a strip


def test_grid_is_row_major_and_of_one_size():
    tiles = tile_grid(100, 130, 64, 16)
    assert len({(t.h, t.w) for t in tiles}) == 1
    assert [(t.y, t.x) for t in tiles] == sorted((t.y, t.x) for t in tiles)
    cover = torch.zeros(100, 130)
    for t in tiles:
        t.of(cover).add_(1)
    assert cover.min() >= 1


def test_window_is_one_along_the_image_border_and_zero_at_inner_edges():
    tiles = tile_grid(100, 100, 64, 16)
    corner = blend_window(tiles[0], 100, 100, 16)
    assert corner[0, 0] == 1 and corner[:, 0].eq(1).sum() >= 48
    assert corner.min() >= 0 and corner[-1, -1] == 0 and corner[-4:, :].eq(0).all()


def test_windows_of_neighbours_are_complementary_and_cover_everything():
    exact = tile_grid(40, 88, 40, 16)           # starts 0, 24, 48: overlaps of exactly 16
    assert [t.x for t in exact] == [0, 24, 48]
    total = torch.zeros(40, 88, dtype=torch.float64)
    for t in exact:
        t.of(total).add_(blend_window(t, 40, 88, 16))
    assert torch.allclose(total, torch.ones_like(total))
    wider = tile_grid(40, 100, 40, 16)          # spread evenly: overlaps of 20
    total = torch.zeros(40, 100, dtype=torch.float64)
    for t in wider:
        t.of(total).add_(blend_window(t, 40, 100, 16))
    assert total.min() > 0.99


def test_a_pointwise_map_is_reproduced_exactly():
    x = torch.randn(2, 4, 70, 90)
    out = tiled_map(lambda xs, chunk: torch.tanh(xs) * 2, x, tile_grid(70, 90, 32, 8), 8, batch_tiles=3)
    assert torch.allclose(out, torch.tanh(x) * 2, atol=1e-6)


@pytest.mark.parametrize("zoom", [(8, 1), (1, 4), (2, 2)])
def test_a_zoomed_local_map_is_reproduced_exactly(zoom):
    """An encoder-like (8 px -> 1) or upscaler-like (1 -> 4 px) map that works cell by cell
    gives the whole-image result through tiles, with its own channel count."""
    inner, outer = zoom
    x = torch.randn(2, 3, 40 * inner, 56 * inner)

    def fn(xs, chunk=None):
        cells = F.avg_pool2d(torch.tanh(xs), inner)
        return F.interpolate(torch.cat([cells, cells[:, :1] * 2], 1), scale_factor=outer, mode="nearest")

    out = tiled_map(fn, x, tile_grid(40, 56, 16, 4, even=True), 4, zoom=zoom)
    assert out.shape == (2, 4, 40 * outer, 56 * outer)
    torch.testing.assert_close(out, fn(x), rtol=0, atol=1e-6)


def test_chunks_are_tile_major_and_carry_their_tiles():
    x = torch.arange(2 * 1 * 40 * 40, dtype=torch.float32).view(2, 1, 40, 40)
    seen = []

    def fn(xs, chunk):
        assert xs.shape[0] == 2 * len(chunk)
        for k, t in enumerate(chunk):
            assert torch.equal(xs[2 * k:2 * k + 2], t.of(x))
        seen.extend(chunk)
        return xs
    out = tiled_map(fn, x, tile_grid(40, 40, 16, 4), 4, batch_tiles=4)
    assert len(seen) == len(tile_grid(40, 40, 16, 4)) and torch.allclose(out, x)


# --- seams: a convolutional denoiser with border effects ---------------------

class ConvDenoiser(torch.nn.Module):
    """A random zero-padded conv net: translation-equivariant inside, different near any border."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = [torch.randn(8, 4, 3, 3, generator=g) * 0.3, torch.randn(4, 8, 3, 3, generator=g) * 0.3]

    def forward(self, x):
        return x + F.conv2d(torch.tanh(F.conv2d(x, self.w[0], padding=1)), self.w[1], padding=1)


def _seam_ratio(img, tiles, width):
    """Column profile of |first difference|: worst at tile edges over worst well inside tiles.

    Columns within 3 of the image's own left/right edge are left out of both
    sets: zero padding acts there with or without tiling.
    """
    d = (img[..., :, 1:] - img[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    edges = {t.x - 1 for t in tiles if t.x > 0} | {t.x + t.w - 1 for t in tiles if t.x + t.w < width}
    keep = [i for i in range(len(d)) if 3 < i < len(d) - 4]
    at = d[[i for i in keep if i in edges]].max()
    inside = d[[i for i in keep if all(abs(i - e) > 3 for e in edges)]].max()
    return (at / inside).item()


def test_blended_output_has_no_seams_on_a_smooth_input():
    h, w = 48, 160
    ramp = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(1, 4, h, w).contiguous()
    net = ConvDenoiser()
    tiles = tile_grid(h, w, 48, 16)
    hard = torch.zeros_like(ramp)            # no blending: each tile's output pasted as is
    for t in tiles:
        t.of(hard).copy_(net(t.of(ramp)))
    blended = tiled_map(lambda xs, chunk: net(xs), ramp, tiles, 16)
    assert _seam_ratio(hard, tiles, w) > 2          # the denoiser does make seams when pasted
    assert _seam_ratio(blended, tiles, w) < 1.2     # blending leaves none beyond interior variation


def test_constant_input_stays_constant_away_from_the_image_border():
    h, w = 40, 200
    x = torch.full((1, 4, h, w), 0.4)
    net = ConvDenoiser(1)
    tiles = tile_grid(h, w, 40, 16)
    out = tiled_map(lambda xs, chunk: net(xs), x, tiles, 16)
    whole = net(x)
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    spread = (out[inner] - whole[inner]).abs().max()
    assert spread < 0.05 * (whole[inner] - x[inner]).abs().max()


def test_solver_on_tiled_x0_hat_is_seamless_and_one_tile_is_identical():
    """Tiling wraps the denoiser; the DoS-SDE keeps one state and one noise field."""
    schedule = DomainShiftSchedule.for_steps(5)
    h, w = 32, 96
    xhat0 = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(1, 4, h, w).contiguous()
    net = ConvDenoiser(2)
    denoise = lambda x, t: net(x)
    tiles = tile_grid(h, w, 32, 12)
    tiled = lambda x, t: tiled_map(lambda xs, chunk: net(xs), x, tiles, 12)
    g = lambda: torch.Generator().manual_seed(4)
    whole = sample_dos_sde(denoise, xhat0, schedule, ode=True, generator=g())
    out = sample_dos_sde(tiled, xhat0, schedule, ode=True, generator=g())
    # the untiled result varies by itself at those columns; tiling adds no more than 5 %
    assert _seam_ratio(out, tiles, w) < 1.05 * _seam_ratio(whole, tiles, w)
    single = tile_grid(h, w, 96, 12)
    assert len(single) == 1
    one = sample_dos_sde(lambda x, t: tiled_map(lambda xs, c: net(xs), x, single, 12), xhat0, schedule,
                         generator=g())
    assert torch.equal(one, sample_dos_sde(denoise, xhat0, schedule, generator=g()))
    assert (whole - out).abs().max() < 0.1 * whole.abs().max()   # tiling changes little


def test_tile_dataclass_slices():
    t = Tile(2, 3, 4, 5)
    assert t.of(torch.zeros(1, 1, 10, 10)).shape[-2:] == (4, 5)
