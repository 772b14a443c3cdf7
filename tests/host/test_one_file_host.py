"""One DoSSR release file is the whole model, inside the real host.

The release file here has the authors' training form (a Lightning checkpoint with callbacks
keyed by classes, OmegaConf and Namespace hyper-parameters, numpy scalars) and holds the mini
SD weights and the mini DoSSR weights the two-file tests use, so both paths can be compared
bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.host.conftest import DOSSR_MINI, SD2_MINI
from tests.host.dossr_prompts import dossr_prompt, one_file, upscale_with_loader_prompt
from tests.host.test_nodes_host import execution_error, pixels, read_latent
from tests.hostlib.server import write_png
from tests.fake_dossr import dossr_state_dict, sd_extras
from tests.training_ckpt import HOSTILE, write_hostile_ckpt

RELEASE = "dossr_release_mini.ckpt"


@pytest.fixture
def image(server, tmp_path):
    return server.upload_image(write_png(tmp_path / "lr.png", 12, 10, seed=3), name="one_file_12x10.png")


@pytest.fixture
def release(add_model, release_mini_ckpt):
    add_model("dossr", RELEASE, release_mini_ckpt)
    return RELEASE


def test_one_file_gives_the_same_latents_as_two_files(server, image, release):
    """Two files: SD 2.1-base from its own checkpoint (Load Checkpoint), the DoSSR parts from the
    release file (DoSSR Model Loader). Weights in memory-mapped files are used in place, and the
    CPU kernels' last bits depend on where weights lie in memory, so the DoSSR parts come from the
    same file on both sides; the backbone is copied into the host's models either way."""
    two = dossr_prompt(image, save_latent=True, prefix="two_files", dossr=release, ckpt=SD2_MINI, seed=7)
    one = one_file(dossr_prompt(image, save_latent=True, prefix="one_file", seed=7), release)
    assert {n["class_type"] for n in one.values()} >= {"DoSSRCheckpointLoader"}
    assert not {"CheckpointLoaderSimple", "DoSSRModelLoader"} & {n["class_type"] for n in one.values()}
    a = read_latent(server, server.run(two, timeout=600))
    b = read_latent(server, server.run(one, timeout=600))
    assert a.shape == b.shape and np.isfinite(a).all()
    assert np.array_equal(a, b), f"max |diff| {np.abs(a - b).max()}"


def test_training_checkpoint_loads_in_the_dossr_model_loader(server, image, add_model, model_cache,
                                                              release_mini_ckpt):
    """The two-file path reads the training-form file like a plain state dict of the same tensors."""
    add_model("dossr", "dossr_training_form.ckpt", release_mini_ckpt)
    add_model("dossr", "dossr_state_dict.ckpt", model_cache.release_checkpoint("mini", form="state_dict"))
    two = dossr_prompt(image, save_latent=True, prefix="training_form", dossr="dossr_state_dict.ckpt", seed=2)
    training = dossr_prompt(image, save_latent=True, prefix="training_form_b",
                            dossr="dossr_training_form.ckpt", seed=2)
    assert np.array_equal(read_latent(server, server.run(two, timeout=600)),
                          read_latent(server, server.run(training, timeout=600)))


def test_dossr_only_file_points_to_the_two_file_workflow(server, image):
    err = execution_error(server, one_file(dossr_prompt(image, prefix="small_file"), DOSSR_MINI))
    msg = err["exception_message"]
    assert err["node_id"] == "ckpt" and "not Stable Diffusion 2.1-base" in msg
    assert "two-file workflow" in msg and "dossr_default.ckpt" in msg


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("loader", ["one_file", "dossr_model_loader"])
def test_hostile_release_is_refused_and_its_payload_never_runs(server, image, add_model, tmp_path,
                                                               kind, loader):
    """Same layout as a release file (small tensors: the file is refused before any is used)."""
    marker = tmp_path / "payload_ran"
    path = tmp_path / f"hostile_{kind}.ckpt"
    tensors = dossr_state_dict("small")
    tensors.update(sd_extras())
    write_hostile_ckpt(path, tensors, kind, marker)
    name = f"hostile_{kind}_{loader}.ckpt"
    add_model("dossr", name, path)
    prompt = dossr_prompt(image, prefix=f"hostile_{loader}", dossr=name)
    node = "dossr"
    if loader == "one_file":
        prompt, node = one_file(prompt, name), "ckpt"
    err = execution_error(server, prompt)
    msg = err["exception_message"]
    assert err["node_id"] == node
    assert "refused" in msg and "nothing in it was run" in msg and kind.split(".")[-1] in msg
    assert "\x1b" not in msg
    assert not marker.exists()


@pytest.mark.parametrize("form", ["state_dict", "wrapped", "legacy_state_dict", "training",
                                  "legacy_training", "safetensors"])
def test_every_checkpoint_form_loads_in_the_dossr_model_loader(server, add_model, tmp_path, model_cache, form):
    """Each form torch.save and Lightning write (tests/test_safe_load.py's list) loads through
    the node inside the host; its RRDBNet upscales as the safetensors file's does (within one
    level: weights used in place from a memory map may change the last bits of a float sum)."""
    from safetensors.torch import load_file

    from tests.test_safe_load import _write

    tensors = load_file(str(model_cache.dossr_checkpoint("mini")))
    name = f"form_{form}.{'safetensors' if form == 'safetensors' else 'ckpt'}"
    _write(form, tmp_path / name, tensors)
    add_model("dossr", name, tmp_path / name)
    image = server.upload_image(write_png(tmp_path / "lr.png", 8, 8, seed=4), name="forms_8.png")
    got = server.run(upscale_with_loader_prompt(image, f"form_{form}", dossr=name), timeout=600)
    want = server.run(upscale_with_loader_prompt(image, "form_reference", dossr=DOSSR_MINI), timeout=600)
    (a,), (b,) = server.output_images(got), server.output_images(want)
    diff = np.abs(pixels(a).astype(int) - pixels(b).astype(int))
    assert pixels(a).shape == (32, 32, 3) and diff.max() <= 1, diff.max()
