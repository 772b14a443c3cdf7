"""Memory of loading one full-size DoSSR release file: the whole model from one read.

    COMFYUI_PATH=/opt/ComfyUI python bench/one_file.py [--sd-dtype fp32]

Makes (once, in ~/.cache/dossr-tests/bench) a full-size random-weight release file
in the authors' training form: a Lightning checkpoint whose state_dict holds the
SD 2.1-base UNet, VAE and text encoder and the DoSSR parts (fp32 like the
authors' training writes them, ~6.9 GB). Then, each in a fresh process with the
host imported in-process (--cpu), it loads the file through DoSSR Checkpoint
Loader's code and prints peak RSS above the process's baseline against the bytes
of the tensors kept (the host's UNet, CLIP and VAE and the DoSSR networks):

  one file             load_release, as the node does
  one file, no release the same with the page give-back switched off
  two files            the host's own checkpoint loader on an SD file + DoSSR Model Loader
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CACHE = Path(os.environ.get("DOSSR_TEST_CACHE", Path.home() / ".cache" / "dossr-tests")) / "bench"


def release_file(sd_dtype: str) -> tuple[Path, Path]:
    """(release .ckpt in training form, the SD part alone as .safetensors), made once."""
    import torch
    from safetensors.torch import load_file

    from tests import fake_dossr, training_ckpt
    from tests.hostlib import fake_sd

    dtype = {"fp32": torch.float32, "fp16": torch.float16}[sd_dtype]
    CACHE.mkdir(parents=True, exist_ok=True)
    sd_path = CACHE / f"sd2_full_{sd_dtype}.safetensors"
    if not sd_path.exists():
        fake_sd.write_fake_sd_checkpoint(sd_path.with_suffix(".tmp"), "sd2_full", dtype=dtype)
        os.replace(sd_path.with_suffix(".tmp"), sd_path)
    ckpt = CACHE / f"dossr_release_full_sd{sd_dtype}.ckpt"
    if not ckpt.exists():
        tensors = load_file(str(sd_path))
        tensors.update(fake_dossr.dossr_state_dict("full", seed=0))
        training_ckpt.write_training_ckpt(ckpt.with_suffix(".tmp"), tensors)
        os.replace(ckpt.with_suffix(".tmp"), ckpt)
    return ckpt, sd_path


PROBE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {repo!r})
    from tests.hostlib.inprocess import import_host, import_pack
    import_host({comfy!r})
    import torch
    torch.set_grad_enabled(False)

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    def nbytes(module):
        return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])

    base = status("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")       # peak RSS starts again from here
    mode = {mode!r}
    if mode == "no_release":
        import_pack("dossr_core.release").release_when_freed = lambda tensors: None
    if mode == "two_files":
        import comfy.sd
        model, clip, vae = comfy.sd.load_checkpoint_guess_config({sd!r}, output_vae=True, output_clip=True)[:3]
        handle = import_pack("nodes.model").DoSSRModelHandle({ckpt!r}, torch.float32)
    else:
        model, clip, vae, handle = import_pack("nodes.checkpoint_loader").load_release({ckpt!r}, torch.float32)
    kept = (nbytes(model.model) + nbytes(clip.cond_stage_model) + nbytes(vae.first_stage_model)
            + nbytes(handle.controlnet) + nbytes(handle.encoder_patcher.model))
    print(json.dumps({{"peak": status("VmHWM") - base, "kept": kept, "after": status("VmRSS") - base}}))
""")


def measure(comfy: str, ckpt: Path, sd: Path, mode: str) -> dict:
    code = PROBE.format(repo=str(REPO), comfy=comfy, ckpt=str(ckpt), sd=str(sd), mode=mode)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"))
    parser.add_argument("--sd-dtype", choices=["fp32", "fp16"], default="fp32")
    parser.add_argument("--modes", default="one_file,no_release,two_files")
    args = parser.parse_args()
    if not args.comfyui:
        parser.error("give --comfyui or set COMFYUI_PATH")
    ckpt, sd = release_file(args.sd_dtype)
    print(f"release file {ckpt.name}: {ckpt.stat().st_size / 1e9:.2f} GB (SD parts {args.sd_dtype}, DoSSR fp32)")
    print(f"{'mode':<12} {'peak above baseline':>20} {'tensors kept':>14} {'peak / kept':>12} {'after load':>11}")
    for mode in args.modes.split(","):
        r = measure(args.comfyui, ckpt, sd, mode)
        print(f"{mode:<12} {r['peak'] / 1e9:>17.2f} GB {r['kept'] / 1e9:>11.2f} GB "
              f"{r['peak'] / r['kept']:>11.2f}x {r['after'] / 1e9:>8.2f} GB", flush=True)


if __name__ == "__main__":
    main()
