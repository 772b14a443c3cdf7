"""Tensors out of any torch or PyTorch Lightning checkpoint, with nothing in the file run.

The authors' release files are Lightning training checkpoints: besides the
``state_dict`` they pickle callbacks keyed by class objects, optimizer states,
numpy scalars and hyper-parameter objects (OmegaConf, ``AttributeDict``,
``argparse.Namespace``). torch's weights-only unpickler refuses every global it
does not know. Here each such global gets an inert stand-in registered under
its name for the duration of one load (``torch.serialization.safe_globals``):

* an object merely *built from data* (NEWOBJ + state) becomes a placeholder;
* a *call* of the name (REDUCE) is refused, the load stops and the file is
  reported; the real function is never imported, so its payload never runs;
* the only calls made are torch's own allow-list (tensor rebuilds, plain
  containers), ``collections.defaultdict`` (read as a plain dict) and inert
  numpy scalar/dtype constructors.

Nothing named in the file is imported. Needs torch >= 2.6 (stand-ins registered
under a name); older torch falls back to plain ``weights_only=True``, which reads
plain state dicts but refuses training checkpoints with a message saying so.
"""

from __future__ import annotations

import _compat_pickle
import collections
import contextlib
import os
import pickle
import re
import threading

import torch

from .errors import CheckpointError

NUMPY_CONSTRUCTORS = re.compile(
    r"^numpy\.(_?core\.multiarray\.scalar|dtype|dtypes\.\w+DType)$")
STATE_DICT_KEYS = ("state_dict",)       # where Lightning keeps the tensors
_LOAD_LOCK = threading.Lock()           # the stand-ins are process-wide while registered
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class UnsafeCheckpoint(CheckpointError):
    """The file's pickle would call something that is not a harmless constructor."""


class _RefusedCall(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _RefuseCalls(type):
    """Metaclass of the stand-ins: calling one (pickle REDUCE) is refused, never run."""

    def __call__(cls, *args, **kwargs):
        raise _RefusedCall(cls.stand_in_for)


def _placeholder(cls, *args, **kwargs):
    """What NEWOBJ makes of a stand-in: an empty OrderedDict, the one type torch's unpickler
    lets both a later BUILD (attribute state) and SETITEMS (dict subclasses) fill with data."""
    inert = collections.OrderedDict()
    inert.__dict__["stand_in_for"] = cls.stand_in_for
    return inert


def _stand_in(name: str) -> type:
    """An inert class named like ``name``: usable as a value or dict key, built from data
    into a placeholder, refused when called."""
    return _RefuseCalls(name.rpartition(".")[2], (), {
        "stand_in_for": name, "__new__": _placeholder, "__module__": "dossr_core.safe_load"})


class _InertValue:
    """A numpy scalar or dtype read as a placeholder: accepts its constructor's arguments and
    its state, computes nothing (only tensors are kept)."""

    stand_in_for = "numpy"

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _as_plain_dict(*args, **kwargs) -> dict:
    """``collections.defaultdict(factory)`` read as a plain dict (OmegaConf pickles these):
    the factory is never called, and torch fills only exact dicts with items."""
    return {}


def _harmless(name: str):
    if name == "collections.defaultdict":
        return _as_plain_dict
    return type(name.rpartition(".")[2], (_InertValue,), {"stand_in_for": name})


def _is_harmless(name: str) -> bool:
    return name == "collections.defaultdict" or NUMPY_CONSTRUCTORS.match(name) is not None


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


# ----------------------------------------------------------------------------- what a file names

def file_kind(path: str) -> str:
    """``zip`` (torch.save), ``pickle`` (legacy torch.save) or ``safetensors``, from the bytes."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the download or copy did not finish; "
                              f"fetch the file again")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        return "safetensors"   # before the pickle test: a header length can start with 0x80
    if head[:1] == b"\x80":
        return "pickle"
    raise CheckpointError(f"{path} is not a model file (neither a torch checkpoint nor "
                          f"safetensors; it starts with {head[:12]!r}). Was a web page or "
                          f"text file saved instead of the weights?")


def _machinery():
    """torch's pieces this reader builds on, or None where this torch lacks one."""
    from torch import _weights_only_unpickler as wo

    ser = torch.serialization
    if not all(hasattr(ser, n) for n in ("get_unsafe_globals_in_checkpoint", "safe_globals")):
        return None
    if not all(hasattr(wo, n) for n in ("get_globals_in_pkl", "_get_user_allowed_globals",
                                        "_get_allowed_globals", "load")):
        return None
    probe = ("dossr_core.safe_load.probe", _InertValue)
    with ser.safe_globals([(probe[1], probe[0])]):
        try:
            named = probe[0] in wo._get_user_allowed_globals()
        except Exception:  # torch 2.5 reads each entry as a function, not a (value, name) pair
            named = False
    return wo if named else None


def unsafe_globals(path: str, kind: str, wo) -> list[str]:
    """The globals the pickle names beyond torch's allow-list, by static disassembly."""
    if kind == "zip":
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    with open(path, "rb") as f:   # legacy: magic number, protocol, sys info, then the object
        for _ in range(3):
            wo.load(f)
        named = wo.get_globals_in_pkl(f)
    safe = set(wo._get_allowed_globals()) | set(wo._get_user_allowed_globals())
    return sorted(set(named) - safe)


def _blocked(names, wo) -> list[str]:
    """Names whose module torch's unpickler blocks outright (os, posix, nt, sys)."""
    modules = set(getattr(wo, "_blocklisted_modules", ("os", "posix", "nt", "sys")))
    return [n for n in names if n.split(".")[0] in modules]


def _shown(name: str) -> str:
    """A pickled name as Python 3 spells it: protocol 2 writes ``commands.call`` for
    ``subprocess.call`` and ``posix.system`` for ``os.system``."""
    module, _, attr = name.rpartition(".")
    py3 = {"posix": "os", "nt": "os"}.get(module) or _compat_pickle.IMPORT_MAPPING.get(module, module)
    return name if py3 == module else f"{py3}.{attr} (written as {name})"


def _refusal(path: str, name: str) -> UnsafeCheckpoint:
    return UnsafeCheckpoint(
        f"{path} was refused, and nothing in it was run: loading it would call {_shown(name)}, "
        f"which is not one of the harmless constructors a weights file needs (tensor rebuilds, "
        f"plain containers, numpy scalars and dtypes). A genuine DoSSR or Stable Diffusion file never does "
        f"this. Delete the file and download it again from a source you trust (for DoSSR, the "
        f"authors' Google Drive folder).")


# ----------------------------------------------------------------------------- loading

@contextlib.contextmanager
def _without_process_safe_globals():
    """The process's own ``add_safe_globals`` entries set aside while one file is read.

    A host registers some real classes process-wide (ComfyUI: numpy's scalar and a few
    dtypes, a ModelCheckpoint class); mixed with our stand-ins they would make a load
    depend on which host runs it, and fail half-way on the dtypes it did not register."""
    ser = torch.serialization
    saved = ser.get_safe_globals()
    ser.clear_safe_globals()
    try:
        yield
    finally:
        ser.clear_safe_globals()
        ser.add_safe_globals(saved)


def _load(path: str, kind: str, mmap: bool):
    wo = _machinery()
    if wo is None:
        return _load_plain(path, kind, mmap)
    with _LOAD_LOCK, _without_process_safe_globals():
        names = unsafe_globals(path, kind, wo)
        blocked = _blocked(names, wo)
        if blocked:
            raise _refusal(path, blocked[0])
        stand_ins = [(_harmless(n) if _is_harmless(n) else _stand_in(n), n) for n in names]
        try:
            with torch.serialization.safe_globals(stand_ins):
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except _RefusedCall as call:
            raise _refusal(path, call.name) from None
        except pickle.UnpicklingError as err:
            raise CheckpointError(
                f"{path} was refused, and nothing in it was run: its pickle does something a "
                f"weights file does not need ({_plain(str(err)).splitlines()[0][:200]}). Use a "
                f"genuine copy of the file, or a .safetensors conversion of it.") from None


def _load_plain(path: str, kind: str, mmap: bool):
    """torch without named stand-ins: plain weights-only reading (state dicts load)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds Python objects besides tensors (a training checkpoint); reading those "
            f"safely needs torch 2.6 or newer, and this Python has torch {torch.__version__}. "
            f"Update torch, or convert the file with `python -m dossr_core.convert` on a machine "
            f"with torch 2.6+ ({_plain(str(err)).splitlines()[0][:160]}).") from None


def _unreadable(path: str, err: Exception) -> CheckpointError:
    return CheckpointError(f"{path} cannot be read ({type(err).__name__}: {_plain(str(err))[:300]}). "
                           f"The file is probably truncated or corrupt: download or convert it again")


def _tensors_of(path: str, data) -> dict:
    if isinstance(data, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a dictionary of tensors")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def read_state_dict(path, *, wanted=None) -> dict:
    """``{name: tensor}`` of ``path`` (any torch.save / Lightning form, or safetensors).

    Zip checkpoints are memory-mapped copy-on-write: the tensors are views whose pages
    are read when first used. ``wanted(name)`` limits which tensors are kept.
    """
    path = os.fspath(path)
    kind = file_kind(path)
    if kind == "safetensors":
        return _read_safetensors(path, wanted)
    try:
        data = _load(path, kind, mmap=(kind == "zip"))
    except CheckpointError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise _unreadable(path, err) from err
    tensors = _tensors_of(path, data)
    del data
    return {k: v for k, v in tensors.items() if wanted is None or wanted(k)}


def _read_safetensors(path: str, wanted):
    from safetensors import safe_open
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys() if wanted is None or wanted(k)}
    except Exception as err:  # safetensors raises its own error types for bad headers/data
        raise _unreadable(path, err) from err


def checkpoint_shapes(path) -> dict:
    """``{name: shape}`` of every tensor in ``path``; reads no tensor data (mmap / header)."""
    path = os.fspath(path)
    if file_kind(path) == "safetensors":
        from safetensors import safe_open
        try:
            with safe_open(path, framework="pt", device="cpu") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as err:
            raise _unreadable(path, err) from err
    return {k: tuple(v.shape) for k, v in read_state_dict(path).items()}
