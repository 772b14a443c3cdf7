"""The shipped default workflow with one full-size DoSSR release file as the only model file.

The file is a full-size random-weight release in the authors' training form (made once by
``bench/one_file.py``: SD 2.1-base UNet, VAE and text encoder plus the DoSSR parts, fp32,
6.9 GB). ``models/checkpoints`` stays empty: the one-file workflow must need nothing else.
Then the two-file workflow runs on the same weights (SD 2.1-base from its own file, the DoSSR
parts from the release file) and gives the same latent, bit for bit. Slow: minutes and about
15 GB of memory on a CPU.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.host.test_nodes_host import read_latent
from tests.hostlib import server as hs

pytestmark = pytest.mark.slow


def _bench_files():
    spec = importlib.util.spec_from_file_location("bench_one_file", hs.REPO / "bench" / "one_file.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.release_file("fp32")


def _with_latent(prompt: dict, prefix: str) -> dict:
    (sampler,) = hs.find_nodes(prompt, "DoSSRSampler")
    hs.patch(prompt, "SaveImage", filename_prefix=prefix)
    prompt["save_latent"] = {"class_type": "SaveLatent", "inputs": {
        "samples": [sampler, 0], "filename_prefix": f"latents/{prefix}"}}
    return prompt


def test_default_workflow_on_one_full_size_release_file(start_comfy_server, tmp_path):
    release, sd = _bench_files()
    base = hs.prepare_base_dir(tmp_path / "base", models={"dossr": {"dossr_default.ckpt": release}})
    (base / "models" / "checkpoints").mkdir(parents=True, exist_ok=True)
    assert not list((base / "models" / "checkpoints").iterdir())
    server = start_comfy_server(base_dir=base)
    image = server.upload_image(hs.write_png(tmp_path / "lr.png", 16, 16, seed=1), name="full_16.png")

    one = _with_latent(hs.load_api_workflow("dossr_x4_api.json"), "full_one_file")
    hs.patch(one, "LoadImage", image=image)
    assert hs.find_nodes(one, "DoSSRCheckpointLoader") and not hs.find_nodes(one, "CheckpointLoaderSimple")
    a = read_latent(server, server.run(one, timeout=3600))

    server.free()
    server.add_model("checkpoints", "v2-1_512-ema-pruned.safetensors", sd)
    two = _with_latent(hs.load_api_workflow("dossr_x4_sd21_api.json"), "full_two_files")
    hs.patch(two, "LoadImage", image=image)
    hs.patch(two, "DoSSRModelLoader", model_name="dossr_default.ckpt")
    b = read_latent(server, server.run(two, timeout=3600))
    assert a.shape == (1, 4, 8, 8) and np.isfinite(a).all()
    assert np.array_equal(a, b), f"max |diff| {np.abs(a - b).max()}"
