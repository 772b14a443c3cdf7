"""Write a .safetensors file one tensor at a time, so a 5 GB release converts in bounded memory.

``safetensors.torch.save_file`` needs every tensor in memory at once; here the
header is computed from shapes and dtypes first, then each tensor is converted,
written and dropped. The file is the standard format any safetensors reader opens.
"""

from __future__ import annotations

import json
import os
import struct

import torch

ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def write_safetensors(path: str, tensors: dict, dtype: torch.dtype, metadata: dict) -> None:
    """``tensors`` at ``path``, floating ones as ``dtype``, others as they are; entries are
    popped from ``tensors`` as they are written, so their memory can go back as the file grows."""
    names = sorted(tensors)
    kept = {n: dtype if tensors[n].is_floating_point() else tensors[n].dtype for n in names}
    header, offset = {"__metadata__": metadata}, 0
    for name in names:
        size = tensors[name].numel() * torch.tensor([], dtype=kept[name]).element_size()
        header[name] = {"dtype": ST_DTYPES[kept[name]], "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in names:
            # flattened first: a 0-dim tensor (SD 2.1's logit_scale) cannot be viewed as bytes
            t = tensors.pop(name).to(kept[name]).contiguous().reshape(-1)
            f.write(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            del t
        f.flush()
        os.fsync(f.fileno())
