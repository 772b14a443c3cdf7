"""Batch throughput of workflows/dossr_client.py on one and on two ComfyUI servers.

    python bench/batch.py [--images 8] [--size 16] [--steps 1] [--threads N] [--cache DIR] [--comfyui /opt/ComfyUI]

Starts two servers on 127.0.0.1 (random-weight "mini" models from the host tests' cache),
warms each with one image, then runs the shipped x4 workflow over a folder of ``--images``
small images through server A alone, and through A and B together (another seed, so the
host's cache never answers for a prompt). Printed per run: images per minute (client wall
time), and per server the number of images, the time it spent executing (from the
``execution_start``/``execution_success`` timestamps in its ``/history``), its idle time
(wall time minus executing) and the scheduler's overhead per image: the gap between one
prompt finishing and the next starting on that server (download, upload and queueing).

It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.host.conftest import DOSSR_MINI, SD2_MINI, ModelCache  # noqa: E402
from tests.hostlib import server as hs  # noqa: E402

CLIENT = REPO / "workflows" / "dossr_client.py"


def windows(server, since_ms: float) -> list[tuple[float, float]]:
    """(start, end) in seconds of every prompt the server ran after *since_ms*, in order."""
    out = []
    for entry in server.get_json("/history").values():
        stamps = {event: data.get("timestamp") for event, data in entry["status"]["messages"]}
        start, end = stamps.get("execution_start"), stamps.get("execution_success")
        if start and end and start >= since_ms:
            out.append((start / 1000, end / 1000))
    return sorted(out)


def run_batch(servers, folder: Path, out: Path, steps: int, seed: int) -> float:
    """Client wall seconds for the folder (fails loudly if the client does)."""
    cmd = [sys.executable, str(CLIENT), str(folder), "--server", ",".join(s.url for s in servers),
           "--sd-checkpoint", SD2_MINI, "--dossr-model", DOSSR_MINI, "--steps", str(steps),
           "--seed", str(seed), "--output-dir", str(out), "--quiet"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"client failed ({r.returncode}):\n{r.stderr}")
    return wall


def measure(label, servers, folder, out, steps, seed, images) -> list[str]:
    since = time.time() * 1000
    t0 = time.time()
    wall = run_batch(servers, folder, out, steps, seed)
    t1 = time.time()
    lines = [f"{label}: {images} images in {wall:.1f} s = {images * 60 / wall:.1f} images/min"]
    for name, server in zip("AB", servers):
        w = windows(server, since)
        busy = sum(e - s for s, e in w)
        gaps = [b[0] - a[1] for a, b in zip(w, w[1:])]
        gap = (f"overhead between images mean {statistics.mean(gaps) * 1000:.0f} ms, "
               f"max {max(gaps) * 1000:.0f} ms" if gaps else "overhead: fewer than 2 images")
        lines.append(f"  server {name}: {len(w)} images, executing {busy:.1f} s, "
                     f"idle {(t1 - t0) - busy:.1f} s (of {t1 - t0:.1f} s), {gap}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--size", type=int, default=16, help="side of each input image in px")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--threads", type=int,
                   help="torch threads per server (OMP_NUM_THREADS; default: the host's choice, "
                        "every core, so two servers on one CPU compete for the same cores)")
    p.add_argument("--cache", default=os.environ.get("DOSSR_TEST_CACHE",
                                                     str(Path.home() / ".cache" / "dossr-tests")))
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH", "/opt/ComfyUI"))
    args = p.parse_args(argv)
    problem = hs.comfy_tree_problem(args.comfyui, "--comfyui")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by the servers started below
    cache = ModelCache(Path(args.cache).expanduser())
    models = {"checkpoints": {SD2_MINI: cache.sd_checkpoint("sd2_mini")},
              "dossr": {DOSSR_MINI: cache.dossr_checkpoint("mini")}}
    tmp = Path(tempfile.mkdtemp(prefix="dossr-bench-batch-"))
    servers = []
    try:
        for name in "AB":
            base = hs.prepare_base_dir(tmp / f"base_{name}", models=models)
            servers.append(hs.ComfyServer.start(args.comfyui, base))
        folder, warm = tmp / "in", tmp / "warm"
        folder.mkdir()
        warm.mkdir()
        for i in range(args.images):
            hs.write_png(folder / f"img_{i:03d}.png", args.size, args.size, seed=i)
        hs.write_png(warm / "warm.png", args.size, args.size, seed=999)
        for server in servers:  # load the models on each server before anything is timed
            run_batch([server], warm, tmp / f"warm_out_{server.port}", args.steps, 0)
        print(f"bench/batch.py: {args.images} images of {args.size}x{args.size} px, shipped x4 "
              f"workflow, {args.steps} step(s), mini random-weight models, {os.cpu_count()} CPUs, "
              f"threads per server: {args.threads or 'default'}")
        for line in (measure("one server", servers[:1], folder, tmp / "out1", args.steps, 1, args.images)
                     + measure("two servers", servers, folder, tmp / "out2", args.steps, 2, args.images)):
            print(line)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
