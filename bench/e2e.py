"""DoSSR against a usual SD-based upscaler, end to end through a real ComfyUI server on this CPU.

    python bench/e2e.py [--size 128] [--runs 2] [--cache DIR] [--comfyui /opt/ComfyUI] [--small]
                        [--no-networks]

One server (127.0.0.1, a temporary base directory with this repo as ``comfyui-dossr`` and the
test probe pack as ``dossr_test_probes``) runs three prompts on the same LR image of
``size x size`` px; each produces a ``4*size`` px image:

A  DoSSR: LoadImage -> DoSSR LR Encode (x4, rrdbnet) -> DoSSR Sampler (5 steps, cfg 1,
   order 3, sde) -> VAEDecode -> DoSSR Color Fix -> SaveImage.
B  Baseline, an SD-based upscaler at the usual setting: the same LR Encode latent and the same
   DoSSR ControlNet (DoSSR Apply ControlNet, so the control cost per evaluation is equal) ->
   KSampler (dpmpp_2m, karras, 20 steps, cfg 7, denoise 1) -> VAEDecode -> SaveImage.
C  The same at a DiffBIR-like setting: 50 steps, cfg 4 (same sampler and ControlNet as B), the
   other end of what users would pick instead.

In both the MODEL goes through ``DoSSRTestCountUNet``, which logs every UNet forward (and its
batch size) to a file. The models are full-size random-weight fakes (SD 2.1-base and DoSSR),
written once into a cache directory (``--small``: the "mini" fakes, for a quick check).

Fairness of the host's cache: the loaders and the two text encodes are shared by A, B and C and
stay cached (model loading, paid once per session). Every measured prompt loads its own copy
of the LR image (same pixels, new file name), so LoadImage, LR Encode, the sampler, the decode
and everything after are recomputed in every prompt. A tiny warm-up prompt of each kind runs
first, so all weights are loaded before anything is timed. Runs alternate the order (A B C,
C B A, ...) to cancel drift; the table shows medians.

Times: the whole prompt from the server's ``execution_start``/``execution_success``
timestamps in ``/history``, and per node from the ``executing`` messages of the server's
websocket (time of arrival here, which starts one node and ends the previous one).

The limit: after the prompts, with the server stopped, each network a prompt needs is timed on
its own at the same size in this process (bench/networks.py: RRDBNet, VAE encoder, hint
encoder, one UNet + ControlNet evaluation per batch size seen, VAE decoder). Their sum over a
prompt's passes is printed beside its measured prompt and stage times, with the ratio
prompt / sum: what the pipeline spends around its networks (``--no-networks`` skips this).

Prints ratios measured side by side in one run; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import networks  # noqa: E402
from tests.hostlib import server as hs  # noqa: E402

sys.path.insert(0, str(REPO / "workflows"))
from dossr_batch.ws import WebSocket  # noqa: E402

SD_NAME = "bench_fake_sd2.safetensors"
DOSSR_NAME = "bench_fake_dossr.safetensors"
POSITIVE = "clean, high-resolution, 8k"
NEGATIVE = "blurry, noisy, low quality, jpeg artifacts"
SEED = 123
WARMUP_LR = 16

DOSSR = dict(steps=5, cfg=1.0, order="3", mode="sde")
BASELINE = dict(steps=20, cfg=7.0, sampler_name="dpmpp_2m", scheduler="karras", denoise=1.0)
DIFFBIR_LIKE = dict(BASELINE, steps=50, cfg=4.0)

CONFIGS = {
    "A": f"DoSSR ({DOSSR['steps']} steps, cfg {DOSSR['cfg']:g}, order {DOSSR['order']} {DOSSR['mode']})",
    **{k: (f"KSampler ({v['sampler_name']} {v['scheduler']}, {v['steps']} steps, cfg {v['cfg']:g})")
       for k, v in (("B", BASELINE), ("C", DIFFBIR_LIKE))},
}

# Node ids (the same in both prompts where the node is shared, so the host's cache sees them).
N_CKPT, N_POS, N_NEG, N_DOSSR, N_LOAD, N_ENC, N_COUNT = "1", "2", "3", "4", "5", "6", "7"
N_SAMPLE, N_DECODE, N_FIX, N_SAVE, N_CONTROL = "8", "9", "10", "11", "12"
STAGES = {N_ENC: "encode", N_SAMPLE: "sampler", N_DECODE: "decode"}


# ----------------------------------------------------------------------------- models

def _digest(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def cached_file(cache: Path, key: str, sources, writer) -> tuple[Path, float]:
    """``<cache>/<key>-<digest of the generator code>.safetensors``, written by ``writer(tmp)``
    and renamed into place if absent; older versions of *key* are removed. (path, seconds)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{key}-{_digest(sources)}.safetensors"
    if path.exists():
        return path, 0.0
    for old in cache.glob(f"{key}-*.safetensors"):
        old.unlink(missing_ok=True)
    tmp = cache / f".{path.name}.{os.getpid()}.tmp"
    start = time.perf_counter()
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path, time.perf_counter() - start


def model_files(cache: Path, small: bool, seed: int = 0) -> tuple[Path, Path, float]:
    """(SD checkpoint, DoSSR checkpoint, seconds spent writing them)."""
    from tests import fake_dossr
    from tests.hostlib import fake_sd

    sd_variant, dossr_size = ("sd2_mini", "mini") if small else ("sd2_full", "full")
    sd, t_sd = cached_file(cache, f"{sd_variant}-s{seed}", [Path(fake_sd.__file__)],
                           lambda p: fake_sd.write_fake_sd_checkpoint(p, sd_variant, seed=seed))
    if fake_dossr.SIZES[dossr_size]["preprocessor"].get("num_grow_ch", 32) != 32:
        raise SystemExit(f"fake DoSSR size {dossr_size!r}: the preprocessor needs 32 growth channels")
    sources = [Path(fake_dossr.__file__), *(REPO / "dossr_core" / "nets").glob("*.py")]
    dossr, t_dossr = cached_file(
        cache, f"dossr_{dossr_size}-s{seed}", sources,
        lambda p: fake_dossr.write_safetensors(p, fake_dossr.dossr_state_dict(dossr_size, seed)))
    return sd, dossr, t_sd + t_dossr


# ----------------------------------------------------------------------------- websocket

class EventLog:
    """The server's websocket messages for ``/ws?clientId=...`` (the batch client's
    :class:`dossr_batch.ws.WebSocket`): a thread records every JSON message as
    (arrival time.time(), type, data)."""

    def __init__(self, url: str, client_id: str):
        self.ws = WebSocket(url, client_id, timeout=30)
        self.events: list[tuple[float, str, dict]] = []
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._read, name="ws-events", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for msg in self.ws.messages():
                arrived = time.time()
                with self.lock:
                    self.events.append((arrived, msg.get("type"), msg.get("data") or {}))
        finally:
            self.closed = True

    def for_prompt(self, prompt_id: str) -> list[tuple[float, str, dict]]:
        with self.lock:
            return [e for e in self.events if e[2].get("prompt_id") == prompt_id]

    def close(self) -> None:
        self.ws.close()
        self.thread.join(5)


# ----------------------------------------------------------------------------- prompts

def shared_nodes(image: str, count_log: Path) -> dict:
    return {
        N_CKPT: {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD_NAME}},
        N_POS: {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": [N_CKPT, 1]}},
        N_NEG: {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": [N_CKPT, 1]}},
        N_DOSSR: {"class_type": "DoSSRModelLoader", "inputs": {"model_name": DOSSR_NAME, "dtype": "auto"}},
        N_LOAD: {"class_type": "LoadImage", "inputs": {"image": image}},
        N_ENC: {"class_type": "DoSSRLREncode", "inputs": {
            "image": [N_LOAD, 0], "dossr_model": [N_DOSSR, 0], "vae": [N_CKPT, 2],
            "scale": 4.0, "preprocess": "rrdbnet"}},
        N_COUNT: {"class_type": "DoSSRTestCountUNet",
                  "inputs": {"model": [N_CKPT, 0], "log_path": str(count_log)}},
        N_DECODE: {"class_type": "VAEDecode", "inputs": {"samples": [N_SAMPLE, 0], "vae": [N_CKPT, 2]}},
    }


def dossr_prompt(image: str, count_log: Path) -> dict:
    p = shared_nodes(image, count_log)
    p[N_SAMPLE] = {"class_type": "DoSSRSampler", "inputs": {
        "model": [N_COUNT, 0], "dossr_model": [N_DOSSR, 0], "positive": [N_POS, 0],
        "negative": [N_NEG, 0], "latent": [N_ENC, 0], "hint": [N_ENC, 2], "seed": SEED,
        "steps": DOSSR["steps"], "order": DOSSR["order"], "mode": DOSSR["mode"],
        "cfg": DOSSR["cfg"], "control_strength": 1.0}}
    p[N_FIX] = {"class_type": "DoSSRColorFix",
                "inputs": {"image": [N_DECODE, 0], "reference": [N_ENC, 1], "mode": "wavelet"}}
    p[N_SAVE] = {"class_type": "SaveImage",
                 "inputs": {"images": [N_FIX, 0], "filename_prefix": "bench_dossr"}}
    return p


def baseline_prompt(image: str, count_log: Path, settings: dict = BASELINE) -> dict:
    p = shared_nodes(image, count_log)
    p[N_CONTROL] = {"class_type": "DoSSRApplyControlNet", "inputs": {
        "positive": [N_POS, 0], "negative": [N_NEG, 0], "dossr_model": [N_DOSSR, 0],
        "hint": [N_ENC, 2], "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
    p[N_SAMPLE] = {"class_type": "KSampler", "inputs": {
        "model": [N_COUNT, 0], "positive": [N_CONTROL, 0], "negative": [N_CONTROL, 1],
        "latent_image": [N_ENC, 0], "seed": SEED, **settings}}
    p[N_SAVE] = {"class_type": "SaveImage",
                 "inputs": {"images": [N_DECODE, 0], "filename_prefix": "bench_ksampler"}}
    return p


PROMPTS = {"A": dossr_prompt, "B": baseline_prompt,
           "C": lambda image, count_log: baseline_prompt(image, count_log, DIFFBIR_LIKE)}


# ----------------------------------------------------------------------------- one prompt

def node_seconds(events, end: float) -> dict[str, float]:
    """Seconds per node from the ``executing`` messages (one starts where the previous ends)."""
    marks = sorted((t, d.get("node") if kind == "executing" else None) for t, kind, d in events
                   if kind in ("executing", "execution_success"))
    out = {}
    for i, (t, node) in enumerate(marks):
        if node is not None:
            nxt = marks[i + 1][0] if i + 1 < len(marks) else end
            out[node] = out.get(node, 0.0) + nxt - t
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_prompt(server, events: EventLog, kind: str, image: str, count_log: Path,
               expect_px: int, timeout: float) -> dict:
    prompt = PROMPTS[kind](image, count_log)
    cpu0 = cpu_seconds(server.pid)
    prompt_id = server.queue_prompt(prompt)
    entry = server.wait(prompt_id, timeout=timeout, poll=0.2)
    cpu = cpu_seconds(server.pid) - cpu0
    if server.status_str(entry) != "success":
        err = server.execution_error(entry) or server.execution_interrupted(entry) or entry.get("status")
        raise RuntimeError(f"{kind} prompt failed: {json.dumps(err, indent=1)[:4000]}\n{server.log_tail()}")
    deadline = time.monotonic() + 10
    while not any(k == "execution_success" for _, k, _ in events.for_prompt(prompt_id)):
        if time.monotonic() > deadline or events.closed:
            raise RuntimeError("the websocket did not report execution_success")
        time.sleep(0.05)
    msgs = dict(server.messages(entry))
    wall = (msgs["execution_success"]["timestamp"] - msgs["execution_start"]["timestamp"]) / 1000
    per_node = node_seconds(events.for_prompt(prompt_id), msgs["execution_success"]["timestamp"] / 1000)
    cached = set(msgs.get("execution_cached", {}).get("nodes", []))
    recomputed = {N_LOAD, N_ENC, N_COUNT, N_SAMPLE, N_DECODE}
    if cached & recomputed or not recomputed <= set(per_node):
        raise RuntimeError(f"{kind}: nodes {sorted(cached & recomputed)} came from the cache; "
                           f"executed: {sorted(per_node)}")
    calls = hs.read_unet_calls(count_log)
    if not calls:
        raise RuntimeError(f"{kind}: DoSSRTestCountUNet logged nothing to {count_log}")
    images = server.output_images(entry)
    sizes = {hs.png_size(p) for p in images}
    if sizes != {(expect_px, expect_px)}:
        raise RuntimeError(f"{kind}: output sizes {sizes}, expected {expect_px}x{expect_px}")
    stages = {name: per_node.get(node, 0.0) for node, name in STAGES.items()}
    stages["other"] = sum(per_node.values()) - sum(stages.values())
    return {
        "kind": kind, "prompt_id": prompt_id, "wall": wall, **stages, "cpu": cpu,
        "load": loadavg(),
        "node_sum": sum(per_node.values()),
        "calls": len(calls), "evals": sum(c["batch"] for c in calls),
        "call_batches": [c["batch"] for c in calls],
        "batches": sorted({c["batch"] for c in calls}),
        "controlled": sum(1 for c in calls if c.get("control")),
        "cached": sorted(cached, key=int), "per_node": per_node,
    }


# ----------------------------------------------------------------------------- report

def med(rows, key):
    return statistics.median(r[key] for r in rows)


def gb(n: int) -> str:
    return f"{n / 2 ** 30:.2f} GiB"


def report(args, results, info) -> None:
    out_px = 4 * args.size
    by = {k: rs for k in CONFIGS if (rs := [r for r in results if r["kind"] == k])}
    print()
    print(f"DoSSR vs. an SD-based upscaler: LR {args.size}x{args.size} px -> {out_px}x{out_px} px, "
          f"{info['models']} random-weight models, CPU ({os.cpu_count()} cores), "
          f"{info['attention']}, ComfyUI {info['host_version']}")
    counts = sorted({len(v) for v in by.values()})
    runs = str(counts[0]) if len(counts) == 1 else ", ".join(f"{k}: {len(v)}" for k, v in by.items())
    order = " ".join(by)
    print(f"{runs} run(s) per configuration, order alternating ({order}, {order[::-1]}, ...); medians; "
          f"seconds from the server's timestamps")
    print()
    head = (f"{'configuration':<44} {'prompt s':>9} {'CPU s':>7} {'sampler s':>10} {'encode s':>9} "
            f"{'decode s':>9} {'other s':>8} {'UNet calls':>11} {'UNet evals':>11} "
            f"{'s/call':>7} {'s/eval':>7}")
    print(head)
    print("-" * len(head))
    rows = {}
    for k, rs in by.items():
        name = CONFIGS[k]
        calls = sorted({r["calls"] for r in rs})
        evals = sorted({r["evals"] for r in rs})
        row = {key: med(rs, key) for key in ("wall", "cpu", "sampler", "encode", "decode",
                                               "other", "calls", "evals")}
        rows[k] = row
        print(f"{k + ' ' + name:<44} {row['wall']:>9.1f} {row['cpu']:>7.0f} {row['sampler']:>10.1f} "
              f"{row['encode']:>9.1f} {row['decode']:>9.1f} {row['other']:>8.1f} "
              f"{'/'.join(map(str, calls)):>11} {'/'.join(map(str, evals)):>11} "
              f"{row['sampler'] / row['calls']:>7.2f} {row['sampler'] / row['evals']:>7.2f}")
    a = rows.get("A")
    for k in (k for k in rows if k != "A" and a):
        b = rows[k]
        print(f"{f'ratio {k}/A (baseline / DoSSR)':<44} {b['wall'] / a['wall']:>8.2f}x "
              f"{b['cpu'] / a['cpu']:>6.2f}x {b['sampler'] / a['sampler']:>9.2f}x {'':>9} {'':>9} {'':>8} "
              f"{b['calls'] / a['calls']:>10.2f}x {b['evals'] / a['evals']:>10.2f}x "
              f"{(b['sampler'] / b['calls']) / (a['sampler'] / a['calls']):>6.2f}x "
              f"{(b['sampler'] / b['evals']) / (a['sampler'] / a['evals']):>6.2f}x")
    print()
    print("prompt s: execution_start..execution_success of the whole prompt (loaders and text "
          "encodes cached, identical in both);")
    print("CPU s: user+system CPU time of the server process over the prompt (its threads' "
          "spin-waiting grows it too when other load competes);")
    print("sampler s: the DoSSRSampler / KSampler node (UNet + DoSSR ControlNet + solver); "
          "encode s: DoSSR LR Encode (RRDBNet x4, VAE")
    print("and hint encode); decode s: VAEDecode; other: the other nodes (LoadImage, UNet "
          "counter, Apply ControlNet, Color Fix, SaveImage).")
    print("Node times come from the websocket's executing messages, so the columns add up to "
          "prompt s only to within the messages' delivery jitter.")
    print("UNet evals = sum of batch sizes over UNet calls (cfg > 1 batches cond and uncond); "
          "s/call and s/eval are sampler s divided by them.")
    print()
    print("per run:")
    for i, r in enumerate(results):
        ctl = f"{r['controlled']}/{r['calls']} calls with control"
        print(f"  #{i + 1} {r['kind']}: prompt {r['wall']:.1f} s (node sum {r['node_sum']:.1f}), "
              f"sampler {r['sampler']:.1f}, encode {r['encode']:.1f}, decode {r['decode']:.1f}, "
              f"other {r['other']:.1f}; {r['calls']} calls, {r['evals']} evals, batch "
              f"{'/'.join(map(str, r['batches']))}, {ctl}; CPU {r['cpu']:.0f} s; cached nodes "
              f"{','.join(r['cached'])}; load {r['load']}")
    for run in sorted({r["run"] for r in results}):
        pair = {r["kind"]: r for r in results if r["run"] == run}
        for k in (k for k in pair if k != "A" and "A" in pair):
            print(f"  run {run + 1} ratio {k}/A: prompt {pair[k]['wall'] / pair['A']['wall']:.2f}x, "
                  f"CPU {pair[k]['cpu'] / pair['A']['cpu']:.2f}x, sampler "
                  f"{pair[k]['sampler'] / pair['A']['sampler']:.2f}x")
    if info.get("networks"):
        report_limit(by, info["networks"])
    print()
    print(f"server peak RSS (VmHWM): {gb(info['peak_rss'])}; server ready in "
          f"{info['ready']:.1f} s; warm-up {info['warmup']:.1f} s; models written this run "
          f"{info['model_seconds']:.1f} s; total {info['total']:.1f} s")
    print(f"load average before: {info['load_before']}; after: {info['load_after']}")


def report_limit(by: dict, nets: dict) -> None:
    """Measured prompt and stage times beside the sum of the prompt's own network passes."""
    print()
    print("the limit: each network timed on its own at this size (bench/networks.py), summed over "
          "the passes a prompt makes; medians")
    print("  " + ", ".join(f"{name} {sec:.2f} s" for name, sec in nets.items()))
    head = (f"{'configuration':<44} {'prompt s':>9} {'nets s':>8} {'prompt/nets':>12} "
            f"{'encode s/nets':>14} {'sampler s/nets':>15} {'decode s/nets':>14}")
    print(head)
    print("-" * len(head))
    for k, rs in by.items():
        name = CONFIGS[k]
        floor = networks.floor_seconds(nets, rs[0]["call_batches"])
        stage = {key: med(rs, key) for key in ("wall", "encode", "sampler", "decode")}
        cells = " ".join(f"{f'{stage[x]:.1f}/{floor[x]:.1f}':>{w}}"
                         for x, w in (("encode", 14), ("sampler", 15), ("decode", 14)))
        print(f"{k + ' ' + name:<44} {stage['wall']:>9.1f} {floor['total']:>8.1f} "
              f"{stage['wall'] / floor['total']:>11.2f}x {cells}")
    print("nets s: RRDBNet + VAE encoder + hint encoder + one UNet+ControlNet evaluation per UNet "
          "call (at its batch) + VAE decoder; prompt/nets above 1 is time spent around them.")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def save_json(path: Path, args, **fields) -> None:
    """The raw results of a run (``--json``), with the arguments that produced them."""
    path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **fields},
                               indent=1))


def discard_base(base: Path, keep: bool) -> None:
    """Remove a server's temporary base directory, or say where it was kept."""
    if keep:
        print(f"kept {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)


def host_version(comfy: Path) -> str:
    try:
        for line in (comfy / "comfyui_version.py").read_text().splitlines():
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    except OSError:
        pass
    return "?"


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128,
                    help="LR image side in px (output 4x; 128 -> 512, SD 2.1-base's size)")
    ap.add_argument("--runs", type=int, default=2, help="measured runs per configuration")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dossr-tests" / "bench",
                    help="where the generated model files are kept")
    ap.add_argument("--comfyui", type=Path, default=Path(os.environ.get("COMFYUI_PATH", "/opt/ComfyUI")),
                    help="the ComfyUI tree")
    ap.add_argument("--small", action="store_true",
                    help="mini fake models (sd2_mini / DoSSR mini) for a quick check of the script")
    ap.add_argument("--no-pytorch-attention", action="store_true",
                    help="leave out --use-pytorch-cross-attention (the host's CPU default attention)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per prompt")
    ap.add_argument("--keep", action="store_true", help="keep the server's base directory")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--no-networks", action="store_true",
                    help="skip timing each network on its own (the limit columns)")
    ap.add_argument("--configs", default="".join(CONFIGS),
                    help="which configurations to run, e.g. A for DoSSR only (default: all; the "
                         "ratios need A and at least one other)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.configs) - set(CONFIGS))
    if unknown or not args.configs:
        ap.error(f"--configs: {''.join(unknown) or 'nothing'} is not among {''.join(CONFIGS)}")
    kinds = [k for k in CONFIGS if k in args.configs]
    if args.size < 8 or args.size % 2:
        ap.error("--size must be even and at least 8 (so 4*size is a multiple of 8 and both "
                 "outputs have the same size)")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    problem = hs.comfy_tree_problem(args.comfyui, "--comfyui")
    if problem:
        ap.error(problem)

    t_total = time.perf_counter()
    info = {"load_before": loadavg(), "host_version": host_version(args.comfyui),
            "models": "mini" if args.small else "full-size",
            "attention": "default attention" if args.no_pytorch_attention else "PyTorch attention"}
    print(f"load average before: {info['load_before']}", flush=True)
    sd, dossr, info["model_seconds"] = model_files(args.cache.expanduser(), args.small)
    print(f"models: {sd} ({sd.stat().st_size / 1e9:.2f} GB), {dossr} "
          f"({dossr.stat().st_size / 1e9:.2f} GB)", flush=True)

    base = Path(tempfile.mkdtemp(prefix="dossr-bench-"))
    server = events = None
    try:
        hs.prepare_base_dir(base, models={"checkpoints": {SD_NAME: sd}, "dossr": {DOSSR_NAME: dossr}},
                            input_images={})
        logs = base / "unet_calls"
        logs.mkdir()
        extra = () if args.no_pytorch_attention else ("--use-pytorch-cross-attention",)
        server = hs.ComfyServer.start(args.comfyui, base, extra_args=extra)
        info["ready"] = server.ready_seconds
        print(f"server {server.url} (pid {server.pid}), base {base}, ready in "
              f"{server.ready_seconds:.1f} s", flush=True)
        missing = [n for n in ("DoSSRLREncode", "DoSSRSampler", "DoSSRApplyControlNet",
                               "DoSSRColorFix", "DoSSRTestCountUNet") if not server.object_info(n)]
        if missing:
            raise RuntimeError(f"nodes missing from /object_info: {missing}\n{server.log_tail()}")
        events = EventLog(server.url, server.client_id)

        t0 = time.perf_counter()
        for kind in kinds:
            hs.write_png(base / "input" / f"warmup_{kind}.png", WARMUP_LR, WARMUP_LR)
            run_prompt(server, events, kind, f"warmup_{kind}.png", logs / f"warmup_{kind}.jsonl",
                       4 * WARMUP_LR, args.timeout)
        info["warmup"] = time.perf_counter() - t0
        print(f"warm-up (LR {WARMUP_LR} px, both prompts) {info['warmup']:.1f} s", flush=True)

        results = []
        try:
            for run in range(args.runs):
                order = kinds
                for kind in order if run % 2 == 0 else order[::-1]:
                    image = f"lr_{args.size}_run{run}_{kind}.png"
                    hs.write_png(base / "input" / image, args.size, args.size)  # same pixels each time
                    r = run_prompt(server, events, kind, image, logs / f"run{run}_{kind}.jsonl",
                                   4 * args.size, args.timeout)
                    r["run"] = run
                    results.append(r)
                    print(f"run {run + 1} {kind}: prompt {r['wall']:.1f} s, CPU {r['cpu']:.0f} s, "
                          f"sampler {r['sampler']:.1f} s, {r['calls']} UNet calls / {r['evals']} "
                          f"evals, load {r['load']}", flush=True)
        except KeyboardInterrupt:
            server.interrupt()
            print("interrupted: reporting the runs finished so far", flush=True)
            if not results:
                raise
        info["peak_rss"] = server.server_peak_rss_bytes()
        events.close()
        server.stop()
        events = server = None
        if not args.no_networks:
            print("timing each network on its own (server stopped)", flush=True)
            batches = {b for r in results for b in r["call_batches"]}
            attention = () if args.no_pytorch_attention else ("--use-pytorch-cross-attention",)
            info["networks"] = networks.time_networks(args.comfyui, sd, dossr, args.size, batches,
                                                      args.runs, ("--cpu", *attention))
        info["load_after"] = loadavg()
        info["total"] = time.perf_counter() - t_total
        report(args, results, info)
        if args.json:
            save_json(args.json, args, info=info, results=results)
    finally:
        if events is not None:
            events.close()
        if server is not None:
            server.stop()
        discard_base(base, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
