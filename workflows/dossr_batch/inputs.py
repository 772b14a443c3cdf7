"""Input discovery and output naming for batch runs.

Inputs are files, folders (optionally recursive) and glob patterns. Each image keeps its path
relative to what named it (the folder, or the fixed part of the pattern), and its result goes
to the same relative path under the output folder with a suffix and ``.png``. An output that
exists counts as done: results are written under a temporary name and renamed, so a file with
the final name is always complete.
"""

from __future__ import annotations

import glob
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Extensions picked up from folders and patterns: what the host's LoadImage (Pillow) reads.
IMAGE_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff",
    ".tga", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".avif", ".heic", ".heif", ".jp2", ".qoi"})

PART_PREFIX = "."
PART_SUFFIX = ".part"


class InputError(Exception):
    """An input or output name problem, with a message for the user."""


@dataclass(frozen=True)
class Item:
    """One image to upscale: where it is, its name relative to the input it came from, and
    where its result goes."""
    source: Path
    relative: Path
    output: Path


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def has_magic(text: str) -> bool:
    return glob.has_magic(text)


def _glob_root(pattern: str) -> Path:
    """The part of *pattern* before its first wildcard component."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _folder_files(folder: Path, recursive: bool):
    walker = folder.rglob("*") if recursive else folder.glob("*")
    for path in sorted(walker):
        if path.is_file() and is_image(path) and not path.name.startswith("."):
            yield path, path.relative_to(folder)


def discover(specs, recursive: bool = False) -> list[tuple[Path, Path]]:
    """(source, relative) for every image named by *specs*, in a stable order, each file once.

    A file given by name is taken whatever its extension (the server says if it cannot read
    it); folders and patterns only yield files with an image extension."""
    found: list[tuple[Path, Path]] = []
    seen: set[str] = set()

    def add(path: Path, rel: Path):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            found.append((path, rel))

    for spec in specs:
        spec = str(spec)
        path = Path(spec)
        if path.is_dir():
            for p, rel in _folder_files(path, recursive):
                add(p, rel)
        elif path.is_file():
            add(path, Path(path.name))
        elif has_magic(spec):
            root = _glob_root(spec)
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=recursive or "**" in spec))
            files = [m for m in matches if m.is_file() and is_image(m)]
            if not files:
                raise InputError(f"no image matches the pattern {spec!r}")
            for m in files:
                add(m, m.relative_to(root))
        else:
            raise InputError(f"input not found: {spec} (give image files, folders or glob "
                             "patterns such as 'photos/*.jpg')")
    return found


def output_path(output_dir, relative: Path, suffix: str) -> Path:
    """``<output_dir>/<relative folder>/<stem><suffix>.png``."""
    relative = Path(relative)
    return Path(output_dir) / relative.parent / f"{relative.stem}{suffix}.png"


def plan(specs, output_dir, suffix: str, recursive: bool = False) -> list[Item]:
    """The batch: every input image with its output path. Two inputs that would write the
    same output (``a.jpg`` and ``a.png`` in one folder) are an error, named in the message."""
    items: list[Item] = []
    by_output: dict[Path, Path] = {}
    clashes = []
    for source, rel in discover(specs, recursive):
        out = output_path(output_dir, rel, suffix)
        if out in by_output:
            clashes.append(f"{by_output[out]} and {source} would both be saved as {out}")
            continue
        by_output[out] = source
        items.append(Item(source, rel, out))
    if clashes:
        raise InputError("; ".join(clashes) + " (rename one, or run them into different "
                         "--output-dir folders)")
    if not items:
        raise InputError("no images found in " + ", ".join(map(str, specs)))
    return items


def is_done(item: Item) -> bool:
    """Whether *item*'s result exists (results only get their final name once complete)."""
    return item.output.is_file()


def write_atomically(path: Path, data: bytes, overwrite: bool = False) -> None:
    """Write *data* to a temporary file beside *path*, then rename it to *path*; without
    *overwrite* an existing *path* is left alone and :class:`FileExistsError` raised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=PART_PREFIX + path.name + ".", suffix=PART_SUFFIX,
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # fails if path exists: never replaces a result
        except FileExistsError:
            raise
        except OSError:  # no hard links on this file system (FAT, some network shares)
            if path.exists():
                raise FileExistsError(str(path)) from None
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
