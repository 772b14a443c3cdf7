"""The reader takes the tensors of every checkpoint form the authors' training writes and runs
nothing from any file: hostile files with the same layout are refused before their payload runs."""

import subprocess
import sys
import textwrap

import pytest
import torch

from dossr_core import safe_load
from dossr_core.errors import CheckpointError
from dossr_core.safe_load import UnsafeCheckpoint, read_state_dict
from tests.conftest import REPO
from tests.fake_dossr import dossr_state_dict, sd_extras, write_safetensors
from tests.training_ckpt import HOSTILE, stand_in_modules, write_hostile_ckpt, write_training_ckpt

#: What a Lightning 1.4 training checkpoint names beyond torch's allow-list (checked below, so
#: the fixture cannot drift away from the real form without a failing test).
TRAINING_GLOBALS = {
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "model.callbacks.ImageLogger",
    "omegaconf.dictconfig.DictConfig", "omegaconf.base.ContainerMetadata",
    "argparse.Namespace", "numpy.dtype", "collections.defaultdict",
}


def _tensors():
    tensors = dossr_state_dict("small", seed=4)
    tensors.update(sd_extras())
    return tensors


def _write(form, path, tensors):
    if form == "state_dict":
        torch.save(tensors, str(path))
    elif form == "wrapped":
        torch.save({"state_dict": tensors, "global_step": 3}, str(path))
    elif form == "legacy_state_dict":
        torch.save(tensors, str(path), _use_new_zipfile_serialization=False)
    elif form == "training":
        write_training_ckpt(path, tensors)
    elif form == "legacy_training":
        write_training_ckpt(path, tensors, legacy=True)
    elif form == "safetensors":
        write_safetensors(path, tensors)


FORMS = ["state_dict", "wrapped", "legacy_state_dict", "training", "legacy_training", "safetensors"]


@pytest.fixture
def host_safe_globals():
    """What ComfyUI registers process-wide on import (real numpy classes, its own ModelCheckpoint
    placeholder), registered for one test; yields (the list before, the registered ones) and puts
    the list back afterwards, so no check depends on whether a host was imported first."""
    import numpy as np

    class ModelCheckpoint:
        pass

    registered = [np.dtype, np.dtypes.Float64DType, (ModelCheckpoint,
                  "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint")]
    before = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals(registered)
    yield before, registered
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(before)


def test_training_fixture_names_the_globals_a_real_file_names(tmp_path, host_safe_globals):
    path = tmp_path / "dossr_default.ckpt"
    write_training_ckpt(path, _tensors())
    # torch leaves process-wide safe globals out of its answer; the reader sets them aside while it
    # reads, and so does this check.
    with safe_load._without_process_safe_globals():
        named = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    assert TRAINING_GLOBALS <= named, TRAINING_GLOBALS - named
    assert any(n.endswith("multiarray.scalar") for n in named)   # numpy scalars


@pytest.mark.parametrize("form", FORMS)
def test_every_form_gives_exactly_its_tensors(tmp_path, form):
    tensors = _tensors()
    path = tmp_path / f"dossr.{form}"
    _write(form, path, tensors)
    got = read_state_dict(path)
    assert set(got) == set(tensors)
    assert all(torch.equal(got[k], v) and got[k].dtype == v.dtype for k, v in tensors.items())


def test_wanted_limits_what_is_kept(tmp_path):
    path = tmp_path / "dossr.ckpt"
    write_training_ckpt(path, _tensors())
    got = read_state_dict(path, wanted=lambda k: k.startswith("cond_encoder."))
    assert got and all(k.startswith("cond_encoder.") for k in got)


@pytest.mark.parametrize("form", ["training", "legacy_training"])
def test_converter_reads_training_checkpoints_in_a_plain_python(tmp_path, form):
    """``python -m dossr_core.convert`` with nothing of the host (or Lightning, OmegaConf) on the
    path, and the modules the file names never imported."""
    tensors = _tensors()
    src, dst = tmp_path / "dossr_default.ckpt", tmp_path / "dossr_fp16.safetensors"
    _write(form, src, tensors)
    probe = textwrap.dedent(f"""
        import sys, runpy
        sys.argv = ["convert", {str(src)!r}, {str(dst)!r}]
        try:
            runpy.run_module("dossr_core.convert", run_name="__main__")
        except SystemExit as e:
            code = e.code
        named = ("omegaconf", "pytorch_lightning", "model")
        print("IMPORTED", [m for m in sys.modules if m.split(".")[0] in named])
        sys.exit(code)
    """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=str(REPO), capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert "IMPORTED []" in out.stdout
    from safetensors.torch import load_file
    written = load_file(str(dst))
    want = {k: v for k, v in tensors.items() if k.startswith(("control_model.", "cond_encoder.", "preprocess_model."))}
    assert set(written) == set(want)
    assert all(torch.equal(written[k], v.half()) for k, v in want.items())


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_training_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, kind, legacy):
    marker = tmp_path / "payload_ran"
    src = tmp_path / "dossr_default.ckpt"
    write_hostile_ckpt(src, _tensors(), kind, marker, legacy=legacy)
    out = subprocess.run([sys.executable, "-m", "dossr_core.convert", str(src), str(tmp_path / "o.safetensors")],
                         cwd=str(REPO), capture_output=True, text=True)
    assert out.returncode == 2
    msg = out.stderr
    assert "refused" in msg and "nothing in it was run" in msg and str(src) in msg
    assert kind.split(".")[-1] in msg            # names what the file would call
    assert "download it again" in msg            # and what to do
    assert "\x1b" not in msg and "Traceback" not in msg
    assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()


def test_a_call_of_a_class_the_file_names_is_refused_not_neutralised(tmp_path):
    """Objects built from data become placeholders; calling a named class is refused."""
    path = tmp_path / "x.ckpt"
    with stand_in_modules() as classes:
        logger = classes["ImageLogger"]

        class CallsLogger:
            def __reduce__(self):
                return (logger, (1000,))

        torch.save({"state_dict": _tensors(), "callbacks": [CallsLogger()]}, str(path))
    with pytest.raises(UnsafeCheckpoint, match="would call model.callbacks.ImageLogger"):
        read_state_dict(path)


def test_stand_ins_are_gone_after_a_load(tmp_path):
    path = tmp_path / "dossr.ckpt"
    write_training_ckpt(path, _tensors())
    read_state_dict(path)
    assert "omegaconf.dictconfig.DictConfig" in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    with pytest.raises(Exception):
        torch.load(str(path), weights_only=True)


def test_without_named_stand_ins_training_checkpoints_say_which_torch_is_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_load, "_machinery", lambda: None)
    plain, training = tmp_path / "plain.ckpt", tmp_path / "training.ckpt"
    tensors = _tensors()
    torch.save({"state_dict": tensors}, str(plain))
    write_training_ckpt(training, tensors)
    assert set(read_state_dict(plain)) == set(tensors)
    with pytest.raises(CheckpointError, match=r"torch 2\.6 or newer") as err:
        read_state_dict(training)
    assert "\x1b" not in str(err.value)


def test_shapes_read_without_tensor_data(tmp_path):
    tensors = _tensors()
    for form in ("training", "safetensors"):
        path = tmp_path / f"x.{form}"
        _write(form, path, tensors)
        assert safe_load.checkpoint_shapes(path) == {k: tuple(v.shape) for k, v in tensors.items()}


def test_process_wide_safe_globals_change_nothing(tmp_path, host_safe_globals):
    """A host that registers real numpy classes and its own ModelCheckpoint process-wide
    (ComfyUI does) gets the same tensors, and keeps its registrations afterwards."""
    before, registered = host_safe_globals
    path = tmp_path / "dossr.ckpt"
    tensors = _tensors()
    write_training_ckpt(path, tensors)
    got = read_state_dict(path)
    assert set(torch.serialization.get_safe_globals()) == set(before) | set(registered)
    assert set(got) == set(tensors)


def test_safetensors_whose_header_length_starts_like_a_pickle(tmp_path):
    """A header length whose first byte is 0x80 (a pickle's first byte) is still safetensors."""
    from safetensors.torch import save_file

    for n in range(1, 400):
        path = tmp_path / "x.safetensors"
        save_file({"t" * n: torch.zeros(1)}, str(path))
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.skip("no header length starting with 0x80 found")
    assert safe_load.file_kind(str(path)) == "safetensors"
    assert set(read_state_dict(path)) == {"t" * n}
