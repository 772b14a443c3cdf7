"""A DoSSR release file as the whole model: the DoSSR parts and the SD 2.1-base backbone.

The authors' inference loads one file into the whole ControlLDM, so their
release files carry the untouched SD 2.1-base UNet, VAE and text encoder next
to the trained DoSSR parts (DESIGN §1). Reading such a file once gives both
halves; a converted DoSSR-only file has no backbone and is named as such.
"""

from __future__ import annotations

import os

from .checkpoint import SD_PREFIXES, is_dossr_key, require_dossr
from .errors import CheckpointError
from .pages import release_when_freed
from .safe_load import file_kind, read_state_dict

BACKBONE_PARTS = dict(zip(("UNet", "VAE", "text encoder"), SD_PREFIXES))


class NoBackbone(CheckpointError):
    """A DoSSR file without the SD 2.1-base parts (the converter's small file)."""


def backbone_parts_missing(keys) -> list[str]:
    """Which of UNet, VAE and text encoder have no tensors among ``keys``."""
    keys = list(keys)
    return [part for part, prefix in BACKBONE_PARTS.items()
            if not any(k.startswith(prefix) for k in keys)]


def read_release(path) -> tuple[dict, dict]:
    """``(dossr, backbone)`` tensors of a one-file release, read once.

    The backbone keeps the checkpoint's LDM names (``model.diffusion_model.``, ...),
    the form the host's checkpoint functions read. Tensors of a memory-mapped file
    give their pages back as soon as whoever consumes them lets them go.
    """
    path = os.fspath(path)
    tensors = read_state_dict(path, wanted=lambda k: is_dossr_key(k) or k.startswith(SD_PREFIXES))
    require_dossr(path, tensors)
    backbone = {k: tensors.pop(k) for k in list(tensors) if k.startswith(SD_PREFIXES)}
    missing = backbone_parts_missing(backbone)
    if missing:
        raise NoBackbone(
            f"{path} holds the DoSSR parts but not Stable Diffusion 2.1-base ({', '.join(missing)} "
            f"missing): it is a converted DoSSR-only file. Use it with the two-file workflow "
            f"(dossr_x4_sd21: the host's Load Checkpoint with SD 2.1-base plus DoSSR Model Loader), "
            f"or pick the full release file (dossr_default.ckpt) or a one-file conversion "
            f"(python -m dossr_core.convert --with-backbone) here.")
    if file_kind(path) == "zip":   # the host copies the backbone; the DoSSR nets keep their views
        release_when_freed(backbone.values())
    return tensors, backbone
