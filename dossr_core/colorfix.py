"""Colour correction of the decoded result against the preprocessed LR image (DESIGN §4).

Diffusion output drifts in colour; both fixes keep the result's detail and take
the colours from the reference. Images are (B, 3, H, W) in [0, 1]; the work is
done in float32 and the result has the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WAVELET_LEVELS = 5
ADAIN_EPS = 1e-5
COLOR_FIX_MODES = ("wavelet", "adain", "none")


def wavelet_blur(image: torch.Tensor, dilation: int) -> torch.Tensor:
    """One band of the a-trous wavelet: a 3x3 [1 2 1]^2/16 blur with holes of ``dilation``."""
    taps = torch.tensor([1.0, 2.0, 1.0], dtype=image.dtype, device=image.device)
    kernel = (taps[:, None] * taps[None, :] / 16.0).expand(image.shape[1], 1, 3, 3)
    padded = F.pad(image, (dilation,) * 4, mode="replicate")
    return F.conv2d(padded, kernel, dilation=dilation, groups=image.shape[1])


def wavelet_low_band(image: torch.Tensor, levels: int = WAVELET_LEVELS) -> torch.Tensor:
    """The lowest band after ``levels`` blurs of dilation 1, 2, 4, ...; the rest is detail."""
    for level in range(levels):
        image = wavelet_blur(image, 2 ** level)
    return image


def _float32_pair(image: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both in float32, the reference resized to the image and its batch broadcast."""
    if image.dim() != 4 or reference.dim() != 4 or image.shape[1] != reference.shape[1]:
        raise ValueError(f"color fix needs two (B, C, H, W) images with the same channels, "
                         f"got {tuple(image.shape)} and {tuple(reference.shape)}")
    if reference.shape[0] not in (1, image.shape[0]):
        raise ValueError(f"reference batch {reference.shape[0]} does not match image batch "
                         f"{image.shape[0]}: give one reference or one per image")
    image, reference = image.float(), reference.to(device=image.device, dtype=torch.float32)
    if reference.shape[-2:] != image.shape[-2:]:
        reference = F.interpolate(reference, size=image.shape[-2:], mode="bicubic",
                                  align_corners=False, antialias=True)
    return image, reference.expand(image.shape[0], -1, -1, -1)


def wavelet_color_fix(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Detail bands of ``image`` plus the lowest band of ``reference``."""
    x, ref = _float32_pair(image, reference)
    return (x - wavelet_low_band(x) + wavelet_low_band(ref)).to(image.dtype)


def adain_color_fix(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel mean and standard deviation taken from ``reference``."""
    x, ref = _float32_pair(image, reference)

    def stats(t):
        flat = t.flatten(2)
        return flat.mean(-1)[..., None, None], (flat.var(-1) + ADAIN_EPS).sqrt()[..., None, None]

    mean_x, std_x = stats(x)
    mean_r, std_r = stats(ref)
    return ((x - mean_x) / std_x * std_r + mean_r).to(image.dtype)


def color_fix(image: torch.Tensor, reference: torch.Tensor, mode: str = "wavelet") -> torch.Tensor:
    """Apply the named fix: ``wavelet`` (the paper's default), ``adain`` or ``none``."""
    if mode == "wavelet":
        return wavelet_color_fix(image, reference)
    if mode == "adain":
        return adain_color_fix(image, reference)
    if mode == "none":
        return image
    raise ValueError(f"color fix mode must be one of {COLOR_FIX_MODES}, got {mode!r}")
