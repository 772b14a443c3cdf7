"""The settings users change without editing JSON, applied to an API-format workflow.

Each option names the node inputs it sets (class type and input name). An option given for
a workflow that has none of them is an error that says so, never silently ignored.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path, PurePath

#: option -> (class_type, input) pairs it sets (every node of those types, literal inputs only).
TARGETS = {
    "scale": (("DoSSRLREncode", "scale"),),
    "steps": (("DoSSRSampler", "steps"), ("DoSSRSigmas", "steps")),
    "order": (("DoSSRSampler", "order"), ("DoSSRSamplerSelect", "order")),
    "mode": (("DoSSRSampler", "mode"), ("DoSSRSamplerSelect", "mode")),
    "tile_size": (("DoSSRTiledDiffusion", "tile_size"), ("DoSSRVAEDecode", "tile_size"),
                  ("VAEDecodeTiled", "tile_size")),
}
TILED_NODE = "DoSSRTiledDiffusion"
#: --tiling on/off: the mode of each tiling node (on = tiles whenever the size allows, off = never).
TILING_MODES = {True: {"DoSSRTiledDiffusion": ("mode", "always"), "DoSSRVAEDecode": ("tiling", "always")},
                False: {"DoSSRTiledDiffusion": ("mode", "off"), "DoSSRVAEDecode": ("tiling", "off")}}
#: The shipped workflow with a DoSSR Tiled Sampling node, named by an absolute path so the
#: message holds from whatever folder the client runs in.
DEFAULT_WORKFLOW = Path(__file__).resolve().parent.parent / "dossr_x4_api.json"
SEED_INPUTS = ("seed", "noise_seed")
SEED_LIMIT = 2 ** 48


class KnobError(Exception):
    """An option the workflow cannot take, with a message for the user."""


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def _set(prompt: dict, option: str, value) -> None:
    hits = 0
    for node in prompt.values():
        for class_type, key in TARGETS[option]:
            inputs = node.get("inputs", {})
            if node.get("class_type") == class_type and not isinstance(inputs.get(key), list):
                inputs[key] = value
                hits += 1
    if not hits:
        wanted = ", ".join(f"{c}.{k}" for c, k in TARGETS[option])
        raise KnobError(f"{_flag(option)} given, but the workflow has no node input for it "
                        f"(looked for {wanted})")


def set_tiling(prompt: dict, on: bool) -> None:
    """Switch the tiling nodes' modes for --tiling on (always) or off (never); off also turns
    the host's VAE Decode (Tiled) into VAE Decode."""
    for node in prompt.values():
        target = TILING_MODES[on].get(node.get("class_type"))
        if target is not None and not isinstance(node.get("inputs", {}).get(target[0]), list):
            node.setdefault("inputs", {})[target[0]] = target[1]
        if not on and node.get("class_type") == "VAEDecodeTiled":
            node["class_type"] = "VAEDecode"
            node["inputs"] = {k: node["inputs"][k] for k in ("samples", "vae")}


def has_tiling(prompt: dict) -> bool:
    return any(node.get("class_type") == TILED_NODE for node in prompt.values())


def apply(prompt: dict, *, scale=None, steps=None, order=None, mode=None, tiling=None,
          tile_size=None) -> dict:
    """A copy of *prompt* with the given settings (None = leave as the workflow has it).

    *tiling* True sets the tiling nodes to tile at every size (needs a DoSSR Tiled Sampling
    node, which every shipped workflow has), False to never tile."""
    prompt = copy.deepcopy(prompt)
    if tiling is True and not has_tiling(prompt):
        raise KnobError("--tiling on given, but the workflow has no DoSSR Tiled Sampling node to "
                        "switch: add one between the checkpoint's MODEL and the sampler, or use a "
                        f"shipped workflow such as {DEFAULT_WORKFLOW} (the default)")
    if tiling is not None:
        if tiling is False and tile_size is not None:
            raise KnobError("--tile-size given together with --tiling off; drop one of them")
        set_tiling(prompt, tiling)
    for option, value in (("scale", scale), ("steps", steps), ("order", order),
                          ("mode", mode), ("tile_size", tile_size)):
        if value is not None:
            _set(prompt, option, value)
    return prompt


def output_scale(prompt: dict):
    """The scale of the workflow's DoSSR LR Encode node, or None."""
    for node in prompt.values():
        if node.get("class_type") == "DoSSRLREncode":
            value = node.get("inputs", {}).get("scale")
            if isinstance(value, (int, float)):
                return value
    return None


def default_suffix(prompt: dict) -> str:
    """``_x4`` for a x4 workflow (``_x2.5`` for 2.5), ``_dossr`` when the scale is unknown."""
    scale = output_scale(prompt)
    if scale is None:
        return "_dossr"
    return f"_x{scale:g}"


def image_seed(base: int, relative) -> int:
    """A seed for one image derived from *base* and its relative path: the same image gets
    the same seed in every run, whatever else is in the batch."""
    digest = hashlib.sha256(f"{int(base)}\0{PurePath(relative).as_posix()}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % SEED_LIMIT


def has_seed_input(prompt: dict) -> bool:
    return any(key in node.get("inputs", {}) and not isinstance(node["inputs"][key], list)
               for node in prompt.values() for key in SEED_INPUTS)
