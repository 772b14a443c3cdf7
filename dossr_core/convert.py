"""Convert a DoSSR release file to .safetensors: the DoSSR parts alone, or the whole model.

    python -m dossr_core.convert dossr_default.ckpt dossr_default_fp16.safetensors --dtype fp16
    python -m dossr_core.convert dossr_default.ckpt dossr_default_full_fp16.safetensors --with-backbone

The released files are training checkpoints that also hold a full SD 2.1-base
copy. The small file keeps the ControlNet, hint encoder and preprocessor alone
(about 0.8 GB in fp16), for the two-file workflow with your own SD 2.1-base.
``--with-backbone`` keeps the SD 2.1-base parts too: one file for DoSSR
Checkpoint Loader. The source is read tensors-only (``safe_load``): nothing in
it runs, so converting needs no trusted environment.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from .checkpoint import CheckpointError, infer_configs, read_dossr_tensors, split_parts
from .release import read_release
from .safetensors_out import write_safetensors

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def convert(src: str, dst: str, dtype: torch.dtype = torch.float16, with_backbone: bool = False) -> int:
    """Validate ``src`` as DoSSR weights and write its DoSSR tensors to ``dst`` (with the
    SD 2.1-base parts too if ``with_backbone``); returns bytes written."""
    if not dst.endswith(".safetensors"):
        raise CheckpointError(f"output {dst} must end in .safetensors")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise CheckpointError("output and input are the same file")
    if with_backbone:
        tensors, backbone = read_release(src)
        content = "DoSSR parts and the SD 2.1-base UNet, VAE and text encoder (one-file model)"
    else:
        tensors, backbone = read_dossr_tensors(src), {}
        content = "DoSSR control_model, cond_encoder, preprocess_model"
    infer_configs(src, split_parts(tensors))   # refuse an unfit file before writing anything
    tensors.update(backbone)
    del backbone
    tmp = dst + ".partial"
    try:
        write_safetensors(tmp, tensors, dtype, {"format": "pt", "content": content,
                                                "source": os.path.basename(src)})
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return os.path.getsize(dst)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dossr_core.convert", description=__doc__.split("\n")[0])
    parser.add_argument("src", help="released DoSSR .ckpt/.pth (or a .safetensors with the same keys)")
    parser.add_argument("dst", help="output .safetensors")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16",
                        help="precision of the written tensors (default fp16, about 0.8 GB)")
    parser.add_argument("--with-backbone", action="store_true",
                        help="also keep the Stable Diffusion 2.1-base parts of a release file: a "
                             "one-file model for DoSSR Checkpoint Loader (about 2.6 GB in fp16)")
    args = parser.parse_args(argv)
    try:
        size = convert(args.src, args.dst, DTYPES[args.dtype], args.with_backbone)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst} ({size / 1e9:.2f} GB, {args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
