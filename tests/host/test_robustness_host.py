"""Robustness of the DoSSR nodes on a real ComfyUI server, driven over the HTTP API with the
shipped workflow ``workflows/dossr_x4_api.json`` patched to the fake models and test inputs.

1. Soak (``@pytest.mark.slow``): 50 sequential prompts of the x4 (two-file) workflow with the full-size
   random-weight models (as ``bench/e2e.py`` makes them) on 16x16 px inputs; every prompt
   succeeds and the server's RSS after the 50th is within 5 % of the RSS after the 5th. The
   curve goes to ``tests/out/soak_rss.csv``.
2. ``POST /interrupt`` in the middle of DoSSR sampling ends the prompt within one more UNet
   evaluation; the next prompt gives the same PNG, byte for byte, as on a fresh server.
3. Same seed and inputs give byte-identical PNGs on one server (with the sampler really
   re-run, checked against the history's ``execution_cached`` list) and across a restart.
4. Bad inputs not covered by ``test_nodes_host.py``: each is explained (or handled cleanly by
   the host) and the server still serves a good prompt afterwards.

Everything but the soak uses the "mini" fakes and images of at most 40x32 px.
"""

from __future__ import annotations

import csv
import random
import struct
import time
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.host.conftest import DOSSR_MINI, SD2_MINI
from tests.hostlib import server as hs
from tests.hostlib.server import ComfyClient, find_nodes, load_api_workflow, patch, png_size, read_unet_calls

Image = pytest.importorskip("PIL.Image")   # the host requires Pillow, so its Python has it

WORKFLOW = "dossr_x4_sd21_api.json"   # two files: the tests swap in other backbones
INPUT_SUBFOLDER = "robustness"
OUT_DIR = hs.REPO / "tests" / "out"
PNG_RGB = 2   # IHDR colour type of an 8-bit RGB PNG (what SaveImage writes for RGB images)


# ----------------------------------------------------------------------------- prompts

def node_id(prompt: dict, class_type: str) -> str:
    """The id of the one node of *class_type* in *prompt*."""
    (nid,) = [k for k, v in prompt.items() if v["class_type"] == class_type]
    return nid


def x4_prompt(image: str, *, seed: int = 231, steps: int | None = None, prefix: str = "robustness",
              ckpt: str = SD2_MINI, dossr: str = DOSSR_MINI, count_log=None) -> dict:
    """The shipped x4 API workflow with the test image, models, seed and SaveImage prefix;
    with *count_log*, DoSSRTestCountUNet sits between the checkpoint's MODEL and the sampler."""
    prompt = load_api_workflow(WORKFLOW)
    patch(prompt, "LoadImage", image=image)
    patch(prompt, "CheckpointLoaderSimple", ckpt_name=ckpt)
    patch(prompt, "DoSSRModelLoader", model_name=dossr)
    patch(prompt, "DoSSRSampler", seed=seed, **({} if steps is None else {"steps": steps}))
    patch(prompt, "SaveImage", filename_prefix=prefix)
    if count_log is not None:
        sampler = node_id(prompt, "DoSSRSampler")
        prompt["count"] = {"class_type": "DoSSRTestCountUNet",
                           "inputs": {"model": prompt[sampler]["inputs"]["model"],
                                      "log_path": str(count_log)}}
        prompt[sampler]["inputs"]["model"] = ["count", 0]
    return prompt


def keep_usual_loaders(prompt: dict) -> dict:
    """Unconnected copies of the usual mini loaders, so the host's cache (which keeps only the
    nodes of the current prompt) still holds them for the next good prompt."""
    prompt["keep_ckpt"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD2_MINI}}
    prompt["keep_dossr"] = {"class_type": "DoSSRModelLoader",
                            "inputs": {"model_name": DOSSR_MINI, "dtype": "auto"}}
    return prompt


def unique(tag: str) -> str:
    return f"{tag}_{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- files

def input_file(server, name: str) -> tuple[Path, str]:
    """(path in the server's input dir, the name LoadImage takes) for *name* in our subfolder."""
    path = server.base_dir / "input" / INPUT_SUBFOLDER / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, f"{INPUT_SUBFOLDER}/{name}"


def rgb_png(server, width: int, height: int, seed: int = 0, name: str | None = None) -> str:
    path, load_name = input_file(server, name or f"rgb_{width}x{height}_s{seed}.png")
    hs.write_png(path, width, height, seed=seed)
    return load_name


def pil_png(server, name: str, array: np.ndarray, mode: str) -> str:
    """A PNG written by Pillow from *array*, which must give an image of *mode*."""
    path, load_name = input_file(server, name)
    im = Image.fromarray(array)
    assert im.mode == mode, (im.mode, mode)
    im.save(path, format="PNG")
    return load_name


def png16_rgb(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one) from a (H, W, 3) uint16 array."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def gradient(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 test pattern (numpy twin of hs.write_png's pattern)."""
    x = np.arange(width)[None, :] * 255 // max(width - 1, 1)
    y = np.arange(height)[:, None] * 255 // max(height - 1, 1)
    b = ((np.arange(width)[None, :] + np.arange(height)[:, None]) * 37 + seed * 101) % 256
    return np.stack(np.broadcast_arrays(x, y, b), axis=-1).astype(np.uint8)


def png_color_type(path) -> int:
    with open(path, "rb") as f:
        head = f.read(26)
    assert head[12:16] == b"IHDR", path
    return head[25]


def saved_images(server, entry: dict, prompt: dict) -> list[Path]:
    """The files the prompt's SaveImage node wrote, in batch order."""
    out = (entry.get("outputs") or {}).get(node_id(prompt, "SaveImage")) or {}
    return [server.base_dir / "output" / i.get("subfolder", "") / i["filename"]
            for i in out.get("images", [])]


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def cached_nodes(entry: dict) -> set[str]:
    data = ComfyClient.message(entry, "execution_cached") or {}
    return set(data.get("nodes") or [])


def executed_error(server, prompt: dict, timeout: float = 300.0) -> dict:
    """Run *prompt*, which must fail while running; its ``execution_error`` data."""
    entry = server.run(prompt, timeout=timeout, check=False)
    err = ComfyClient.execution_error(entry)
    assert ComfyClient.status_str(entry) == "error" and err is not None, entry.get("status")
    assert ComfyClient.execution_interrupted(entry) is None
    return err


def assert_serves_good_prompt(server) -> None:
    """The server is alive and a good prompt (new seed, so the sampler really runs) succeeds."""
    assert server.alive(), server.log_tail()
    prompt = x4_prompt(rgb_png(server, 16, 16), steps=1, seed=random.randrange(1, 2**31),
                       prefix=f"robustness/{unique('after_error')}")
    entry = server.run(prompt)
    assert [png_size(p) for p in saved_images(server, entry, prompt)] == [(64, 64)]


# ----------------------------------------------------------------------------- 1. soak

SOAK_PROMPTS = 50
SOAK_REFERENCE = 5          # RSS after this prompt is the baseline
SOAK_TOLERANCE = 0.05
SOAK_SD = "soak_fake_sd2_full.safetensors"
SOAK_DOSSR = "soak_fake_dossr_full.safetensors"


def _soak_models(model_cache) -> tuple[Path, Path]:
    """The full-size fakes from bench/e2e.py's cache (``<test cache>/bench``), made if absent."""
    from bench.e2e import model_files

    sd, dossr, _ = model_files(model_cache.dir / "bench", small=False)
    return sd, dossr


def _rss_split_kib(pid: int) -> dict:
    """RssAnon / RssFile (KiB) of *pid*: heap versus mapped files (the memory-mapped DoSSR
    weights count as file pages, which the kernel may drop and re-read under pressure)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


def _write_rss_csv(rows: list[dict]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / "soak_rss.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.mark.slow
def test_soak_50_prompts_rss_stays_flat(model_cache, start_comfy_server, tmp_path_factory, capsys):
    """50 prompts of the shipped x4 workflow, full-size models, a new 16x16 image and seed each
    (so only the loaders and text encodes come from the cache): all succeed with a 64x64 PNG
    and RSS(50) is within 5 % of RSS(5)."""
    t_start = time.perf_counter()
    sd, dossr = _soak_models(model_cache)
    base = hs.prepare_base_dir(tmp_path_factory.mktemp("comfy_soak"),
                               models={"checkpoints": {SOAK_SD: sd}, "dossr": {SOAK_DOSSR: dossr}},
                               input_images={})
    server = start_comfy_server(extra_args=("--use-pytorch-cross-attention",), base_dir=base)
    rows = []
    for i in range(1, SOAK_PROMPTS + 1):
        image = rgb_png(server, 16, 16, seed=i, name=f"soak_{i:02d}.png")
        prompt = x4_prompt(image, seed=1000 + i, ckpt=SOAK_SD, dossr=SOAK_DOSSR, prefix="soak/x4")
        t0 = time.perf_counter()
        entry = server.run(prompt, timeout=1800)
        seconds = time.perf_counter() - t0
        assert [png_size(p) for p in saved_images(server, entry, prompt)] == [(64, 64)], i
        cached = cached_nodes(entry)
        assert node_id(prompt, "DoSSRSampler") not in cached and node_id(prompt, "LoadImage") not in cached
        rss, peak = server.server_rss_bytes(), server.server_peak_rss_bytes()
        split = _rss_split_kib(server.pid)
        rows.append({"prompt": i, "seconds": round(seconds, 2), "rss_bytes": rss,
                     "rss_mib": round(rss / 2**20, 1), "peak_rss_mib": round(peak / 2**20, 1),
                     "anon_mib": round(split.get("RssAnon", 0) / 1024, 1),
                     "file_mib": round(split.get("RssFile", 0) / 1024, 1),
                     "cached_nodes": " ".join(sorted(cached, key=str))})
    path = _write_rss_csv(rows)
    ref = rows[SOAK_REFERENCE - 1]["rss_bytes"]
    last = rows[-1]["rss_bytes"]
    ratio = last / ref
    total = time.perf_counter() - t_start
    with capsys.disabled():
        print(f"\nsoak: {SOAK_PROMPTS} prompts, total {total:.0f} s (server ready in "
              f"{server.ready_seconds:.1f} s); curve in {path}")
        print("prompt  seconds  RSS MiB  anon MiB  file MiB  peak MiB")
        for r in rows:
            print(f"{r['prompt']:>6} {r['seconds']:>8.2f} {r['rss_mib']:>8.1f} {r['anon_mib']:>9.1f} "
                  f"{r['file_mib']:>9.1f} {r['peak_rss_mib']:>9.1f}")
        marks = ", ".join(f"{n}: {rows[n - 1]['rss_mib']:.0f}" for n in (5, 10, 20, 30, 40, 50))
        print(f"RSS MiB after prompt {marks}; RSS(50)/RSS(5) = {ratio:.4f}")
    assert abs(ratio - 1) <= SOAK_TOLERANCE, (
        f"server RSS grew from {ref / 2**20:.0f} MiB after prompt {SOAK_REFERENCE} to "
        f"{last / 2**20:.0f} MiB after prompt {SOAK_PROMPTS} (x{ratio:.3f}); curve in {path}")


# ----------------------------------------------------------------------------- 2. interruption

INTERRUPT_STEPS = 400        # far more than are ever run
INTERRUPT_AFTER_CALLS = 2    # sampling well under way, all models loaded


def unet_calls_started(log: Path) -> int:
    """Complete lines DoSSRTestCountUNet has written so far (one per UNet call, written as it
    starts); a line being written at this moment is not parsed, so it cannot break the count."""
    try:
        return log.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_interrupt_mid_sampling_stops_within_one_evaluation(server, start_comfy_server, tmp_path):
    """POST /interrupt while the DoSSR sampler runs: at most one more UNet call starts, the
    prompt ends interrupted in the sampler, and the next prompt's PNG is byte-identical to
    the same prompt's PNG on a fresh server."""
    log = tmp_path / "unet_calls.jsonl"
    # 40x32 px -> 160x128 px (20x16 latents): a mini UNet call takes long enough that the
    # count read just before the interrupt cannot miss a whole call
    long_prompt = x4_prompt(rgb_png(server, 40, 32, seed=3), steps=INTERRUPT_STEPS, seed=17,
                            count_log=log, prefix=f"robustness/{unique('interrupted')}")
    sampler = node_id(long_prompt, "DoSSRSampler")
    prompt_id = server.queue_prompt(long_prompt)
    deadline = time.monotonic() + 300
    while unet_calls_started(log) < INTERRUPT_AFTER_CALLS:
        assert server.history(prompt_id) is None, "the prompt ended before sampling got going"
        assert time.monotonic() < deadline, "sampling did not start"
        time.sleep(0.005)
    calls_before = unet_calls_started(log)
    server.interrupt(prompt_id)
    entry = server.wait(prompt_id, timeout=120)
    calls_after = unet_calls_started(log)
    assert len(read_unet_calls(log)) == calls_after

    interrupted = ComfyClient.execution_interrupted(entry)
    assert interrupted is not None and ComfyClient.execution_error(entry) is None, entry.get("status")
    assert (interrupted["node_id"], interrupted["node_type"]) == (sampler, "DoSSRSampler"), interrupted
    assert calls_after - calls_before <= 1, (
        f"{calls_after - calls_before} UNet calls started after the interrupt request "
        f"({calls_before} before it)")
    assert calls_after < INTERRUPT_STEPS
    assert not saved_images(server, entry, long_prompt)

    # the next prompt on this server vs. the same prompt on a fresh one
    name = "after_interrupt_24x20.png"
    next_prompt = x4_prompt(rgb_png(server, 24, 20, seed=4, name=name), steps=2, seed=99,
                            prefix="robustness/after_interrupt")
    entry = server.run(next_prompt)
    (here,) = saved_images(server, entry, next_prompt)
    assert png_size(here) == (96, 80)
    fresh = start_comfy_server()
    rgb_png(fresh, 24, 20, seed=4, name=name)
    (there,) = saved_images(fresh, fresh.run(next_prompt), next_prompt)
    assert here.read_bytes() == there.read_bytes(), (
        "the prompt after an interrupted one differs from the same prompt on a fresh server "
        f"(max pixel difference {np.abs(pixels(here).astype(int) - pixels(there)).max()})")


# ----------------------------------------------------------------------------- 3. determinism

def test_same_seed_gives_identical_png_on_one_server_and_after_restart(server, start_comfy_server):
    """The prompt P is run, then Q (another image and seed, which makes the host's cache drop
    P's image, encode and sampler outputs), then P again: the sampler re-ran (not in the
    history's execution_cached list) and the PNG is byte-identical. A fresh server gives the
    same bytes, and so does that server after a stop and a restart on the same base dir.
    (The SaveImage prefix is not varied: it is part of the prompt stored in the PNG, and it
    would not make the host re-run the sampler anyway.)"""
    name = "determinism_20x16.png"
    p = x4_prompt(rgb_png(server, 20, 16, seed=8, name=name), steps=3, seed=4242,
                  prefix="robustness/determinism")
    q = x4_prompt(rgb_png(server, 20, 16, seed=9, name="determinism_other.png"), steps=3, seed=4243,
                  prefix="robustness/determinism")
    rerun = {node_id(p, c) for c in ("LoadImage", "DoSSRLREncode", "DoSSRSampler", "DoSSRVAEDecode",
                                      "DoSSRColorFix", "SaveImage")}

    first = server.run(p)
    other = server.run(q)
    second = server.run(p)
    assert not rerun & cached_nodes(second), f"served from the cache: {sorted(rerun & cached_nodes(second))}"
    (a,) = saved_images(server, first, p)
    (b,) = saved_images(server, other, q)
    (a2,) = saved_images(server, second, p)
    assert a != a2, "SaveImage did not write a new file"
    assert not np.array_equal(pixels(a), pixels(b)), "another image and seed gave the same result"
    assert a.read_bytes() == a2.read_bytes(), (
        f"same prompt, different PNG on one server (max pixel difference "
        f"{np.abs(pixels(a).astype(int) - pixels(a2)).max()})")

    fresh = start_comfy_server()
    rgb_png(fresh, 20, 16, seed=8, name=name)
    (c,) = saved_images(fresh, fresh.run(p), p)
    fresh.stop()
    restarted = start_comfy_server(base_dir=fresh.base_dir)
    (d,) = saved_images(restarted, restarted.run(p), p)
    assert c != d
    assert c.read_bytes() == d.read_bytes(), "the PNG changed across a server restart"
    assert a.read_bytes() == c.read_bytes(), "the PNG differs between two servers"


# ----------------------------------------------------------------------------- 4. bad inputs

def test_corrupt_image_file_is_reported_by_loadimage(server):
    """Bytes that are not an image, named .png: the host's LoadImage says it cannot read it."""
    path, name = input_file(server, f"{unique('corrupt')}.png")
    path.write_bytes(b"<html><body>404 Not Found</body></html>\n" * 4)
    prompt = x4_prompt(name, steps=1, prefix=f"robustness/{unique('corrupt')}")
    err = executed_error(server, prompt)
    assert (err["node_id"], err["node_type"]) == (node_id(prompt, "LoadImage"), "LoadImage"), err
    assert "cannot identify image file" in err["exception_message"], err["exception_message"]
    assert path.name in err["exception_message"], err["exception_message"]
    assert_serves_good_prompt(server)


def test_one_pixel_image_is_refused(server):
    prompt = x4_prompt(rgb_png(server, 1, 1), steps=1, prefix=f"robustness/{unique('1x1')}")
    err = executed_error(server, prompt)
    assert (err["node_id"], err["node_type"]) == (node_id(prompt, "DoSSRLREncode"), "DoSSRLREncode"), err
    assert "1x1 px" in err["exception_message"] and "at least 8x8" in err["exception_message"], err
    assert_serves_good_prompt(server)


def _run_single(server, name: str, seed: int = 5) -> Path:
    """Run the x4 workflow (1 step) on input *name*; the one PNG written, checked 64x64 RGB."""
    prompt = x4_prompt(name, steps=1, seed=seed, prefix=f"robustness/{unique('single')}")
    entry = server.run(prompt)
    (out,) = saved_images(server, entry, prompt)
    assert png_size(out) == (64, 64) and png_color_type(out) == PNG_RGB, (png_size(out), out)
    return out


def decoded_by_host(server, name: str) -> np.ndarray:
    """(H, W, 3) uint8: the IMAGE the host's LoadImage makes of input *name*, saved as is."""
    prefix = f"robustness/{unique('decoded')}"
    entry = server.run({"load": {"class_type": "LoadImage", "inputs": {"image": name}},
                        "save": {"class_type": "SaveImage", "inputs": {"images": ["load", 0],
                                                                       "filename_prefix": prefix}}})
    (out,) = entry["outputs"]["save"]["images"]
    return pixels(server.base_dir / "output" / out.get("subfolder", "") / out["filename"])


def test_grayscale_png_runs_as_rgb(server):
    """An 8-bit grey PNG: LoadImage makes it RGB (R = G = B), and DoSSR's result is that of
    the RGB file holding the pixels the host decoded. (Hosts decode grey differently:
    Pillow's convert('RGB') on 0.3.64, PyAV on newer ones, up to one level apart, so the
    comparison is with what this host made of it, not with the grey values.)"""
    grey = gradient(16, 16, seed=1).mean(axis=-1).astype(np.uint8)
    name = pil_png(server, f"{unique('grey')}.png", grey, "L")
    decoded = decoded_by_host(server, name)
    assert (decoded[..., 0] == decoded[..., 1]).all() and (decoded[..., 1] == decoded[..., 2]).all()
    assert np.abs(decoded[..., 0].astype(int) - grey).max() <= 1
    out = _run_single(server, name)
    same = _run_single(server, pil_png(server, f"{unique('grey_as_rgb')}.png", decoded, "RGB"))
    # SaveImage rounds the decoded floats down to 8 bits, so the RGB file can be a level off
    # where the host's grey decoding is not an exact k/255 (PyAV): allow that one level
    diff = np.abs(pixels(out).astype(int) - pixels(same).astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01, (diff.max(), diff.mean())


def test_rgba_png_through_loadimage_drops_alpha(server):
    """RGBA through LoadImage (not JoinImageWithAlpha): the alpha goes to the MASK output, the
    IMAGE is RGB, and the result is that of the RGB pixels alone."""
    rgb = gradient(16, 16, seed=2)
    alpha = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))[..., None]
    out = _run_single(server, pil_png(server, f"{unique('rgba')}.png", np.concatenate([rgb, alpha], -1),
                                      "RGBA"))
    same = _run_single(server, pil_png(server, f"{unique('rgba_as_rgb')}.png", rgb, "RGB"))
    assert np.array_equal(pixels(out), pixels(same))


@pytest.mark.parametrize("kind", ["grey16", "rgb16"])
def test_16_bit_png_runs(server, kind):
    """16-bit PNGs are the host's to convert (Pillow opens grey ones as I;16, which LoadImage's
    convert('RGB') clips at 255; RGB ones are read at 8 bits); DoSSR gets RGB and succeeds."""
    ramp = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)
    if kind == "grey16":
        name = pil_png(server, f"{unique(kind)}.png", ramp, "I;16")
        with Image.open(server.base_dir / "input" / name) as im:
            assert im.mode in ("I;16", "I"), im.mode   # really read back as 16-bit
    else:
        path, name = input_file(server, f"{unique(kind)}.png")
        png16_rgb(path, np.stack([ramp, ramp[::-1], ramp.T], axis=-1))
    _run_single(server, name)


def test_batch_of_mixed_sizes_is_resized_by_the_host(server):
    """Core ImageBatch of a 16x16 and a 24x20 image resizes the second to 16x16: two 64x64
    outputs."""
    prompt = x4_prompt(rgb_png(server, 16, 16, seed=1), steps=1, prefix=f"robustness/{unique('mixed')}")
    load = node_id(prompt, "LoadImage")
    encode = node_id(prompt, "DoSSRLREncode")
    prompt["load2"] = {"class_type": "LoadImage", "inputs": {"image": rgb_png(server, 24, 20, seed=2)}}
    prompt["batch"] = {"class_type": "ImageBatch", "inputs": {"image1": [load, 0], "image2": ["load2", 0]}}
    prompt[encode]["inputs"]["image"] = ["batch", 0]
    entry = server.run(prompt)
    images = saved_images(server, entry, prompt)
    assert [png_size(p) for p in images] == [(64, 64), (64, 64)]
    assert not np.array_equal(pixels(images[0]), pixels(images[1]))


@pytest.fixture(scope="session")
def sd15_ckpt(model_cache, fake_sd_checkpoint) -> Path:
    """The fake SD1.5 "mini" checkpoint as a real .ckpt: a torch zip pickle of
    ``{"state_dict": tensors}`` (cached beside the other fakes)."""
    source = fake_sd_checkpoint("sd15_mini")
    version = source.stem.rpartition("-")[2]

    def write(path):
        import torch
        from safetensors.torch import load_file

        with open(path, "wb") as f:
            torch.save({"state_dict": load_file(str(source))}, f)

    return model_cache.get(f"sd15_mini_torchzip-s0-{version}.ckpt", write)


def test_sd15_ckpt_in_the_dossr_loader_is_explained(server, add_model, sd15_ckpt):
    name = f"{unique('robustness_sd15')}.ckpt"
    add_model("checkpoints", name, sd15_ckpt)
    prompt = x4_prompt(rgb_png(server, 16, 16), steps=1, dossr=name,
                       prefix=f"robustness/{unique('sd15_dossr')}")
    loader = node_id(prompt, "DoSSRModelLoader")
    err = executed_error(server, keep_usual_loaders(prompt))
    assert (err["node_id"], err["node_type"]) == (loader, "DoSSRModelLoader"), err
    message = err["exception_message"]
    for words in ("not a DoSSR checkpoint", "plain Stable Diffusion checkpoint", name):
        assert words in message, message
    assert_serves_good_prompt(server)


def test_sd15_ckpt_as_backbone_is_refused(server, add_model, sd15_ckpt):
    name = f"{unique('robustness_sd15')}.ckpt"
    add_model("checkpoints", name, sd15_ckpt)
    prompt = x4_prompt(rgb_png(server, 16, 16), steps=1, prefix=f"robustness/{unique('sd15_backbone')}")
    patch(prompt, "CheckpointLoaderSimple", ckpt_name=name)
    keep_usual_loaders(prompt)
    err = executed_error(server, prompt)
    sampler = node_id(prompt, "DoSSRSampler")
    assert (err["node_id"], err["node_type"]) == (sampler, "DoSSRSampler"), err
    for words in ("Stable Diffusion 1.x", "2.1-base"):
        assert words in err["exception_message"], err["exception_message"]
    assert_serves_good_prompt(server)


def test_zero_byte_backbone_is_reported_by_the_host(server, add_model, tmp_path):
    name = f"{unique('robustness_empty')}.safetensors"
    empty = tmp_path / name
    empty.write_bytes(b"")
    add_model("checkpoints", name, empty)
    prompt = x4_prompt(rgb_png(server, 16, 16), steps=1, prefix=f"robustness/{unique('empty_ckpt')}")
    patch(prompt, "CheckpointLoaderSimple", ckpt_name=name)
    keep_usual_loaders(prompt)
    ckpt = [n for n in find_nodes(prompt, "CheckpointLoaderSimple") if n != "keep_ckpt"]
    err = executed_error(server, prompt)
    assert (err["node_id"], err["node_type"]) == (ckpt[0], "CheckpointLoaderSimple"), err
    assert err["exception_type"] and err["exception_message"].strip(), err
    assert_serves_good_prompt(server)
