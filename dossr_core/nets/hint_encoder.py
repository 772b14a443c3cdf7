"""DoSSR's hint encoder: an SD-VAE-shaped encoder with its own weights.

It maps the preprocessed image to the 4-channel latent hint of the ControlNet:
the mode (mean) of the encoder's diagonal Gaussian, times SD's latent scale
0.18215.  Same layers and names as the LDM VAE encoder plus its quant conv.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import (
    GroupNorm32,
    PixelAttention,
    VAEDownsample,
    VAEResnetBlock,
    check_state_dict,
    count_children,
    tensor_shape,
)

NAME = "HintEncoder"


class EncoderLevel(nn.Module):
    """One resolution of the encoder: res blocks, then a 2x downsample except at the last level."""

    def __init__(self, in_channels: int, out_channels: int, num_res_blocks: int, downsample: bool):
        super().__init__()
        self.block = nn.ModuleList(
            VAEResnetBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(num_res_blocks)
        )
        self.downsample = VAEDownsample(out_channels) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class EncoderMiddle(nn.Module):
    """Lowest-resolution stage: res block, pixel attention, res block."""

    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = VAEResnetBlock(channels, channels)
        self.attn_1 = PixelAttention(channels)
        self.block_2 = VAEResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class VAEEncoder(nn.Module):
    """LDM VAE encoder: image (B, in, H, W) to Gaussian moments (B, 2*z, H/2^(levels-1), ...)."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, in_channels: int, z_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        widths = [ch] + [ch * m for m in ch_mult]
        last = len(ch_mult) - 1
        self.down = nn.ModuleList(
            EncoderLevel(widths[i], widths[i + 1], num_res_blocks, downsample=i != last)
            for i in range(len(ch_mult))
        )
        self.mid = EncoderMiddle(widths[-1])
        self.norm_out = GroupNorm32(widths[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(widths[-1], 2 * z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class HintEncoder(nn.Module):
    """Image in [0, 1] (B, 3, H, W) -> hint latent (B, 4, H/8, W/8): scaled mode of the encoder's Gaussian."""

    def __init__(
        self,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        in_channels: int = 3,
        z_channels: int = 4,
        scale_factor: float = 0.18215,
    ):
        super().__init__()
        self.z_channels = z_channels
        self.scale_factor = scale_factor
        self.encoder = VAEEncoder(ch, ch_mult, num_res_blocks, in_channels, z_channels)
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * z_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image * 2.0 - 1.0).to(self.quant_conv.weight.dtype)  # the VAE expects [-1, 1]
        moments = self.quant_conv(self.encoder(x))
        mean = moments[:, : self.z_channels]  # mode of the Gaussian; the log-variance half is unused
        return mean * self.scale_factor

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict:
        """Constructor kwargs reproducing `state_dict` (keys without the `cond_encoder.` prefix).

        ValueError if the state dict is not of this network.
        """
        ch, in_channels = tensor_shape(state_dict, "encoder.conv_in.weight", NAME, ndim=4)[:2]
        moments = tensor_shape(state_dict, "quant_conv.weight", NAME, ndim=4)[0]
        if moments % 2:
            raise ValueError(f"not a {NAME} state dict: quant_conv has an odd {moments} channels")
        levels = count_children(state_dict, "encoder.down.")
        if levels == 0:
            raise ValueError(f"not a {NAME} state dict: no 'encoder.down.0.*' keys")
        ch_mult = []
        for level in range(levels):
            width = tensor_shape(state_dict, f"encoder.down.{level}.block.0.conv1.weight", NAME, ndim=4)[0]
            if width % ch:
                raise ValueError(f"not a {NAME} state dict: width {width} at level {level} is not a multiple of {ch}")
            ch_mult.append(width // ch)
        config = dict(
            ch=ch,
            ch_mult=tuple(ch_mult),
            num_res_blocks=count_children(state_dict, "encoder.down.0.block."),
            in_channels=in_channels,
            z_channels=moments // 2,
        )
        check_state_dict(cls, config, state_dict)
        return config
