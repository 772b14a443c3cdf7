"""Tests of the DoSSR networks (dossr_core.nets).

Full-size networks are only built on the meta device (layout checks cost no
memory); behaviour is checked at small widths against hand-written functional
references that use nothing but the state dict and torch.nn.functional.
Differential tests against ComfyUI's own modules run when COMFYUI_PATH points
at a ComfyUI tree, against spandrel's ESRGAN when spandrel imports.
"""

from __future__ import annotations

import inspect
import math
import importlib.util
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dossr_core.nets import HintEncoder, LatentHintControlNet, RRDBNet  # noqa: E402
from dossr_core.nets.blocks import timestep_embedding  # noqa: E402
from tests.conftest import load_golden  # noqa: E402

NETS = {
    "controlnet": (LatentHintControlNet, "control_model."),
    "hint_encoder": (HintEncoder, "cond_encoder."),
    "rrdbnet": (RRDBNet, "preprocess_model."),
}

FULL_CONFIGS = {
    "controlnet": dict(
        model_channels=320, in_channels=4, hint_channels=4, channel_mult=(1, 2, 4, 4), num_res_blocks=2,
        attention_levels=(0, 1, 2), transformer_depth=1, context_dim=1024, num_head_channels=64,
    ),
    "hint_encoder": dict(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, in_channels=3, z_channels=4),
    "rrdbnet": dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32),
}

# Small SD2-like ControlNet: three levels, attention everywhere but the last, like SD2.  At least two
# channels per norm group: with one, GroupNorm would cancel the per-channel time embedding.
SMALL_CN = dict(model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_levels=(0, 1),
                context_dim=64, num_head_channels=32)
SMALL_HE = dict(ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1)  # four levels: /8 like the real one
SMALL_RR = dict(num_feat=16, num_block=2, num_grow_ch=8)


def meta_state_dict(cls, **config):
    with torch.device("meta"):
        return cls(**config).state_dict()


def seeded(cls, seed=0, dtype=torch.float64, **config):
    torch.manual_seed(seed)
    return cls(**config).to(dtype).eval()


def constructor_defaults(cls):
    return {
        name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


# --------------------------------------------------------------------------
# Layout against the released checkpoint
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_tensors():
    return load_golden("dossr_checkpoint_tensors.json")["tensors"]


@pytest.mark.parametrize("net", NETS)
def test_full_size_names_and_shapes_equal_released_checkpoint(golden_tensors, net):
    cls, prefix = NETS[net]
    expected = {k[len(prefix):]: list(v) for k, v in golden_tensors.items() if k.startswith(prefix)}
    ours = {k: list(v.shape) for k, v in meta_state_dict(cls).items()}
    assert sorted(set(expected) - set(ours)) == [], "tensors of the checkpoint missing from the network"
    assert sorted(set(ours) - set(expected)) == [], "tensors of the network absent from the checkpoint"
    assert {k: v for k, v in ours.items() if v != expected[k]} == {}, "shape mismatches"


@pytest.mark.parametrize("net, count", [("controlnet", 363_153_280), ("hint_encoder", 34_163_664),
                                        ("rrdbnet", 16_697_987)])
def test_full_size_parameter_counts(net, count):
    cls, _ = NETS[net]
    assert sum(t.numel() for t in meta_state_dict(cls).values()) == count


def test_full_size_controlnet_first_conv_takes_latent_and_hint():
    weight = meta_state_dict(LatentHintControlNet)["input_blocks.0.0.weight"]
    assert tuple(weight.shape) == (320, 8, 3, 3)


# --------------------------------------------------------------------------
# Configuration inference
# --------------------------------------------------------------------------


@pytest.mark.parametrize("net", NETS)
def test_config_inferred_from_full_size_state_dict(net):
    cls, _ = NETS[net]
    state = meta_state_dict(cls)
    config = cls.config_from_state_dict(state)
    assert config == FULL_CONFIGS[net]
    with torch.device("meta"):
        cls(**config).load_state_dict(state, strict=True, assign=True)


SMALL_CONFIGS = [
    (LatentHintControlNet, dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(0,),
                                context_dim=64, num_head_channels=32)),
    (LatentHintControlNet, dict(model_channels=32, hint_channels=3, channel_mult=(1, 2, 2), num_res_blocks=(1, 2, 1),
                                attention_levels=(1, 2), transformer_depth=2, context_dim=48)),
    (LatentHintControlNet, dict(model_channels=64, channel_mult=(1,), num_res_blocks=2, attention_levels=(),
                                context_dim=32)),
    (HintEncoder, dict(ch=32, ch_mult=(1, 2), num_res_blocks=1)),
    (HintEncoder, dict(ch=32, ch_mult=(1, 1, 2), num_res_blocks=2, z_channels=2)),
    (RRDBNet, dict(num_feat=16, num_block=2, num_grow_ch=8)),
    (RRDBNet, dict(num_in_ch=1, num_out_ch=1, num_feat=8, num_block=1, num_grow_ch=4)),
]


@pytest.mark.parametrize("cls, config", SMALL_CONFIGS, ids=lambda v: getattr(v, "__name__", None))
def test_config_round_trips_at_small_sizes(cls, config):
    state = seeded(cls, dtype=torch.float32, **config).state_dict()
    inferred = cls.config_from_state_dict(state)
    expected = {**constructor_defaults(cls), **config}
    expected.pop("scale_factor", None)  # not stored in the weights
    if cls is LatentHintControlNet:
        expected.pop("num_head_channels")
        assert inferred.pop("num_head_channels") == 64  # not inferable: SD2's value
    assert inferred == expected
    cls(**inferred).load_state_dict(state, strict=True)


@pytest.mark.parametrize("owner, other", [(a, b) for a in NETS for b in NETS if a != b])
def test_config_inference_rejects_another_networks_state_dict(owner, other):
    small = {"controlnet": SMALL_CN, "hint_encoder": SMALL_HE, "rrdbnet": SMALL_RR}
    state = meta_state_dict(NETS[other][0], **small[other])
    with pytest.raises(ValueError, match="not a"):
        NETS[owner][0].config_from_state_dict(state)


@pytest.mark.parametrize("cls, config, key", [
    (LatentHintControlNet, SMALL_CN, "zero_convs.3.0.weight"),
    (LatentHintControlNet, SMALL_CN, "middle_block.2.out_layers.3.bias"),
    (HintEncoder, SMALL_HE, "encoder.mid.attn_1.q.bias"),
    (HintEncoder, SMALL_HE, "quant_conv.bias"),
    (RRDBNet, SMALL_RR, "body.1.rdb3.conv5.weight"),
])
def test_config_inference_names_a_missing_tensor(cls, config, key):
    state = dict(meta_state_dict(cls, **config))
    del state[key]
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        cls.config_from_state_dict(state)


def test_controlnet_config_rejects_pixel_hint_block_and_wrong_shapes():
    state = dict(meta_state_dict(LatentHintControlNet, **SMALL_CN))
    with pytest.raises(ValueError, match="unexpected: input_hint_block.0.weight"):
        LatentHintControlNet.config_from_state_dict({**state, "input_hint_block.0.weight": torch.empty(16, 3, 3, 3)})
    key = "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"  # context width differs from the middle's
    with pytest.raises(ValueError, match="wrong shape: " + key.replace(".", r"\.")):
        LatentHintControlNet.config_from_state_dict({**state, key: torch.empty(32, 99)})
    conv_proj = {**state, "middle_block.1.proj_in.weight": torch.empty(64, 64, 1, 1)}
    with pytest.raises(ValueError, match="linear"):
        LatentHintControlNet.config_from_state_dict(conv_proj)
    no_hint = {**state, "input_blocks.0.0.weight": torch.empty(32, 4, 3, 3)}
    with pytest.raises(ValueError, match="no room for a hint"):
        LatentHintControlNet.config_from_state_dict(no_hint)


def test_config_inference_points_at_an_unstripped_prefix():
    state = {"control_model." + k: v for k, v in meta_state_dict(LatentHintControlNet, **SMALL_CN).items()}
    with pytest.raises(ValueError, match="strip the checkpoint prefix"):
        LatentHintControlNet.config_from_state_dict(state)


def test_rrdbnet_config_rejects_pixel_unshuffle_variant():
    state = dict(meta_state_dict(RRDBNet, **SMALL_RR))
    state["conv_first.weight"] = torch.empty(16, 12, 3, 3)  # x2 model: 3 channels unshuffled to 12
    with pytest.raises(ValueError, match="x4"):
        RRDBNet.config_from_state_dict(state)


# --------------------------------------------------------------------------
# Functional references, written from the method's description
# --------------------------------------------------------------------------


def conv(sd, key, x, stride=1, padding=None):
    weight = sd[key + ".weight"]
    pad = weight.shape[-1] // 2 if padding is None else padding
    return F.conv2d(x, weight, sd[key + ".bias"], stride=stride, padding=pad)


def linear(sd, key, x):
    return F.linear(x, sd[key + ".weight"], sd.get(key + ".bias"))


def group_norm(sd, key, x, eps):
    return F.group_norm(x, 32, sd[key + ".weight"], sd[key + ".bias"], eps)


def layer_norm(sd, key, x):
    return F.layer_norm(x, x.shape[-1:], sd[key + ".weight"], sd[key + ".bias"], 1e-5)


def softmax_attention(q, k, v, heads):
    """Plain softmax(q k^T / sqrt(d)) v over (B, N, heads*d) tokens."""
    b, n, inner = q.shape
    d = inner // heads
    q, k, v = (t.reshape(b, t.shape[1], heads, d) for t in (q, k, v))
    weights = torch.einsum("bnhd,bmhd->bhnm", q, k) / math.sqrt(d)
    return torch.einsum("bhnm,bmhd->bnhd", weights.softmax(dim=-1), v).reshape(b, n, inner)


def ref_unet_resblock(sd, p, x, emb):
    h = conv(sd, p + "in_layers.2", F.silu(group_norm(sd, p + "in_layers.0", x, 1e-5)))
    h = h + linear(sd, p + "emb_layers.1", F.silu(emb))[:, :, None, None]
    h = conv(sd, p + "out_layers.3", F.silu(group_norm(sd, p + "out_layers.0", h, 1e-5)))
    skip = conv(sd, p + "skip_connection", x) if p + "skip_connection.weight" in sd else x
    return skip + h


def ref_attention(sd, p, x, context, heads):
    q = linear(sd, p + "to_q", x)
    k = linear(sd, p + "to_k", context)
    v = linear(sd, p + "to_v", context)
    return linear(sd, p + "to_out.0", softmax_attention(q, k, v, heads))


def ref_spatial_transformer(sd, p, x, context, head_channels):
    b, c, hgt, wid = x.shape
    heads = c // head_channels
    t = group_norm(sd, p + "norm", x, 1e-6).reshape(b, c, hgt * wid).permute(0, 2, 1)
    t = linear(sd, p + "proj_in", t)
    j = 0
    while f"{p}transformer_blocks.{j}.norm1.weight" in sd:
        q = f"{p}transformer_blocks.{j}."
        n1 = layer_norm(sd, q + "norm1", t)
        t = t + ref_attention(sd, q + "attn1.", n1, n1, heads)
        t = t + ref_attention(sd, q + "attn2.", layer_norm(sd, q + "norm2", t), context, heads)
        projected = linear(sd, q + "ff.net.0.proj", layer_norm(sd, q + "norm3", t))
        inner = projected.shape[-1] // 2
        t = t + linear(sd, q + "ff.net.2", projected[..., :inner] * F.gelu(projected[..., inner:]))
        j += 1
    t = linear(sd, p + "proj_out", t)
    return x + t.permute(0, 2, 1).reshape(b, c, hgt, wid)


def ref_controlnet(sd, x, hint, timesteps, context, head_channels):
    """The DoSSR ControlNet forward, block by block, from the state dict alone."""
    mc = sd["input_blocks.0.0.weight"].shape[0]
    half = mc // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = timesteps.float()[:, None] * freqs[None]  # SD computes the embedding in float32
    t_emb = torch.cat([angles.cos(), angles.sin()], dim=1).to(x.dtype)
    emb = linear(sd, "time_embed.2", F.silu(linear(sd, "time_embed.0", t_emb)))

    def unet_block(p, h):
        if p + "0.op.weight" in sd:
            return conv(sd, p + "0.op", h, stride=2, padding=1)
        h = ref_unet_resblock(sd, p + "0.", h, emb)
        if p + "1.norm.weight" in sd:
            h = ref_spatial_transformer(sd, p + "1.", h, context, head_channels)
        return h

    h = conv(sd, "input_blocks.0.0", torch.cat([x, hint], dim=1))
    residuals = [conv(sd, "zero_convs.0.0", h)]
    i = 1
    while f"zero_convs.{i}.0.weight" in sd:
        h = unet_block(f"input_blocks.{i}.", h)
        residuals.append(conv(sd, f"zero_convs.{i}.0", h))
        i += 1
    h = ref_unet_resblock(sd, "middle_block.0.", h, emb)
    h = ref_spatial_transformer(sd, "middle_block.1.", h, context, head_channels)
    h = ref_unet_resblock(sd, "middle_block.2.", h, emb)
    residuals.append(conv(sd, "middle_block_out.0", h))
    return residuals


def ref_vae_resblock(sd, p, x):
    h = conv(sd, p + "conv1", F.silu(group_norm(sd, p + "norm1", x, 1e-6)))
    h = conv(sd, p + "conv2", F.silu(group_norm(sd, p + "norm2", h, 1e-6)))
    return (conv(sd, p + "nin_shortcut", x) if p + "nin_shortcut.weight" in sd else x) + h


def ref_hint_encoder(sd, image, scale_factor=0.18215):
    """LDM VAE encoder + quant conv on the image mapped to [-1, 1]; mean half of the moments, scaled."""
    h = conv(sd, "encoder.conv_in", image * 2 - 1)
    level = 0
    while f"encoder.down.{level}.block.0.conv1.weight" in sd:
        block = 0
        while f"encoder.down.{level}.block.{block}.conv1.weight" in sd:
            h = ref_vae_resblock(sd, f"encoder.down.{level}.block.{block}.", h)
            block += 1
        if f"encoder.down.{level}.downsample.conv.weight" in sd:
            h = conv(sd, f"encoder.down.{level}.downsample.conv", F.pad(h, (0, 1, 0, 1)), stride=2, padding=0)
        level += 1
    h = ref_vae_resblock(sd, "encoder.mid.block_1.", h)
    p = "encoder.mid.attn_1."
    normed = group_norm(sd, p + "norm", h, 1e-6)
    q, k, v = (conv(sd, p + name, normed).flatten(2) for name in "qkv")  # (B, C, HW)
    weights = torch.einsum("bci,bcj->bij", q, k) / math.sqrt(q.shape[1])
    attended = torch.einsum("bij,bcj->bci", weights.softmax(dim=-1), v).reshape(h.shape)
    h = h + conv(sd, p + "proj_out", attended)
    h = ref_vae_resblock(sd, "encoder.mid.block_2.", h)
    h = conv(sd, "encoder.conv_out", F.silu(group_norm(sd, "encoder.norm_out", h, 1e-6)))
    moments = conv(sd, "quant_conv", h)
    return moments[:, : moments.shape[1] // 2] * scale_factor


def ref_rrdbnet(sd, image):
    """ESRGAN x4 with explicit dense wiring: conv k sees the input and the outputs of convs 1..k-1."""
    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    def dense_block(p, x):
        x1 = lrelu(conv(sd, p + "conv1", x))
        x2 = lrelu(conv(sd, p + "conv2", torch.cat((x, x1), 1)))
        x3 = lrelu(conv(sd, p + "conv3", torch.cat((x, x1, x2), 1)))
        x4 = lrelu(conv(sd, p + "conv4", torch.cat((x, x1, x2, x3), 1)))
        x5 = conv(sd, p + "conv5", torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x

    feat = conv(sd, "conv_first", image)
    body = feat
    n = 0
    while f"body.{n}.rdb1.conv1.weight" in sd:
        inner = body
        for r in ("rdb1", "rdb2", "rdb3"):
            inner = dense_block(f"body.{n}.{r}.", inner)
        body = inner * 0.2 + body
        n += 1
    feat = feat + conv(sd, "conv_body", body)
    feat = lrelu(conv(sd, "conv_up1", F.interpolate(feat, scale_factor=2, mode="nearest")))
    feat = lrelu(conv(sd, "conv_up2", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return torch.clamp(conv(sd, "conv_last", lrelu(conv(sd, "conv_hr", feat))), 0, 1)


# --------------------------------------------------------------------------
# ControlNet behaviour
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_controlnet():
    return seeded(LatentHintControlNet, **SMALL_CN)


def cn_inputs(batch=2, h=8, w=12, seed=1, context_dim=64):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        x=torch.randn(batch, 4, h, w, generator=g, dtype=torch.float64),
        hint=torch.randn(batch, 4, h, w, generator=g, dtype=torch.float64),
        t=torch.tensor([17.0, 480.0][:batch], dtype=torch.float64),
        ctx=torch.randn(batch, 7, context_dim, generator=g, dtype=torch.float64),
    )


def run(net, i, **kw):
    with torch.no_grad():
        return net(kw.pop("x", i.x), kw.pop("hint", i.hint), kw.pop("t", i.t), kw.pop("ctx", i.ctx), **kw)


def expected_skip_shapes(batch, model_channels, channel_mult, num_res_blocks, h, w):
    shapes = [(batch, model_channels, h, w)]
    for level, mult in enumerate(channel_mult):
        shapes += [(batch, model_channels * mult, h, w)] * num_res_blocks
        if level != len(channel_mult) - 1:
            h, w = (h + 1) // 2, (w + 1) // 2
            shapes.append((batch, model_channels * mult, h, w))
    return shapes + [shapes[-1]]  # the middle block keeps the lowest resolution


def test_controlnet_residual_count_and_shapes_match_unet_skips(small_controlnet):
    i = cn_inputs(h=9, w=14)  # odd sizes: each stride-2 conv rounds up
    out = run(small_controlnet, i)
    assert [tuple(o.shape) for o in out] == expected_skip_shapes(2, 64, (1, 2, 2), 2, 9, 14)
    assert tuple(out[-1].shape[-2:]) == (3, 4)
    assert len(out) == 10  # 9 input blocks + middle


def test_controlnet_full_size_gives_sd2_skip_structure():
    skips = expected_skip_shapes(1, 320, (1, 2, 4, 4), 2, 64, 64)
    assert len(skips) == 13
    with torch.device("meta"):
        net = LatentHintControlNet()
        out = net(torch.empty(1, 4, 64, 64), torch.empty(1, 4, 64, 64), torch.empty(1), torch.empty(1, 77, 1024))
    assert [tuple(o.shape) for o in out] == skips


def test_controlnet_matches_functional_reference(small_controlnet):
    i = cn_inputs()
    ours = run(small_controlnet, i)
    ref = ref_controlnet(small_controlnet.state_dict(), i.x, i.hint, i.t, i.ctx, head_channels=32)
    assert len(ours) == len(ref)
    for k, (a, b) in enumerate(zip(ours, ref)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"residual {k}")


def test_controlnet_strength_scales_every_residual_linearly(small_controlnet):
    i = cn_inputs()
    net = small_controlnet
    assert net.strength == 1.0
    base = run(net, i)
    assert all(o.abs().max() > 0 for o in base)
    assert all(torch.count_nonzero(o) == 0 for o in run(net, i, strength=0.0))
    for doubled, b in zip(run(net, i, strength=2.0), base):
        torch.testing.assert_close(doubled, 2 * b, rtol=1e-12, atol=0)
    net.strength = 0.5
    try:
        for halved, b in zip(run(net, i), base):
            torch.testing.assert_close(halved, 0.5 * b, rtol=1e-12, atol=0)
        run(net, i, strength=3.0)
        assert net.strength == 0.5, "a per-call strength must not persist"
    finally:
        net.strength = 1.0


def test_controlnet_hint_changes_every_residual(small_controlnet):
    i = cn_inputs()
    base = run(small_controlnet, i)
    other = run(small_controlnet, i, hint=i.hint + 0.5 * torch.randn_like(i.hint))
    assert all(not torch.allclose(a, b) for a, b in zip(base, other))


def test_controlnet_concatenates_latent_then_hint_at_first_conv():
    net = seeded(LatentHintControlNet, **SMALL_CN)
    assert tuple(net.input_blocks[0][0].weight.shape[:2]) == (64, 8)
    i = cn_inputs()
    with torch.no_grad():
        net.input_blocks[0][0].weight[:, 4:] = 0  # hint channels cut off: the hint must stop mattering
    moved = dict(hint=torch.randn_like(i.hint))
    assert all(torch.equal(a, b) for a, b in zip(run(net, i), run(net, i, **moved)))
    with torch.no_grad():
        net.input_blocks[0][0].weight[:, :4] = 0  # now nothing reaches the first conv at all
    assert all(torch.equal(a, b) for a, b in zip(run(net, i), run(net, i, x=torch.randn_like(i.x))))


def test_controlnet_timestep_enters_after_the_first_conv(small_controlnet):
    i = cn_inputs()
    base = run(small_controlnet, i)
    other = run(small_controlnet, i, t=i.t + 100)
    assert torch.equal(base[0], other[0])  # block 0 is a bare conv
    assert all(not torch.allclose(a, b) for a, b in zip(base[1:], other[1:]))
    as_int = run(small_controlnet, i, t=i.t.long())
    assert all(torch.equal(a, b) for a, b in zip(base, as_int))


def test_controlnet_broadcasts_single_hint_context_and_timestep(small_controlnet):
    i = cn_inputs()
    one = SimpleNamespace(x=i.x, hint=i.hint[:1], t=i.t[:1], ctx=i.ctx[:1])
    many = SimpleNamespace(x=i.x, hint=i.hint[:1].repeat(2, 1, 1, 1), t=i.t[:1].repeat(2),
                           ctx=i.ctx[:1].repeat(2, 1, 1))
    scalar_t = run(small_controlnet, one, t=float(i.t[0]))
    for a, b, c in zip(run(small_controlnet, one), run(small_controlnet, many), scalar_t):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


def test_controlnet_context_enters_through_cross_attention(small_controlnet):
    i = cn_inputs()
    base = run(small_controlnet, i)
    other = run(small_controlnet, i, ctx=torch.randn_like(i.ctx))
    assert torch.equal(base[0], other[0])
    assert all(not torch.allclose(a, b) for a, b in zip(base[1:], other[1:]))


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0.0, 3.0, 999.0])
    emb = timestep_embedding(t, 6)
    freqs = [10000 ** (-k / 3) for k in range(3)]
    expected = [[math.cos(s * f) for f in freqs] + [math.sin(s * f) for f in freqs] for s in t.tolist()]
    torch.testing.assert_close(emb, torch.tensor(expected), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# Hint encoder behaviour
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_hint_encoder():
    return seeded(HintEncoder, **SMALL_HE)


def unit_image(batch=2, h=32, w=48, seed=2):
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_hint_encoder_output_is_latent_sized(small_hint_encoder):
    for h, w in ((32, 48), (40, 16)):
        with torch.no_grad():
            out = small_hint_encoder(unit_image(h=h, w=w))
        assert tuple(out.shape) == (2, 4, h // 8, w // 8)


def test_hint_encoder_matches_functional_reference(small_hint_encoder):
    image = unit_image()
    sd = small_hint_encoder.state_dict()
    with torch.no_grad():
        ours = small_hint_encoder(image)
    torch.testing.assert_close(ours, ref_hint_encoder(sd, image), rtol=1e-9, atol=1e-10)
    # the reference is sensitive to the input range: an unmapped image gives something else
    assert not torch.allclose(ours, ref_hint_encoder(sd, (image + 1) / 2), rtol=1e-3, atol=1e-4)


def test_hint_encoder_applies_scale_factor(small_hint_encoder):
    assert small_hint_encoder.scale_factor == 0.18215
    unscaled = HintEncoder(**SMALL_HE, scale_factor=1.0).double().eval()
    unscaled.load_state_dict(small_hint_encoder.state_dict())
    image = unit_image()
    with torch.no_grad():
        torch.testing.assert_close(small_hint_encoder(image), 0.18215 * unscaled(image), rtol=1e-12, atol=1e-14)


class _Probe(nn.Module):
    """Stands in for the VAE encoder: records its input, returns fixed moments."""

    def __init__(self, moments):
        super().__init__()
        self.moments = moments
        self.seen = None

    def forward(self, x):
        self.seen = x
        return self.moments


def test_hint_encoder_maps_unit_range_and_takes_gaussian_mode():
    net = HintEncoder(**SMALL_HE).double()
    moments = torch.randn(2, 8, 4, 6, dtype=torch.float64)
    net.encoder = _Probe(moments)
    with torch.no_grad():  # quant conv as identity: the output is then mean * scale
        net.quant_conv.weight.copy_(torch.eye(8, dtype=torch.float64)[:, :, None, None])
        net.quant_conv.bias.zero_()
    image = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64).reshape(1, 1, 1, 4).expand(2, 3, 1, 4)
    with torch.no_grad():
        out = net(image)
    expected_input = torch.tensor([-1.0, -0.5, 0.0, 1.0], dtype=torch.float64).expand(2, 3, 1, 4)
    torch.testing.assert_close(net.encoder.seen, expected_input, rtol=0, atol=0)
    torch.testing.assert_close(out, moments[:, :4] * 0.18215, rtol=1e-15, atol=0)


# --------------------------------------------------------------------------
# RRDBNet behaviour
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_rrdbnet():
    net = seeded(RRDBNet, **SMALL_RR)
    with torch.no_grad():
        net.conv_last.bias.fill_(0.5)  # centre the output so that most of it is not clamped
    return net


def test_rrdbnet_upscales_by_four(small_rrdbnet):
    assert small_rrdbnet.scale == 4
    with torch.no_grad():
        out = small_rrdbnet(unit_image(batch=1, h=8, w=12))
    assert tuple(out.shape) == (1, 3, 32, 48)


def test_rrdbnet_matches_dense_wiring_reference(small_rrdbnet):
    image = unit_image(batch=1, h=10, w=14)
    with torch.no_grad():
        ours = small_rrdbnet(image)
    ref = ref_rrdbnet(small_rrdbnet.state_dict(), image)
    inside = ((ref > 0) & (ref < 1)).double().mean()
    assert inside > 0.5, "reference mostly clamped: the comparison would prove little"
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-10)


def test_rrdbnet_output_is_clamped_to_unit_range():
    net = seeded(RRDBNet, **SMALL_RR)
    with torch.no_grad():
        net.conv_last.bias.copy_(torch.tensor([1e3, -1e3, 0.5], dtype=torch.float64))
        out = net(unit_image(batch=1, h=6, w=6))
    assert torch.all(out[:, 0] == 1) and torch.all(out[:, 1] == 0)
    assert out.min() >= 0 and out.max() <= 1


# --------------------------------------------------------------------------
# Differential tests against the host's modules (ComfyUI) and spandrel
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host_nets():
    """The host's UNet and VAE modules (``openaimodel``, ``vae_model``), imported from
    COMFYUI_PATH. Not named ``comfy``: a name that shadows the host's package makes static
    checkers (comfy-import-guard) read ``comfy.openaimodel`` as a ComfyUI symbol."""
    root = os.environ.get("COMFYUI_PATH")
    if not root or not (Path(root) / "comfy").is_dir():
        pytest.skip("set COMFYUI_PATH to a ComfyUI tree to compare with the host's modules")
    if root not in sys.path:
        sys.path.insert(0, root)
    saved_argv = sys.argv
    sys.argv = [saved_argv[0], "--cpu"]
    try:
        import comfy.options

        comfy.options.enable_args_parsing()
        import comfy.ldm.modules.diffusionmodules.model as vae_model
        import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    except Exception as err:  # a host named for the tests must import: never a skip
        pytest.fail(f"cannot import ComfyUI from {root}: {err!r}")
    finally:
        sys.argv = saved_argv
    return SimpleNamespace(openaimodel=openaimodel, vae_model=vae_model)


def test_controlnet_matches_host_unet_encoder_half(host_nets):
    om = host_nets.openaimodel
    levels, blocks = len(SMALL_CN["channel_mult"]), SMALL_CN["num_res_blocks"]
    with_attention = [int(level in SMALL_CN["attention_levels"]) for level in range(levels)]
    ours = seeded(LatentHintControlNet, dtype=torch.float32, **SMALL_CN)
    host = om.UNetModel(
        image_size=None, in_channels=8, model_channels=SMALL_CN["model_channels"], out_channels=4,
        num_res_blocks=blocks, channel_mult=SMALL_CN["channel_mult"], num_head_channels=32,
        use_spatial_transformer=True,
        transformer_depth=[d for d in with_attention for _ in range(blocks)],
        transformer_depth_output=[d for d in reversed(with_attention) for _ in range(blocks + 1)],
        transformer_depth_middle=1, context_dim=64, use_linear_in_transformer=True, legacy=False,
        dtype=torch.float32,
    ).eval()
    shared = {k: v for k, v in ours.state_dict().items() if not k.startswith(("zero_convs.", "middle_block_out."))}
    missing, unexpected = host.load_state_dict(shared, strict=False)
    assert unexpected == []
    assert [k for k in missing if not k.startswith(("output_blocks.", "out."))] == []

    i = cn_inputs()
    x, hint, t, ctx = (v.float() for v in (i.x, i.hint, i.t, i.ctx))
    with torch.no_grad():
        emb = host.time_embed(om.timestep_embedding(t, SMALL_CN["model_channels"], repeat_only=False).to(x.dtype))
        h = torch.cat([x, hint], dim=1)
        features = []
        for module in list(host.input_blocks) + [host.middle_block]:
            h = om.forward_timestep_embed(module, h, emb, ctx)
            features.append(h)
        expected = [zc(f) for zc, f in zip(list(ours.zero_convs) + [ours.middle_block_out], features)]
        got = ours(x, hint, t, ctx)
    assert len(got) == len(expected)
    for k, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=f"residual {k}")


def test_hint_encoder_matches_host_vae_encoder(host_nets):
    ours = seeded(HintEncoder, dtype=torch.float32, **SMALL_HE)
    host = host_nets.vae_model.Encoder(
        ch=32, out_ch=3, ch_mult=SMALL_HE["ch_mult"], num_res_blocks=SMALL_HE["num_res_blocks"],
        attn_resolutions=[], in_channels=3, resolution=64, z_channels=4, double_z=True,
    ).eval()
    sd = ours.state_dict()
    host.load_state_dict({k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}, strict=True)
    image = unit_image().float()
    with torch.no_grad():
        moments = F.conv2d(host(image * 2 - 1), sd["quant_conv.weight"], sd["quant_conv.bias"])
        torch.testing.assert_close(ours(image), moments[:, :4] * 0.18215, rtol=1e-4, atol=1e-5)


def test_rrdbnet_matches_spandrel_esrgan():
    if importlib.util.find_spec("spandrel") is None:
        pytest.skip("spandrel is not installed (the host environments have it)")
    from tests.hostlib import server as hs

    needed = hs.stubs_needed()   # spandrel imports torchvision, which may not load beside CPU torch
    if needed and str(hs.stub_path(needed)) not in sys.path:
        sys.path.append(str(hs.stub_path(needed)))
    import spandrel

    ours = seeded(RRDBNet, dtype=torch.float32, num_feat=16, num_block=2)  # spandrel fixes the growth at 32
    descriptor = spandrel.ModelLoader().load_from_state_dict(ours.state_dict())
    assert descriptor.scale == 4
    image = unit_image(batch=1, h=10, w=14).float()
    with torch.no_grad():
        theirs = descriptor.model.eval()(image).clamp(0, 1)
        torch.testing.assert_close(ours(image), theirs, rtol=1e-5, atol=1e-5)
