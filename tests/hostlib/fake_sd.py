"""Random-weight Stable Diffusion checkpoints for host (ComfyUI) integration tests.

Writes single-file checkpoints in the original LDM layout

* ``model.diffusion_model.*``  - the UNet (openaimodel ``UNetModel`` key names),
* ``first_stage_model.*``      - the KL-f8 VAE (ch 128, mult 1,2,4,4, 2 res blocks, z 4),
* ``cond_stage_model.model.*`` - the OpenCLIP ViT-H text tower (SD2 variants), or
  ``cond_stage_model.transformer.text_model.*`` - the HF CLIP-L text model (SD1.5 variant),

so that ComfyUI's ``CheckpointLoaderSimple`` detects them as ``SD20`` / ``SD15`` and loads
them with no missing or unexpected UNet/VAE/CLIP weights. The key and shape lists are
generated here from the architecture; nothing is imported from ComfyUI.

Variants (see :data:`VARIANTS`):

``sd2_mini``  SD2 skip structure (12 input-block skips + middle block, attention on the
              first three levels, linear transformers, context 1024, 64-channel heads)
              but every level 320 channels. ~114 M UNet parameters.
``sd2_full``  the real SD 2.1-base UNet (channel_mult 1,2,4,4): 865,910,724 parameters.
``sd2_tiny``  channel_mult [1], one res block, one transformer, no middle block (2 skips).
``sd2_v``     ``sd2_mini`` whose ``output_blocks.11.1.transformer_blocks.0.norm1.bias`` has a
              std > 0.09, which makes the host choose V-prediction.
``sd15_mini`` SD1.5 layout (context 768, conv 1x1 proj_in/proj_out, 8 heads, CLIP-L text
              encoder) with every level 320 channels.

Weights are drawn tensor by tensor from a generator seeded with (seed, key), so a file is
deterministic for a seed, any tensor can be regenerated alone, and the writer streams the
safetensors file without holding the whole model in memory. Initialisation: matrices and
convolutions ~ N(0, 0.02^2) (capped at 1/sqrt(fan_in)), biases ~ N(0, 1e-3^2), norm
weights 1 and biases 0; this keeps every module's output finite and O(1) in fp16.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct

import torch

__all__ = [
    "VARIANTS",
    "unet_config",
    "unet_block_channels",
    "checkpoint_specs",
    "checkpoint_key_shapes",
    "make_tensor",
    "write_fake_sd_checkpoint",
]

# ----------------------------------------------------------------------------- variants

_SD2_TEXT = "openclip_h"
_SD1_TEXT = "clip_l"

VARIANTS = {
    "sd2_mini": dict(family="sd2", channel_mult=(1, 1, 1, 1), num_res_blocks=2,
                     attention_levels=(0, 1, 2), middle_block=True, v_prediction=False),
    "sd2_full": dict(family="sd2", channel_mult=(1, 2, 4, 4), num_res_blocks=2,
                     attention_levels=(0, 1, 2), middle_block=True, v_prediction=False),
    "sd2_tiny": dict(family="sd2", channel_mult=(1,), num_res_blocks=1,
                     attention_levels=(0,), middle_block=False, v_prediction=False),
    "sd2_v": dict(family="sd2", channel_mult=(1, 1, 1, 1), num_res_blocks=2,
                  attention_levels=(0, 1, 2), middle_block=True, v_prediction=True),
    "sd15_mini": dict(family="sd15", channel_mult=(1, 1, 1, 1), num_res_blocks=2,
                      attention_levels=(0, 1, 2), middle_block=True, v_prediction=False),
}

_FAMILY = {
    # context_dim, use_linear_in_transformer, heads rule, text encoder
    "sd2": dict(context_dim=1024, use_linear_in_transformer=True, num_heads=-1,
                num_head_channels=64, text_encoder=_SD2_TEXT),
    "sd15": dict(context_dim=768, use_linear_in_transformer=False, num_heads=8,
                 num_head_channels=-1, text_encoder=_SD1_TEXT),
}

_MODEL_CHANNELS = 320  # the host's SD15/SD20 configs require exactly 320
_LATENT_CHANNELS = 4
_TIME_EMBED = 4 * _MODEL_CHANNELS

# std of output_blocks.11.1.transformer_blocks.0.norm1.bias for sd2_v (host threshold: 0.09)
_V_MARKER_STD = 0.25
_V_MARKER_KEY = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"


def _variant(variant):
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown fake SD variant {variant!r}; choose from {sorted(VARIANTS)}") from None


def unet_config(variant="sd2_mini"):
    """UNet hyper-parameters of *variant* (the values the host's detector should find)."""
    v = _variant(variant)
    fam = _FAMILY[v["family"]]
    levels = len(v["channel_mult"])
    depth = [1 if lvl in v["attention_levels"] else 0 for lvl in range(levels)]
    return {
        "family": v["family"],
        "in_channels": _LATENT_CHANNELS,
        "out_channels": _LATENT_CHANNELS,
        "model_channels": _MODEL_CHANNELS,
        "channel_mult": list(v["channel_mult"]),
        "num_res_blocks": [v["num_res_blocks"]] * levels,
        "transformer_depth_per_level": depth,
        "transformer_depth_middle": 1 if v["middle_block"] else None,
        "context_dim": fam["context_dim"],
        "use_linear_in_transformer": fam["use_linear_in_transformer"],
        "num_heads": fam["num_heads"],
        "num_head_channels": fam["num_head_channels"],
        "v_prediction": v["v_prediction"],
        "text_encoder": fam["text_encoder"],
    }


def unet_block_channels(variant="sd2_mini"):
    """Channels of the UNet skips a ControlNet for *variant* must produce.

    Returns ``{"input": [c0, c1, ...], "input_downsample": [d0, d1, ...],
    "middle": c or None, "middle_downsample": d}`` where ``input[i]`` is the channel count of
    the output of ``input_blocks[i]`` (the skip that ``control["output"][i]`` is added to;
    12 entries for the SD2 layouts, 2 for ``sd2_tiny``), ``input_downsample[i]`` its spatial
    reduction relative to the latent (1, 2, 4 or 8), and ``middle`` the middle block's
    channel count (``None`` when the UNet has no middle block; the host still adds
    ``control["middle"]`` to the hidden state there).
    """
    cfg = unet_config(variant)
    mc = cfg["model_channels"]
    chans, downs = [mc], [1]
    ch, ds = mc, 1
    mults = cfg["channel_mult"]
    for level, mult in enumerate(mults):
        for _ in range(cfg["num_res_blocks"][level]):
            ch = mult * mc
            chans.append(ch)
            downs.append(ds)
        if level != len(mults) - 1:
            ds *= 2
            chans.append(ch)
            downs.append(ds)
    return {
        "input": chans,
        "input_downsample": downs,
        "middle": ch if cfg["transformer_depth_middle"] is not None else None,
        "middle_downsample": ds,
    }


# ----------------------------------------------------------------------------- key specs
# A spec is (key, shape, init) with init one of:
#   "w"    weight matrix / conv kernel, N(0, min(0.02, 1/sqrt(fan_in)))
#   "b"    linear/conv bias, N(0, 1e-3)
#   "one"  norm weight (1)         "zero" norm bias (0)
#   "emb"  token embedding N(0, 0.02)   "pos" positional embedding N(0, 0.01)
#   ("const", value)  scalar constant    ("normal", std)  explicit normal


def _linear(prefix, n_in, n_out, bias=True):
    out = [(prefix + ".weight", (n_out, n_in), "w")]
    if bias:
        out.append((prefix + ".bias", (n_out,), "b"))
    return out


def _conv(prefix, n_in, n_out, k=3, bias=True):
    out = [(prefix + ".weight", (n_out, n_in, k, k), "w")]
    if bias:
        out.append((prefix + ".bias", (n_out,), "b"))
    return out


def _norm(prefix, n):
    return [(prefix + ".weight", (n,), "one"), (prefix + ".bias", (n,), "zero")]


def _unet_resblock(p, ch, out_ch):
    s = []
    s += _norm(p + ".in_layers.0", ch)
    s += _conv(p + ".in_layers.2", ch, out_ch)
    s += _linear(p + ".emb_layers.1", _TIME_EMBED, out_ch)
    s += _norm(p + ".out_layers.0", out_ch)
    s += _conv(p + ".out_layers.3", out_ch, out_ch)
    if out_ch != ch:
        s += _conv(p + ".skip_connection", ch, out_ch, k=1)
    return s


def _unet_transformer(p, ch, context_dim, linear):
    s = _norm(p + ".norm", ch)
    s += _linear(p + ".proj_in", ch, ch) if linear else _conv(p + ".proj_in", ch, ch, k=1)
    b = p + ".transformer_blocks.0"
    for attn, kv_dim in (("attn1", ch), ("attn2", context_dim)):
        s += _linear(f"{b}.{attn}.to_q", ch, ch, bias=False)
        s += _linear(f"{b}.{attn}.to_k", kv_dim, ch, bias=False)
        s += _linear(f"{b}.{attn}.to_v", kv_dim, ch, bias=False)
        s += _linear(f"{b}.{attn}.to_out.0", ch, ch)
    s += _linear(b + ".ff.net.0.proj", ch, 8 * ch)  # GEGLU: 2 x (4 * ch)
    s += _linear(b + ".ff.net.2", 4 * ch, ch)
    for n in ("norm1", "norm2", "norm3"):
        s += _norm(f"{b}.{n}", ch)
    s += _linear(p + ".proj_out", ch, ch) if linear else _conv(p + ".proj_out", ch, ch, k=1)
    return s


def _unet_specs(variant, prefix="model.diffusion_model."):
    cfg = unet_config(variant)
    mc, ctx, lin = cfg["model_channels"], cfg["context_dim"], cfg["use_linear_in_transformer"]
    mults, nrb, depth = cfg["channel_mult"], cfg["num_res_blocks"], cfg["transformer_depth_per_level"]
    P = prefix
    s = []
    s += _linear(P + "time_embed.0", mc, _TIME_EMBED)
    s += _linear(P + "time_embed.2", _TIME_EMBED, _TIME_EMBED)
    s += _conv(P + "input_blocks.0.0", cfg["in_channels"], mc)
    skips = [mc]
    ch, idx = mc, 1
    for level, mult in enumerate(mults):
        for _ in range(nrb[level]):
            out_ch = mult * mc
            s += _unet_resblock(f"{P}input_blocks.{idx}.0", ch, out_ch)
            ch = out_ch
            if depth[level]:
                s += _unet_transformer(f"{P}input_blocks.{idx}.1", ch, ctx, lin)
            skips.append(ch)
            idx += 1
        if level != len(mults) - 1:
            s += _conv(f"{P}input_blocks.{idx}.0.op", ch, ch)  # Downsample, stride 2
            skips.append(ch)
            idx += 1
    if cfg["transformer_depth_middle"] is not None:
        s += _unet_resblock(P + "middle_block.0", ch, ch)
        s += _unet_transformer(P + "middle_block.1", ch, ctx, lin)
        s += _unet_resblock(P + "middle_block.2", ch, ch)
    idx = 0
    for level in reversed(range(len(mults))):
        for i in range(nrb[level] + 1):
            skip_ch = skips.pop()
            out_ch = mc * mults[level]
            s += _unet_resblock(f"{P}output_blocks.{idx}.0", ch + skip_ch, out_ch)
            ch = out_ch
            sub = 1
            if depth[level]:
                s += _unet_transformer(f"{P}output_blocks.{idx}.1", ch, ctx, lin)
                sub = 2
            if level and i == nrb[level]:
                s += _conv(f"{P}output_blocks.{idx}.{sub}.conv", ch, ch)  # Upsample conv
            idx += 1
    s += _norm(P + "out.0", ch)
    s += _conv(P + "out.2", mc, cfg["out_channels"])
    if cfg["v_prediction"]:
        s = [(k, shp, ("normal", _V_MARKER_STD)) if k == _V_MARKER_KEY else (k, shp, init)
             for k, shp, init in s]
        if not any(k == _V_MARKER_KEY for k, _, _ in s):
            raise AssertionError("v-prediction marker key missing from the UNet layout")
    return s


def _vae_resblock(p, n_in, n_out):
    s = _norm(p + ".norm1", n_in) + _conv(p + ".conv1", n_in, n_out)
    s += _norm(p + ".norm2", n_out) + _conv(p + ".conv2", n_out, n_out)
    if n_in != n_out:
        s += _conv(p + ".nin_shortcut", n_in, n_out, k=1)
    return s


def _vae_attn(p, ch):
    s = _norm(p + ".norm", ch)
    for n in ("q", "k", "v", "proj_out"):
        s += _conv(f"{p}.{n}", ch, ch, k=1)
    return s


def _vae_specs(prefix="first_stage_model."):
    ch, mult, nrb, z = 128, (1, 2, 4, 4), 2, 4
    P = prefix
    s = []
    # encoder
    s += _conv(P + "encoder.conv_in", 3, ch)
    block_in = ch
    for lvl, m in enumerate(mult):
        block_out = ch * m
        for j in range(nrb):
            s += _vae_resblock(f"{P}encoder.down.{lvl}.block.{j}", block_in, block_out)
            block_in = block_out
        if lvl != len(mult) - 1:
            s += _conv(f"{P}encoder.down.{lvl}.downsample.conv", block_in, block_in)
    s += _vae_resblock(P + "encoder.mid.block_1", block_in, block_in)
    s += _vae_attn(P + "encoder.mid.attn_1", block_in)
    s += _vae_resblock(P + "encoder.mid.block_2", block_in, block_in)
    s += _norm(P + "encoder.norm_out", block_in)
    s += _conv(P + "encoder.conv_out", block_in, 2 * z)
    s += _conv(P + "quant_conv", 2 * z, 2 * z, k=1)
    s += _conv(P + "post_quant_conv", z, z, k=1)
    # decoder
    block_in = ch * mult[-1]
    s += _conv(P + "decoder.conv_in", z, block_in)
    s += _vae_resblock(P + "decoder.mid.block_1", block_in, block_in)
    s += _vae_attn(P + "decoder.mid.attn_1", block_in)
    s += _vae_resblock(P + "decoder.mid.block_2", block_in, block_in)
    for lvl in reversed(range(len(mult))):
        block_out = ch * mult[lvl]
        for j in range(nrb + 1):
            s += _vae_resblock(f"{P}decoder.up.{lvl}.block.{j}", block_in, block_out)
            block_in = block_out
        if lvl != 0:
            s += _conv(f"{P}decoder.up.{lvl}.upsample.conv", block_in, block_in)
    s += _norm(P + "decoder.norm_out", block_in)
    s += _conv(P + "decoder.conv_out", block_in, 3)
    return s


def _openclip_h_specs(prefix="cond_stage_model.model."):
    """OpenCLIP ViT-H/14 text tower as stored in SD2 checkpoints (24 layers, width 1024)."""
    w, layers, ctx, vocab, mlp = 1024, 24, 77, 49408, 4096
    P = prefix
    s = [(P + "positional_embedding", (ctx, w), "pos"),
         (P + "token_embedding.weight", (vocab, w), "emb")]
    for i in range(layers):
        b = f"{P}transformer.resblocks.{i}"
        s += _norm(b + ".ln_1", w)
        s += [(b + ".attn.in_proj_weight", (3 * w, w), "w"), (b + ".attn.in_proj_bias", (3 * w,), "b")]
        s += _linear(b + ".attn.out_proj", w, w)
        s += _norm(b + ".ln_2", w)
        s += _linear(b + ".mlp.c_fc", w, mlp)
        s += _linear(b + ".mlp.c_proj", mlp, w)
    s += _norm(P + "ln_final", w)
    s += [(P + "text_projection", (w, w), "w"),  # stored [in, out]; the host transposes it
          (P + "logit_scale", (), ("const", math.log(100.0)))]
    return s


def _clip_l_specs(prefix="cond_stage_model.transformer.text_model."):
    """HF CLIPTextModel (ViT-L/14 text) as stored in SD1.x checkpoints (12 layers, width 768).

    Like real SD1.5 files there is no text_projection / logit_scale (the host only logs
    those two as missing at debug level) and no position_ids buffer.
    """
    w, layers, ctx, vocab, mlp = 768, 12, 77, 49408, 3072
    P = prefix
    s = [(P + "embeddings.token_embedding.weight", (vocab, w), "emb"),
         (P + "embeddings.position_embedding.weight", (ctx, w), "pos")]
    for i in range(layers):
        b = f"{P}encoder.layers.{i}"
        for n in ("k_proj", "v_proj", "q_proj", "out_proj"):
            s += _linear(f"{b}.self_attn.{n}", w, w)
        s += _norm(b + ".layer_norm1", w)
        s += _linear(b + ".mlp.fc1", w, mlp)
        s += _linear(b + ".mlp.fc2", mlp, w)
        s += _norm(b + ".layer_norm2", w)
    s += _norm(P + "final_layer_norm", w)
    return s


def checkpoint_specs(variant="sd2_mini"):
    """``[(key, shape, init), ...]`` for every tensor of the *variant* checkpoint, in file order."""
    cfg = unet_config(variant)
    text = _openclip_h_specs() if cfg["text_encoder"] == _SD2_TEXT else _clip_l_specs()
    specs = _unet_specs(variant) + _vae_specs() + text
    keys = [k for k, _, _ in specs]
    if len(keys) != len(set(keys)):
        raise AssertionError("duplicate keys in fake checkpoint layout")
    return specs


def checkpoint_key_shapes(variant="sd2_mini"):
    """``{key: shape}`` of the *variant* checkpoint (no tensors are created)."""
    return {k: tuple(shape) for k, shape, _ in checkpoint_specs(variant)}


# ----------------------------------------------------------------------------- tensors


def _key_seed(seed, key):
    h = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def make_tensor(key, shape, init, seed=0, dtype=torch.float16):
    """Create one tensor deterministically from (seed, key) with the given init rule."""
    shape = tuple(shape)
    if isinstance(init, tuple) and init[0] == "const":
        return torch.full(shape, float(init[1]), dtype=torch.float32).to(dtype)
    if init == "one":
        return torch.ones(shape, dtype=dtype)
    if init == "zero":
        return torch.zeros(shape, dtype=dtype)
    if init == "w":
        fan_in = max(1, math.prod(shape[1:]))
        std = min(0.02, 1.0 / math.sqrt(fan_in))
    elif init == "b":
        std = 1e-3
    elif init == "emb":
        std = 0.02
    elif init == "pos":
        std = 0.01
    elif isinstance(init, tuple) and init[0] == "normal":
        std = float(init[1])
    else:
        raise ValueError(f"unknown init {init!r} for {key}")
    g = torch.Generator(device="cpu")
    g.manual_seed(_key_seed(seed, key))
    t = torch.randn(shape, generator=g, dtype=torch.float32)
    t.mul_(std)
    return t.to(dtype)


_ST_DTYPES = {
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float64: "F64",
}


def write_fake_sd_checkpoint(path, variant="sd2_mini", dtype=torch.float16, seed=0):
    """Write a random-weight *variant* checkpoint to *path* (``.safetensors``) and return *path*.

    The safetensors file is streamed tensor by tensor (peak extra memory: one tensor in
    fp32). Same (variant, dtype, seed) -> byte-identical file. Metadata records the variant
    and seed under ``fake_sd.*``.
    """
    if dtype not in _ST_DTYPES:
        raise ValueError(f"unsupported dtype {dtype}; use one of {list(_ST_DTYPES)}")
    specs = checkpoint_specs(variant)
    itemsize = torch.tensor([], dtype=dtype).element_size()
    header = {}
    offset = 0
    for key, shape, _ in specs:
        n = math.prod(shape) * itemsize
        header[key] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {
        "format": "pt",
        "fake_sd.variant": variant,
        "fake_sd.seed": str(int(seed)),
        "fake_sd.generator": "tests/hostlib/fake_sd.py",
    }
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # keep the data section 8-byte aligned

    path = os.fspath(path)
    tmp = path + ".partial"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for key, shape, init in specs:
                t = make_tensor(key, shape, init, seed=seed, dtype=dtype).reshape(-1).contiguous()
                f.write(t.view(torch.uint8).numpy().tobytes())
                del t
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


if __name__ == "__main__":  # python fake_sd.py VARIANT OUT.safetensors [seed]
    import sys
    import time

    var, out = sys.argv[1], sys.argv[2]
    sd_seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    t0 = time.perf_counter()
    write_fake_sd_checkpoint(out, var, seed=sd_seed)
    print(f"{var}: {out} {os.path.getsize(out) / 1e9:.3f} GB in {time.perf_counter() - t0:.1f} s")
