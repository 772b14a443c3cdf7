"""DoSSR's preprocessor: the ESRGAN x4 generator (RRDBNet, Real-ESRNet/Real-ESRGAN weights).

It removes the LR image's degradations and upsamples it 4x; the result is both
the image the hint encoder sees and the source of the shifted latent xhat0.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import check_state_dict, count_children, tensor_shape

NAME = "RRDBNet"
RESIDUAL_SCALE = 0.2  # ESRGAN scales each residual branch before adding it back
NEGATIVE_SLOPE = 0.2  # LeakyReLU slope throughout ESRGAN


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, NEGATIVE_SLOPE)


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the input and all earlier outputs (dense), with a scaled residual."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(_lrelu(conv(torch.cat(features, dim=1))))
        return x + RESIDUAL_SCALE * self.conv5(torch.cat(features, dim=1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks in a chain, with a scaled outer residual."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN x4: image in [0, 1] (B, 3, H, W) -> image (B, 3, 4H, 4W) clamped to [0, 1]."""

    scale = 4

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 23,
                 num_grow_ch: int = 32):
        super().__init__()
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(image.to(self.conv_first.weight.dtype))
        feat = feat + self.conv_body(self.body(feat))
        for conv_up in (self.conv_up1, self.conv_up2):
            feat = _lrelu(conv_up(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(_lrelu(self.conv_hr(feat))).clamp(0.0, 1.0)

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict:
        """Constructor kwargs reproducing `state_dict` (keys without the `preprocess_model.` prefix).

        ValueError if the state dict is not an x4 RRDBNet in this (BasicSR) naming.
        """
        num_feat, num_in_ch = tensor_shape(state_dict, "conv_first.weight", NAME, ndim=4)[:2]
        num_out_ch = tensor_shape(state_dict, "conv_last.weight", NAME, ndim=4)[0]
        if num_in_ch != num_out_ch:
            raise ValueError(
                f"{NAME}: conv_first takes {num_in_ch} channels for {num_out_ch} out; "
                "the pixel-unshuffle (x2/x1) variants are not supported, only x4"
            )
        config = dict(
            num_in_ch=num_in_ch,
            num_out_ch=num_out_ch,
            num_feat=num_feat,
            num_block=count_children(state_dict, "body."),
            num_grow_ch=tensor_shape(state_dict, "body.0.rdb1.conv1.weight", NAME, ndim=4)[0],
        )
        check_state_dict(cls, config, state_dict)
        return config
