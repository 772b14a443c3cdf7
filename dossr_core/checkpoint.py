"""DoSSR networks from a checkpoint's tensors (DESIGN §1).

The released ``.ckpt`` files are Lightning training checkpoints that also carry
a full SD 2.1-base copy. ``safe_load`` reads them tensors-only, memory-mapped
copy-on-write, so only the tensors used are ever read from disk. A
``.safetensors`` file with the same key names works the same way.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import torch

from .errors import CheckpointError
from .nets import HintEncoder, LatentHintControlNet, RRDBNet
from .safe_load import checkpoint_shapes, read_state_dict  # noqa: F401  (re-exported)

PARTS = {  # attribute -> (checkpoint prefix, network, required)
    "controlnet": ("control_model.", LatentHintControlNet, True),
    "hint_encoder": ("cond_encoder.", HintEncoder, True),
    "preprocessor": ("preprocess_model.", RRDBNet, False),
}
SD_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")


@dataclass(frozen=True)
class DoSSRConfig:
    """What was loaded: each network's constructor arguments, the dtype and the source."""

    controlnet: dict
    hint_encoder: dict
    preprocessor: Optional[dict]
    dtype: torch.dtype
    path: str


@dataclass
class DoSSRModel:
    """The three trained parts, in eval mode without gradients."""

    controlnet: LatentHintControlNet
    hint_encoder: HintEncoder
    preprocessor: Optional[RRDBNet]
    config: DoSSRConfig


def is_dossr_key(key) -> bool:
    return isinstance(key, str) and key.startswith(tuple(p for p, _, _ in PARTS.values()))


def is_backbone_key(key) -> bool:
    return isinstance(key, str) and key.startswith(SD_PREFIXES)


def require_dossr(path: str, tensors: dict) -> None:
    """CheckpointError unless ``tensors`` (read from ``path``) hold the DoSSR ControlNet."""
    if not any(k.startswith(PARTS["controlnet"][0]) for k in tensors):
        raise CheckpointError(_not_dossr_message(path, list(checkpoint_shapes(path))))


def read_dossr_tensors(path: str) -> dict:
    """The DoSSR tensors of ``path`` under their checkpoint names; nothing else is kept."""
    tensors = read_state_dict(path, wanted=is_dossr_key)
    require_dossr(path, tensors)
    return tensors


def _not_dossr_message(path: str, keys) -> str:
    keys = [str(k) for k in keys]
    sample = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    hint = ""
    if any(k.startswith(SD_PREFIXES) for k in keys):
        hint = (" It looks like a plain Stable Diffusion checkpoint: load that with the host's "
                "checkpoint loader, and pick the DoSSR file (dossr_default / dossr_onestep) here.")
    return (f"{path} is not a DoSSR checkpoint: it has no 'control_model.*' tensors "
            f"({len(keys)} entries, e.g. {sample}).{hint}")


def split_parts(tensors: dict) -> dict:
    """``{attribute: state dict without its prefix}`` for each part present."""
    parts = {}
    for attr, (prefix, _, _) in PARTS.items():
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if sd:
            parts[attr] = sd
    return parts


def stored_dtype(tensors: dict) -> torch.dtype:
    """The most common floating dtype among ``tensors`` (what the file was saved in)."""
    counts = Counter(t.dtype for t in tensors.values() if t.is_floating_point())
    return counts.most_common(1)[0][0] if counts else torch.float32


def infer_configs(path: str, parts: dict) -> dict:
    """Each part's constructor arguments from its tensor shapes; one clear error if unfit."""
    configs = {}
    for attr, (prefix, net_cls, required) in PARTS.items():
        if attr not in parts:
            if required:
                raise CheckpointError(f"{path} has no '{prefix}*' tensors: it is not a complete "
                                      f"DoSSR checkpoint (the {attr} is missing)")
            continue
        try:
            configs[attr] = net_cls.config_from_state_dict(parts[attr])
        except ValueError as err:
            raise CheckpointError(f"{path}: the '{prefix}*' tensors do not form a DoSSR "
                                  f"{net_cls.__name__}: {err}") from err
    return configs


def _build(net_cls, config: dict, state_dict: dict, device, dtype) -> torch.nn.Module:
    with torch.device("meta"):
        net = net_cls(**config)
    net.load_state_dict({k: v.to(dtype) for k, v in state_dict.items()}, strict=True, assign=True)
    return net.to(device).eval().requires_grad_(False)


def load_dossr(path: str, device="cpu", dtype: Optional[torch.dtype] = None) -> DoSSRModel:
    """Load the ControlNet, hint encoder and (if present) RRDBNet preprocessor from ``path``.

    ``dtype=None`` keeps the precision the file was saved in. The network
    sizes are inferred from the tensor shapes, so reduced test models load too.
    """
    path = os.fspath(path)
    return dossr_from_tensors(path, read_dossr_tensors(path), device, dtype)


def dossr_from_tensors(path: str, tensors: dict, device="cpu",
                       dtype: Optional[torch.dtype] = None) -> DoSSRModel:
    """The DoSSR networks from ``tensors`` read out of ``path`` (emptied as it goes)."""
    dtype = dtype or stored_dtype(tensors)
    parts = split_parts(tensors)
    tensors.clear()
    configs = infer_configs(path, parts)
    nets = {attr: _build(PARTS[attr][1], cfg, parts.pop(attr), device, dtype)
            for attr, cfg in configs.items()}
    config = DoSSRConfig(controlnet=configs["controlnet"], hint_encoder=configs["hint_encoder"],
                         preprocessor=configs.get("preprocessor"), dtype=dtype, path=path)
    return DoSSRModel(controlnet=nets["controlnet"], hint_encoder=nets["hint_encoder"],
                      preprocessor=nets.get("preprocessor"), config=config)
