"""DoSSR's ControlNet: the encoder half of the SD2 UNet, conditioned on a latent hint.

Unlike an SD ControlNet there is no pixel-space hint block: the 4-channel hint
latent is concatenated to the noisy latent x_t before the first conv (8 input
channels).  A 1x1 "zero conv" after every input block and after the middle
block turns the features into the residuals that the backbone UNet adds to
its skips (12 for SD2) and to its middle block output (1).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from .blocks import (
    Downsample,
    EmbedSequential,
    ResBlock,
    SpatialTransformer,
    check_state_dict,
    count_children,
    tensor_shape,
    timestep_embedding,
)

NAME = "LatentHintControlNet"


def _zero_conv(channels: int) -> nn.Sequential:
    """1x1 conv that turns block features into a residual (zero at the start of training, hence the name)."""
    return nn.Sequential(nn.Conv2d(channels, channels, 1))


def _per_level(num_res_blocks: int | Sequence[int], levels: int) -> list[int]:
    """Res blocks per level from an int (same at every level) or a per-level sequence."""
    if isinstance(num_res_blocks, int):
        return [num_res_blocks] * levels
    counts = [int(n) for n in num_res_blocks]
    if len(counts) != levels:
        raise ValueError(f"num_res_blocks has {len(counts)} entries for {levels} levels")
    return counts


class LatentHintControlNet(nn.Module):
    """ControlNet whose hint is a latent concatenated to x_t; returns skip residuals then the middle one."""

    def __init__(
        self,
        model_channels: int = 320,
        in_channels: int = 4,
        hint_channels: int = 4,
        channel_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int | Sequence[int] = 2,
        attention_levels: Sequence[int] = (0, 1, 2),
        transformer_depth: int = 1,
        context_dim: int = 1024,
        num_head_channels: int = 64,
    ):
        super().__init__()
        levels = len(channel_mult)
        if any(not 0 <= level < levels for level in attention_levels):
            raise ValueError(f"attention_levels {tuple(attention_levels)} outside 0..{levels - 1}")
        self.model_channels = model_channels
        self.in_channels = in_channels
        self.hint_channels = hint_channels
        self.strength = 1.0

        def transformer(channels: int) -> SpatialTransformer:
            return SpatialTransformer(channels, num_head_channels, transformer_depth, context_dim)

        time_dim = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )

        first = nn.Conv2d(in_channels + hint_channels, model_channels, 3, padding=1)
        self.input_blocks = nn.ModuleList([EmbedSequential(first)])
        skip_channels = [model_channels]
        channels = model_channels
        for level, (mult, count) in enumerate(zip(channel_mult, _per_level(num_res_blocks, levels))):
            for _ in range(count):
                layers: list[nn.Module] = [ResBlock(channels, time_dim, mult * model_channels)]
                channels = mult * model_channels
                if level in attention_levels:
                    layers.append(transformer(channels))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(channels)
            if level != levels - 1:
                self.input_blocks.append(EmbedSequential(Downsample(channels)))
                skip_channels.append(channels)
        self.zero_convs = nn.ModuleList(_zero_conv(c) for c in skip_channels)

        self.middle_block = EmbedSequential(
            ResBlock(channels, time_dim, channels),
            transformer(channels),
            ResBlock(channels, time_dim, channels),
        )
        self.middle_block_out = _zero_conv(channels)

    def forward(
        self,
        x: torch.Tensor,
        hint: torch.Tensor,
        timesteps: torch.Tensor | float | int,
        context: torch.Tensor,
        strength: float | None = None,
    ) -> list[torch.Tensor]:
        """Residuals for the backbone UNet.

        x: noisy latent x_t (B, C, h, w) as the UNet sees it; hint: hint latent
        (B or 1, hint_channels, h, w); timesteps: (B,) training timesteps (or one
        for all); context: text embedding (B or 1, tokens, context_dim).
        Returns one tensor per input block, in block order, then the middle
        block's, each scaled by `strength` (default: the `strength` attribute).
        """
        scale = self.strength if strength is None else strength
        dtype = self.time_embed[0].weight.dtype
        batch = x.shape[0]
        if hint.shape[0] == 1 and batch != 1:
            hint = hint.expand(batch, *hint.shape[1:])
        if context.shape[0] == 1 and batch != 1:
            context = context.expand(batch, *context.shape[1:])
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.numel() == 1:
            timesteps = timesteps.reshape(1).expand(batch)

        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(dtype))
        context = context.to(dtype)
        h = torch.cat([x, hint], dim=1).to(dtype)
        residuals = []
        for block, zero_conv in zip(self.input_blocks, self.zero_convs):
            h = block(h, emb, context)
            residuals.append(zero_conv(h) * scale)
        h = self.middle_block(h, emb, context)
        residuals.append(self.middle_block_out(h) * scale)
        return residuals

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], in_channels: int = 4) -> dict:
        """Constructor kwargs that reproduce `state_dict` (keys without the `control_model.` prefix).

        The first conv holds x_t and hint channels together; `in_channels` (the
        latent's, 4 for SD) says how to split them.  Head width is not stored in
        the weights and stays SD2's 64.  ValueError if the state dict is not of
        this network.
        """
        model_channels, total_in = tensor_shape(state_dict, "input_blocks.0.0.weight", NAME, ndim=4)[:2]
        if total_in <= in_channels:
            raise ValueError(
                f"not a {NAME} state dict: first conv takes {total_in} channels, "
                f"no room for a hint beside {in_channels} latent channels"
            )
        tensor_shape(state_dict, "time_embed.0.weight", NAME, ndim=2)

        levels: list[list[tuple[int, bool]]] = [[]]  # per level: (width, has transformer) of each res block
        for index in range(1, count_children(state_dict, "input_blocks.")):
            block = f"input_blocks.{index}."
            if block + "0.op.weight" in state_dict:
                levels.append([])
            elif block + "0.in_layers.2.weight" in state_dict:
                width = tensor_shape(state_dict, block + "0.in_layers.2.weight", NAME, ndim=4)[0]
                levels[-1].append((width, block + "1.proj_in.weight" in state_dict))
            else:
                raise ValueError(f"not a {NAME} state dict: {block[:-1]} is neither a ResBlock nor a Downsample")
        if any(not level for level in levels):
            raise ValueError(f"not a {NAME} state dict: a resolution level without ResBlocks")

        channel_mult, attention_levels = [], []
        for index, level in enumerate(levels):
            width, with_attention = level[0]
            if width % model_channels:
                raise ValueError(
                    f"not a {NAME} state dict: width {width} at level {index} is not a multiple of {model_channels}"
                )
            channel_mult.append(width // model_channels)
            if with_attention:
                attention_levels.append(index)
        counts = [len(level) for level in levels]

        proj_in = tensor_shape(state_dict, "middle_block.1.proj_in.weight", NAME)
        if len(proj_in) != 2:
            raise ValueError(
                f"{NAME} supports linear transformer projections only; "
                f"'middle_block.1.proj_in.weight' has shape {list(proj_in)} (conv projection, SD1-style)"
            )
        attn2_k = "middle_block.1.transformer_blocks.0.attn2.to_k.weight"
        config = dict(
            model_channels=model_channels,
            in_channels=in_channels,
            hint_channels=total_in - in_channels,
            channel_mult=tuple(channel_mult),
            num_res_blocks=counts[0] if len(set(counts)) == 1 else tuple(counts),
            attention_levels=tuple(attention_levels),
            transformer_depth=count_children(state_dict, "middle_block.1.transformer_blocks."),
            context_dim=tensor_shape(state_dict, attn2_k, NAME, ndim=2)[1],
            num_head_channels=64,
        )
        check_state_dict(cls, config, state_dict)
        return config
