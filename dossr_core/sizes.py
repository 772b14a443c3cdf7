"""Target sizes, padding to the latent grid and back, resizing (DESIGN §4 step 1).

The VAE needs sides that are multiples of 8; the user expects exactly
``round(scale * w) x round(scale * h)``. Images are (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LATENT_MULTIPLE = 8


def target_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return round(height * scale), round(width * scale)


def resize(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize, antialiased when shrinking, clamped to [0, 1]."""
    if tuple(pixels.shape[-2:]) == tuple(size):
        return pixels
    return F.interpolate(pixels, size=size, mode="bicubic", align_corners=False,
                         antialias=True).clamp(0, 1)


def pad_to_multiple(pixels: torch.Tensor, multiple: int = LATENT_MULTIPLE) -> torch.Tensor:
    """Replicate-pad at the bottom and right up to a multiple of ``multiple``."""
    h, w = pixels.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return pixels
    return F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate")


def crop_padding(pixels: torch.Tensor, height: int, width: int,
                 multiple: int = LATENT_MULTIPLE) -> torch.Tensor:
    """Undo ``pad_to_multiple``: crop to ``height x width`` when only padding is in the way.

    An image that differs by more than the padding (resized elsewhere) is left as it is.
    """
    h, w = pixels.shape[-2:]
    if 0 <= h - height < multiple and 0 <= w - width < multiple:
        return pixels[..., :height, :width]
    return pixels
