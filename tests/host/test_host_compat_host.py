"""What the pack does differently per host, checked against the real host it runs on.

Behaviour only, never a host's bytes: where the host loads the DoSSR networks, how the
control object clones itself for multi-GPU sampling, the upscale-model output in the core
upscaler, and how the nodes present themselves (category, search aliases where the host
knows them).
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.host.dossr_prompts import PAPER_PROMPT, upscale_with_loader_prompt
from tests.hostlib.server import PromptRejected, png_size, write_png

from tests.host.conftest import DOSSR_MINI, SD2_MINI

DOSSR_NODES = ["DoSSRModelLoader", "DoSSRLREncode", "DoSSRSampler", "DoSSRApplyControlNet",
               "DoSSRSigmas", "DoSSRSamplerSelect", "DoSSRColorFix", "DoSSRTiledDiffusion"]


@pytest.fixture(scope="module")
def loading_report(comfy_server, tmp_path_factory) -> dict:
    """DoSSRTestProbeLoading run on the mini DoSSR model, with the ControlNet attached."""
    image = f"compat_{uuid.uuid4().hex[:6]}.png"
    write_png(comfy_server.base_dir / "input" / image, 16, 16)
    log = tmp_path_factory.mktemp("probe") / "loading.json"
    prompt = {
        "load": {"class_type": "LoadImage", "inputs": {"image": image}},
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD2_MINI}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": PAPER_PROMPT, "clip": ["ckpt", 1]}},
        "dossr": {"class_type": "DoSSRModelLoader", "inputs": {"model_name": DOSSR_MINI, "dtype": "auto"}},
        "encode": {"class_type": "DoSSRLREncode", "inputs": {
            "image": ["load", 0], "dossr_model": ["dossr", 0], "vae": ["ckpt", 2], "scale": 4.0,
            "preprocess": "rrdbnet"}},
        "apply": {"class_type": "DoSSRApplyControlNet", "inputs": {
            "positive": ["pos", 0], "negative": ["pos", 0], "dossr_model": ["dossr", 0],
            "hint": ["encode", 2], "strength": 0.5, "start_percent": 0.0, "end_percent": 1.0}},
        "probe": {"class_type": "DoSSRTestProbeLoading", "inputs": {
            "dossr_model": ["dossr", 0], "positive": ["apply", 0], "log_path": str(log)}},
    }
    comfy_server.run(prompt, timeout=300)
    return json.loads(log.read_text())


@pytest.mark.parametrize("part", ["control", "encoders"])
def test_networks_are_on_the_load_device_after_the_host_loads_them(loading_report, part):
    r = loading_report[part]
    assert r["after_load_models_gpu"] == [r["load_device"]]
    assert r["loaded_size"] == r["model_size"] > 0   # the host's bookkeeping: loaded whole


@pytest.mark.parametrize("part", ["control", "encoders"])
def test_a_partial_load_still_moves_every_weight(loading_report, part):
    """With a load device unlike the offload device ("meta") and room for one byte, our
    patcher still moves every weight (newer hosts leave plain torch layers behind in a
    partial load), and a partial unload takes all of them; a plain host patcher, the
    control experiment, leaves the network split between the two devices."""
    r = loading_report[part]
    assert r["plain_partial_unload"] == ["cpu", "meta"], "the probe no longer provokes a partial unload"
    assert r["ours_partial_load"] == ["meta"]
    assert r["ours_partial_unload"] == ["meta"]


def test_control_object_clones_for_another_gpu(loading_report):
    r = loading_report["multigpu"]
    assert r["class"] == "DoSSRControl" and r["registered"]
    assert r["clone_load_device"] == "meta" and r["original_load_device"] != "meta"
    assert r["own_network"] and r["same_weights"]
    assert r["same_hint"] and r["same_strength"]
    assert "meta" in r["clone_models_devices"]


def test_loader_upscale_model_feeds_the_core_upscaler(comfy_server):
    image = f"compat_up_{uuid.uuid4().hex[:6]}.png"
    write_png(comfy_server.base_dir / "input" / image, 16, 12)
    entry = comfy_server.run(upscale_with_loader_prompt(image, f"compat/up_{uuid.uuid4().hex[:6]}"),
                             timeout=300)
    (out,) = entry["outputs"]["save"]["images"]
    path = comfy_server.base_dir / "output" / out.get("subfolder", "") / out["filename"]
    assert png_size(path) == (64, 48)


def test_nodes_sit_with_the_hosts_upscalers(comfy_server):
    info = comfy_server.object_info()
    upscalers = info["ImageUpscaleWithModel"]["category"]
    for name in DOSSR_NODES:
        assert info[name]["category"] == f"{upscalers}/DoSSR", name


def test_search_aliases_where_the_host_knows_them(comfy_server):
    """Hosts whose schema has search aliases show ours; older ones get none (and start)."""
    info = comfy_server.object_info()
    host_has_aliases = any("search_aliases" in d for n, d in info.items() if not n.startswith("DoSSR"))
    for name in DOSSR_NODES:
        aliases = info[name].get("search_aliases")
        if host_has_aliases:
            assert {"upscale", "super resolution", "DoSSR"} <= set(aliases or ()), name
        else:
            assert not aliases, name


def _host_checks_schema_combos(server) -> bool:
    """Whether this host itself refuses a bad value of a core schema-API combo (the upscale
    model loader's file list), found out by asking it."""
    image = f"compat_combo_{uuid.uuid4().hex[:6]}.png"
    write_png(server.base_dir / "input" / image, 8, 8)
    prompt = {"load": {"class_type": "LoadImage", "inputs": {"image": image}},
              "model": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "no_such_file.pth"}},
              "up": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["model", 0],
                                                                      "image": ["load", 0]}},
              "save": {"class_type": "SaveImage", "inputs": {"images": ["up", 0], "filename_prefix": "x"}}}
    try:
        prompt_id = server.queue_prompt(prompt)
    except PromptRejected as e:
        assert "model" in (e.node_errors or {}), e
        return True
    server.wait(prompt_id, timeout=120)   # it fails while running; let it finish
    return False


@pytest.mark.parametrize("node, option, value", [
    ("DoSSRColorFix", "mode", "sharpen"), ("DoSSRModelLoader", "dtype", "fp64")])
def test_combo_values_are_checked_by_the_host_where_it_can(comfy_server, node, option, value):
    """A bad choice is refused once: by the host's own check where the host has one, else by
    the node (its message lists the options)."""
    host_checks = _host_checks_schema_combos(comfy_server)
    if node == "DoSSRModelLoader":
        prompt = upscale_with_loader_prompt("unused.png", "compat/never")
        prompt["dossr"]["inputs"]["dtype"] = value
        target = "dossr"
    else:
        prompt = {"img": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8,
                                                                 "batch_size": 1, "color": 0}},
                  "fix": {"class_type": node, "inputs": {"image": ["img", 0], "reference": ["img", 0],
                                                         "mode": value}},
                  "save": {"class_type": "SaveImage", "inputs": {"images": ["fix", 0], "filename_prefix": "x"}}}
        target = "fix"
    with pytest.raises(PromptRejected) as exc:
        comfy_server.queue_prompt(prompt)
    errors = [e for e in exc.value.node_errors[target]["errors"] if e["extra_info"].get("input_name") == option]
    assert len(errors) == 1, exc.value.node_errors
    expected = "value_not_in_list" if host_checks else "custom_validation_failed"
    assert errors[0]["type"] == expected, errors
