"""DoSSR on one GPU, in the host's process: seconds per image, per stage, and peak memory.

    python bench/gpu.py --comfyui PATH [--device cuda] [--runs 5] [--dtypes fp16,bf16,fp32]
                        [--cache DIR] [--json PATH]
    python bench/gpu.py --comfyui PATH --device cpu --small      # smoke check, not figures

The ComfyUI tree at ``--comfyui`` (default ``$COMFYUI_PATH``) is imported into this process
(no server, no web front end); this pack is imported beside it as a custom node would be. The
models are full-size random-weight fakes of SD 2.1-base and DoSSR (``--small``: the "mini"
test fakes), generated once into ``--cache`` (nothing is downloaded). Each image goes through
what the shipped workflows run, node by node, with the host's own models and samplers:

    DoSSR LR Encode (x4, rrdbnet, tiling auto) -> DoSSR Sampler (order 3, sde, cfg 1)
    -> VAE decode (tiled for the large row, as workflows/dossr_x4_tiled_api.json: DoSSR Tiled
    Sampling and VAE Decode (Tiled) with that workflow's tile settings) -> DoSSR Color Fix

Rows: 128 -> 512 px and 512 -> 2048 px (tiled), 5 and 1 steps, in each of fp16 and bf16 (the
DoSSR networks and the UNet in that dtype; the VAE in the host's choice), fp32 at 128 -> 512,
and a batch of 4 at 128 -> 512 for images per second. Every row runs once to warm up, then
``--runs`` times (the 2048 px rows at most 3); the table has medians, peak GPU memory
(``torch.cuda.max_memory_allocated``, weights included) and the published figures for
comparison. The prompt's text is encoded once per dtype, as the host caches it.

What the GPU machine needs: torch (CUDA), safetensors, transformers, einops, pyyaml, scipy,
tqdm, psutil, numpy, Pillow. Packages the host imports but these code paths never call (PyAV,
torchsde) get import-only stand-ins from bench/stand_ins when they are absent.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.e2e import NEGATIVE, POSITIVE, SEED, host_version, model_files  # noqa: E402
from tests.hostlib import server as hs  # noqa: E402
from tests.hostlib.inprocess import import_host, import_pack  # noqa: E402

STAND_INS = REPO / "bench" / "stand_ins"
TILED_WORKFLOW = REPO / "workflows" / "dossr_x4_tiled_api.json"
DTYPES = ("fp16", "bf16", "fp32")
LARGE_RUNS = 3
BATCH = 4
PUBLISHED = ("published, 128 -> 512 px (FlowSR's table, GPU not stated): DoSSR 1 step 0.28 s, "
             "OSEDiff 0.16 s, SeeSR 50 steps 5.21 s, StableSR 200 steps 13.54 s")
STAGES = ("encode", "sampler", "decode", "colorfix")


@dataclass(frozen=True)
class Case:
    """One row: LR side, steps, dtype name, whether tiled, batch size."""

    lr: int
    steps: int
    dtype: str
    tiled: bool = False
    batch: int = 1

    @property
    def label(self) -> str:
        kind = "tiled" if self.tiled else f"batch {self.batch}"
        return f"{self.lr} -> {4 * self.lr} px, {self.steps} step{'s' * (self.steps > 1)}, {self.dtype}, {kind}"


@dataclass
class Result:
    case: Case
    walls: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    peak_bytes: int | None = None


def cases(dtypes, small: bool) -> list[Case]:
    """The table's rows, grouped by dtype (models load once per dtype)."""
    lr, large = (16, 40) if small else (128, 512)
    rows = []
    for dt in dtypes:
        rows += [Case(lr, steps, dt) for steps in (5, 1)]
        if dt != "fp32":
            rows += [Case(large, steps, dt, tiled=True) for steps in (5, 1)]
            rows.append(Case(lr, 5, dt, batch=BATCH))
    return rows


def tiled_settings(small: bool) -> dict:
    """DoSSR Tiled Sampling and VAE Decode (Tiled) inputs of the shipped tiled workflow, in px
    (``--small``: halved, so the mini run has more than one tile too)."""
    p = hs.load_api_workflow(TILED_WORKFLOW)
    tiling = next(n["inputs"] for n in p.values() if n["class_type"] == "DoSSRTiledDiffusion")
    decode = next(n["inputs"] for n in p.values() if n["class_type"] == "VAEDecodeTiled")
    k = 2 if small else 1
    return dict(tile=tiling["tile_size"] // k, overlap=tiling["tile_overlap"] // k,
                tile_batch=tiling["tile_batch_size"], decode_tile=decode["tile_size"] // k,
                decode_overlap=decode["overlap"] // k)


def add_stand_ins() -> list[str]:
    """Put bench/stand_ins on the path for each host import that is not installed."""
    missing = []
    for name in ("av", "torchsde"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        sys.path.append(str(STAND_INS))
    return missing


class Clock:
    """Stage times on ``device``: waits for the device's queued work at every mark."""

    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        self.sync()
        self.t0 = self.last = time.perf_counter()
        self.stages: dict[str, float] = {}

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def mark(self, stage: str) -> None:
        self.sync()
        now = time.perf_counter()
        self.stages[stage] = now - self.last
        self.last = now

    @property
    def wall(self) -> float:
        return self.last - self.t0


class Pipeline:
    """The host's SD 2.1 checkpoint and the DoSSR networks in one dtype, and the prompt's text."""

    def __init__(self, torch, sd_path: Path, dossr_path: Path, dtype, settings: dict):
        import comfy.sd

        self.torch, self.settings = torch, settings
        self.nodes = import_pack("nodes")
        loaded = comfy.sd.load_checkpoint_guess_config(str(sd_path), output_vae=True, output_clip=True,
                                                        model_options={"dtype": dtype})
        self.model, clip, self.vae = loaded[:3]
        self.handle = import_pack("nodes.model").DoSSRModelHandle(str(dossr_path), dtype)
        self.positive, self.negative = (clip.encode_from_tokens_scheduled(clip.tokenize(text))
                                        for text in (POSITIVE, NEGATIVE))
        self.tiled_model = self.nodes.DoSSRTiledDiffusion.execute(
            self.model, settings["tile"], settings["overlap"], settings["tile_batch"]).args[0]

    def run(self, image, case: Case, clock: Clock):
        n = self.nodes
        latent, reference, hint = n.DoSSRLREncode.execute(image, self.handle, self.vae, 4.0,
                                                          "rrdbnet", "auto").args
        clock.mark("encode")
        model = self.tiled_model if case.tiled else self.model
        latent = n.DoSSRSampler.execute(model, self.handle, self.positive, self.negative, latent, hint,
                                        SEED, case.steps, "3", "sde", 1.0, 1.0).args[0]
        clock.mark("sampler")
        if case.tiled:
            s = self.settings
            pixels = self.vae.decode_tiled(latent["samples"], tile_x=s["decode_tile"] // 8,
                                           tile_y=s["decode_tile"] // 8, overlap=s["decode_overlap"] // 8)
        else:
            pixels = self.vae.decode(latent["samples"])
        clock.mark("decode")
        out = n.DoSSRColorFix.execute(pixels, reference, "wavelet").args[0]
        clock.mark("colorfix")
        if tuple(out.shape) != (case.batch, 4 * case.lr, 4 * case.lr, 3) or not self.torch.isfinite(out).all():
            raise RuntimeError(f"{case.label}: output {tuple(out.shape)}, finite "
                               f"{bool(self.torch.isfinite(out).all())}")


def lr_image(torch, case: Case):
    """A smooth synthetic LR picture, (batch, lr, lr, 3) in [0, 1], the same at every run."""
    u = (torch.arange(case.lr) + 0.5) / case.lr
    y, x = torch.meshgrid(u, u, indexing="ij")
    rgb = torch.stack([0.5 + 0.3 * torch.sin(6.3 * x + 2 * y), 0.5 + 0.3 * torch.cos(4 * y - x),
                       0.4 + 0.3 * torch.sin(3 * x * y + 1)], dim=-1)
    return rgb.clamp(0, 1)[None].repeat(case.batch, 1, 1, 1)


def measure(torch, pipe: Pipeline, case: Case, runs: int, device) -> Result:
    image = lr_image(torch, case)
    pipe.run(image, case, Clock(torch, device))                    # warm-up
    result = Result(case)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(min(runs, LARGE_RUNS) if case.tiled else runs):
        clock = Clock(torch, device)
        pipe.run(image, case, clock)
        result.walls.append(clock.wall)
        for stage, seconds in clock.stages.items():
            result.stages.setdefault(stage, []).append(seconds)
    if device.type == "cuda":
        result.peak_bytes = torch.cuda.max_memory_allocated(device)
    return result


def report(results: list[Result], info: dict) -> None:
    print()
    print(f"DoSSR in the host's process on {info['device_name']}; {info['models']} random-weight "
          f"models; VAE in {info['vae_dtype']}; ComfyUI {info['host_version']}, torch "
          f"{info['torch']}; medians after one warm-up")
    head = (f"{'configuration':<42} {'s/image':>8} {'img/s':>7} "
            + " ".join(f"{s + ' s':>10}" for s in STAGES) + f" {'peak GiB':>9} {'runs':>5}")
    print(head)
    print("-" * len(head))
    for r in results:
        wall = statistics.median(r.walls)
        per_image = wall / r.case.batch
        peak = f"{r.peak_bytes / 2 ** 30:.2f}" if r.peak_bytes is not None else "-"
        stages = " ".join(f"{statistics.median(r.stages[s]):>10.3f}" for s in STAGES)
        print(f"{r.case.label:<42} {per_image:>8.3f} {1 / per_image:>7.2f} {stages} {peak:>9} "
              f"{len(r.walls):>5}")
    print()
    print("s/image: the whole pipeline for one image (a batch's wall time / its size); stage "
          "columns are for the whole batch.")
    print(PUBLISHED)
    if info["stand_ins"]:
        print(f"import-only stand-ins used for: {', '.join(info['stand_ins'])}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfyui", type=Path, default=os.environ.get("COMFYUI_PATH"),
                    help="the ComfyUI tree (default $COMFYUI_PATH)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--small", action="store_true",
                    help="mini fake models and tiny images: a smoke check of the script, not figures")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per row (2048 px rows: at most 3)")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated, of fp16,bf16,fp32")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dossr-tests" / "bench",
                    help="where the generated model files are kept")
    ap.add_argument("--sd-checkpoint", type=Path,
                    help="an SD 2.1-base checkpoint to use instead of generating one into --cache")
    ap.add_argument("--dossr-checkpoint", type=Path,
                    help="the DoSSR checkpoint to use with --sd-checkpoint")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args(argv)
    dtypes = [d for d in args.dtypes.split(",") if d]
    if not dtypes or any(d not in DTYPES for d in dtypes):
        ap.error(f"--dtypes takes a comma-separated list of {', '.join(DTYPES)}, got {args.dtypes!r}")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if (args.sd_checkpoint is None) != (args.dossr_checkpoint is None):
        ap.error("--sd-checkpoint and --dossr-checkpoint go together")
    problem = hs.comfy_tree_problem(args.comfyui, "--comfyui")
    if problem:
        ap.error(problem)

    stand_ins = add_stand_ins()
    mm = import_host(args.comfyui, ["--cpu"] if args.device == "cpu" else [])
    logging.getLogger().setLevel(logging.WARNING)
    import torch

    device = mm.get_torch_device()
    if device.type != args.device:
        raise SystemExit(f"the host chose device {device}, not {args.device} (is CUDA available?)")
    if args.sd_checkpoint:
        sd, dossr = args.sd_checkpoint, args.dossr_checkpoint
    else:
        sd, dossr, _ = model_files(args.cache.expanduser(), args.small)
    torch_dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    settings = tiled_settings(args.small)
    results, info = [], {}
    for dt in dtypes:
        pipe = Pipeline(torch, sd, dossr, torch_dtypes[dt], settings)
        info["vae_dtype"] = str(pipe.vae.vae_dtype).replace("torch.", "")
        for case in cases([dt], args.small):
            results.append(measure(torch, pipe, case, args.runs, device))
            print(f"{case.label}: {statistics.median(results[-1].walls):.3f} s", flush=True)
        del pipe
        mm.unload_all_models()
        mm.soft_empty_cache()
    info.update(device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else
                f"CPU ({os.cpu_count()} cores)", models="mini" if args.small else "full-size",
                host_version=host_version(Path(args.comfyui)), torch=torch.__version__, stand_ins=stand_ins)
    report(results, info)
    if args.json:
        args.json.write_text(json.dumps({"info": info, "results": [
            {**asdict(r.case), "walls": r.walls, "stages": r.stages, "peak_bytes": r.peak_bytes}
            for r in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
