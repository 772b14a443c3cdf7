"""Reading DoSSR weights safely: tensors only, DoSSR parts only (DESIGN §1).

The released ``.ckpt`` files are ~5 GB torch zip pickles that also carry a
full SD 2.1-base copy. They are opened with torch's weights-only unpickler
(no code in the file runs; any object but tensors and plain containers is
refused) and memory-mapped copy-on-write, so only the DoSSR tensors are ever
read, and only when first used. A
``.safetensors`` file with the same key names works the same way.
"""

from __future__ import annotations

import os
import pickle
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import torch

from .nets import HintEncoder, LatentHintControlNet, RRDBNet

PARTS = {  # attribute -> (checkpoint prefix, network, required)
    "controlnet": ("control_model.", LatentHintControlNet, True),
    "hint_encoder": ("cond_encoder.", HintEncoder, True),
    "preprocessor": ("preprocess_model.", RRDBNet, False),
}
SD_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")


class CheckpointError(ValueError):
    """A file that cannot serve as DoSSR weights; the message says why and what to do."""


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


def _file_kind(path: str) -> str:
    """``zip`` (torch.save), ``pickle`` (legacy torch.save) or ``safetensors``, from the bytes."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the download or copy did not finish; "
                              f"fetch the file again")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise CheckpointError(f"{path} is not a model file (neither a torch checkpoint nor "
                          f"safetensors; it starts with {head[:12]!r}). Was a web page or "
                          f"text file saved instead of the weights?")


def _unreadable(path: str, err: Exception) -> CheckpointError:
    return CheckpointError(f"{path} cannot be read ({type(err).__name__}: {err}). The file is "
                           f"probably truncated or corrupt: download or convert it again")


def _read_safetensors(path: str, wanted):
    from safetensors import safe_open
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys() if wanted(k)}, list(f.keys())
    except Exception as err:  # safetensors raises its own error types for bad headers/data
        raise _unreadable(path, err) from err


def _read_torch_pickle(path: str, kind: str, wanted):
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=(kind == "zip"))
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} was refused: besides tensors it holds Python objects that would run code "
            f"when loaded ({str(err).splitlines()[0][:200]}). DoSSR loads tensors only. If you "
            f"trust the file, convert it to .safetensors in a separate, trusted environment."
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise _unreadable(path, err) from err
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a dictionary of tensors")
    keys = list(data)
    # Views of the copy-on-write mapping: pages are read when the weights are first used.
    return {k: v for k, v in data.items() if wanted(k) and isinstance(v, torch.Tensor)}, keys


def read_dossr_tensors(path: str) -> dict:
    """The DoSSR tensors of ``path`` under their checkpoint names; nothing else is read."""
    prefixes = tuple(prefix for prefix, _, _ in PARTS.values())
    wanted = lambda key: isinstance(key, str) and key.startswith(prefixes)
    kind = _file_kind(path)
    if kind == "safetensors":
        tensors, all_keys = _read_safetensors(path, wanted)
    else:
        tensors, all_keys = _read_torch_pickle(path, kind, wanted)
    if not any(k.startswith(PARTS["controlnet"][0]) for k in tensors):
        raise CheckpointError(_not_dossr_message(path, all_keys))
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
    tensors = read_dossr_tensors(path)
    dtype = dtype or stored_dtype(tensors)
    parts = split_parts(tensors)
    del tensors
    configs = infer_configs(path, parts)
    nets = {attr: _build(PARTS[attr][1], cfg, parts.pop(attr), device, dtype)
            for attr, cfg in configs.items()}
    config = DoSSRConfig(controlnet=configs["controlnet"], hint_encoder=configs["hint_encoder"],
                         preprocessor=configs.get("preprocessor"), dtype=dtype, path=path)
    return DoSSRModel(controlnet=nets["controlnet"], hint_encoder=nets["hint_encoder"],
                      preprocessor=nets.get("preprocessor"), config=config)
