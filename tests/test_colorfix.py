"""Colour fix: the wavelet split and AdaIN statistics, in every input precision."""

import pytest
import torch
import torch.nn.functional as F

from dossr_core.colorfix import (adain_color_fix, color_fix, wavelet_blur, wavelet_color_fix,
                                 wavelet_low_band)


def _images(seed=0, b=2, h=40, w=56):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


def _reference_blur(image, d):
    """Independent blur: shifted copies of the replicate-padded image, weights 1-2-1 by 1-2-1."""
    p = F.pad(image, (d, d, d, d), mode="replicate")
    h, w = image.shape[-2:]
    out = torch.zeros_like(image)
    for i, wy in enumerate((1, 2, 1)):
        for j, wx in enumerate((1, 2, 1)):
            out += wy * wx / 16 * p[..., i * d:i * d + h, j * d:j * d + w]
    return out


def test_blur_is_the_dilated_121_kernel_with_replicate_padding():
    x, _ = _images()
    for d in (1, 2, 4, 8, 16):
        assert torch.allclose(wavelet_blur(x, d), _reference_blur(x, d), atol=1e-6)


def test_low_band_is_five_blurs_of_growing_dilation():
    x, _ = _images()
    want = x
    for d in (1, 2, 4, 8, 16):
        want = _reference_blur(want, d)
    assert torch.allclose(wavelet_low_band(x), want, atol=1e-6)


def test_wavelet_keeps_detail_and_takes_the_reference_low_band():
    x, ref = _images()
    out = wavelet_color_fix(x, ref)
    assert torch.allclose(out - x, wavelet_low_band(ref) - wavelet_low_band(x), atol=1e-6)
    assert torch.allclose(wavelet_color_fix(x, x), x, atol=1e-6)


def test_wavelet_removes_a_colour_cast_exactly():
    x, _ = _images()
    cast = torch.tensor([0.1, -0.05, 0.2]).view(1, 3, 1, 1)
    assert torch.allclose(wavelet_color_fix(x + cast, x), x, atol=1e-5)


def test_adain_matches_reference_channel_statistics():
    x, ref = _images()
    out = adain_color_fix(x * 0.3 + 0.5, ref)
    for a, b in ((out, ref),):
        assert torch.allclose(a.mean((2, 3)), b.mean((2, 3)), atol=1e-5)
        assert torch.allclose(a.flatten(2).std(-1), b.flatten(2).std(-1), rtol=1e-3)
    # AdaIN is an affine map per channel: the correlation with the input is 1
    flat_in, flat_out = (x[0, 0].flatten() * 0.3 + 0.5), out[0, 0].flatten()
    assert torch.corrcoef(torch.stack([flat_in, flat_out]))[0, 1] > 0.9999


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
@pytest.mark.parametrize("mode", ["wavelet", "adain"])
def test_low_precision_input_is_computed_in_float32(dtype, tol, mode):
    x, ref = _images()
    x, ref = x.to(dtype), ref.to(dtype)
    out = color_fix(x, ref, mode)
    assert out.dtype == dtype
    want = color_fix(x.float(), ref.float(), mode)
    # only the final rounding to the input precision may differ
    assert (out.float() - want).abs().max() <= tol


def test_reference_of_another_size_is_resized_and_batch_one_broadcasts():
    x, _ = _images(b=3, h=64, w=64)
    small = torch.rand(1, 3, 16, 16)
    out = wavelet_color_fix(x, small)
    big = F.interpolate(small, size=(64, 64), mode="bicubic", align_corners=False, antialias=True)
    assert out.shape == x.shape
    assert torch.allclose(out, wavelet_color_fix(x, big.expand(3, -1, -1, -1)), atol=1e-6)


def test_mismatched_batches_and_modes_are_refused():
    x, ref = _images(b=3)
    with pytest.raises(ValueError, match="reference batch 2 does not match image batch 3"):
        color_fix(x, ref[:2])
    with pytest.raises(ValueError, match="mode must be one of"):
        color_fix(x, ref, "sharpen")
    assert color_fix(x, ref, "none") is x
