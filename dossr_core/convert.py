"""Write only the DoSSR parts of a released checkpoint to a small .safetensors file.

    python -m dossr_core.convert dossr_default.ckpt dossr_default_fp16.safetensors --dtype fp16

The released files also hold a full SD 2.1-base copy (about 5 GB in all); users
already have SD 2.1-base in the host, so the converted file keeps the
ControlNet, hint encoder and preprocessor alone (about 0.8 GB in fp16).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from .checkpoint import CheckpointError, infer_configs, read_dossr_tensors, split_parts

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def convert(src: str, dst: str, dtype: torch.dtype = torch.float16) -> int:
    """Validate ``src`` as DoSSR weights and write its DoSSR tensors to ``dst``; returns bytes written."""
    from safetensors.torch import save_file

    if not dst.endswith(".safetensors"):
        raise CheckpointError(f"output {dst} must end in .safetensors")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise CheckpointError("output and input are the same file")
    tensors = read_dossr_tensors(src)
    infer_configs(src, split_parts(tensors))   # refuse an unfit file before writing anything
    out = {k: v.to(dtype).contiguous() for k, v in sorted(tensors.items())}
    del tensors
    tmp = dst + ".partial"
    save_file(out, tmp, metadata={"format": "pt", "content": "DoSSR control_model, cond_encoder, "
                                  "preprocess_model", "source": os.path.basename(src)})
    os.replace(tmp, dst)
    return os.path.getsize(dst)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dossr_core.convert", description=__doc__.split("\n")[0])
    parser.add_argument("src", help="released DoSSR .ckpt/.pth (or a .safetensors with the same keys)")
    parser.add_argument("dst", help="output .safetensors")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16",
                        help="precision of the written tensors (default fp16, about 0.8 GB)")
    args = parser.parse_args(argv)
    try:
        size = convert(args.src, args.dst, DTYPES[args.dtype])
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst} ({size / 1e9:.2f} GB, {args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
