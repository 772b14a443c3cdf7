"""Tiled sampling through the real host: seamless on smooth inputs, identical when one tile covers all.

The reduced random-weight SD2 "mini" UNet and DoSSR ControlNet run through the
composed graph (SamplerCustomAdvanced), whose second output is the blended
x0_hat of the last step; both it and the final latent are saved and compared
with an untiled run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
Image = pytest.importorskip("PIL.Image")   # the host requires Pillow; a run without a host may lack it

from dossr_core.tiling import tile_grid
from tests.host.conftest import DOSSR_MINI, SD2_MINI

TILE_PX, OVERLAP_PX = 256, 128     # the node's default overlap


def _write_lr(base, name, pixels):
    Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)).save(base / "input" / name)
    return name


def _gradient(w, h):
    x = np.linspace(0, 1, w)[None, :, None]
    return np.broadcast_to(x * np.array([0.9, 0.6, 0.3]) + 0.05, (h, w, 3))


def _prompt(image, prefix, tiled, tile_px=TILE_PX, seed=5):
    model = ["20", 0] if tiled else ["2", 0]
    g = {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD2_MINI}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "clean, high-resolution, 8k", "clip": ["2", 1]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 1]}},
        "5": {"class_type": "DoSSRModelLoader", "inputs": {"model_name": DOSSR_MINI, "dtype": "fp32"}},
        "6": {"class_type": "DoSSRLREncode", "inputs": {"image": ["1", 0], "dossr_model": ["5", 0],
                                                        "vae": ["2", 2], "scale": 4.0, "preprocess": "bicubic"}},
        "11": {"class_type": "DoSSRApplyControlNet", "inputs": {
            "positive": ["3", 0], "negative": ["4", 0], "dossr_model": ["5", 0], "hint": ["6", 2],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "12": {"class_type": "CFGGuider", "inputs": {"model": model, "positive": ["11", 0],
                                                     "negative": ["11", 1], "cfg": 1.0}},
        "13": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "14": {"class_type": "DoSSRSamplerSelect", "inputs": {"order": "3", "mode": "ode"}},
        "15": {"class_type": "DoSSRSigmas", "inputs": {"model": ["2", 0], "steps": 3}},
        "16": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["13", 0], "guider": ["12", 0], "sampler": ["14", 0], "sigmas": ["15", 0],
            "latent_image": ["6", 0]}},
        "17": {"class_type": "SaveLatent", "inputs": {"samples": ["16", 0], "filename_prefix": f"{prefix}_out"}},
        "18": {"class_type": "SaveLatent", "inputs": {"samples": ["16", 1], "filename_prefix": f"{prefix}_x0"}},
    }
    if tiled:
        g["20"] = {"class_type": "DoSSRTiledDiffusion", "inputs": {
            "model": ["2", 0], "tile_size": tile_px, "tile_overlap": OVERLAP_PX, "tile_batch_size": 2}}
    return g


def _latents(server, history, key=lambda name: "x0" if "_x0" in name else "out"):
    """The prompt's saved latents by ``key(filename)``."""
    from safetensors.torch import load_file
    out = {}
    for node, result in history["outputs"].items():
        for item in result.get("latents", []):
            path = server.base_dir / "output" / item["subfolder"] / item["filename"]
            out[key(item["filename"])] = load_file(str(path))["latent_tensor"]
    return out


def _run_pair(server, image, prefix):
    untiled = _latents(server, server.run(_prompt(image, f"{prefix}_whole", tiled=False)))
    tiled = _latents(server, server.run(_prompt(image, f"{prefix}_tiled", tiled=True)))
    return untiled, tiled


def _edge_jumps(latent, tiles, width):
    """At each inner tile edge: |first difference| across it over the median of its neighbours'.

    Columns are averaged over rows and channels. About 1 means no seam; the
    random mini UNet varies by itself, so the untiled run is the yardstick.
    """
    d = (latent[..., :, 1:] - latent[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    edges = sorted({t.x - 1 for t in tiles if t.x > 0} | {t.x + t.w - 1 for t in tiles if t.x + t.w < width})
    return [(d[e] / torch.cat([d[e - 4:e - 1], d[e + 2:e + 5]]).median()).item() for e in edges]


@pytest.mark.parametrize("kind", ["gradient", "constant"])
def test_tiled_x0_and_result_have_no_seams(comfy_server, kind):
    w, h = 160, 40                     # output 640x160 px: latent 80x20, four tiles across
    pixels = _gradient(w, h) if kind == "gradient" else np.full((h, w, 3), 0.45)
    image = _write_lr(comfy_server.base_dir, f"tiling_{kind}.png", pixels)
    whole, tiled = _run_pair(comfy_server, image, f"seam_{kind}")
    height, width = whole["out"].shape[-2:]
    tiles = tile_grid(height, width, TILE_PX // 8, OVERLAP_PX // 8)
    assert len(tiles) == 4
    for key in ("x0", "out"):
        assert tiled[key].shape == whole[key].shape
        assert not torch.equal(tiled[key], whole[key])       # tiles really ran
        jumps, natural = _edge_jumps(tiled[key], tiles, width), _edge_jumps(whole[key], tiles, width)
        assert max(jumps) < 1.2 * max(natural), (key, jumps, natural)


def test_one_tile_is_identical_to_untiled(comfy_server):
    image = _write_lr(comfy_server.base_dir, "tiling_small.png", _gradient(40, 30))
    whole = _latents(comfy_server, comfy_server.run(_prompt(image, "one_whole", tiled=False)))
    one = _latents(comfy_server, comfy_server.run(_prompt(image, "one_tiled", tiled=True, tile_px=256)))
    for key in ("x0", "out"):
        assert torch.equal(whole[key], one[key]), key


def _encode_prompt(image, prefix, vae_tiled, tiling="always"):
    """DoSSR LR Encode's latent (``tiling`` as given), and the host's own encode of the same
    reference image (whole with VAEEncode, or VAEEncodeTiled's three passes)."""
    host = ({"class_type": "VAEEncodeTiled", "inputs": {"pixels": ["6", 1], "vae": ["2", 2],
             "tile_size": 512, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8}}
            if vae_tiled else {"class_type": "VAEEncode", "inputs": {"pixels": ["6", 1], "vae": ["2", 2]}})
    g = {k: v for k, v in _prompt(image, prefix, tiled=False).items() if k in ("1", "2", "5", "6")}
    g["6"]["inputs"]["tiling"] = tiling
    g["7"] = host
    g["8"] = {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": f"{prefix}_ours"}}
    g["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": f"{prefix}_host"}}
    return g


def _saved(server, history):
    return _latents(server, history, key=lambda name: "ours" if "_ours" in name else "host")


def _column_jumps(latent):
    """Mean |first difference| between neighbouring latent columns."""
    return (latent[..., :, 1:] - latent[..., :, :-1]).abs().mean(dim=(0, 1, 2))


def test_large_image_encode_has_no_seams_beyond_the_hosts_three_pass_tiling(comfy_server):
    """With tiling forced, a 704 px wide reference is encoded on two equal 416 px tiles (latent columns 0-52 and
    36-88). Away from the image border, where the mini VAE's own border effects are, its latent
    changes from column to column no faster than the host's VAEEncodeTiled (three passes of
    512 px tiles) makes it."""
    w, h = 176, 40
    image = _write_lr(comfy_server.base_dir, "encode_gradient.png", _gradient(w, h))
    single = _saved(comfy_server, comfy_server.run(_encode_prompt(image, "enc_whole", False)))
    three = _saved(comfy_server, comfy_server.run(_encode_prompt(image, "enc_three", True)))["host"]
    ours, whole = single["ours"], single["host"]
    assert ours.shape == whole.shape == three.shape == (1, 4, h // 2, w // 2)
    assert [(t.x, t.w) for t in tile_grid(h // 2, w // 2, 64, 16, even=True)] == [(0, 52), (36, 52)]
    assert not torch.equal(ours, whole)                          # it really ran on tiles
    inner = slice(16, w // 2 - 16)
    ours_jump, three_jump = (_column_jumps(t)[inner].max().item() for t in (ours, three))
    assert ours_jump <= three_jump, (ours_jump, three_jump, _column_jumps(whole)[inner].max().item())


def test_encode_of_an_image_within_one_tile_is_the_hosts_whole_encode(comfy_server):
    image = _write_lr(comfy_server.base_dir, "encode_small.png", _gradient(128, 40))   # 512x160 px
    saved = _saved(comfy_server, comfy_server.run(_encode_prompt(image, "enc_small", False)))
    assert torch.equal(saved["ours"], saved["host"])


def test_encode_below_the_memory_budget_is_the_hosts_whole_encode(comfy_server):
    """The same 704 px wide reference with tiling "auto": the CPU has the memory, so DoSSR LR
    Encode's latent is the host's VAEEncode of the whole image, bit for bit."""
    image = _write_lr(comfy_server.base_dir, "encode_whole_auto.png", _gradient(176, 40))
    saved = _saved(comfy_server, comfy_server.run(_encode_prompt(image, "enc_auto", False, "auto")))
    assert torch.equal(saved["ours"], saved["host"])
