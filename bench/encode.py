"""DoSSR LR Encode on its own, in the host's process: each network whole against on tiles, and
the node's time and peak memory at sizes where a whole prompt takes too long on this CPU.

    python bench/encode.py [--networks 1024] [--node 4096] [--tiling auto,always] [--small]
                           [--cache DIR] [--comfyui PATH] [--json PATH]

The host (``comfy.model_management`` and ``comfy.sd`` of ``--comfyui``, ``--cpu`` with PyTorch
attention, as bench/e2e.py's server) loads the full-size random-weight SD 2.1-base and DoSSR
fakes of bench/e2e.py's cache, UNet and ControlNet included, so the free memory the ``auto``
rule sees is what a server running the shipped workflow would see. The LR picture is
bench/large.py's, ``size/4`` px square. Everything runs under ``torch.inference_mode()``, as
the host's executor runs a prompt.

``--networks S``: at output side S, RRDBNet x4, the host's VAE encoder and DoSSR's hint encoder,
each timed whole and on the tiles DoSSR LR Encode uses (nodes/encode.py's own functions, the
choice forced; twice each, in the order whole, tiles, tiles, whole, the faster kept), with the largest difference between the two results (DESIGN §6: tiles change
the encoders' GroupNorm statistics).

``--node S``: the node's work (RRDBNet, resize, pad, hint encoder, VAE encoder) per ``--tiling``
value, with what ``auto`` decided for each network, seconds and the process's peak RSS (VmHWM,
reset before each row through /proc/self/clear_refs), also above the RSS with every model
loaded.

Prints the figures side by side in one run; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import e2e, large  # noqa: E402
from tests.hostlib.inprocess import import_host, import_pack  # noqa: E402

GB = 1e9
NETWORKS = ("rrdbnet", "vae_encoder", "hint_encoder")


def rss(field: str) -> int:
    return large.proc_kb(os.getpid(), field) * 1024


def lr_picture(side: int):
    """bench/large.py's synthetic picture, ``side`` px, as a (1, 3, H, W) float tensor."""
    import numpy as np
    import torch
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        path = large.write_picture(Path(tmp) / "lr.png", side)
        a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(a).movedim(-1, 0)[None].contiguous()


class Host:
    """The host with both checkpoints loaded, and this pack's encode module."""

    def __init__(self, comfy: Path, sd: Path, dossr: Path, attention: bool):
        args = ("--cpu", "--use-pytorch-cross-attention") if attention else ("--cpu",)
        self.mm = import_host(comfy, args)
        import comfy.sd
        import torch

        model, _, self.vae = comfy.sd.load_checkpoint_guess_config(
            str(sd), output_vae=True, output_clip=False)[:3]
        self.handle = import_pack("nodes.model").DoSSRModelHandle(str(dossr), torch.float32)
        self.mm.load_models_gpu([model, self.handle.control_patcher, self.handle.encoder_patcher])
        self.model = model
        self.encode = import_pack("nodes.encode")
        self.sizes = import_pack("dossr_core.sizes")

    def padded_x4(self, lr):
        """The padded bicubic x4 image, the encoders' input for the per-network rows."""
        return self.sizes.pad_to_multiple(self.sizes.resize(lr, self.sizes.target_size(
            *lr.shape[-2:], 4.0)).clamp(0, 1))

    @contextlib.contextmanager
    def choosing(self, decide):
        """nodes/encode.py with ``whole_fits`` answered by ``decide(patcher, need, fits)``,
        where ``fits`` is the node's own answer (which also loads the model)."""
        real = self.encode.whole_fits
        self.encode.whole_fits = lambda patcher, need, tiling: decide(
            patcher, need, real(patcher, need, tiling))
        try:
            yield
        finally:
            self.encode.whole_fits = real

    def network_passes(self, lr, fits: bool) -> dict:
        """Each network's result and seconds through the node's own functions, whole
        (``fits``) or on the node's tiles."""
        enc, h = self.encode, self.handle
        padded = self.padded_x4(lr)
        passes = {
            "rrdbnet": lambda: enc.prepare_reference(h, lr, 4.0, "rrdbnet"),
            "vae_encoder": lambda: enc.encode_latent(self.vae, padded),
            "hint_encoder": lambda: enc.encode_hint(h, padded),
        }
        out = {}
        with self.choosing(lambda patcher, need, node_fits: fits):
            for name, fn in passes.items():
                start = time.perf_counter()
                y = fn()
                out[name] = (y.float(), time.perf_counter() - start)
        return out

    def node(self, lr, tiling: str) -> tuple[dict, list]:
        """DoSSR LR Encode's work with ``tiling``; (seconds and memory, auto's decisions)."""
        enc = self.encode
        decisions = []

        def recording(patcher, need, fits):
            budget = self.mm.get_free_memory(patcher.load_device)
            if self.mm.is_device_cpu(patcher.load_device):
                budget //= 2                      # the rule counts half the free RAM on the CPU
            decisions.append({"need_gb": need / GB, "budget_gb": budget / GB, "whole": fits})
            return fits

        with self.choosing(recording):
            weights = rss("VmRSS")
            large.reset_peak(os.getpid())
            start = time.perf_counter()
            pre = enc.prepare_reference(self.handle, lr, 4.0, "rrdbnet", tiling)
            padded = self.sizes.pad_to_multiple(pre)
            hint = enc.encode_hint(self.handle, padded, tiling)
            latent = enc.encode_latent(self.vae, padded, tiling)
            seconds = time.perf_counter() - start
            peak = rss("VmHWM")
        finite = bool(latent.isfinite().all() and hint.isfinite().all())
        for d, name in zip(decisions, ("rrdbnet", "hint_encoder", "vae_encoder")):
            d["network"] = name
        return ({"seconds": seconds, "peak_gb": peak / GB, "weights_gb": weights / GB,
                 "above_gb": (peak - weights) / GB, "finite": finite,
                 "latent": list(latent.shape), "hint": list(hint.shape)}, decisions)


def parse_sizes(text: str) -> list[int]:
    sizes = [int(s) for s in text.split(",") if s.strip()]
    for s in sizes:
        if s < 64 or s % 32:
            raise SystemExit(f"size {s}: sizes must be multiples of 32 px, at least 64")
    return sizes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", default="1024", help="output sides for the whole/tiled rows ('' none)")
    ap.add_argument("--node", default="", help="output sides for the node's time and memory rows")
    ap.add_argument("--tiling", default="auto,always", help="the node's 'tiling' values to run")
    ap.add_argument("--small", action="store_true", help="mini fake models, to check the script")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dossr-tests" / "bench",
                    help="the generated model files (shared with bench/e2e.py)")
    ap.add_argument("--comfyui", type=Path,
                    default=Path(os.environ.get("COMFYUI_PATH", "/opt/ComfyUI")))
    ap.add_argument("--no-pytorch-attention", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args(argv)
    modes = [m for m in args.tiling.split(",") if m]
    if not modes or set(modes) - {"auto", "always"}:
        ap.error(f"--tiling takes auto and/or always, got {args.tiling!r}")
    import torch

    print(f"load average before: {e2e.loadavg()}", flush=True)
    sd, dossr, _ = e2e.model_files(args.cache.expanduser(), args.small)
    host = Host(args.comfyui, sd, dossr, not args.no_pytorch_attention)
    print(f"ComfyUI {e2e.host_version(args.comfyui)}, {'mini' if args.small else 'full-size'} "
          f"models, {os.cpu_count()} cores; RSS with every model loaded {rss('VmRSS') / GB:.2f} GB",
          flush=True)
    results = {"networks": {}, "node": []}
    with torch.inference_mode():
        host.network_passes(lr_picture(16), True)          # warm-up, whole and tiled
        host.network_passes(lr_picture(16), False)
        for size in parse_sizes(args.networks):
            lr = lr_picture(size // 4)
            runs = {True: [], False: []}
            for fits in (True, False, False, True):        # ABBA, so drift cancels
                runs[fits].append(host.network_passes(lr, fits))
            whole, tiles = runs[True][0], runs[False][0]
            rows = {n: {"whole_s": min(r[n][1] for r in runs[True]),
                        "tiled_s": min(r[n][1] for r in runs[False]),
                        "max_diff": float((whole[n][0] - tiles[n][0]).abs().max())}
                    for n in NETWORKS}
            results["networks"][size] = rows
            print(f"\n{size} px output (LR {size // 4} px), each network whole and on the "
                  f"node's tiles, best of 2 (order whole, tiles, tiles, whole); load {e2e.loadavg()}")
            print(f"  {'network':<14}{'whole s':>9}{'tiles s':>9}{'tiles/whole':>13}{'max |diff|':>12}")
            for n, r in rows.items():
                print(f"  {n:<14}{r['whole_s']:>9.1f}{r['tiled_s']:>9.1f}"
                      f"{r['tiled_s'] / r['whole_s']:>12.2f}x{r['max_diff']:>12.4f}")
            print(f"  {'sum':<14}{sum(r['whole_s'] for r in rows.values()):>9.1f}"
                  f"{sum(r['tiled_s'] for r in rows.values()):>9.1f}", flush=True)
        for size in parse_sizes(args.node):
            lr = lr_picture(size // 4)
            for mode in modes:
                row, decisions = host.node(lr, mode)
                row.update(size=size, tiling=mode, decisions=decisions)
                results["node"].append(row)
                chose = ", ".join(f"{d['network']} {'whole' if d['whole'] else 'tiles'} "
                                  f"(needs {d['need_gb']:.1f} GB, budget {d['budget_gb']:.1f} GB)"
                                  for d in decisions)
                print(f"\nnode at {size} px, tiling {mode}: {row['seconds']:.1f} s, peak RSS "
                      f"{row['peak_gb']:.2f} GB ({row['above_gb']:.2f} above the "
                      f"{row['weights_gb']:.2f} GB with models loaded), finite {row['finite']}; "
                      f"{chose}; load {e2e.loadavg()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
