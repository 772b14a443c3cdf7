"""Layers of the latent-diffusion family that the DoSSR networks are assembled from.

The ControlNet reuses the SD UNet's vocabulary (ResBlock, SpatialTransformer,
Downsample), the hint encoder the SD VAE encoder's (ResnetBlock, pixel
attention, padded Downsample).  Parameter names follow the released checkpoints
so that state dicts load without renaming.  The helpers at the end let each
network infer its configuration from a state dict and reject foreign ones.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

GROUPS = 32  # every GroupNorm of SD's UNet and VAE uses 32 groups


# --------------------------------------------------------------------------
# Primitives shared by both families
# --------------------------------------------------------------------------


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups; half-precision inputs are normalised in float32 for exact statistics."""

    def __init__(self, channels: int, eps: float):
        super().__init__(GROUPS, channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        weight = None if self.weight is None else self.weight.to(compute)
        bias = None if self.bias is None else self.bias.to(compute)
        return F.group_norm(x.to(compute), self.num_groups, weight, bias, self.eps).to(x.dtype)


def attention_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype q.k and the softmax are computed in: float32 for float16 inputs.

    float16 tops out at 65504, which the logits of trained attention layers can pass (the
    authors compute q.k in float32 for this reason); bfloat16 has float32's range and stays.
    """
    return torch.float32 if dtype == torch.float16 else dtype


def multi_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Softmax attention of (B, Nq, H*d) queries over (B, Nk, H*d) keys/values, split into `heads` heads."""
    batch, n_query, inner = q.shape
    dim_head = inner // heads
    compute = attention_dtype(q.dtype)

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.to(compute).reshape(t.shape[0], t.shape[1], heads, dim_head).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(batch, n_query, inner).to(q.dtype)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """SD UNet's sinusoidal embedding of (B,) timesteps: [cos | sin] of t * max_period^(-i/half), float32."""
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    freqs = torch.exp(-math.log(max_period) * exponent)
    angles = timesteps.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


# --------------------------------------------------------------------------
# SD UNet layers (used by the ControlNet)
# --------------------------------------------------------------------------


class ResBlock(nn.Module):
    """UNet residual block: two 3x3 convs with the time embedding added in between."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int):
        super().__init__()
        self.in_layers = nn.Sequential(
            GroupNorm32(channels, eps=1e-5),
            nn.SiLU(),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels, eps=1e-5),
            nn.SiLU(),
            nn.Dropout(0.0),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        # A 1x1 conv matches widths on the skip path only where the block changes them.
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Downsample(nn.Module):
    """UNet downsampling between resolution levels: a stride-2 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class CrossAttention(nn.Module):
    """Multi-head attention of image tokens over themselves (self) or over a text context (cross)."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        out = multi_head_attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out(out)


class GEGLU(nn.Module):
    """Gated GELU projection: one linear layer gives value and gate halves, output value * gelu(gate)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """Transformer MLP with a GEGLU of inner width 4*dim."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: self-attention, cross-attention to the text, feed-forward."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, heads, dim_head, context_dim=context_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


def head_layout(channels: int, num_head_channels: int) -> tuple[int, int]:
    """(heads, dim_head) for an attention layer of `channels` width.

    SD2 uses heads of `num_head_channels` channels; a width that is not a
    multiple of that (only at test sizes) gets a single head spanning it.
    """
    if channels % num_head_channels == 0:
        return channels // num_head_channels, num_head_channels
    return 1, channels


class SpatialTransformer(nn.Module):
    """SD2 spatial transformer with linear projections: the feature map as tokens, conditioned on text."""

    def __init__(self, channels: int, num_head_channels: int, depth: int, context_dim: int):
        super().__init__()
        heads, dim_head = head_layout(channels, num_head_channels)
        inner = heads * dim_head
        self.norm = GroupNorm32(channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        tokens = self.proj_out(tokens)
        return x + tokens.transpose(1, 2).reshape(batch, channels, height, width)


class EmbedSequential(nn.Sequential):
    """A UNet block: runs its layers in order, giving ResBlocks the time embedding and transformers the text."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


# --------------------------------------------------------------------------
# SD VAE encoder layers (used by the hint encoder)
# --------------------------------------------------------------------------


class VAEResnetBlock(nn.Module):
    """VAE residual block without time embedding: norm-swish-conv twice, 1x1 shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = GroupNorm32(in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = GroupNorm32(out_channels, eps=1e-6)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)
        else:
            self.nin_shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return shortcut + h


class VAEDownsample(nn.Module):
    """VAE downsampling: zero-pad right and bottom by one, then a stride-2 3x3 conv without padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class PixelAttention(nn.Module):
    """VAE mid-block attention: one head over all pixels, q/k/v/output as 1x1 convs, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm32(channels, eps=1e-6)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.norm(x)

        def tokens(conv: nn.Conv2d) -> torch.Tensor:
            # contiguous: with the channels strided, CPU attention over all pixels runs slower
            return conv(h).flatten(2).transpose(1, 2).contiguous()

        out = multi_head_attention(tokens(self.q), tokens(self.k), tokens(self.v), heads=1)
        out = out.transpose(1, 2).reshape(batch, channels, height, width)
        return x + self.proj_out(out)


# --------------------------------------------------------------------------
# State-dict inspection (configuration inference, rejection of foreign weights)
# --------------------------------------------------------------------------


def tensor_shape(state_dict: Mapping, key: str, owner: str, ndim: int | None = None) -> tuple[int, ...]:
    """Shape of `state_dict[key]`; ValueError naming `owner` if the key is absent or has the wrong rank."""
    if key not in state_dict:
        hint = ""
        prefixed = next((k for k in state_dict if k.endswith("." + key)), None)
        if prefixed is not None:
            hint = f" (found '{prefixed}': strip the checkpoint prefix first)"
        raise ValueError(f"not a {owner} state dict: missing key '{key}'{hint}")
    shape = tuple(state_dict[key].shape)
    if ndim is not None and len(shape) != ndim:
        raise ValueError(
            f"not a {owner} state dict: '{key}' has shape {list(shape)}, expected a {ndim}-d tensor"
        )
    return shape


def count_children(state_dict: Mapping, prefix: str) -> int:
    """How many consecutive numbered children `prefix0.`, `prefix1.`, ... the keys contain."""
    found = set()
    for key in state_dict:
        if key.startswith(prefix):
            head = key[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    count = 0
    while count in found:
        count += 1
    return count


def check_state_dict(net_cls: type, config: dict, state_dict: Mapping) -> None:
    """ValueError unless `net_cls(**config)` has exactly the tensor names and shapes of `state_dict`.

    The network is built on the meta device, so this costs no memory.
    """
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in net_cls(**config).state_dict().items()}
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected)
    mismatched = [
        f"{k} {list(state_dict[k].shape)} (expected {list(expected[k])})"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != expected[k]
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
        if items:
            shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise ValueError(
            f"state dict does not fit {net_cls.__name__}({config}): " + "; ".join(problems)
        )
