"""workflows/dossr_client.py against a real ComfyUI server."""

import importlib.util
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.host.conftest import RELEASE_MINI, SD2_MINI
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


def _stall_workflow(seconds, progress_every):
    """LoadImage -> DoSSRTestStall (holds the prompt, with or without progress) -> SaveImage."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
        "2": {"class_type": "DoSSRTestStall", "inputs": {
            "image": ["1", 0], "seconds": seconds, "progress_every": progress_every,
            "nonce": uuid.uuid4().hex}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "client_stall"}},
    }


def test_timeout_cancels_a_prompt_without_progress(comfy_server, tmp_path, lr_image):
    t0 = time.monotonic()
    with pytest.raises(client.Timeout) as exc:
        client.run_workflow(comfy_server.url, _stall_workflow(120, 0), lr_image,
                            output_dir=tmp_path, timeout=2.0, poll=0.1)
    assert time.monotonic() - t0 < 30
    assert "no progress from ComfyUI for 2 s" in str(exc.value)
    assert "cancelled on the server" in str(exc.value)
    assert _wait_idle(comfy_server)


def test_timeout_waits_for_a_prompt_that_keeps_progressing(comfy_server, tmp_path, lr_image):
    """Progress messages every 0.25 s for 6 s: three times --timeout in total, never a
    stall, so the result comes."""
    t0 = time.monotonic()
    paths = client.run_workflow(comfy_server.url, _stall_workflow(6, 0.25), lr_image,
                                output_dir=tmp_path, timeout=2.0, poll=0.1)
    assert time.monotonic() - t0 >= 6
    assert [png_size(p) for p in paths] == [(64, 64)]


@pytest.mark.slow   # the full-size VAE at 1.2 MP: minutes on two cores
def test_cli_default_workflow_tiles_a_result_above_one_megapixel(comfy_server, tmp_path):
    """No --workflow, no --tiling, no --timeout: a 288x256 px input becomes a 1152x1024 px
    (1.18 MP) result, and the server's log shows that its sampler ran on 3x3 tiles."""
    lr = write_png(tmp_path / "big_lr.png", 288, 256, seed=2)
    before = len(comfy_server.log_text())
    r = run_cli(lr, "--server", comfy_server.url, "--dossr-model", RELEASE_MINI, "--seed", 4,
                "--output-dir", tmp_path / "out", timeout=7200)   # a shared CPU can make this take an hour
    assert r.returncode == 0, r.stderr
    (path,) = [Path(line) for line in r.stdout.split("\n") if line.strip()]
    assert png_size(path) == (1152, 1024)
    tiles = re.findall(r"DoSSR Tiled Sampling: 1152x1024 px on (\d+) tiles of 512 px \(mode auto\)",
                       comfy_server.log_text()[before:])
    assert tiles == ["9"]


def test_cli_tiling_option_sets_the_mode(comfy_server, tmp_path):
    """--tiling on with the default workflow: no file to switch, the queued prompt's tiling
    nodes say always; --tiling off: off."""
    lr = write_png(tmp_path / "lr_12.png", 12, 12)
    for option, mode in (("on", "always"), ("off", "off")):
        r = run_cli(lr, "--server", comfy_server.url, "--dossr-model", RELEASE_MINI,
                    "--steps", 1, "--tiling", option,
                    "--output-dir", tmp_path / option, timeout=600)
        assert r.returncode == 0, r.stderr
        last = max(comfy_server.get_json("/history").values(), key=lambda e: e["prompt"][0])
        nodes = last["prompt"][2]
        assert [n["inputs"]["mode"] for n in nodes.values() if n["class_type"] == "DoSSRTiledDiffusion"] == [mode]
        assert [n["inputs"]["tiling"] for n in nodes.values() if n["class_type"] == "DoSSRVAEDecode"] == [mode]


@pytest.mark.skipif(not DOSSR_WORKFLOW.exists(), reason="workflows/dossr_x4_api.json not written yet")
def test_cli_with_shipped_dossr_workflow(comfy_server, tmp_path):
    lr = write_png(tmp_path / "lr_16.png", 16, 16)
    r = run_cli(lr, "--server", comfy_server.url, "--workflow", DOSSR_WORKFLOW,
                "--dossr-model", RELEASE_MINI, "--seed", 3,
                "--output-dir", tmp_path / "out", timeout=600)
    assert r.returncode == 0, r.stderr
    paths = [Path(line) for line in r.stdout.split("\n") if line.strip()]
    assert paths and all(png_size(p) == (64, 64) for p in paths)
