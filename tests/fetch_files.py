"""Model files for the fetch tests: small DoSSR files with a manifest made from them, and
full-shape files that cost no disk (sparse safetensors: a real header, zero data).

The small files carry the real architecture at reduced width (tests/fake_dossr.py
"small"), so they pass verification only against :func:`small_manifest`; the
release manifest needs :func:`write_sparse_safetensors` with its shapes.
"""

from __future__ import annotations

import functools
import json
import math
import struct

import torch

from tests.fake_dossr import dossr_state_dict

#: Stand-ins for the SD 2.1-base parts of a full file, and the manifest they match.
SMALL_SD = {
    "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
    "first_stage_model.encoder.conv_in.weight": (8, 3, 3, 3),
    "cond_stage_model.model.positional_embedding": (7, 8),
}


@functools.lru_cache(maxsize=None)
def _small_tensors():
    return dossr_state_dict("small", seed=0, dtype=torch.float16)


def small_manifest() -> dict:
    return {k: tuple(v.shape) for k, v in _small_tensors().items()}


def small_tensors(with_sd: bool = False, sd_shapes=None) -> dict:
    out = dict(_small_tensors())
    if with_sd:
        for k, shape in (sd_shapes or SMALL_SD).items():
            out[k] = torch.zeros(shape, dtype=torch.float16)
    return out


def write_small(path, fmt: str = "safetensors", with_sd: bool = False, tensors=None) -> bytes:
    """Write a small DoSSR file (``safetensors`` or a Lightning-style ``ckpt``); returns its bytes."""
    tensors = tensors if tensors is not None else small_tensors(with_sd)
    if fmt == "safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    else:
        torch.save({"state_dict": tensors, "global_step": 5000, "epoch": 1}, str(path))
    with open(path, "rb") as f:
        return f.read()


def write_sparse_safetensors(path, shapes: dict, dtype: str = "F16", itemsize: int = 2) -> int:
    """A valid safetensors file with these shapes whose data is a hole (all zeros, no disk used)."""
    header, offset = {}, 0
    for key, shape in shapes.items():
        n = math.prod(shape) * itemsize
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return 8 + len(raw) + offset


def write_manifests(folder, dossr: dict, sd: dict) -> None:
    """The two manifest files in the shipped format, for DOSSR_FETCH_MANIFESTS."""
    for name, shapes in (("dossr_release_tensors.json", dossr), ("sd21_base_tensors.json", sd)):
        with open(f"{folder}/{name}", "w") as f:
            json.dump({"tensors": {k: list(v) for k, v in shapes.items()}}, f)


HTML_QUOTA = """<!DOCTYPE html><html><head><meta charset="utf-8">
<title>Google Drive - Quota exceeded</title></head><body><p class="uc-error-subcaption">
Too many users have viewed or downloaded this file recently.</p></body></html>"""
