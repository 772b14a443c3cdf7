"""What a good model file is, and what a bad one is instead.

* A DoSSR file holds every tensor of the authors' release with its shape
  (``manifests/dossr_release_tensors.json``). The SD 2.1-base parts a full
  release file also holds are checked when present
  (``manifests/sd21_base_tensors.json``); without them the file still serves
  the two-file workflow.
* SD 2.1-base (``v2-1_512-ema-pruned.safetensors``) is checked by size and sha256.

``DOSSR_FETCH_MANIFESTS`` names another folder holding the two manifests (tests
use it to check reduced-size files through the real command line).

Shapes are read from headers / a memory map: no tensor data, no code from the
file. A refusal (:class:`Refused`) says what the file is instead: an HTML page
and its title, a truncated file and where it stops, a plain SD checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from .errors import CheckpointError
from .progress import human_bytes

MANIFESTS = Path(__file__).resolve().parent / "manifests"
DOSSR_MANIFEST = "dossr_release_tensors.json"
SD21_MANIFEST = "sd21_base_tensors.json"
#: The SD 2.1-base parts of a full release file, by checkpoint prefix.
SD_PARTS = {"model.diffusion_model.": "UNet", "first_stage_model.": "VAE",
            "cond_stage_model.": "text encoder"}
DOSSR_PREFIXES = ("control_model.", "cond_encoder.", "preprocess_model.")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.I | re.S)


class Refused(Exception):
    """The file is not what was asked for; the message says what it is instead."""


def load_manifest(path) -> dict:
    """``{tensor name: shape tuple}`` from a manifest JSON (``{"tensors": {name: [dims]}}``)."""
    with open(path, encoding="utf-8") as f:
        return {k: tuple(v) for k, v in json.load(f)["tensors"].items()}


_cached_manifest = functools.lru_cache(maxsize=None)(load_manifest)


def _manifest_dir() -> Path:
    return Path(os.environ.get("DOSSR_FETCH_MANIFESTS") or MANIFESTS)


def release_manifest() -> dict:
    """Every DoSSR tensor of the authors' release files, with its shape."""
    return _cached_manifest(str(_manifest_dir() / DOSSR_MANIFEST))


def sd21_manifest() -> dict:
    """Every SD 2.1-base tensor a full release file holds, with its shape."""
    return _cached_manifest(str(_manifest_dir() / SD21_MANIFEST))


# ----------------------------------------------------------------------------- what a file is

def html_title(head: bytes) -> Optional[str]:
    """The ``<title>`` of an HTML page's first bytes, whitespace folded (None if it has none)."""
    m = _TITLE.search(head)
    if not m:
        return None
    text = html.unescape(m.group(1).decode("utf-8", "replace"))
    return " ".join(text.split())[:200] or None


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip()[:512].lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<!--")) or b"<html" in start


def sniff(path: str) -> str:
    """``html``, ``zip`` (torch.save), ``pickle`` (legacy torch.save), ``safetensors``,
    ``empty`` or ``other``, from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if _looks_like_html(head):
        return "html"
    return "other"


def _zip_is_complete(path: str, size: int) -> bool:
    """A zip ends with its directory (end-of-central-directory record); a cut file lacks it."""
    with open(path, "rb") as f:
        f.seek(max(0, size - (65536 + 22)))
        return b"PK\x05\x06" in f.read()


def _safetensors_length(path: str) -> Optional[int]:
    """The file size a safetensors header promises (None if the header is unreadable)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                return None
            header = json.loads(f.read(n))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        return 8 + n + max(ends, default=0)
    except (ValueError, KeyError, TypeError, struct.error, OSError):
        return None


def describe_unreadable(path: str) -> Optional[str]:
    """What ``path`` is when it cannot be a model file at all (None when it may be one)."""
    size = os.path.getsize(path)
    kind = sniff(path)
    if kind == "empty":
        return "an empty file (0 bytes)"
    if kind == "html":
        with open(path, "rb") as f:
            title = html_title(f.read(256 * 1024))
        return (f"an HTML page{f' titled {title!r}' if title else ' without a title'} "
                f"({human_bytes(size)}), not model weights")
    if kind == "other":
        with open(path, "rb") as f:
            head = f.read(12)
        return f"not a model file ({size:,} bytes starting with {head!r})"
    if kind == "zip" and not _zip_is_complete(path, size):
        return (f"a torch checkpoint cut off at {size:,} bytes ({human_bytes(size)}): its zip "
                f"directory, at the end of a complete file, is missing")
    if kind == "safetensors":
        want = _safetensors_length(path)
        if want is None:
            return f"a damaged safetensors file ({size:,} bytes, unreadable header)"
        if size < want:
            return f"a safetensors file truncated at {size:,} of {want:,} bytes"
    return None


# ----------------------------------------------------------------------------- tensor shapes

def _shapes(path: str) -> dict:
    """``{name: shape}`` of every tensor in ``path``, reading no tensor data, through the
    safe reader (training checkpoints included; nothing in the file runs)."""
    from .safe_load import checkpoint_shapes

    return checkpoint_shapes(path)


# ----------------------------------------------------------------------------- DoSSR files

@dataclass(frozen=True)
class DoSSRFile:
    """A verified DoSSR file: how many release tensors, and which SD 2.1-base parts it carries."""

    tensors: int
    sd_parts: tuple          # the SD_PARTS names present and verified

    @property
    def full(self) -> bool:
        return len(self.sd_parts) == len(SD_PARTS)

    def summary(self) -> str:
        if self.full:
            return (f"all {self.tensors} DoSSR tensors and the complete SD 2.1-base: serves the "
                    f"one-file and the two-file workflow")
        if not self.sd_parts:
            return (f"all {self.tensors} DoSSR tensors, no SD 2.1-base: serves the two-file "
                    f"workflow (SD 2.1-base from its own checkpoint); the one-file workflow "
                    f"needs the full release file")
        return (f"all {self.tensors} DoSSR tensors, SD 2.1-base only in part "
                f"({', '.join(self.sd_parts)}): serves the two-file workflow; the one-file "
                f"workflow needs the full release file")


def _mismatches(shapes: Mapping, manifest: Mapping, what: str) -> Optional[str]:
    missing = [k for k in manifest if k not in shapes]
    wrong = [k for k in manifest if k in shapes and tuple(shapes[k]) != tuple(manifest[k])]
    if not missing and not wrong:
        return None
    parts = []
    if missing:
        parts.append(f"lacks {len(missing)} of the {len(manifest)} {what} tensors "
                     f"(e.g. {missing[0]})")
    if wrong:
        k = wrong[0]
        parts.append(f"has {len(wrong)} {what} tensors of other shapes (e.g. {k}: "
                     f"{list(shapes[k])} in the file, {list(manifest[k])} in the release)")
    return " and ".join(parts)


def verify_dossr(path, manifest: Optional[Mapping] = None, sd_manifest: Optional[Mapping] = None,
                 shapes_of: Callable[[str], dict] = _shapes) -> DoSSRFile:
    """Check ``path`` against the release; returns what it holds, or raises :class:`Refused`."""
    path = os.fspath(path)
    manifest = release_manifest() if manifest is None else manifest
    sd_manifest = sd21_manifest() if sd_manifest is None else sd_manifest
    size = os.path.getsize(path)
    what = describe_unreadable(path)
    if what:
        raise Refused(what)
    try:
        shapes = shapes_of(path)
    except CheckpointError as err:
        raise Refused(f"a file that cannot be read as model weights ({size:,} bytes): {err}") from err
    if not any(k.startswith(DOSSR_PREFIXES) for k in shapes):
        present = [name for prefix, name in SD_PARTS.items()
                   if any(k.startswith(prefix) for k in shapes)]
        if present:
            raise Refused(f"a plain Stable Diffusion checkpoint ({human_bytes(size)}, "
                          f"{len(shapes)} tensors: {', '.join(present)}), not DoSSR weights: "
                          f"it has no control_model.* / cond_encoder.* / preprocess_model.* tensors")
        raise Refused(f"a model file without DoSSR tensors ({human_bytes(size)}, "
                      f"{len(shapes)} tensors, e.g. {next(iter(shapes), 'none')})")
    problem = _mismatches(shapes, manifest, "DoSSR")
    if problem:
        raise Refused(f"a checkpoint that is not the DoSSR release: it {problem}")
    verified = []
    for prefix, name in SD_PARTS.items():
        if not any(k.startswith(prefix) for k in shapes):
            continue
        expected = {k: v for k, v in sd_manifest.items() if k.startswith(prefix)}
        problem = _mismatches(shapes, expected, f"SD 2.1-base {name}")
        if problem:
            raise Refused(f"a DoSSR file whose SD 2.1-base {name} is not SD 2.1-base: it {problem}")
        verified.append(name)
    return DoSSRFile(tensors=len(manifest), sd_parts=tuple(verified))


# ----------------------------------------------------------------------------- SD 2.1-base

def sha256_file(path, chunk: int = 1 << 20, progress=None) -> str:
    """Hex sha256 of a whole file (``progress.update(done, total)`` while reading, if given)."""
    h = hashlib.sha256()
    total = os.path.getsize(path)
    done = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
            done += len(block)
            if progress is not None:
                progress.update(done, total)
    return h.hexdigest()


def verify_hashed(path, size: int, sha256: str, digest: Optional[str] = None) -> None:
    """``path`` must have ``size`` bytes and the given sha256 (``digest``: already computed)."""
    path = os.fspath(path)
    got = os.path.getsize(path)
    if got != size:
        what = describe_unreadable(path)
        if what and sniff(path) in ("html", "empty"):
            raise Refused(what)
        if got < size:
            raise Refused(f"a file truncated at {got:,} of {size:,} bytes")
        raise Refused(f"a file of {got:,} bytes, {got - size:,} more than the expected {size:,}")
    digest = digest or sha256_file(path)
    if digest.lower() != sha256.lower():
        raise Refused(f"a file of the right size ({size:,} bytes) with another content: "
                      f"sha256 {digest}, expected {sha256}")
