"""dossr_core.verify: what passes as a DoSSR / SD 2.1-base file, and what each refusal says.

Small files are checked against a manifest made from the small fake (same names, reduced
shapes); the release manifest itself is checked with a sparse full-shape file.
"""

import hashlib
import os

import pytest
import torch

from dossr_core.verify import (Refused, html_title, release_manifest, sha256_file,
                               verify_dossr, verify_hashed)
from tests.fetch_files import (HTML_QUOTA, SMALL_SD, small_manifest, small_tensors, write_small,
                               write_sparse_safetensors)
from tests.hostlib.fake_sd import checkpoint_key_shapes
from tests.training_ckpt import write_hostile_ckpt, write_training_ckpt


def check(path, sd=None):
    return verify_dossr(path, small_manifest(), SMALL_SD if sd is None else sd)


@pytest.mark.parametrize("fmt", ["safetensors", "ckpt"])
def test_small_dossr_file_without_sd_serves_the_two_file_workflow(tmp_path, fmt):
    path = tmp_path / f"d.{fmt}"
    write_small(path, fmt)
    got = check(path)
    assert got.sd_parts == () and not got.full
    assert "two-file workflow" in got.summary() and "one-file workflow needs the full" in got.summary()


@pytest.mark.parametrize("fmt", ["safetensors", "ckpt"])
def test_full_file_has_all_three_sd_parts_checked(tmp_path, fmt):
    path = tmp_path / f"d.{fmt}"
    write_small(path, fmt, with_sd=True)
    got = check(path)
    assert got.full and got.sd_parts == ("UNet", "VAE", "text encoder")
    assert "one-file and the two-file" in got.summary()


def test_sd_part_of_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "d.safetensors"
    bad = dict(SMALL_SD, **{"first_stage_model.encoder.conv_in.weight": (8, 3, 1, 1)})
    write_small(path, tensors=small_tensors(with_sd=True, sd_shapes=bad))
    with pytest.raises(Refused, match=r"SD 2.1-base VAE is not SD 2.1-base.*conv_in.weight: "
                                      r"\[8, 3, 1, 1\] in the file, \[8, 3, 3, 3\]"):
        check(path)


def test_missing_and_reshaped_dossr_tensors_are_refused(tmp_path):
    tensors = small_tensors()
    dropped = sorted(tensors)[5]
    del tensors[dropped]
    path = tmp_path / "d.safetensors"
    write_small(path, tensors=tensors)
    with pytest.raises(Refused, match=rf"lacks 1 of the {len(small_manifest())} DoSSR tensors "
                                      rf"\(e.g. {dropped}\)"):
        check(path)
    tensors = small_tensors()
    key = "control_model.input_blocks.0.0.weight"
    tensors[key] = torch.zeros(tensors[key].shape[0], 4, 3, 3, dtype=torch.float16)  # 4-ch hint
    write_small(path, tensors=tensors)
    with pytest.raises(Refused, match="1 DoSSR tensors of other shapes"):
        check(path)


def test_plain_sd_checkpoint_is_refused_as_such(tmp_path):
    path = tmp_path / "sd.safetensors"
    write_small(path, tensors={k: torch.zeros(s, dtype=torch.float16) for k, s in SMALL_SD.items()})
    with pytest.raises(Refused, match=r"a plain Stable Diffusion checkpoint .*UNet, VAE, text "
                                      r"encoder.*not DoSSR weights"):
        check(path)


def test_html_page_is_refused_with_its_title(tmp_path):
    path = tmp_path / "dossr_default.ckpt"
    path.write_text(HTML_QUOTA)
    with pytest.raises(Refused, match=r"an HTML page titled 'Google Drive - Quota exceeded'"):
        check(path)
    assert html_title(b"<html><head><TITLE>\n Google Drive  &amp; you\n</TITLE>") == "Google Drive & you"


@pytest.mark.parametrize("fmt,pattern", [
    ("ckpt", r"a torch checkpoint cut off at {n:,} bytes"),
    ("safetensors", r"a safetensors file truncated at {n:,} of {full:,} bytes"),
])
def test_truncated_files_are_refused_with_where_they_stop(tmp_path, fmt, pattern):
    path = tmp_path / f"d.{fmt}"
    data = write_small(path, fmt)
    n = len(data) * 2 // 3
    path.write_bytes(data[:n])
    with pytest.raises(Refused, match=pattern.format(n=n, full=len(data))):
        check(path)


def test_empty_and_foreign_files_are_refused(tmp_path):
    (tmp_path / "e").write_bytes(b"")
    with pytest.raises(Refused, match=r"an empty file \(0 bytes\)"):
        check(tmp_path / "e")
    (tmp_path / "t").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(Refused, match=r"not a model file \(43 bytes starting with b'version"):
        check(tmp_path / "t")


def test_training_checkpoint_passes_and_a_hostile_one_is_refused_not_run(tmp_path):
    """The authors' files are Lightning training checkpoints: verified through the safe reader."""
    good = tmp_path / "dossr_default.ckpt"
    write_training_ckpt(good, small_tensors(with_sd=True))
    assert check(good).full
    evil, marker = tmp_path / "evil.ckpt", tmp_path / "payload_ran"
    write_hostile_ckpt(evil, small_tensors(), "os.system", marker)
    with pytest.raises(Refused, match=r"would call os.system") as refused:
        check(evil)
    assert "\x1b" not in str(refused.value) and not marker.exists()


def test_release_manifest_accepts_full_shapes_and_refuses_the_small_fake(tmp_path):
    full = tmp_path / "full.safetensors"
    write_sparse_safetensors(full, release_manifest())
    assert verify_dossr(full).sd_parts == ()
    small = tmp_path / "small.safetensors"
    write_small(small)
    with pytest.raises(Refused, match="tensors of other shapes"):
        verify_dossr(small)


def test_release_with_full_sd21_is_a_one_file_release(tmp_path):
    full = tmp_path / "full.safetensors"
    write_sparse_safetensors(full, {**release_manifest(), **checkpoint_key_shapes("sd2_full")})
    assert verify_dossr(full).full
    sd_only = tmp_path / "sd.safetensors"
    write_sparse_safetensors(sd_only, checkpoint_key_shapes("sd2_full"))
    with pytest.raises(Refused, match="a plain Stable Diffusion checkpoint"):
        verify_dossr(sd_only)


def test_hash_check(tmp_path):
    data = os.urandom(3000)
    path = tmp_path / "f"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk=1000) == digest
    verify_hashed(path, 3000, digest)
    with pytest.raises(Refused, match=rf"another content: sha256 {digest}, expected 0+"):
        verify_hashed(path, 3000, "0" * 64)
    with pytest.raises(Refused, match="truncated at 3,000 of 4,000 bytes"):
        verify_hashed(path, 4000, digest)
    path.write_text(HTML_QUOTA)
    with pytest.raises(Refused, match="an HTML page titled 'Google Drive - Quota exceeded'"):
        verify_hashed(path, 4000, digest)
