"""DoSSR checkpoints with the real architecture and random weights, written as real files.

``SIZES`` names the network configurations the tests use: ``small`` is cheap
everywhere, ``mini`` matches the host's "mini" SD2 UNet (all levels 320
channels, SD2 skip structure), ``full`` is the released size.
"""

from __future__ import annotations

import torch

from dossr_core.nets import HintEncoder, LatentHintControlNet, RRDBNet

SIZES = {
    "small": dict(
        controlnet=dict(model_channels=64, channel_mult=(1, 2), num_res_blocks=1,
                        attention_levels=(0,), context_dim=64),
        hint_encoder=dict(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1),
        preprocessor=dict(num_feat=16, num_block=2, num_grow_ch=8)),
    "mini": dict(
        controlnet=dict(model_channels=320, channel_mult=(1, 1, 1, 1), num_res_blocks=2,
                        attention_levels=(0, 1, 2), context_dim=1024),
        hint_encoder=dict(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1),
        preprocessor=dict(num_feat=16, num_block=2, num_grow_ch=32)),   # spandrel assumes 32
    "full": dict(controlnet={}, hint_encoder={}, preprocessor={}),
}
PREFIXES = {"controlnet": "control_model.", "hint_encoder": "cond_encoder.",
            "preprocessor": "preprocess_model."}
CLASSES = {"controlnet": LatentHintControlNet, "hint_encoder": HintEncoder, "preprocessor": RRDBNet}


def dossr_state_dict(size: str = "small", seed: int = 0, dtype=torch.float32,
                     parts=("controlnet", "hint_encoder", "preprocessor")) -> dict:
    """Prefixed DoSSR tensors of freshly initialised networks (deterministic per seed)."""
    torch.manual_seed(seed)
    out = {}
    for part in parts:
        net = CLASSES[part](**SIZES[size][part])
        out.update({PREFIXES[part] + k: v.to(dtype) for k, v in net.state_dict().items()})
    return out


def sd_extras(nbytes: int = 4096) -> dict:
    """Stand-ins for the SD 2.1 tensors and schedule buffers the released files also hold."""
    n = max(nbytes // 4 // 3, 1)
    return {
        "model.diffusion_model.input_blocks.0.0.weight": torch.randn(n),
        "first_stage_model.encoder.conv_in.weight": torch.randn(n),
        "cond_stage_model.model.token_embedding.weight": torch.randn(n),
        "betas": torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64),
        "alphas_cumprod": torch.linspace(1, 0.01, 1000, dtype=torch.float64),
    }


def write_ckpt(path, tensors: dict, *, wrap: bool = True, extras_bytes: int = 4096) -> None:
    """A released-style torch zip pickle: ``{"state_dict": ..., "global_step": ...}``."""
    sd = dict(tensors)
    sd.update(sd_extras(extras_bytes))
    torch.save({"state_dict": sd, "global_step": 12345, "epoch": 3} if wrap else sd, str(path))


def write_safetensors(path, tensors: dict) -> None:
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
