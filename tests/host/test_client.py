"""workflows/dossr_client.py against a real ComfyUI server."""

import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.host.conftest import DOSSR_MINI, SD2_MINI
from tests.hostlib.server import free_port, png_size, read_unet_calls, write_png

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "workflows" / "dossr_client.py"
DOSSR_WORKFLOW = REPO / "workflows" / "dossr_x4_api.json"


def _load_client():
    spec = importlib.util.spec_from_file_location("dossr_client", CLIENT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


client = _load_client()


def core_img2img_workflow(steps=2, denoise=0.5, count_log=None, prefix="client_core"):
    """LoadImage -> VAEEncode -> [DoSSRTestCountUNet] -> KSampler -> VAEDecode -> SaveImage
    (core nodes only, same shape as a DoSSR workflow from the client's point of view)."""
    wf = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "set-by-client.safetensors"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo", "clip": ["2", 1]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 1]}},
        "5": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["2", 2]}},
        "6": {"class_type": "KSampler", "inputs": {
            "model": ["2", 0], "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["5", 0],
            "seed": 0, "steps": steps, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": denoise}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["2", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": prefix}},
    }
    if count_log is not None:
        wf["9"] = {"class_type": "DoSSRTestCountUNet", "inputs": {"model": ["2", 0], "log_path": str(count_log)}}
        wf["6"]["inputs"]["model"] = ["9", 0]
    return wf


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(CLIENT), *map(str, args)], cwd=str(REPO),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def lr_image(tmp_path):
    return write_png(tmp_path / "lr_64.png", 64, 64, seed=3)


def test_cli_success_writes_png(comfy_server, tmp_path, lr_image):
    wf_path = tmp_path / "core_api.json"
    wf_path.write_text(json.dumps(core_img2img_workflow(prefix="client_cli")))
    out_dir = tmp_path / "out"
    r = run_cli(lr_image, "--server", comfy_server.url, "--workflow", wf_path,
                "--sd-checkpoint", SD2_MINI, "--seed", 7, "--output-dir", out_dir)
    assert r.returncode == 0, r.stderr
    paths = [Path(line) for line in r.stdout.split("\n") if line.strip()]
    assert len(paths) == 1 and paths[0].parent == out_dir and paths[0].exists()
    assert png_size(paths[0]) == (64, 64)
    assert (comfy_server.base_dir / "input" / "lr_64.png").read_bytes() == lr_image.read_bytes()
    # the seed reached the server: the queued prompt carries it
    last = max(comfy_server.get_json("/history").values(), key=lambda e: e["prompt"][0])
    assert last["prompt"][2]["6"]["inputs"]["seed"] == 7
    assert last["prompt"][2]["1"]["inputs"]["image"] == "lr_64.png"


def test_run_workflow_function(comfy_server, tmp_path, lr_image, count_log):
    paths = client.run_workflow(comfy_server.url, core_img2img_workflow(steps=2, count_log=count_log),
                                lr_image, sd_checkpoint=SD2_MINI, seed=1, output_dir=tmp_path / "o")
    assert [png_size(p) for p in paths] == [(64, 64)]
    # img2img denoise 0.5 of 2 steps -> the scheduler runs 2 of 4 steps: 2 UNet calls
    assert [c["batch"] for c in read_unet_calls(count_log)] == [1, 1]


def test_cli_server_down(tmp_path, lr_image):
    wf_path = tmp_path / "core_api.json"
    wf_path.write_text(json.dumps(core_img2img_workflow()))
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = run_cli(lr_image, "--server", url, "--workflow", wf_path, timeout=60)
    assert r.returncode == 2
    assert f"cannot reach ComfyUI at {url} (connection refused)" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_prompt_rejected_prints_node_errors(comfy_server, tmp_path, lr_image):
    wf_path = tmp_path / "core_api.json"
    wf_path.write_text(json.dumps(core_img2img_workflow()))
    r = run_cli(lr_image, "--server", comfy_server.url, "--workflow", wf_path,
                "--sd-checkpoint", "no_such_checkpoint.safetensors")
    assert r.returncode == 2
    assert "ComfyUI rejected the prompt" in r.stderr
    assert "node 2 (CheckpointLoaderSimple)" in r.stderr
    assert "no_such_checkpoint.safetensors" in r.stderr
    assert "Traceback" not in r.stderr


def test_execution_error_names_the_node(comfy_server, tmp_path, lr_image):
    wf = core_img2img_workflow(count_log="")  # the probe node raises on an empty log_path
    with pytest.raises(client.ExecutionError) as exc:
        client.run_workflow(comfy_server.url, wf, lr_image, sd_checkpoint=SD2_MINI, output_dir=tmp_path)
    assert "node 9 (DoSSRTestCountUNet)" in str(exc.value)
    assert "needs a log_path" in str(exc.value)


def _slow_workflow(count_log):
    return core_img2img_workflow(steps=400, denoise=1.0, count_log=count_log, prefix="client_slow")


def _wait_idle(server, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = server.queue()
        if not q["queue_running"] and not q["queue_pending"]:
            return True
        time.sleep(0.2)
    return False


def test_interruption_is_reported(comfy_server, tmp_path, lr_image, count_log):
    result = {}

    def target():
        try:
            client.run_workflow(comfy_server.url, _slow_workflow(count_log), lr_image,
                                sd_checkpoint=SD2_MINI, output_dir=tmp_path, poll=0.1)
        except client.ClientError as e:
            result["error"] = e

    t = threading.Thread(target=target)
    t.start()
    deadline = time.monotonic() + 120
    while not read_unet_calls(count_log) and time.monotonic() < deadline:
        time.sleep(0.05)
    comfy_server.interrupt()
    t.join(120)
    assert not t.is_alive()
    assert isinstance(result.get("error"), client.Interrupted), result
    assert "interrupted at node 6 (KSampler)" in str(result["error"])
    assert len(read_unet_calls(count_log)) < 400
    assert _wait_idle(comfy_server)


def test_timeout_cancels_the_prompt(comfy_server, tmp_path, lr_image, count_log):
    t0 = time.monotonic()
    with pytest.raises(client.Timeout) as exc:
        client.run_workflow(comfy_server.url, _slow_workflow(count_log), lr_image,
                            sd_checkpoint=SD2_MINI, output_dir=tmp_path, timeout=1.0, poll=0.1)
    assert time.monotonic() - t0 < 30
    assert "cancelled on the server" in str(exc.value)
    assert _wait_idle(comfy_server)
    assert len(read_unet_calls(count_log)) < 400


@pytest.mark.skipif(not DOSSR_WORKFLOW.exists(), reason="workflows/dossr_x4_api.json not written yet")
def test_cli_with_shipped_dossr_workflow(comfy_server, tmp_path):
    lr = write_png(tmp_path / "lr_16.png", 16, 16)
    r = run_cli(lr, "--server", comfy_server.url, "--workflow", DOSSR_WORKFLOW,
                "--sd-checkpoint", SD2_MINI, "--dossr-model", DOSSR_MINI, "--seed", 3,
                "--output-dir", tmp_path / "out", timeout=600)
    assert r.returncode == 0, r.stderr
    paths = [Path(line) for line in r.stdout.split("\n") if line.strip()]
    assert paths and all(png_size(p) == (64, 64) for p in paths)
