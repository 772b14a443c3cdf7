"""The DoSSR nodes through a real ComfyUI server's HTTP API, on the fake SD2 "mini" backbone and
the fake DoSSR "mini" checkpoint (random weights: the tests check sizes, call counts, equality
and error handling, not image quality).

Images are small (at most 45x37 px in, 96x64 px out) so each prompt runs in about a second or
two on a CPU. Prompt shapes come from :mod:`tests.host.dossr_prompts`; the UNet calls are
recorded by the probe node ``DoSSRTestCountUNet`` (``tests/host/probe_nodes``).
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.host.conftest import DOSSR_MINI, SD2_MINI
from tests.host.dossr_prompts import SAMPLER, dossr_prompt, upscale_with_loader_prompt
from tests.hostlib.server import ComfyClient, PromptRejected, png_size, read_unet_calls, write_png

Image = pytest.importorskip("PIL.Image")   # the host requires Pillow, so its Python has it

#: What the UNet sees with the DoSSR grid (DESIGN §3: 5 steps -> 0, 100, 200, 299, 399, 499;
#: every timestep but the last is evaluated, largest first).
GRID = {1: [499.0], 5: [499.0, 399.0, 299.0, 200.0, 100.0]}
#: The control dict a DoSSR ControlNet hands the UNet: 12 skip residuals + 1 middle residual.
DOSSR_CONTROL = {"input": 0, "middle": 1, "output": 12}
INPUT_SUBFOLDER = "nodes_host"


# ----------------------------------------------------------------------------- helpers

@pytest.fixture
def lr_image(comfy_server):
    """``lr_image(w, h, seed=0) -> name`` for LoadImage: a PNG written into the server's input dir."""

    def make(width: int, height: int, seed: int = 0) -> str:
        name = f"lr_{width}x{height}_s{seed}.png"
        path = comfy_server.base_dir / "input" / INPUT_SUBFOLDER / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_png(path, width, height, seed=seed)
        return f"{INPUT_SUBFOLDER}/{name}"

    return make


@pytest.fixture
def new_log(tmp_path):
    """``new_log() -> Path``: a fresh path for DoSSRTestCountUNet (a new path also makes the
    host re-run the sampler instead of answering from its cache)."""
    return lambda: tmp_path / f"unet_{uuid.uuid4().hex[:10]}.jsonl"


def prefix(tag: str) -> str:
    """A SaveImage/SaveLatent prefix no other run uses."""
    return f"nodes_host/{tag}_{uuid.uuid4().hex[:8]}"


def run_ok(server, prompt: dict, timeout: float = 300.0) -> dict:
    return server.run(prompt, timeout=timeout)


def saved_images(server, entry: dict, node: str = "save") -> list[Path]:
    """The files one SaveImage node wrote, in batch order."""
    out = (entry.get("outputs") or {}).get(node) or {}
    return [server.base_dir / "output" / i.get("subfolder", "") / i["filename"]
            for i in out.get("images", [])]


def pixels(path) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a PNG (the metadata chunks, which name the prompt, are ignored)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_latent(server, entry: dict, node: str = "save_latent") -> np.ndarray:
    """The ``latent_tensor`` a core SaveLatent node wrote (a safetensors file), as float32."""
    (info,) = entry["outputs"][node]["latents"]
    data = (server.base_dir / "output" / info.get("subfolder", "") / info["filename"]).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8:8 + n])["latent_tensor"]
    assert meta["dtype"] == "F32", meta
    start, end = meta["data_offsets"]
    return np.frombuffer(data[8 + n + start:8 + n + end], dtype="<f4").reshape(meta["shape"])


def execution_error(server, prompt: dict, timeout: float = 300.0) -> dict:
    """Run *prompt*, which must fail while running; its ``execution_error`` data."""
    entry = server.run(prompt, timeout=timeout, check=False)
    err = ComfyClient.execution_error(entry)
    assert ComfyClient.status_str(entry) == "error" and err is not None, entry.get("status")
    return err


def rejection(server, prompt: dict) -> PromptRejected:
    """``POST /prompt`` of *prompt*, which validation must refuse."""
    with pytest.raises(PromptRejected) as exc:
        server.queue_prompt(prompt)
    return exc.value


def keep_loaders(prompt: dict) -> dict:
    """Add unconnected copies of the usual loaders: the host's cache keeps the outputs of every
    node in the current prompt (by input signature, not node id), so the next good prompt need
    not reload SD2 and DoSSR after a prompt that loads another model."""
    prompt["keep_ckpt"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD2_MINI}}
    prompt["keep_dossr"] = {"class_type": "DoSSRModelLoader",
                            "inputs": {"model_name": DOSSR_MINI, "dtype": "auto"}}
    return prompt


def assert_serves_good_prompt(server, lr_image) -> None:
    """A good prompt (new seed, so the sampler really runs) still succeeds on this server."""
    entry = run_ok(server, dossr_prompt(lr_image(16, 16), steps=1, seed=random.randrange(1, 2**31),
                                        prefix=prefix("after_error")))
    assert [png_size(p) for p in saved_images(server, entry)] == [(64, 64)]


def expected_size(width: int, height: int, scale: float, preprocess: str) -> tuple[int, int]:
    if preprocess == "none":
        return width, height
    return round(width * scale), round(height * scale)


# ----------------------------------------------------------------------------- 1. end to end

@pytest.mark.parametrize("width, height, scale, preprocess", [
    (13, 11, 4.0, "rrdbnet"),    # 52x44: multiples of 4, not of 8
    (16, 16, 4.0, "rrdbnet"),    # 64x64: multiples of 8 (no padding)
    (17, 9, 4.0, "rrdbnet"),     # 68x36
    (18, 10, 2.5, "rrdbnet"),    # 45x25: odd, non-integer scale
    (20, 14, 1.0, "rrdbnet"),    # x4 preprocessor, then back down to the input size
    (21, 13, 3.0, "bicubic"),    # 63x39
    (45, 37, 4.0, "none"),       # scale ignored: output = input size
])
def test_end_to_end_output_size(server, lr_image, width, height, scale, preprocess):
    """LoadImage -> LR Encode -> DoSSR Sampler -> VAEDecode -> Color Fix -> SaveImage writes one
    PNG of exactly round(scale * size) (the input size for preprocess 'none')."""
    entry = run_ok(server, dossr_prompt(lr_image(width, height), scale=scale, preprocess=preprocess,
                                        steps=1, prefix=prefix(f"e2e_{width}x{height}")))
    images = saved_images(server, entry)
    assert [png_size(p) for p in images] == [expected_size(width, height, scale, preprocess)]
    result = pixels(images[0])
    assert result.std() > 0, "the result is a flat image"
    if preprocess != "rrdbnet":
        # the colour-fix reference is the (resized) input itself, so the colours follow it
        with Image.open(server.base_dir / "input" / lr_image(width, height)) as im:
            lr = np.asarray(im.convert("RGB"), dtype=np.float64)
        assert np.abs(result.mean(axis=(0, 1)) - lr.mean(axis=(0, 1))).max() < 20


# ----------------------------------------------------------------------------- 2. control strength

@pytest.mark.parametrize("composed", [False, True], ids=["one_node", "composed"])
def test_control_strength_zero_disables_the_controlnet(server, lr_image, new_log, composed):
    """Strength 0: no control dict reaches the UNet; strength 1: 12 skips + 1 middle residual at
    every call; the images differ."""
    results = {}
    for strength in (0.0, 1.0):
        log = new_log()
        entry = run_ok(server, dossr_prompt(lr_image(20, 14), steps=1, seed=3, strength=strength,
                                            composed=composed, count_log=log,
                                            prefix=prefix(f"strength{strength:g}")))
        calls = read_unet_calls(log)
        want = None if strength == 0 else DOSSR_CONTROL
        assert [c["control"] for c in calls] == [want], calls
        (path,) = saved_images(server, entry)
        results[strength] = pixels(path).astype(int)
    assert results[0.0].shape == results[1.0].shape == (56, 80, 3)
    assert np.abs(results[0.0] - results[1.0]).max() > 0, "control strength had no effect"


# ----------------------------------------------------------------------------- 3. UNet calls

@pytest.mark.parametrize("steps, cfg, composed", [
    (1, 1.0, False), (5, 1.0, False), (5, 7.0, False), (5, 7.0, True)])
def test_unet_calls_follow_the_dossr_grid(server, lr_image, new_log, steps, cfg, composed):
    """One UNet call per step (batch 1 at cfg 1, cond+uncond batch 2 otherwise), at the DoSSR
    timesteps, each with the DoSSR control residuals."""
    log = new_log()
    run_ok(server, dossr_prompt(lr_image(20, 14), steps=steps, cfg=cfg, seed=5, composed=composed,
                                count_log=log, prefix=prefix(f"calls_{steps}_{cfg:g}")))
    calls = read_unet_calls(log)
    batch = 1 if cfg == 1.0 else 2
    assert [c["timestep"] for c in calls] == GRID[steps], calls
    assert [c["batch"] for c in calls] == [batch] * steps, calls
    assert all(c["shape"] == [batch, 4, 7, 10] for c in calls), calls   # 80x56 px output
    assert all(sorted(c["cond_or_uncond"]) == ([0] if batch == 1 else [0, 1]) for c in calls), calls
    assert all(c["control"] == DOSSR_CONTROL for c in calls), calls


# ----------------------------------------------------------------------------- 4. one node == composed

@pytest.mark.parametrize("mode", ["sde", "ode"])
def test_one_node_sampler_equals_composed_graph(server, lr_image, mode):
    """DoSSRSampler and DoSSRApplyControlNet + CFGGuider + RandomNoise + DoSSRSamplerSelect +
    DoSSRSigmas -> SamplerCustomAdvanced give the same latent and image for a seed; another seed
    changes the SDE result but not the ODE result."""
    image = lr_image(20, 14, seed=2)

    def sample(seed, composed):
        entry = run_ok(server, dossr_prompt(image, steps=5, seed=seed, mode=mode, composed=composed,
                                            save_latent=True, prefix=prefix(f"same_{mode}")))
        (path,) = saved_images(server, entry)
        return read_latent(server, entry), pixels(path)

    one_latent, one_image = sample(11, composed=False)
    composed_latent, composed_image = sample(11, composed=True)
    other_latent, other_image = sample(12, composed=False)
    assert one_latent.shape == (1, 4, 7, 10)
    assert np.array_equal(one_latent, composed_latent), np.abs(one_latent - composed_latent).max()
    assert np.array_equal(one_image, composed_image)
    if mode == "sde":
        assert np.abs(one_latent - other_latent).max() > 1e-3, "the seed has no effect in sde mode"
        assert not np.array_equal(one_image, other_image)
    else:
        assert np.array_equal(one_latent, other_latent), "ode result depends on the seed"
        assert np.array_equal(one_image, other_image)


# ----------------------------------------------------------------------------- 5. batches

def test_batch_of_two_images(server, lr_image, new_log):
    """ImageBatch of two LR images: two outputs of the right size, UNet called with batch 2, and
    (ode, deterministic) each output is the one its image gives alone."""
    first, second = lr_image(20, 14, seed=0), lr_image(20, 14, seed=7)
    log = new_log()
    prompt = dossr_prompt(first, steps=1, mode="ode", count_log=log, prefix=prefix("batch2"))
    prompt["load2"] = {"class_type": "LoadImage", "inputs": {"image": second}}
    prompt["lr"] = {"class_type": "ImageBatch", "inputs": {"image1": ["load", 0], "image2": ["load2", 0]}}
    prompt["encode"]["inputs"]["image"] = ["lr", 0]
    entry = run_ok(server, prompt)
    calls = read_unet_calls(log)
    assert [c["batch"] for c in calls] == [2], calls
    assert all(c["shape"] == [2, 4, 7, 10] and c["control"] == DOSSR_CONTROL for c in calls), calls
    images = saved_images(server, entry)
    assert [png_size(p) for p in images] == [(80, 56), (80, 56)]
    batch = [pixels(p).astype(int) for p in images]
    assert np.abs(batch[0] - batch[1]).max() > 10, "the two batch items came out alike"
    for item, name in zip(batch, (first, second)):
        alone = run_ok(server, dossr_prompt(name, steps=1, mode="ode", prefix=prefix("batch_alone")))
        (path,) = saved_images(server, alone)
        # batched convolutions may round differently in the last bit; a mixed-up hint or
        # latent would differ by far more
        assert np.abs(item - pixels(path).astype(int)).max() <= 4, name


def test_repeated_image_gets_its_own_noise_per_item(server, lr_image, new_log):
    """RepeatImageBatch x2 in sde mode: batch-2 UNet calls, two outputs, different noise each."""
    log = new_log()
    entry = run_ok(server, dossr_prompt(lr_image(16, 16), steps=1, repeat=2, count_log=log,
                                        prefix=prefix("repeat2")))
    assert [c["batch"] for c in read_unet_calls(log)] == [2]
    images = saved_images(server, entry)
    assert [png_size(p) for p in images] == [(64, 64), (64, 64)]
    assert not np.array_equal(pixels(images[0]), pixels(images[1]))


def test_one_hint_serves_a_batch(server, lr_image, new_log):
    """A batch-1 hint is broadcast over a batch-2 latent, for cond and uncond alike (cfg 7)."""
    log = new_log()
    prompt = dossr_prompt(lr_image(16, 16), steps=1, cfg=7.0, repeat=2, count_log=log,
                          prefix=prefix("one_hint"))
    prompt["encode_hint"] = {"class_type": "DoSSRLREncode",
                             "inputs": {**prompt["encode"]["inputs"], "image": ["load", 0]}}
    prompt[SAMPLER]["inputs"]["hint"] = ["encode_hint", 2]
    entry = run_ok(server, prompt)
    calls = read_unet_calls(log)
    assert [(c["shape"], c["control"]) for c in calls] == [([4, 4, 8, 8], DOSSR_CONTROL)], calls
    assert [png_size(p) for p in saved_images(server, entry)] == [(64, 64), (64, 64)]


# ----------------------------------------------------------------------------- 6. bad inputs

def _bad_backbone_prompts(image: str, bad_ckpt: str) -> dict[str, dict]:
    """The wrong MODEL on each path: the one-node sampler, the composed graph (DoSSR Sigmas),
    and DoSSR Apply ControlNet feeding the core KSampler (refused when the control starts)."""
    one = dossr_prompt(image, steps=1, prefix=prefix("bad_backbone"))
    composed = dossr_prompt(image, steps=1, composed=True, prefix=prefix("bad_backbone"))
    ksampler = dossr_prompt(image, steps=1, composed=True, prefix=prefix("bad_backbone"))
    for name in ("guider", "noise", "select", "sigmas"):
        del ksampler[name]
    ksampler[SAMPLER] = {"class_type": "KSampler", "inputs": {
        "model": ["bad", 0], "positive": ["apply", 0], "negative": ["apply", 1],
        "latent_image": ["encode", 0], "seed": 0, "steps": 2, "cfg": 1.0, "sampler_name": "euler",
        "scheduler": "normal", "denoise": 1.0}}
    one[SAMPLER]["inputs"]["model"] = ["bad", 0]
    composed["sigmas"]["inputs"]["model"] = ["bad", 0]
    composed["guider"]["inputs"]["model"] = ["bad", 0]
    prompts = {"DoSSRSampler": one, "DoSSRSigmas": composed, "KSampler": ksampler}
    for p in prompts.values():
        p["bad"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": bad_ckpt}}
        keep_loaders(p)
    return prompts


@pytest.mark.parametrize("variant, words", [
    ("sd15_mini", ["Stable Diffusion 1.x", "2.1-base"]),
    ("sd2_v", ["V_PREDICTION", "2.1-base"]),
])
def test_wrong_backbone_is_refused(server, lr_image, add_model, fake_sd_checkpoint, variant, words):
    name = f"nodes_host_{variant}.safetensors"
    add_model("checkpoints", name, fake_sd_checkpoint(variant))
    for node_type, prompt in _bad_backbone_prompts(lr_image(16, 16), name).items():
        err = execution_error(server, prompt)
        expected_node = "sigmas" if node_type == "DoSSRSigmas" else SAMPLER
        assert (err["node_id"], err["node_type"]) == (expected_node, node_type), err
        for word in words:
            assert word in err["exception_message"], (node_type, err["exception_message"])
    assert_serves_good_prompt(server, lr_image)


def test_sd_checkpoint_is_not_a_dossr_checkpoint(server, lr_image):
    """The loader also lists models/checkpoints; picking the SD2 file itself is explained."""
    spec = server.object_info("DoSSRModelLoader")["DoSSRModelLoader"]["input"]["required"]["model_name"]
    options = spec[1]["options"] if spec[0] == "COMBO" else spec[0]   # V3 or V1 combo layout
    assert {SD2_MINI, DOSSR_MINI} <= set(options), options
    err = execution_error(server, keep_loaders(dossr_prompt(lr_image(16, 16), steps=1, dossr=SD2_MINI,
                                                            prefix=prefix("not_dossr"))))
    assert (err["node_id"], err["node_type"]) == ("dossr", "DoSSRModelLoader"), err
    message = err["exception_message"]
    assert "not a DoSSR checkpoint" in message and "control_model" in message, message
    assert "plain Stable Diffusion checkpoint" in message, message
    assert_serves_good_prompt(server, lr_image)


@pytest.mark.parametrize("kind, words", [
    ("truncated", ["cannot be read", "truncated"]),
    ("empty", ["empty (0 bytes)"]),
])
def test_broken_dossr_file_is_explained(server, lr_image, add_model, dossr_mini_ckpt, tmp_path, kind,
                                        words):
    name = f"nodes_host_{kind}_{uuid.uuid4().hex[:6]}.safetensors"
    path = tmp_path / name
    if kind == "truncated":
        with open(dossr_mini_ckpt, "rb") as f:
            path.write_bytes(f.read(1 << 20))     # header and the first tensors only
    else:
        path.write_bytes(b"")
    add_model("dossr", name, path)
    err = execution_error(server, keep_loaders(dossr_prompt(lr_image(16, 16), steps=1, dossr=name,
                                                            prefix=prefix(kind))))
    assert (err["node_id"], err["node_type"]) == ("dossr", "DoSSRModelLoader"), err
    for word in words + [name]:
        assert word in err["exception_message"], err["exception_message"]
    assert_serves_good_prompt(server, lr_image)


def test_missing_dossr_file_fails_validation(server, lr_image):
    missing = "nodes_host_no_such_dossr.safetensors"
    rejected = rejection(server, dossr_prompt(lr_image(16, 16), steps=1, dossr=missing,
                                              prefix=prefix("missing")))
    assert list(rejected.node_errors) == ["dossr"], rejected.node_errors
    errors = rejected.node_errors["dossr"]["errors"]
    by_input = {e["extra_info"].get("input_name"): e for e in errors}
    details = by_input["model_name"]["details"]
    assert "not found" in details and missing in details, details
    assert str(server.base_dir / "models" / "dossr") in details, details
    assert_serves_good_prompt(server, lr_image)


@pytest.mark.parametrize("node, option, value", [
    ("dossr", "dtype", "fp64"), ("encode", "preprocess", "lanczos"), ("sampler", "mode", "euler"),
    ("sampler", "order", "4"), ("fix", "mode", "sharpen")])
@pytest.mark.parametrize("composed", [False, True], ids=["one_node", "composed"])
def test_unknown_choice_fails_validation(server, lr_image, node, option, value, composed):
    """Refused before anything runs, once, naming the input and the value: by the node on
    hosts that do not check schema-API combos, by the host on those that do."""
    prompt = dossr_prompt(lr_image(16, 16), steps=1, composed=composed, prefix=prefix("choice"))
    target = node
    if composed and node == "sampler":
        target = next(k for k, v in prompt.items() if v["class_type"] == "DoSSRSamplerSelect")
    prompt[target]["inputs"][option] = value
    rejected = rejection(server, prompt)
    errors = rejected.node_errors[target]["errors"]
    about = [e for e in errors if e["extra_info"].get("input_name") == option]
    assert len(about) == 1 and repr(value) in about[0]["details"], errors


def test_too_small_image_is_refused(server, lr_image):
    err = execution_error(server, dossr_prompt(lr_image(5, 5), steps=1, prefix=prefix("5x5")))
    assert (err["node_id"], err["node_type"]) == ("encode", "DoSSRLREncode"), err
    assert "5x5 px" in err["exception_message"] and "at least 8x8" in err["exception_message"], err
    assert_serves_good_prompt(server, lr_image)


def test_rgba_image_is_refused(server, lr_image):
    """A 4-channel IMAGE (core JoinImageWithAlpha of LoadImage's image and mask)."""
    prompt = dossr_prompt(lr_image(16, 16), steps=1, prefix=prefix("rgba"))
    prompt["rgba"] = {"class_type": "JoinImageWithAlpha",
                      "inputs": {"image": ["load", 0], "alpha": ["load", 1]}}
    prompt["encode"]["inputs"]["image"] = ["rgba", 0]
    err = execution_error(server, prompt)
    assert (err["node_id"], err["node_type"]) == ("encode", "DoSSRLREncode"), err
    assert "RGBA" in err["exception_message"] and "RGB (3 channels)" in err["exception_message"], err
    assert_serves_good_prompt(server, lr_image)


def _second_encode(prompt: dict, **inputs) -> None:
    """Feed the sampler's latent from a second LR Encode of the plain LoadImage with *inputs*."""
    prompt["encode_latent"] = {"class_type": "DoSSRLREncode",
                               "inputs": {**prompt["encode"]["inputs"], "image": ["load", 0], **inputs}}
    prompt[SAMPLER]["inputs"]["latent"] = ["encode_latent", 0]


@pytest.mark.parametrize("case", ["latent1_hint2", "latent6_hint2", "sizes"])
def test_latent_and_hint_mismatch_is_refused(server, lr_image, case):
    """The latent and hint must come from the same LR Encode (a batch-1 hint may serve a batch)."""
    prompt = dossr_prompt(lr_image(16, 16), steps=1, repeat=2 if case != "sizes" else 1,
                          prefix=prefix(case))
    if case == "latent1_hint2":       # batch-1 LR Encode -> latent, batch-2 LR Encode -> hint
        _second_encode(prompt)
        words = ["latent has 1 images", "hint has 2"]
    elif case == "latent6_hint2":     # RepeatLatentBatch x3 of the batch-2 latent
        prompt["repeat_latent"] = {"class_type": "RepeatLatentBatch",
                                   "inputs": {"samples": ["encode", 0], "amount": 3}}
        prompt[SAMPLER]["inputs"]["latent"] = ["repeat_latent", 0]
        words = ["latent has 6 images", "hint has 2"]
    else:                             # a latent of another size than the hint
        _second_encode(prompt, scale=2.0)
        words = ["hint is 8x8 latents", "latent being sampled is 4x4", "same DoSSR LR Encode"]
    err = execution_error(server, prompt)
    assert (err["node_id"], err["node_type"]) == (SAMPLER, "DoSSRSampler"), err
    for word in words:
        assert word in err["exception_message"], err["exception_message"]
    assert_serves_good_prompt(server, lr_image)


def test_latent_and_hint_mismatch_is_refused_on_the_composed_path_too(server, lr_image):
    """The check lives in the control object, so SamplerCustomAdvanced cannot broadcast it away."""
    prompt = dossr_prompt(lr_image(16, 16), steps=1, repeat=2, composed=True, prefix=prefix("comp_mm"))
    prompt["repeat_latent"] = {"class_type": "RepeatLatentBatch",
                               "inputs": {"samples": ["encode", 0], "amount": 3}}
    key = "latent_image" if "latent_image" in prompt[SAMPLER]["inputs"] else "latent"
    prompt[SAMPLER]["inputs"][key] = ["repeat_latent", 0]
    err = execution_error(server, prompt)
    assert err["node_id"] == SAMPLER, err
    for word in ("latent has 6 images", "hint has 2", "same DoSSR LR Encode"):
        assert word in err["exception_message"], err["exception_message"]
    assert_serves_good_prompt(server, lr_image)


@pytest.mark.parametrize("steps, error_type", [(0, "value_smaller_than_min"),
                                               (500, "value_bigger_than_max")])
@pytest.mark.parametrize("composed", [False, True], ids=["one_node", "composed"])
def test_steps_out_of_range_fail_validation(server, lr_image, steps, error_type, composed):
    prompt = dossr_prompt(lr_image(16, 16), steps=steps, composed=composed, prefix=prefix("steps"))
    rejected = rejection(server, prompt)
    node = "sigmas" if composed else SAMPLER
    assert list(rejected.node_errors) == [node], rejected.node_errors
    (error,) = rejected.node_errors[node]["errors"]
    assert error["type"] == error_type and error["extra_info"]["input_name"] == "steps", error
    assert str(steps) in error["message"], error


# ----------------------------------------------------------------------------- 7. interruption

def test_interrupt_while_sampling(server, lr_image, new_log):
    """POST /interrupt once the UNet has been called: the prompt ends interrupted in the DoSSR
    sampler long before its last step, and the next prompt runs normally."""
    steps, log = 400, new_log()
    prompt_id = server.queue_prompt(dossr_prompt(lr_image(24, 16), steps=steps, count_log=log,
                                                 prefix=prefix("interrupt")))
    deadline = time.monotonic() + 300
    while not read_unet_calls(log):
        assert server.history(prompt_id) is None, "the prompt ended before sampling started"
        assert time.monotonic() < deadline, "sampling did not start"
        time.sleep(0.02)
    server.interrupt(prompt_id)
    entry = server.wait(prompt_id, timeout=120)
    interrupted = ComfyClient.execution_interrupted(entry)
    assert interrupted is not None, entry.get("status")
    assert (interrupted["node_id"], interrupted["node_type"]) == (SAMPLER, "DoSSRSampler")
    assert ComfyClient.execution_error(entry) is None
    assert len(read_unet_calls(log)) < steps
    assert not saved_images(server, entry)
    assert_serves_good_prompt(server, lr_image)


# ----------------------------------------------------------------------------- 8. progress

async def _run_with_websocket(server, prompt: dict, timeout: float) -> tuple[str, list[dict]]:
    import aiohttp

    client_id = uuid.uuid4().hex
    ws_url = server.url.replace("http://", "ws://", 1) + f"/ws?clientId={client_id}"
    messages = []
    end = ("execution_success", "execution_error", "execution_interrupted")

    async def collect(ws, prompt_id):
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue                       # binary frames: previews
            data = json.loads(msg.data)
            messages.append(data)
            if data.get("type") in end and data["data"].get("prompt_id") == prompt_id:
                return

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url) as ws:
            prompt_id = await asyncio.to_thread(server.queue_prompt, prompt, client_id)
            await asyncio.wait_for(collect(ws, prompt_id), timeout)
    return prompt_id, messages


def test_progress_is_reported_per_step(server, lr_image):
    """The websocket gets one ``progress`` message per DoSSR step from the sampler node."""
    pytest.importorskip("aiohttp")   # a dependency of the host's own server
    steps = 4
    prompt = dossr_prompt(lr_image(16, 16), steps=steps, seed=random.randrange(1, 2**31),
                          prefix=prefix("progress"))
    prompt_id, messages = asyncio.run(_run_with_websocket(server, prompt, timeout=300))
    assert messages[-1]["type"] == "execution_success", messages[-1]
    progress = [m["data"] for m in messages
                if m["type"] == "progress" and m["data"].get("node") == SAMPLER]
    assert [(p["value"], p["max"]) for p in progress] == [(i, steps) for i in range(1, steps + 1)]
    assert all(p["prompt_id"] == prompt_id for p in progress)


# ----------------------------------------------------------------------------- upscale model output

def test_loader_upscale_model_feeds_core_upscaler(server, lr_image):
    entry = run_ok(server, upscale_with_loader_prompt(lr_image(16, 12), prefix("upscale_model")))
    assert [png_size(p) for p in saved_images(server, entry)] == [(64, 48)]
