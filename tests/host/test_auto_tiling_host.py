"""The default workflow serves every image size on the real host (mini random-weight models).

* Within one tile (by area) its result is the untiled graph's, bit for bit: the same sampled
  latent and the same saved pixels as LoadImage -> LR Encode -> DoSSR Sampler (the plain
  checkpoint MODEL) -> VAE Decode, the graph the x4 workflow had before it tiled by itself.
* Beyond one tile it samples on tiles by itself (the node's log line says how many) and
  gives the full-size result.
* The forced-tiles workflow (dossr_x4_tiled, mode always) tiles an image that auto samples
  whole.
"""

from __future__ import annotations

import copy
import re
import uuid

import numpy as np
import pytest
import torch
Image = pytest.importorskip("PIL.Image")   # the host requires Pillow; a run without a host may lack it

from tests.host.conftest import DOSSR_MINI, RELEASE_MINI, SD2_MINI
from tests.hostlib.server import find_nodes, load_api_workflow, patch, use_models, write_png

TILE_LOG = re.compile(r"DoSSR Tiled Sampling: (\d+)x(\d+) px on (\d+) tiles of 512 px \(mode (\w+)\)")


def _prompt(name: str, image: str, prefix: str) -> dict:
    """A shipped API workflow with the test models and *image*, saving its image and its
    sampled latent under *prefix*."""
    prompt = load_api_workflow(name)
    patch(prompt, "LoadImage", image=image)
    use_models(prompt, release=RELEASE_MINI, sd=SD2_MINI, dossr=DOSSR_MINI)
    patch(prompt, "SaveImage", filename_prefix=f"{prefix}_image")
    (sampler,) = find_nodes(prompt, "DoSSRSampler")
    prompt["latent_out"] = {"class_type": "SaveLatent",
                            "inputs": {"samples": [sampler, 0], "filename_prefix": f"{prefix}_latent"}}
    return prompt


def _untiled(prompt: dict) -> dict:
    """The same graph without tiling: the sampler gets the checkpoint's MODEL, the host's
    VAE Decode decodes."""
    prompt = copy.deepcopy(prompt)
    (tiling,) = find_nodes(prompt, "DoSSRTiledDiffusion")
    (sampler,) = find_nodes(prompt, "DoSSRSampler")
    prompt[sampler]["inputs"]["model"] = prompt.pop(tiling)["inputs"]["model"]
    (decode,) = find_nodes(prompt, "DoSSRVAEDecode")
    prompt[decode] = {"class_type": "VAEDecode", "inputs": {k: prompt[decode]["inputs"][k]
                                                            for k in ("samples", "vae")}}
    return prompt


def _run(server, prompt: dict, timeout: float = 1800) -> tuple[dict, list[str]]:
    """Run *prompt*; its saved latent and pixels, and the tiling log lines it caused."""
    from safetensors.torch import load_file

    before = len(server.log_text())
    entry = server.run(prompt, timeout=timeout)
    out = {}
    for result in entry["outputs"].values():
        for item in result.get("latents", []):
            path = server.base_dir / "output" / item["subfolder"] / item["filename"]
            out["latent"] = load_file(str(path))["latent_tensor"]
    (image,) = server.output_images(entry)
    out["pixels"] = np.asarray(Image.open(image))
    return out, TILE_LOG.findall(server.log_text()[before:])


def _upload(server, tmp_path, w: int, h: int) -> str:
    path = write_png(tmp_path / f"lr_{w}x{h}.png", w, h, seed=11)
    return server.upload_image(path, name=f"auto_tiling_{w}x{h}_{uuid.uuid4().hex[:8]}.png")


@pytest.mark.parametrize("w, h", [(32, 24), (136, 16)], ids=["one-tile-128x96", "wide-544x64"])
def test_within_one_tile_the_default_workflow_is_the_untiled_graph(comfy_server, tmp_path, w, h):
    """128x96 px fits one 512 px tile; 544x64 px is wider than a tile but no larger in area,
    so mode auto samples it whole too. Either way: identical latent, identical pixels."""
    image = _upload(comfy_server, tmp_path, w, h)
    default = _prompt("dossr_x4_api.json", image, f"auto_{w}x{h}_default")
    plain = _untiled(_prompt("dossr_x4_api.json", image, f"auto_{w}x{h}_plain"))
    ours, tiles = _run(comfy_server, default)
    theirs, _ = _run(comfy_server, plain)
    assert tiles == [], "sampled whole, so no tiles"
    assert ours["pixels"].shape == (4 * h, 4 * w, 3)
    assert torch.equal(ours["latent"], theirs["latent"])
    assert np.array_equal(ours["pixels"], theirs["pixels"])


def test_forced_tiles_tile_what_auto_samples_whole(comfy_server, tmp_path):
    """dossr_x4_tiled (mode always) puts the 544x64 px image above on two tiles."""
    image = _upload(comfy_server, tmp_path, 136, 16)
    forced, tiles = _run(comfy_server, _prompt("dossr_x4_tiled_api.json", image, "auto_forced"))
    whole, _ = _run(comfy_server, _untiled(_prompt("dossr_x4_api.json", image, "auto_forced_plain")))
    assert tiles and set(tiles) == {("544", "64", "2", "always")}
    assert forced["pixels"].shape == whole["pixels"].shape == (64, 544, 3)
    assert not torch.equal(forced["latent"], whole["latent"])


@pytest.mark.slow   # the full-size VAE at 1024 px: minutes on two cores
def test_beyond_one_tile_the_default_workflow_samples_on_tiles(comfy_server, tmp_path):
    """A 256x256 px input: a 1024x1024 px result, sampled on 3x3 tiles of 512 px at every
    step (5 steps), with no setting changed."""
    image = _upload(comfy_server, tmp_path, 256, 256)
    out, tiles = _run(comfy_server, _prompt("dossr_x4_api.json", image, "auto_1024"), timeout=7200)
    assert out["pixels"].shape == (1024, 1024, 3)
    assert out["latent"].shape[-2:] == (128, 128)
    assert tiles == [("1024", "1024", "9", "auto")], "one log line per sampling, at its first step"
