"""Large images through DoSSR Tiled Sampling: peak memory and time per megapixel, on this CPU.

    python bench/large.py [--sizes 1024,2048,4096] [--steps 5] [--untiled 1024] [--small]
                          [--encode-tiling auto,always] [--cache DIR] [--comfyui PATH] [--json PATH]

One ComfyUI server (127.0.0.1, a temporary base directory, like bench/e2e.py) with the
full-size random-weight SD 2.1-base and DoSSR fakes (``--small``: the "mini" ones) runs the
shipped tiled workflow ``workflows/dossr_x4_tiled_api.json`` for every output size S (square):
an LR picture of S/4 px (smooth, synthetic, the same picture at every size) -> DoSSR LR Encode
(x4, RRDBNet; each network on the whole image when the server's memory allows, as the node's
``tiling`` "auto" does, else on 512 px tiles) -> DoSSR Sampler on a MODEL patched by DoSSR Tiled
Sampling (512 px tiles, 128 px overlap, 4 tiles a batch) -> VAE Decode (Tiled) -> Color Fix ->
SaveImage. Only model names, seed, steps and the input image are changed; a UNet-call probe
(DoSSRTestCountUNet) sits between the checkpoint and the tiling patch, and a SaveLatent keeps
the sampler's latent for a NaN and seam check. ``--untiled`` sizes also run the same workflow
without DoSSR Tiled Sampling and with the plain VAEDecode. ``--encode-tiling auto,always`` runs
every row with both LR Encode settings ("always": the encoders on tiles at every size, what
LR Encode did before it encoded whole images), and compares their encode time and memory.

Measured per prompt:
* peak RSS of the server process during the prompt: VmHWM, reset just before the prompt by
  writing "5" to /proc/<pid>/clear_refs (checked to work; where it does not, every
  measurement gets a fresh server with its own warm-up and the report says so);
* "model weights": the server's RSS after a small warm-up prompt that loads every model;
  peak above weights = peak - that, also per output megapixel;
* seconds: the whole prompt (the server's execution_start..execution_success) and each node
  (websocket ``executing`` messages), per output megapixel; the sampler node's share too;
* tiles (dossr_core.tiling.tile_grid on the latent, 64 latents a tile, 16 overlap) and UNet
  calls / evaluations (the probe's log);
* the peak RSS while each stage ran, from a 0.25 s sampler of VmRSS (so approximate).

Prints a table, whether "peak above weights" grows at most linearly with the output pixels,
whether it stays under 16 GB (1e9 bytes) at 4096 px, and whether time per MP is flat.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import e2e  # noqa: E402
from dossr_core.tiling import tile_grid  # noqa: E402
from tests.hostlib import server as hs  # noqa: E402

WORKFLOW = REPO / "workflows" / "dossr_x4_tiled_api.json"
SEED = 231
SCALE = 4
WARMUP_LR = 16
GB = 1e9
TARGET_GB = 16.0
TARGET_PX = 4096
FLAT_TOLERANCE = 0.15       # "flat within noise": every s/MP within +-15 % of their mean
LINEAR_TOLERANCE = 0.10     # above-weights per MP may rise by this much and still count as linear
REQUIRED_NODES = ("DoSSRModelLoader", "DoSSRLREncode", "DoSSRSampler", "DoSSRTiledDiffusion",
                  "DoSSRColorFix", "DoSSRTestCountUNet")

# Node ids of the shipped workflow, plus two of ours.
N_LOAD, N_CKPT, N_DOSSR, N_ENC, N_SAMPLE, N_DECODE, N_FIX, N_SAVE, N_TILED = (
    "1", "2", "3", "6", "7", "8", "9", "10", "12")
N_COUNT, N_LATENT = "13", "14"
STAGES = {N_ENC: "encode", N_SAMPLE: "sampler", N_DECODE: "decode", N_FIX: "colorfix",
          N_SAVE: "save"}
RECOMPUTED = (N_LOAD, N_ENC, N_COUNT, N_SAMPLE, N_DECODE, N_FIX, N_SAVE)


# ----------------------------------------------------------------------------- inputs

def write_picture(path: Path, side: int) -> Path:
    """A smooth synthetic RGB picture, ``side`` px square: low-frequency waves and soft discs
    in relative coordinates, so every size shows the same picture."""
    import numpy as np
    from PIL import Image

    u = (np.arange(side) + 0.5) / side
    y, x = np.meshgrid(u, u, indexing="ij")
    r = 0.45 + 0.25 * np.sin(2 * np.pi * (1.3 * x + 0.4 * y)) + 0.15 * np.cos(2 * np.pi * 2.1 * y)
    g = 0.50 + 0.20 * np.cos(2 * np.pi * (0.7 * x - 1.1 * y)) + 0.10 * np.sin(2 * np.pi * 3.0 * x * y)
    b = 0.40 + 0.25 * np.sin(2 * np.pi * (x * x + 0.8 * y))
    rgb = np.stack([r, g, b], axis=-1)
    for cy, cx, rad, colour in ((0.3, 0.35, 0.12, (0.9, 0.8, 0.2)), (0.65, 0.7, 0.18, (0.1, 0.3, 0.8)),
                                (0.75, 0.25, 0.08, (0.8, 0.2, 0.3))):
        d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        w = (1 / (1 + np.exp((d - rad) / 0.015)))[..., None]    # soft edge
        rgb = rgb * (1 - w) + np.asarray(colour) * w
    Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path


def tile_geometry() -> tuple[int, int]:
    """(tile, overlap) in latents, as the shipped workflow sets DoSSR Tiled Sampling."""
    inputs = hs.load_api_workflow(WORKFLOW)[N_TILED]["inputs"]
    return inputs["tile_size"] // 8, inputs["tile_overlap"] // 8


def tiles_for(size: int) -> int:
    """Tile count the patch uses on the latent of a ``size`` px output (1 = passed through)."""
    return len(tile_grid(size // 8, size // 8, *tile_geometry()))


def build_prompt(image: str, steps: int, tiled: bool, count_log: Path, prefix: str,
                 encode_tiling: str = "auto") -> dict:
    """The shipped tiled API workflow, patched (and without the tiling for ``tiled=False``)."""
    p = hs.load_api_workflow(WORKFLOW)
    hs.patch(p, "DoSSRLREncode", tiling=encode_tiling)
    hs.patch(p, "LoadImage", image=image)
    hs.two_files(p, e2e.SD_NAME, e2e.DOSSR_NAME)   # the fakes are an SD file and a DoSSR file
    hs.patch(p, "DoSSRSampler", seed=SEED, steps=steps)
    hs.patch(p, "SaveImage", filename_prefix=prefix)
    ids = {nid: p[nid]["class_type"] for nid in (N_LOAD, N_CKPT, N_DOSSR, N_ENC, N_SAMPLE, N_DECODE,
                                                  N_FIX, N_SAVE, N_TILED)}
    expected = {N_LOAD: "LoadImage", N_CKPT: "CheckpointLoaderSimple", N_DOSSR: "DoSSRModelLoader",
                N_ENC: "DoSSRLREncode", N_SAMPLE: "DoSSRSampler", N_DECODE: "VAEDecodeTiled",
                N_FIX: "DoSSRColorFix", N_SAVE: "SaveImage", N_TILED: "DoSSRTiledDiffusion"}
    if ids != expected or p[N_TILED]["inputs"]["model"] != [N_CKPT, 0] \
            or p[N_SAMPLE]["inputs"]["model"] != [N_TILED, 0]:
        raise RuntimeError(f"{WORKFLOW.name} changed shape ({ids}); update bench/large.py")
    p[N_COUNT] = {"class_type": "DoSSRTestCountUNet",
                  "inputs": {"model": [N_CKPT, 0], "log_path": str(count_log)}}
    p[N_LATENT] = {"class_type": "SaveLatent",
                   "inputs": {"samples": [N_SAMPLE, 0], "filename_prefix": prefix + "_latent"}}
    if tiled:
        p[N_TILED]["inputs"]["model"] = [N_COUNT, 0]
    else:
        del p[N_TILED]
        p[N_SAMPLE]["inputs"]["model"] = [N_COUNT, 0]
        p[N_DECODE] = {"class_type": "VAEDecode",
                       "inputs": {"samples": [N_SAMPLE, 0], "vae": [N_CKPT, 2]}}
    return p


# ----------------------------------------------------------------------------- memory

def proc_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS; True if it took (within 64 MB of VmRSS)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return proc_kb(pid, "VmHWM") - proc_kb(pid, "VmRSS") < 64 * 1024


class RssSampler:
    """Samples the server's VmRSS every ``period`` s in a thread: [(time.time(), bytes)]."""

    def __init__(self, pid: int, period: float = 0.25):
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_flag.wait(self.period):
            try:
                rss = proc_kb(self.pid, "VmRSS") * 1024
            except (OSError, RuntimeError):
                return
            with self.lock:
                self.samples.append((time.time(), rss))

    def peak_between(self, start: float, end: float) -> int | None:
        with self.lock:
            vals = [r for t, r in self.samples if start <= t <= end]
        return max(vals) if vals else None

    def close(self) -> None:
        self.stop_flag.set()
        self.thread.join(2)


def node_intervals(events, end: float) -> list[tuple[str, float, float]]:
    """(node, start, end) per ``executing`` message, in order (e2e.node_seconds' marks)."""
    marks = sorted((t, d.get("node") if kind == "executing" else None) for t, kind, d in events
                   if kind in ("executing", "execution_success"))
    return [(node, t, marks[i + 1][0] if i + 1 < len(marks) else end)
            for i, (t, node) in enumerate(marks) if node is not None]


# ----------------------------------------------------------------------------- checks

def edge_jumps(latent, edges: list[int], dim: int) -> tuple[float, float]:
    """(max ratio at the given edges, 95th percentile over all positions) of |first difference|
    across a position, over the median of its neighbours' (see tests/host/test_tiling_host.py)."""
    import torch

    lat = latent.movedim(dim, -1)
    d = (lat[..., 1:] - lat[..., :-1]).abs().mean(dim=tuple(range(lat.dim() - 1)))

    def ratio(e):
        return (d[e] / torch.cat([d[max(e - 4, 0):max(e - 1, 0)], d[e + 2:e + 5]]).median()).item()

    inner = range(4, len(d) - 5)
    all_ratios = sorted(ratio(e) for e in inner)
    p95 = all_ratios[int(0.95 * (len(all_ratios) - 1))] if all_ratios else float("nan")
    at_edges = [ratio(e) for e in edges if 4 <= e < len(d) - 5]
    return (max(at_edges) if at_edges else float("nan")), p95


def check_latent(path: Path) -> dict:
    """Finite values, stats, and the seam statistic at the inner tile edges of the saved latent
    (at the workflow's tile edges for an untiled run too, as the yardstick)."""
    from safetensors.torch import load_file

    lat = load_file(str(path))["latent_tensor"].float()
    h, w = lat.shape[-2:]
    tiles = tile_grid(h, w, *tile_geometry())
    cols = sorted({t.x - 1 for t in tiles if t.x > 0} | {t.x + t.w - 1 for t in tiles if t.x + t.w < w})
    rows = sorted({t.y - 1 for t in tiles if t.y > 0} | {t.y + t.h - 1 for t in tiles if t.y + t.h < h})
    finite = bool(lat.isfinite().all())
    out = {"shape": list(lat.shape), "finite": finite, "nonfinite": int((~lat.isfinite()).sum())}
    if finite:
        out.update(mean=float(lat.mean()), std=float(lat.std()))
        ec, pc = edge_jumps(lat, cols, -1)
        er, pr = edge_jumps(lat, rows, -2)
        out.update(seam_edge_max=max(ec, er) if cols else float("nan"), seam_p95=max(pc, pr))
    return out


def check_image(path: Path) -> dict:
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    return {"mean": float(a.mean()), "std": float(a.std())}


# ----------------------------------------------------------------------------- session

class Session:
    """A started server with its websocket log, RSS sampler and warm-up baseline."""

    def __init__(self, args, base: Path, sd: Path, dossr: Path):
        self.args, self.base = args, base
        hs.prepare_base_dir(base, models={"checkpoints": {e2e.SD_NAME: sd},
                                          "dossr": {e2e.DOSSR_NAME: dossr}}, input_images={})
        (base / "unet_calls").mkdir(exist_ok=True)
        extra = () if args.no_pytorch_attention else ("--use-pytorch-cross-attention",)
        self.server = hs.ComfyServer.start(args.comfyui, base, extra_args=extra)
        self.events = self.rss = None
        try:
            print(f"server {self.server.url} (pid {self.server.pid}), base {base}, ready in "
                  f"{self.server.ready_seconds:.1f} s", flush=True)
            missing = [n for n in REQUIRED_NODES if not self.server.object_info(n)]
            if missing:
                raise RuntimeError(f"nodes missing from /object_info: {missing}\n{self.server.log_tail()}")
            self.events = e2e.EventLog(self.server.url, self.server.client_id)
            self.rss = RssSampler(self.server.pid)
            t0 = time.perf_counter()
            write_picture(base / "input" / "warmup.png", WARMUP_LR)
            self.warmup = self.run("warmup", "warmup.png", SCALE * WARMUP_LR, tiled=True, steps=1,
                                   check_cache=False)
            self.warmup_seconds = time.perf_counter() - t0
            time.sleep(1.0)
            self.weights = proc_kb(self.server.pid, "VmRSS") * 1024
            self.load_peak = proc_kb(self.server.pid, "VmHWM") * 1024
            self.reset_works = reset_peak(self.server.pid)
            print(f"warm-up {self.warmup_seconds:.1f} s; RSS with every model loaded "
                  f"{self.weights / GB:.2f} GB (peak while loading {self.load_peak / GB:.2f} GB); "
                  f"VmHWM reset via clear_refs {'works' if self.reset_works else 'does NOT work'}",
                  flush=True)
        except BaseException:
            self.close()
            raise

    def run(self, tag: str, image: str, size: int, tiled: bool, steps: int,
            check_cache: bool = True, encode_tiling: str = "auto") -> dict:
        server, pid = self.server, self.server.pid
        count_log = self.base / "unet_calls" / f"{tag}.jsonl"
        prompt = build_prompt(image, steps, tiled, count_log, f"large_{tag}", encode_tiling)
        rss_before = proc_kb(pid, "VmRSS") * 1024
        reset_ok = reset_peak(pid)
        cpu0 = e2e.cpu_seconds(pid)
        t_queue = time.time()
        prompt_id = server.queue_prompt(prompt)
        entry = server.wait(prompt_id, timeout=self.args.timeout, poll=0.5)
        peak = proc_kb(pid, "VmHWM") * 1024
        cpu = e2e.cpu_seconds(pid) - cpu0
        rss_after = proc_kb(pid, "VmRSS") * 1024
        if server.status_str(entry) != "success":
            err = server.execution_error(entry) or server.execution_interrupted(entry) or entry.get("status")
            raise RuntimeError(f"{tag} prompt failed: {json.dumps(err, indent=1)[:6000]}\n"
                               f"{server.log_tail()}")
        deadline = time.monotonic() + 10
        while not any(k == "execution_success" for _, k, _ in self.events.for_prompt(prompt_id)):
            if time.monotonic() > deadline or self.events.closed:
                raise RuntimeError("the websocket did not report execution_success")
            time.sleep(0.05)
        msgs = dict(server.messages(entry))
        end = msgs["execution_success"]["timestamp"] / 1000
        wall = end - msgs["execution_start"]["timestamp"] / 1000
        events = self.events.for_prompt(prompt_id)
        per_node = e2e.node_seconds(events, end)
        cached = set(msgs.get("execution_cached", {}).get("nodes", []))
        if check_cache and (cached & set(RECOMPUTED) or not set(RECOMPUTED) <= set(per_node)):
            raise RuntimeError(f"{tag}: nodes {sorted(cached & set(RECOMPUTED))} came from the cache; "
                               f"executed: {sorted(per_node)}")
        stage_peak = {}
        for node, start, stop in node_intervals(events, end):
            p = self.rss.peak_between(start, stop)
            if p is not None:
                stage_peak[node] = max(stage_peak.get(node, 0), p)
        calls = hs.read_unet_calls(count_log)
        images = server.output_images(entry)
        sizes = {hs.png_size(p) for p in images}
        if sizes != {(size, size)}:
            raise RuntimeError(f"{tag}: output sizes {sizes}, expected {size}x{size}")
        latent_items = (entry.get("outputs") or {}).get(N_LATENT, {}).get("latents", [])
        latent = {}
        if latent_items:
            item = latent_items[0]
            latent = check_latent(self.base / "output" / item.get("subfolder", "") / item["filename"])
        tiles = tiles_for(size) if tiled else 1
        r = {
            "tag": tag, "size": size, "tiled": tiled, "steps": steps, "mp": size * size / 1e6,
            "encode_tiling": encode_tiling,
            "tiles": tiles, "calls": len(calls), "evals": sum(c["batch"] for c in calls),
            "batches": sorted({c["batch"] for c in calls}),
            "controlled": sum(1 for c in calls if c.get("control")),
            "peak": peak, "peak_reset_ok": reset_ok, "rss_before": rss_before, "rss_after": rss_after,
            "wall": wall, "cpu": cpu, "queue_to_end": end - t_queue,
            "per_node": per_node, "stage_peak": stage_peak,
            "stages": {name: per_node.get(node, 0.0) for node, name in STAGES.items()},
            "cached": sorted(cached, key=int), "latent": latent, "image": check_image(images[0]),
            "load": e2e.loadavg(),
        }
        for p in images:      # a 4096 px PNG is 30+ MB; keep the disk clean
            p.unlink(missing_ok=True)
        return r

    def close(self) -> None:
        if self.rss is not None:
            self.rss.close()
        if self.events is not None:
            self.events.close()
        self.server.stop()


# ----------------------------------------------------------------------------- report

def fmt_gb(n) -> str:
    return f"{n / GB:.2f}"


def row_label(r: dict) -> str:
    """Output size, plus which sampling and encoding ran on tiles when that is not the default."""
    enc = " enc-tiles" if r.get("encode_tiling", "auto") == "always" else ""
    return f"{r['size']}{'' if r['tiled'] else ' untiled'}{enc}"


def encode_comparison(results: list[dict]) -> list[str]:
    """Encode time and peak RSS while encoding, whole-image ("auto") against always-tiled."""
    by = {(r["size"], r["tiled"], r.get("encode_tiling", "auto")): r for r in results}
    lines = []
    for (size, tiled, mode), auto in sorted(by.items()):
        tiles = by.get((size, tiled, "always"))
        if mode != "auto" or tiles is None:
            continue
        peaks = [r["stage_peak"].get(N_ENC) for r in (auto, tiles)]
        peak = (f"; peak RSS while encoding {fmt_gb(peaks[0])} GB against {fmt_gb(peaks[1])} GB"
                if None not in peaks else "")
        lines.append(f"encode at {row_label(auto)} px: auto (whole when it fits) "
                     f"{auto['stages']['encode']:.1f} s against always-tiled "
                     f"{tiles['stages']['encode']:.1f} s{peak}")
    return lines


def table(results: list[dict], weights: int) -> list[str]:
    head = (f"{'size':>14} {'MP':>6} {'tiles':>5} {'UNet calls':>10} {'peak RSS':>9} "
            f"{'above wts':>9} {'above/MP':>9} {'prompt s':>9} {'s/MP':>7} {'sampler s':>9} "
            f"{'sampler s/MP':>12}")
    lines = [head, "-" * len(head)]
    for r in results:
        above = r["peak"] - r["weights"]
        label = row_label(r)
        calls = f"{r['calls']} ({r['evals']})"
        lines.append(f"{label:>14} {r['mp']:>6.2f} {r['tiles']:>5} {calls:>10} {fmt_gb(r['peak']):>9} "
                     f"{fmt_gb(above):>9} {above / GB / r['mp']:>9.2f} {r['wall']:>9.1f} "
                     f"{r['wall'] / r['mp']:>7.1f} {r['stages']['sampler']:>9.1f} "
                     f"{r['stages']['sampler'] / r['mp']:>12.1f}")
    return lines


def stage_table(results: list[dict]) -> list[str]:
    head = (f"{'size':>14} {'encode s':>9} {'sampler s':>9} {'decode s':>9} {'colfix s':>8} "
            f"{'save s':>7} {'s/tile-eval':>11} {'CPU s/MP':>8} {'CPU cores':>9} | peak RSS GB while: "
            f"{'encode':>6} {'sampler':>7} {'decode':>6} {'colfix':>6}")
    lines = [head, "-" * len(head)]
    for r in results:
        s, sp = r["stages"], r["stage_peak"]
        per_eval = s["sampler"] / r["evals"] if r["evals"] else float("nan")
        label = row_label(r)
        peaks = [fmt_gb(sp[n]) if n in sp else "-" for n in (N_ENC, N_SAMPLE, N_DECODE, N_FIX)]
        lines.append(f"{label:>14} {s['encode']:>9.1f} {s['sampler']:>9.1f} {s['decode']:>9.1f} "
                     f"{s['colorfix']:>8.1f} {s['save']:>7.1f} {per_eval:>11.2f} "
                     f"{r['cpu'] / r['mp']:>8.0f} {r['cpu'] / r['wall']:>9.2f} | {'':>18} {peaks[0]:>6} {peaks[1]:>7} "
                     f"{peaks[2]:>6} {peaks[3]:>6}")
    return lines


def verdicts(results: list[dict]) -> list[str]:
    modes = {r.get("encode_tiling", "auto") for r in results}
    mode = "auto" if "auto" in modes else "always"
    tiled = sorted((r for r in results if r["tiled"] and r.get("encode_tiling", "auto") == mode),
                   key=lambda r: r["size"])
    lines = []
    if not tiled:
        return lines
    per_mp = [(r["size"], (r["peak"] - r["weights"]) / GB / r["mp"]) for r in tiled]
    linear = all(b <= a * (1 + LINEAR_TOLERANCE) for (_, a), (_, b) in zip(per_mp, per_mp[1:]))
    slopes = [f"{a['size']}->{b['size']}: "
              f"{((b['peak'] - b['weights']) - (a['peak'] - a['weights'])) / GB / (b['mp'] - a['mp']):.2f}"
              for a, b in zip(tiled, tiled[1:])]
    lines.append(f"linearity: peak above weights per MP = "
                 f"{', '.join(f'{s} px {v:.2f}' for s, v in per_mp)} GB/MP -> "
                 f"{'constant or falling (at most linear): YES' if linear else 'RISING (worse than linear): NO'}"
                 + (f"; increments {', '.join(slopes)} GB per added MP" if slopes else ""))
    big = [r for r in tiled if r["size"] == TARGET_PX]
    if big:
        r = big[0]
        ok = r["peak"] < TARGET_GB * GB
        lines.append(f"{TARGET_PX} px: peak RSS {fmt_gb(r['peak'])} GB "
                     f"({'under' if ok else 'NOT under'} {TARGET_GB:.0f} GB: {'YES' if ok else 'NO'}); "
                     f"above weights {fmt_gb(r['peak'] - r['weights'])} GB")
    else:
        lines.append(f"{TARGET_PX} px not run: the 16 GB target is not checked")
    for key, name in (("wall", "prompt"), ("sampler", "sampler"), ("cpu", "server CPU")):
        vals = [(r[key] if key in ("wall", "cpu") else r["stages"]["sampler"]) / r["mp"] for r in tiled]
        mean = statistics.fmean(vals)
        spread = max(abs(v / mean - 1) for v in vals)
        lines.append(f"{name} s/MP: {', '.join(f'{v:.1f}' for v in vals)} (mean {mean:.1f}, max "
                     f"deviation {spread * 100:.0f} %) -> flat within {FLAT_TOLERANCE * 100:.0f} %: "
                     f"{'YES' if spread <= FLAT_TOLERANCE else 'NO'}")
    evals = [(r["size"], r["stages"]["sampler"] / r["evals"]) for r in tiled if r["evals"]]
    if evals:
        lines.append("sampler s per tile evaluation: " + ", ".join(f"{s} px {v:.2f}" for s, v in evals)
                     + "  (tiles per MP vary with the tile geometry: "
                     + ", ".join(f"{r['size']} px {r['tiles'] / r['mp']:.2f}" for r in tiled) + ")")
    return lines


def check_lines(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        lat, img = r["latent"], r["image"]
        label = row_label(r)
        if not lat:
            lines.append(f"  {label}: no latent saved")
            continue
        seam = ""
        if lat.get("finite"):
            edge = lat["seam_edge_max"]
            seam = (f"seam ratio (|step| across a position / its neighbours') at the tile edges: max "
                    f"{edge:.2f}" if edge == edge else "no inner tile edges")
            seam += f"; p95 over all positions {lat['seam_p95']:.2f}"
        lines.append(f"  {label}: latent {lat['shape']} finite {'yes' if lat['finite'] else 'NO (' + str(lat['nonfinite']) + ' values)'}"
                     + (f", mean {lat['mean']:.3f} std {lat['std']:.3f}" if lat.get("finite") else "")
                     + (f"; {seam}" if seam else "") + f"; image mean {img['mean']:.3f} std {img['std']:.3f}"
                     + f"; UNet batches {'/'.join(map(str, r['batches']))}, {r['controlled']}/{r['calls']} "
                       f"with control; load {r['load']}")
    return lines


def report(args, results, info) -> str:
    out = []
    models = "mini" if args.small else "full-size"
    out.append(f"DoSSR large images, tiled workflow ({WORKFLOW.name}: 512 px tiles, 128 px overlap, "
               f"4 tiles a batch, VAE Decode (Tiled) 512/64), {models} random-weight models, "
               f"CPU ({os.cpu_count()} cores), {info['attention']}, ComfyUI {info['host_version']}")
    out.append(f"DoSSR Sampler: {args.steps} step(s), cfg 1, order 3, sde; LR = size/4 px, x4 RRDBNet; "
               f"one run per row")
    mode = ("one server, VmHWM reset before every prompt (clear_refs)" if info["reset_works"] else
            "clear_refs did NOT reset VmHWM here: a fresh server (with its own warm-up) per row")
    out.append(f"model weights = server RSS after a warm-up prompt loading every model: "
               f"{fmt_gb(info['weights'])} GB; {mode}")
    out.append("")
    out += table(results, info["weights"])
    out.append("")
    out.append("size: output px (square); UNet calls (evaluations = tiles x steps when tiled); peak RSS: "
               "the server's VmHWM during the prompt, GB = 1e9 bytes;")
    out.append("above wts = peak - model weights; above/MP per output megapixel; prompt s: execution_start.."
               "execution_success; sampler s: the DoSSR Sampler node.")
    out.append("")
    out += stage_table(results)
    out.append("s/tile-eval: sampler s per UNet evaluation (one tile); CPU s/MP: user+system CPU time of "
               "the server per MP, steadier than wall time when other")
    out.append("processes compete for the cores; CPU cores: CPU s / prompt s; peak RSS while a stage ran: "
               "from VmRSS sampled every 0.25 s.")
    out.append("")
    out.append("checks:")
    out += check_lines(results)
    out.append("")
    out += verdicts(results)
    out += encode_comparison(results)
    out.append("")
    out.append(f"load average before: {info['load_before']}; after: {info['load_after']}; "
               f"server ready {info['ready']:.1f} s, warm-up {info['warmup']:.1f} s, "
               f"total {info['total']:.0f} s")
    return "\n".join(out)


# ----------------------------------------------------------------------------- main

def parse_sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()] if text else []


def wait_for_load(limit: float, max_seconds: float) -> None:
    if limit <= 0:
        return
    t0 = time.monotonic()
    while True:
        one = float(e2e.loadavg().split()[0])
        if one < limit:
            return
        if time.monotonic() - t0 >= max_seconds:
            print(f"load {e2e.loadavg()} still >= {limit}; going ahead anyway", flush=True)
            return
        print(f"load {e2e.loadavg()} >= {limit}: waiting a minute", flush=True)
        time.sleep(60)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024,2048,4096", help="output sides in px, comma-separated")
    ap.add_argument("--steps", type=int, default=5, help="DoSSR Sampler steps (model evaluations)")
    ap.add_argument("--untiled", default="1024",
                    help="sizes also run without DoSSR Tiled Sampling and with plain VAEDecode "
                         "('' for none)")
    ap.add_argument("--small", action="store_true",
                    help="mini fake models (sd2_mini / DoSSR mini) to check the script quickly")
    ap.add_argument("--encode-tiling", default="auto",
                    help="DoSSR LR Encode 'tiling' values to run every row with, comma-separated "
                         "(auto, always)")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dossr-tests" / "bench",
                    help="where the generated model files are kept (shared with bench/e2e.py)")
    ap.add_argument("--comfyui", type=Path, default=Path(os.environ.get("COMFYUI_PATH", "/opt/ComfyUI")),
                    help="the ComfyUI tree")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--no-pytorch-attention", action="store_true",
                    help="leave out --use-pytorch-cross-attention")
    ap.add_argument("--timeout", type=float, default=6 * 3600.0, help="seconds allowed per prompt")
    ap.add_argument("--wait-load", type=float, default=1.5,
                    help="before starting, wait (up to --wait-max s) until the 1-minute load "
                         "average is below this; 0 = do not wait")
    ap.add_argument("--wait-max", type=float, default=1200.0)
    ap.add_argument("--keep", action="store_true", help="keep the server's base directory")
    ap.add_argument("--report-from", type=Path, metavar="JSON",
                    help="print the report of an earlier run's --json file and exit")
    args = ap.parse_args(argv)
    if args.report_from:
        saved = json.loads(args.report_from.read_text())
        old = argparse.Namespace(**{**vars(args), "small": saved["args"]["small"] == "True",
                                    "steps": int(saved["args"]["steps"])})
        print(report(old, saved["results"], saved["info"]))
        return 0
    sizes, untiled = sorted(set(parse_sizes(args.sizes))), sorted(set(parse_sizes(args.untiled)))
    encode_modes = [m for m in args.encode_tiling.split(",") if m]
    if not encode_modes or any(m not in ("auto", "always") for m in encode_modes):
        ap.error(f"--encode-tiling takes auto and/or always, got {args.encode_tiling!r}")
    for s in sizes + untiled:
        if s < 64 or s % 32:
            ap.error(f"size {s}: sizes must be multiples of 32 px, at least 64 (LR = size/4, a "
                     f"multiple of 8)")
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    problem = hs.comfy_tree_problem(args.comfyui, "--comfyui")
    if problem:
        ap.error(problem)

    wait_for_load(args.wait_load, args.wait_max)
    t_total = time.perf_counter()
    info = {"load_before": e2e.loadavg(), "host_version": e2e.host_version(args.comfyui),
            "attention": "default attention" if args.no_pytorch_attention else "PyTorch attention"}
    print(f"load average before: {info['load_before']}", flush=True)
    sd, dossr, _ = e2e.model_files(args.cache.expanduser(), args.small)
    print(f"models: {sd} ({sd.stat().st_size / GB:.2f} GB), {dossr} ({dossr.stat().st_size / GB:.2f} GB)",
          flush=True)
    plan = [(s, t, m) for m in encode_modes for s, t in [(s, True) for s in sizes] + [(s, False) for s in untiled]]
    plan.sort(key=lambda p: (p[0], not p[1], encode_modes.index(p[2])))

    bases, sessions, results = [], [], []

    def new_session() -> Session:
        base = Path(tempfile.mkdtemp(prefix="dossr-large-"))
        bases.append(base)
        s = Session(args, base, sd, dossr)
        sessions.append(s)
        return s

    try:
        session = new_session()
        info.update(weights=session.weights, reset_works=session.reset_works,
                    ready=session.server.ready_seconds, warmup=session.warmup_seconds)
        for i, (size, tiled, encode_tiling) in enumerate(plan):
            if not session.reset_works and i > 0:
                session.close()
                session = new_session()
            tag = f"{'tiled' if tiled else 'untiled'}_{size}_enc_{encode_tiling}"
            image = f"lr_{tag}.png"
            write_picture(session.base / "input" / image, size // SCALE)
            print(f"{tag}: LR {size // SCALE} px -> {size} px, {args.steps} step(s) ... load "
                  f"{e2e.loadavg()}", flush=True)
            try:
                r = session.run(tag, image, size, tiled, args.steps, encode_tiling=encode_tiling)
            except KeyboardInterrupt:
                session.server.interrupt()
                print("interrupted: reporting the rows finished so far", flush=True)
                break
            r["weights"] = session.weights
            results.append(r)
            print(f"  prompt {r['wall']:.1f} s (sampler {r['stages']['sampler']:.1f}, encode "
                  f"{r['stages']['encode']:.1f}, decode {r['stages']['decode']:.1f}), peak RSS "
                  f"{fmt_gb(r['peak'])} GB (above weights {fmt_gb(r['peak'] - r['weights'])}), "
                  f"{r['tiles']} tiles, {r['calls']} UNet calls / {r['evals']} evals, "
                  f"latent finite {r['latent'].get('finite')}, load {r['load']}", flush=True)
        info["load_after"] = e2e.loadavg()
        info["total"] = time.perf_counter() - t_total
        text = report(args, results, info)
        print()
        print(text, flush=True)
        if args.json:
            e2e.save_json(args.json, args, info=info, results=results, report=text)
    finally:
        for s in sessions:
            s.close()
        for base in bases:
            e2e.discard_base(base, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
