"""Checkpoint I/O: real files round-trip, hostile or broken files get clear errors."""

import subprocess
import sys
import textwrap

import pytest
import torch

from dossr_core.checkpoint import CheckpointError, load_dossr
from dossr_core.convert import main as convert_main
from tests.conftest import REPO
from tests.fake_dossr import (PREFIXES, SIZES, dossr_state_dict, sd_extras, write_ckpt,
                              write_safetensors)


def _assert_loaded_equals(model, tensors, dtype=None):
    for part, prefix in PREFIXES.items():
        net = getattr(model, part)
        assert not net.training
        assert all(not p.requires_grad for p in net.parameters())
        got = net.state_dict()
        want = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        assert set(got) == set(want)
        for k, v in want.items():
            assert torch.equal(got[k], v.to(dtype or v.dtype)), k


@pytest.mark.parametrize("wrap", [True, False])
def test_released_style_ckpt_round_trips_exactly(tmp_path, wrap):
    tensors = dossr_state_dict("small", seed=1)
    path = tmp_path / "dossr_default.ckpt"
    write_ckpt(path, tensors, wrap=wrap)
    model = load_dossr(path)
    _assert_loaded_equals(model, tensors)
    assert model.config.dtype == torch.float32
    for part in PREFIXES:
        cfg = getattr(model.config, part)
        for key, value in SIZES["small"][part].items():
            assert cfg[key] == value, (part, key)


def test_safetensors_round_trips_and_keeps_its_precision(tmp_path):
    tensors = dossr_state_dict("small", seed=2, dtype=torch.float16)
    path = tmp_path / "dossr.safetensors"
    write_safetensors(path, tensors)
    model = load_dossr(path)
    assert model.config.dtype == torch.float16
    _assert_loaded_equals(model, tensors)
    as_fp32 = load_dossr(path, dtype=torch.float32)
    assert as_fp32.controlnet.input_blocks[0][0].weight.dtype == torch.float32
    _assert_loaded_equals(as_fp32, tensors, torch.float32)


def test_preprocessor_is_optional(tmp_path):
    tensors = dossr_state_dict("small", parts=("controlnet", "hint_encoder"))
    write_safetensors(tmp_path / "x.safetensors", tensors)
    model = load_dossr(tmp_path / "x.safetensors")
    assert model.preprocessor is None and model.config.preprocessor is None


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_hostile_pickle_is_refused_and_its_payload_never_runs(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    obj = {"state_dict": dossr_state_dict("small"), "callbacks": _Payload(str(marker))}
    if legacy:
        torch.save(obj, str(path), _use_new_zipfile_serialization=False)
    else:
        torch.save(obj, str(path))
    with pytest.raises(CheckpointError) as err:
        load_dossr(path)
    assert "refused" in str(err.value) and "open" in str(err.value).split("would call")[1][:30]
    assert str(path) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_truncated_file_says_so(tmp_path, fmt):
    path = tmp_path / f"dossr.{fmt}"
    tensors = dossr_state_dict("small")
    write_ckpt(path, tensors) if fmt == "ckpt" else write_safetensors(path, tensors)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_dossr(path)


def test_stable_diffusion_file_is_named_as_such(tmp_path):
    path = tmp_path / "v2-1_512.ckpt"
    torch.save({"state_dict": sd_extras()}, str(path))
    with pytest.raises(CheckpointError) as err:
        load_dossr(path)
    msg = str(err.value)
    assert "not a DoSSR checkpoint" in msg and "Stable Diffusion" in msg and str(path) in msg


def test_missing_and_misshaped_tensors_are_counted_and_named(tmp_path):
    tensors = dossr_state_dict("small")
    dropped = sorted(k for k in tensors if k.startswith("control_model.zero_convs."))[:4]
    for k in dropped:
        del tensors[k]
    write_safetensors(tmp_path / "a.safetensors", tensors)
    with pytest.raises(CheckpointError) as err:
        load_dossr(tmp_path / "a.safetensors")
    msg = str(err.value)
    assert str(tmp_path / "a.safetensors") in msg and "missing" in msg
    assert dropped[0][len("control_model."):] in msg

    tensors = dossr_state_dict("small")
    tensors["cond_encoder.quant_conv.weight"] = torch.zeros(8, 8, 3, 3)
    write_safetensors(tmp_path / "b.safetensors", tensors)
    with pytest.raises(CheckpointError, match="wrong shape: quant_conv.weight"):
        load_dossr(tmp_path / "b.safetensors")


def test_empty_and_non_model_files(tmp_path):
    (tmp_path / "zero.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_dossr(tmp_path / "zero.ckpt")
    (tmp_path / "page.ckpt").write_text("<!DOCTYPE html><html>Not Found</html>")
    with pytest.raises(CheckpointError, match="not a model file"):
        load_dossr(tmp_path / "page.ckpt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_dossr(tmp_path / "absent.ckpt")


def test_convert_writes_only_dossr_parts(tmp_path, capsys):
    tensors = dossr_state_dict("small", seed=3)
    src, dst = tmp_path / "dossr_default.ckpt", tmp_path / "dossr.safetensors"
    write_ckpt(src, tensors)
    assert convert_main([str(src), str(dst), "--dtype", "fp16"]) == 0
    from safetensors import safe_open
    with safe_open(str(dst), framework="pt") as f:
        assert set(f.keys()) == set(tensors)
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    _assert_loaded_equals(load_dossr(dst), tensors, torch.float16)


def test_convert_refuses_a_foreign_file_and_writes_nothing(tmp_path, capsys):
    src, dst = tmp_path / "sd.ckpt", tmp_path / "out.safetensors"
    torch.save({"state_dict": sd_extras()}, str(src))
    assert convert_main([str(src), str(dst)]) == 2
    assert "not a DoSSR checkpoint" in capsys.readouterr().err
    assert not dst.exists() and not (tmp_path / "out.safetensors.partial").exists()


def test_only_the_dossr_tensors_are_read(tmp_path):
    """With ~600 MB of SD tensors beside a small DoSSR part, loading stays far below that."""
    path = tmp_path / "big.ckpt"
    write_ckpt(path, dossr_state_dict("small"), extras_bytes=600 * 2 ** 20)
    probe = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from dossr_core.checkpoint import load_dossr
        from tests.memory import peak_rss_kb
        before = peak_rss_kb()
        load_dossr({str(path)!r})
        print(peak_rss_kb() - before)
    """)
    grown_kb = int(subprocess.check_output([sys.executable, "-c", probe], text=True).split()[-1])
    assert grown_kb < 150 * 1024, f"peak RSS grew {grown_kb / 1024:.0f} MB"


def test_convert_with_backbone_writes_a_one_file_model(tmp_path):
    """From a training-form release file: every DoSSR and SD tensor, fp16, in a standard
    safetensors file; the DoSSR-only conversion of the same file has no backbone."""
    from safetensors import safe_open

    from dossr_core.release import NoBackbone, read_release
    from tests.training_ckpt import write_training_ckpt

    tensors = dossr_state_dict("small", seed=5)
    backbone = {k: v for k, v in sd_extras().items() if k.startswith(("model.", "first_stage", "cond_stage"))}
    src = tmp_path / "dossr_default.ckpt"
    write_training_ckpt(src, {**tensors, **backbone, "betas": torch.linspace(0, 1, 10)})
    full, small = tmp_path / "full.safetensors", tmp_path / "small.safetensors"
    assert convert_main([str(src), str(full), "--with-backbone"]) == 0
    assert convert_main([str(src), str(small)]) == 0
    with safe_open(str(full), framework="pt") as f:
        assert set(f.keys()) == set(tensors) | set(backbone)
        for k in f.keys():
            want = {**tensors, **backbone}[k]
            assert torch.equal(f.get_tensor(k), want.half()), k
    dossr, sd = read_release(full)
    assert set(dossr) == set(tensors) and set(sd) == set(backbone)
    with pytest.raises(NoBackbone, match="two-file workflow"):
        read_release(small)
