"""Output size bookkeeping: pad to the latent grid, crop back to exactly round(scale * size)."""

import pytest
import torch

from dossr_core.sizes import crop_padding, pad_to_multiple, resize, target_size


@pytest.mark.parametrize("h, w, scale, want", [(37, 45, 4, (148, 180)), (64, 64, 2.5, (160, 160)),
                                               (33, 17, 1.5, (50, 26))])
def test_target_size_rounds_each_side(h, w, scale, want):
    assert target_size(h, w, scale) == want


@pytest.mark.parametrize("h, w", [(148, 180), (161, 159), (8, 8), (9, 15)])
def test_pad_then_crop_round_trips_and_pads_by_replication(h, w):
    x = torch.rand(2, 3, h, w)
    padded = pad_to_multiple(x)
    assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    assert padded.shape[-2] - h < 8 and padded.shape[-1] - w < 8
    assert torch.equal(padded[..., :h, :w], x)
    assert torch.equal(padded[..., h:, :w], x[..., -1:, :].expand(-1, -1, padded.shape[-2] - h, -1))
    assert torch.equal(crop_padding(padded, h, w), x)


def test_crop_leaves_an_image_of_another_size_alone():
    x = torch.rand(1, 3, 64, 64)
    assert crop_padding(x, 40, 64) is x


def test_resize_hits_the_size_and_stays_in_range():
    x = torch.rand(1, 3, 10, 12)
    y = resize(x, (37, 45))
    assert y.shape[-2:] == (37, 45) and y.min() >= 0 and y.max() <= 1
    assert resize(x, (10, 12)) is x
