"""The host-test infrastructure and the extension's integration with a real ComfyUI server."""

import re
from pathlib import Path

import pytest

from tests.host.conftest import DOSSR_MINI_RRDB, SD2_MINI
from tests.hostlib.server import (EXTENSION_NODE_DIR, ComfyClient, PromptRejected, core_txt2img_prompt,
                                  png_size, read_unet_calls, strip_ansi)

from tests.workflow_check import DOSSR_NODE_IDS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_server_loads_extension_without_import_errors(comfy_server):
    ext = comfy_server.base_dir / "custom_nodes" / EXTENSION_NODE_DIR
    assert ext.is_symlink() and ext.resolve() == REPO
    log = strip_ansi(comfy_server.log_text())
    # the host prints one line per custom node module with its import time (and
    # "(IMPORT FAILED)" before the colon when the import raised); newer hosts start each
    # line with a level such as "[INFO]"
    loaded = r"\s[\d.]+ seconds: .*custom_nodes[/\\]" + re.escape(EXTENSION_NODE_DIR) + r"\s*$"
    assert re.search(loaded, log, re.M), log[-3000:]
    markers = ("IMPORT FAILED", "Cannot import", "Error while calling comfy_entrypoint",
               "skipping", "Skip ")
    bad = [line for line in log.splitlines()
           if (EXTENSION_NODE_DIR in line or str(REPO) in line) and any(m in line for m in markers)]
    assert not bad, "\n".join(bad)
    stats = comfy_server.system_stats()
    assert stats["devices"][0]["type"] == "cpu"


def test_probe_pack_is_registered(comfy_server):
    info = comfy_server.object_info("DoSSRTestCountUNet")["DoSSRTestCountUNet"]
    assert info["output"] == ["MODEL"]
    assert set(info["input"]["required"]) == {"model", "log_path"}
    assert "DoSSRTestCountUNet" in comfy_server.object_info()


def test_fake_models_are_listed(comfy_server):
    ckpts = comfy_server.object_info("CheckpointLoaderSimple")["CheckpointLoaderSimple"]
    assert SD2_MINI in ckpts["input"]["required"]["ckpt_name"][0]


@pytest.mark.parametrize("cfg, batch", [(1.0, 1), (7.0, 2)])
def test_count_unet_calls_through_ksampler(comfy_server, count_log, cfg, batch):
    entry = comfy_server.run(core_txt2img_prompt(SD2_MINI, steps=3, cfg=cfg, count_log=count_log,
                                                 filename_prefix=f"basics_cfg{int(cfg)}"), timeout=300)
    calls = read_unet_calls(count_log)
    assert [c["batch"] for c in calls] == [batch] * 3, calls
    assert all(c["shape"] == [batch, 4, 8, 8] for c in calls), calls
    assert all(c["control"] is None for c in calls), calls
    # euler: one evaluation per step, at decreasing timesteps
    timesteps = [c["timestep"] for c in calls]
    assert timesteps == sorted(timesteps, reverse=True) and timesteps[0] > timesteps[-1]
    images = comfy_server.output_images(entry)
    assert len(images) == 1 and images[0].exists()
    assert png_size(images[0]) == (64, 64)
    assert images[0].read_bytes() == comfy_server.view(images[0].name)


def test_prompt_rejected_carries_node_errors(comfy_server):
    prompt = core_txt2img_prompt("no_such_model.safetensors")
    with pytest.raises(PromptRejected) as exc:
        comfy_server.queue_prompt(prompt)
    assert exc.value.error["type"] == "prompt_outputs_failed_validation"
    assert exc.value.node_errors["1"]["class_type"] == "CheckpointLoaderSimple"
    assert "no_such_model.safetensors" in str(exc.value)


def test_execution_error_is_reported(comfy_server):
    # passes validation, fails when the probe node runs
    prompt = core_txt2img_prompt(SD2_MINI, count_log="")
    entry = comfy_server.run(prompt, check=False)
    assert ComfyClient.status_str(entry) == "error"
    err = ComfyClient.execution_error(entry)
    assert err["node_type"] == "DoSSRTestCountUNet" and "needs a log_path" in err["exception_message"]
    assert ComfyClient.execution_interrupted(entry) is None


def test_upload_and_spandrel_loads_fake_dossr_preprocessor(comfy_server, tmp_path):
    """The cached DoSSR checkpoint's RRDBNet (32 growth channels) loads in the host's spandrel."""
    from tests.hostlib.server import write_png

    name = comfy_server.upload_image(write_png(tmp_path / "up_16x12.png", 16, 12), subfolder="basics")
    assert name == "basics/up_16x12.png"
    assert (comfy_server.base_dir / "input" / "basics" / "up_16x12.png").exists()
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": DOSSR_MINI_RRDB}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "basics_rrdb"}},
    }
    images = comfy_server.output_images(comfy_server.run(prompt, timeout=120))
    assert [png_size(p) for p in images] == [(64, 48)]


def test_on_demand_checkpoint_variant(comfy_server, fake_sd_checkpoint, count_log):
    path = fake_sd_checkpoint("sd15_mini")
    comfy_server.add_model("checkpoints", "fake_sd15_mini.safetensors", path)
    comfy_server.run(core_txt2img_prompt("fake_sd15_mini.safetensors", steps=1, cfg=1.0,
                                         count_log=count_log, filename_prefix="basics_sd15"))
    assert [c["batch"] for c in read_unet_calls(count_log)] == [1]


def test_server_rss_and_free(comfy_server):
    rss = comfy_server.server_rss_bytes()
    assert 100e6 < rss < 64e9
    assert comfy_server.server_peak_rss_bytes() >= rss
    comfy_server.free()
    assert comfy_server.alive()


def test_fresh_server_and_restart(start_comfy_server):
    first = start_comfy_server(extra_args=["--use-pytorch-cross-attention"])
    assert "DoSSRTestCountUNet" in first.object_info("DoSSRTestCountUNet")
    pid, base = first.pid, first.base_dir
    assert first.stop() is not None and not first.alive()
    second = start_comfy_server(base_dir=base)
    assert second.pid != pid and second.base_dir == base
    assert second.system_stats()["devices"][0]["type"] == "cpu"


def test_dossr_nodes_are_registered(comfy_server):
    info = comfy_server.object_info()
    missing = [n for n in DOSSR_NODE_IDS if n not in info]
    assert not missing, f"not in /object_info: {missing}"


def test_object_info_snapshot_tool(comfyui_path, tmp_path, capsys):
    import json

    from tests.hostlib import object_info_snapshot

    out = tmp_path / "snap.json"
    rc = object_info_snapshot.main([str(out), "--nodes", "LoadImage,CheckpointLoaderSimple",
                                    "--model", "checkpoints/placeholder.safetensors",
                                    "--comfyui", str(comfyui_path)])
    assert rc == 0, capsys.readouterr().err
    text = out.read_text()
    snap = json.loads(text)
    assert sorted(snap) == ["CheckpointLoaderSimple", "LoadImage"]
    assert snap["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["placeholder.safetensors"]
    assert text == json.dumps(snap, sort_keys=True, indent=1) + "\n"
