"""Half precision (float16, bfloat16) of the DoSSR networks against float32, on this CPU.

On a GPU the networks run in the host's chosen dtype. At small widths (same layers as the
released networks), their half-precision forward passes must stay within a stated relative
error of float32 and stay finite on images at the edges of the input range: black, white and
saturated primaries. The two places where float16 overflows first (DESIGN §6) are computed in
float32: the attention logits q.k and GroupNorm statistics; both are checked with inputs far
beyond float16's range.
"""

from __future__ import annotations

import pytest
import torch

from dossr_core.nets import HintEncoder, LatentHintControlNet, RRDBNet
from dossr_core.nets.blocks import GroupNorm32, multi_head_attention

# Relative error (L2 norm of the difference over the L2 norm of the float32 result), stated
# with about 3x margin over what these networks measure here (float16 ~3e-3, bfloat16 ~2e-2):
# float16 keeps 11 significant bits, bfloat16 8.
TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 6e-2}
HALF = list(TOLERANCE)

SMALL = {
    "controlnet": (LatentHintControlNet, dict(model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2,
                                              attention_levels=(0, 1), context_dim=64, num_head_channels=32)),
    "hint_encoder": (HintEncoder, dict(ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1)),
    "rrdbnet": (RRDBNet, dict(num_feat=16, num_block=4, num_grow_ch=8)),
}
H, W = 32, 48


def edge_images() -> dict[str, torch.Tensor]:
    """Black, white, and saturated red | green | blue bands, (1, 3, H, W) in [0, 1]."""
    saturated = torch.zeros(1, 3, H, W)
    for channel in range(3):
        saturated[:, channel, :, channel * W // 3:(channel + 1) * W // 3] = 1.0
    return {"black": torch.zeros(1, 3, H, W), "white": torch.ones(1, 3, H, W), "saturated": saturated}


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    diff = (got.float() - expected.float()).norm()
    return (diff / expected.float().norm().clamp_min(1e-12)).item()


def net(name: str) -> torch.nn.Module:
    cls, config = SMALL[name]
    torch.manual_seed(0)
    return cls(**config).eval()


def outputs(name: str, module: torch.nn.Module, image: torch.Tensor, dtype) -> list[torch.Tensor]:
    """The network's outputs for ``image`` with weights and inputs in ``dtype``.

    The ControlNet gets the hint of the image (by a float32 hint encoder) as both x_t and
    hint, at the first and the last training timestep, and a fixed random text context.
    """
    module = module.to(dtype)
    with torch.no_grad():
        if name != "controlnet":
            return [module(image.to(dtype))]
        hint = net("hint_encoder")(image)
        context = torch.randn(1, 7, 64, generator=torch.Generator().manual_seed(1))
        return [r for t in (0, 999)
                for r in module(hint.to(dtype), hint.to(dtype), t, context.to(dtype))]


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("dtype", HALF, ids=lambda d: str(d).split(".")[-1])
def test_half_precision_stays_close_to_float32_and_finite_on_edge_images(name, dtype):
    module = net(name)
    for label, image in edge_images().items():
        expected = outputs(name, module, image, torch.float32)
        got = outputs(name, module, image, dtype)
        for g, e in zip(got, expected):
            assert g.dtype == dtype
            assert torch.isfinite(g).all(), (label, "inf/NaN")
            assert relative_error(g, e) <= TOLERANCE[dtype], (label, relative_error(g, e))


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: str(d).split(".")[-1])
def test_attention_logits_beyond_float16_range_stay_finite(dtype):
    """q.k reaches about 1e5 here (float16's largest value is 65504)."""
    gen = torch.Generator().manual_seed(2)
    q, k = (60 * torch.randn(1, 16, 128, generator=gen) for _ in range(2))
    v = torch.randn(1, 16, 128, generator=gen)
    assert (q @ k.transpose(1, 2)).abs().max() > 65504
    expected = multi_head_attention(q, k, v, heads=2)
    got = multi_head_attention(q.to(dtype), k.to(dtype), v.to(dtype), heads=2)
    assert got.dtype == dtype and torch.isfinite(got).all()
    assert relative_error(got, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: str(d).split(".")[-1])
def test_group_norm_of_large_activations_stays_finite(dtype):
    """Activations up to about 3e4 (representable) have a variance near 6e7, beyond float16."""
    torch.manual_seed(3)
    norm = GroupNorm32(64, eps=1e-6)
    x = 8e3 * torch.randn(1, 64, 8, 8)
    assert x.abs().max() < 65504
    expected = norm(x)
    got = norm.to(dtype)(x.to(dtype))
    assert got.dtype == dtype and torch.isfinite(got).all()
    assert relative_error(got, expected) <= TOLERANCE[dtype]
