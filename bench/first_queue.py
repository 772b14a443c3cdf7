"""The template's first Queue: the shipped default workflow on the host's example image, timed.

    python bench/first_queue.py [--full] [--image PATH] [--steps 5] [--cache DIR] [--comfyui PATH]

What a user gets on opening the dossr_x4 template and pressing Queue: one ComfyUI server
(127.0.0.1, temporary base directory) runs ``workflows/dossr_x4_api.json`` as shipped (scale 4,
5 steps, DoSSR Tiled Sampling and DoSSR VAE Decode in mode auto) on the host's own
``input/example.png`` (768x768 px in ComfyUI 0.3.64 and 0.33: a 3072x3072 px result), with
random-weight fakes of the models: the "mini" ones by default, full-size SD 2.1-base and DoSSR
with ``--full``. Only the model names and the image are changed. A 16 px warm-up prompt loads
the models first, so the figures are the work itself.

Prints the prompt's wall time, each node's seconds (websocket ``executing`` messages), the
sampler's tiles and what the server's log says the tiling nodes chose. On the mini models the
UNet and ControlNet are smaller than the real ones but the SD VAE is full size, so the
encode/decode rows are close to a real run's on this machine; the sampler row is not.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.e2e import DOSSR_NAME, SD_NAME, EventLog, loadavg, model_files, node_seconds  # noqa: E402
from dossr_core.tiling import tile_grid  # noqa: E402
from tests.hostlib import server as hs  # noqa: E402

WORKFLOW = REPO / "workflows" / "dossr_x4_api.json"
LOG_LINE = re.compile(r"DoSSR (?:Tiled Sampling|VAE Decode): [^\n]*")


def prompt_for(image: str, steps: int | None) -> dict:
    prompt = hs.load_api_workflow(WORKFLOW)
    hs.patch(prompt, "LoadImage", image=image)
    hs.two_files(prompt, SD_NAME, DOSSR_NAME)   # the fakes are an SD file and a DoSSR file
    hs.patch(prompt, "SaveImage", filename_prefix="first_queue")
    if steps is not None:
        hs.patch(prompt, "DoSSRSampler", steps=steps)
    return prompt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfyui", type=Path, default=Path(os.environ.get("COMFYUI_PATH", "/opt/ComfyUI")))
    ap.add_argument("--image", type=Path, help="the LR image (default: the host's input/example.png)")
    ap.add_argument("--full", action="store_true", help="full-size fake models (default: mini)")
    ap.add_argument("--steps", type=int, help="override the workflow's 5 steps")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dossr-tests" / "bench")
    ap.add_argument("--timeout", type=float, default=6 * 3600.0)
    args = ap.parse_args(argv)
    problem = hs.comfy_tree_problem(args.comfyui, "--comfyui")
    if problem:
        ap.error(problem)
    image = args.image or args.comfyui / "input" / "example.png"
    if not image.is_file():
        ap.error(f"no image at {image}")
    sd, dossr, _ = model_files(args.cache.expanduser(), small=not args.full)
    base = Path(tempfile.mkdtemp(prefix="dossr-first-queue-"))
    hs.prepare_base_dir(base, models={"checkpoints": {SD_NAME: sd}, "dossr": {DOSSR_NAME: dossr}},
                        input_images={})
    (base / "input" / "example.png").write_bytes(image.read_bytes())
    hs.write_png(base / "input" / "warmup.png", 16, 16)
    server = hs.ComfyServer.start(args.comfyui, base, extra_args=("--use-pytorch-cross-attention",))
    events = EventLog(server.url, server.client_id)
    try:
        print(f"{'full-size' if args.full else 'mini'} models, host {args.comfyui}, image {image}, "
              f"load {loadavg()}", flush=True)
        server.run(prompt_for("warmup.png", args.steps), timeout=args.timeout)
        prompt = prompt_for("example.png", args.steps)
        before = len(server.log_text())
        t0 = time.monotonic()
        prompt_id = server.queue_prompt(prompt)
        entry = server.wait(prompt_id, timeout=args.timeout, poll=0.5)
        wall = time.monotonic() - t0
        if server.status_str(entry) != "success":
            raise SystemExit(f"the prompt failed: {server.execution_error(entry)}\n{server.log_tail()}")
        time.sleep(1)
        msgs = dict(server.messages(entry))
        per_node = node_seconds(events.for_prompt(prompt_id), msgs["execution_success"]["timestamp"] / 1000)
        (out,) = server.output_images(entry)
        w, h = hs.png_size(out)
        print(f"result {w}x{h} px ({w * h / 1e6:.1f} MP) in {wall:.0f} s, load {loadavg()}")
        for nid, seconds in sorted(per_node.items(), key=lambda kv: -kv[1]):
            print(f"  {seconds:8.1f} s  {prompt[nid].get('_meta', {}).get('title', prompt[nid]['class_type'])}")
        tiles = len(tile_grid(h // 8, w // 8, 64, 16))
        print(f"sampler tiles (512 px, 128 px overlap): {tiles}")
        for line in LOG_LINE.findall(hs.strip_ansi(server.log_text()[before:])):
            print(f"  log: {line}")
    finally:
        events.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
