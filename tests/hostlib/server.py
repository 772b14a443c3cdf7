"""Start a real ComfyUI server for the host tests and talk to it over HTTP.

Everything here uses only the standard library, so it can run in the pytest process
without importing any of the host's modules (ComfyUI's top-level ``nodes``/``tests`` would
clash with this repository's packages). The server is always a separate process listening
on 127.0.0.1; the extension is linked into its ``custom_nodes`` folder.

Main pieces:

* :func:`comfy_tree_problem` - is a directory a ComfyUI tree?
* :func:`prepare_base_dir` - a ``--base-directory`` with ``custom_nodes`` links, model links
  and a few small input PNGs.
* :class:`ComfyServer` - ``ComfyServer.start(comfy_path, base_dir)`` runs ``main.py`` and waits
  until ``GET /system_stats`` answers; ``stop()`` ends it. It is also a :class:`ComfyClient`.
* :class:`ComfyClient` - ``object_info``, ``queue_prompt``, ``wait``, ``run``, ``upload_image``,
  ``interrupt``, ``free``, ``output_images``, ``server_rss_bytes``, ``log_text``, ...
* :func:`core_txt2img_prompt`, :func:`load_api_workflow`, :func:`patch` - API-format prompts.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST_STUBS = REPO / "tests" / "host_stubs"
PROBE_PACK_DIR = REPO / "tests" / "host" / "probe_nodes"

EXTENSION_NODE_DIR = "comfyui-dossr"      # <base>/custom_nodes/<this> -> the repo root
PROBE_NODE_DIR = "dossr_test_probes"      # <base>/custom_nodes/<this> -> PROBE_PACK_DIR

#: The small PNGs every prepared base directory gets in ``input/``: name -> (width, height).
INPUT_IMAGES = {
    "dossr_test_64.png": (64, 64),
    "dossr_test_32x24.png": (32, 24),
    "dossr_test_16.png": (16, 16),
}

DEFAULT_READY_TIMEOUT = 120.0


# ----------------------------------------------------------------------------- host tree

def comfy_tree_problem(path, label: str = "COMFYUI_PATH") -> str | None:
    """None if *path* looks like a ComfyUI checkout, else a sentence saying what is missing."""
    if not path:
        return f"{label} is not set"
    p = Path(path)
    if not p.is_dir():
        return f"{label}={path} is not a directory"
    missing = [n for n in ("main.py", "nodes.py", "folder_paths.py", "execution.py", "comfy")
               if not (p / n).exists()]
    if missing:
        return f"{label}={path} is not a ComfyUI tree (missing {', '.join(missing)})"
    return None


def host_version(path) -> str:
    """The host's version from its ``comfyui_version.py`` (read, never imported), or "unknown"."""
    try:
        text = (Path(path) / "comfyui_version.py").read_text()
    except OSError:
        return "unknown"
    m = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
    return m.group(1) if m else "unknown"


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """*text* without terminal colour codes (newer hosts colour their log lines)."""
    return ANSI_ESCAPE.sub("", text)


def _same_path(a, b) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def _clean_pythonpath(value: str | None) -> list[str]:
    """PYTHONPATH entries minus the repo root (its ``nodes``/``tests`` would shadow the host's)."""
    return [p for p in (value or "").split(os.pathsep)
            if p and not _same_path(p, REPO) and not _same_path(p, HOST_STUBS)
            and Path(p).parent.name != "dossr-host-stubs"]


#: Packages the hosts import at start-up that may not load here; each has an import-only
#: stand-in in tests/host_stubs, used only where the real package cannot be imported.
STUBBED_PACKAGES = ("torchvision", "torchaudio")


@functools.lru_cache(maxsize=None)
def importable(package: str, python: str = sys.executable) -> bool:
    """Whether ``import <package>`` works in *python* (without any stand-in on the path).

    ``DOSSR_<PACKAGE>_STUB=1`` / ``0`` forces the answer (1 = use the stand-in = not importable).
    """
    forced = os.environ.get(f"DOSSR_{package.upper()}_STUB")
    if forced in ("0", "1"):
        return forced == "0"
    env = dict(os.environ)
    parts = _clean_pythonpath(env.get("PYTHONPATH"))
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(parts)
    else:
        env.pop("PYTHONPATH", None)
    r = subprocess.run([python, "-c", f"import {package}"], env=env, cwd="/",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    return r.returncode == 0


def stubs_needed(python: str = sys.executable) -> tuple[str, ...]:
    """The stubbed packages that *python* cannot import."""
    return tuple(p for p in STUBBED_PACKAGES if not importable(p, python))


def stub_path(packages) -> Path:
    """A folder holding only the stand-ins of *packages* (links into tests/host_stubs), to
    put on PYTHONPATH: a stand-in never shadows a real package that works."""
    folder = Path(tempfile.gettempdir()) / "dossr-host-stubs" / "-".join(sorted(packages))
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*packages, "_dossr_stub.py"):
        target = HOST_STUBS / name
        entry = folder / name
        if not (entry.is_symlink() and _same_path(entry, target)):
            if entry.is_symlink() or entry.exists():
                entry.unlink()
            entry.symlink_to(target)
    return folder


def server_env(python: str = sys.executable) -> dict:
    """Environment for the server: PYTHONPATH without the repo root, plus the stand-ins
    (tests/host_stubs) of the start-up packages that *python* cannot import."""
    env = dict(os.environ)
    parts = _clean_pythonpath(env.get("PYTHONPATH"))
    needed = stubs_needed(python)
    if needed:
        parts.insert(0, str(stub_path(needed)))
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(parts)
    else:
        env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- base dir

def write_png(path, width: int, height: int, seed: int = 0) -> Path:
    """An 8-bit RGB PNG with a smooth deterministic pattern (standard library only)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type None
        for x in range(width):
            rows += bytes(((x * 255) // max(width - 1, 1),
                           (y * 255) // max(height - 1, 1),
                           ((x + y) * 37 + seed * 101) % 256))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
           + chunk(b"IEND", b""))
    path = Path(path)
    path.write_bytes(png)
    return path


def png_size(path) -> tuple[int, int]:
    """(width, height) read from a PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


def link(target, link_path) -> Path:
    """Symlink *link_path* -> *target* (replacing an existing link)."""
    link_path = Path(link_path)
    link_path.parent.mkdir(parents=True, exist_ok=True)
    if link_path.is_symlink() or link_path.exists():
        link_path.unlink()
    link_path.symlink_to(Path(target).resolve())
    return link_path


def prepare_base_dir(base, *, models: dict | None = None, custom_nodes: dict | None = None,
                     input_images: dict | None = None) -> Path:
    """Lay out a ComfyUI ``--base-directory``.

    *models*: ``{folder: {file_name: source_path}}`` -> ``models/<folder>/<file_name>`` symlinks.
    *custom_nodes*: ``{dir_name: source_dir}``; default links the repo as ``comfyui-dossr``
    and the probe pack as ``dossr_test_probes``.
    *input_images*: ``{name: (w, h)}``; default :data:`INPUT_IMAGES`.
    """
    base = Path(base)
    for sub in ("custom_nodes", "models", "input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    if custom_nodes is None:
        custom_nodes = {EXTENSION_NODE_DIR: REPO, PROBE_NODE_DIR: PROBE_PACK_DIR}
    for name, src in custom_nodes.items():
        link(src, base / "custom_nodes" / name)
    for folder, files in (models or {}).items():
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
        for name, src in files.items():
            link(src, base / "models" / folder / name)
    for i, (name, (w, h)) in enumerate((INPUT_IMAGES if input_images is None else input_images).items()):
        write_png(base / "input" / name, w, h, seed=i)
    return base


# ----------------------------------------------------------------------------- errors

class ComfyError(Exception):
    """Base class of the errors raised by the client."""


class ServerUnavailable(ComfyError):
    """The server does not answer (not started, died, or refused the connection)."""


class PromptRejected(ComfyError):
    """``POST /prompt`` answered 400: ``error`` and ``node_errors`` as the server sent them."""

    def __init__(self, error, node_errors):
        self.error = error or {}
        self.node_errors = node_errors or {}
        super().__init__(self._describe())

    def _describe(self) -> str:
        err = self.error if isinstance(self.error, dict) else {"message": str(self.error)}
        lines = [f"prompt rejected: {err.get('message', '')} {err.get('details', '')}".rstrip()]
        for node_id, ne in self.node_errors.items():
            for e in ne.get("errors", []):
                lines.append(f"  node {node_id} ({ne.get('class_type', '?')}): "
                             f"{e.get('message', '')}: {e.get('details', '')}")
        return "\n".join(lines)

    def messages(self) -> list[str]:
        """Every node error as 'id class: message: details'."""
        return self._describe().splitlines()[1:]


class ExecutionFailed(ComfyError):
    """The prompt ran and ended with ``execution_error`` or ``execution_interrupted``."""

    def __init__(self, message: str, history: dict):
        self.history = history
        super().__init__(message)


# ----------------------------------------------------------------------------- client

def multipart_body(fields: dict, files: dict) -> tuple[bytes, str]:
    """(body, content_type) of a multipart/form-data request.

    *fields*: name -> str; *files*: name -> (filename, bytes, mime type).
    """
    boundary = "----dossr" + uuid.uuid4().hex
    out = bytearray()
    for name, value in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode("utf-8")
    for name, (filename, data, mime) in files.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n").encode("utf-8")
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode("utf-8")
    return bytes(out), f"multipart/form-data; boundary={boundary}"


class ComfyClient:
    """HTTP client for one ComfyUI server (standard library only).

    *base_dir* is the server's ``--base-directory`` (for :meth:`output_images`); *pid* and
    *log_path* enable :meth:`server_rss_bytes` and :meth:`log_text`.
    """

    def __init__(self, url: str, base_dir=None, pid: int | None = None, log_path=None):
        self.url = url.rstrip("/")
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.pid = pid
        self.log_path = Path(log_path) if log_path is not None else None
        self.client_id = uuid.uuid4().hex

    def __repr__(self):
        return f"<{type(self).__name__} {self.url} pid={self.pid} base={self.base_dir}>"

    # -- raw HTTP
    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 60.0) -> tuple[int, bytes]:
        """(status, body bytes); HTTP error statuses are returned, not raised."""
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, ConnectionError, socket.timeout) as e:
            raise ServerUnavailable(f"{method} {self.url}{path} failed: {e}{self._log_hint()}") from e

    def get_json(self, path: str, timeout: float = 60.0):
        status, data = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise ComfyError(f"GET {path} -> HTTP {status}: {data[:500]!r}")
        return json.loads(data)

    def post_json(self, path: str, payload, timeout: float = 60.0) -> tuple[int, bytes]:
        return self.request("POST", path, json.dumps(payload).encode("utf-8"),
                            {"Content-Type": "application/json"}, timeout=timeout)

    # -- endpoints
    def system_stats(self) -> dict:
        return self.get_json("/system_stats")

    def object_info(self, node_class: str | None = None) -> dict:
        """``GET /object_info`` (every node) or ``/object_info/<class>`` ({} if unknown)."""
        if node_class is None:
            return self.get_json("/object_info")
        return self.get_json("/object_info/" + urllib.parse.quote(node_class, safe=""))

    def queue(self) -> dict:
        return self.get_json("/queue")

    def queue_prompt(self, prompt: dict, client_id: str | None = None) -> str:
        """``POST /prompt``; the prompt id, or :class:`PromptRejected` on a 400 answer."""
        status, data = self.post_json("/prompt", {"prompt": prompt,
                                                  "client_id": client_id or self.client_id})
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if status == 400 and isinstance(answer, dict):
            raise PromptRejected(answer.get("error"), answer.get("node_errors"))
        if status != 200 or not isinstance(answer, dict) or "prompt_id" not in answer:
            raise ComfyError(f"POST /prompt -> HTTP {status}: {data[:1000]!r}")
        return answer["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        """The history entry of *prompt_id*, or None while it has not finished."""
        return self.get_json("/history/" + urllib.parse.quote(prompt_id, safe="")).get(prompt_id)

    def clear_history(self) -> None:
        self.post_json("/history", {"clear": True})

    def wait(self, prompt_id: str, timeout: float = 300.0, poll: float = 0.1) -> dict:
        """Poll ``GET /history/<id>`` until the prompt has finished (success, error or
        interruption) and return its history entry. On timeout the prompt is interrupted and
        TimeoutError raised (with the log tail)."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id)
            if entry is not None:
                return entry
            if not self.alive():
                raise ServerUnavailable(f"the server died while running {prompt_id}{self._log_hint()}")
            if time.monotonic() > deadline:
                try:
                    self.post_json("/queue", {"delete": [prompt_id]})
                    self.interrupt(prompt_id)
                except ComfyError:
                    pass
                raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s"
                                   f"{self._log_hint()}")
            time.sleep(poll)

    def run(self, prompt: dict, timeout: float = 300.0, check: bool = True) -> dict:
        """Queue *prompt*, wait for it and return the history entry.

        With *check* (default) an ``execution_error``/``execution_interrupted`` raises
        :class:`ExecutionFailed`; pass ``check=False`` to inspect failures yourself.
        """
        entry = self.wait(self.queue_prompt(prompt), timeout=timeout)
        if check and self.status_str(entry) != "success":
            err = self.execution_error(entry)
            if err is not None:
                msg = (f"node {err.get('node_id')} ({err.get('node_type')}) raised "
                       f"{err.get('exception_type')}: {err.get('exception_message')}\n"
                       + "".join(err.get("traceback") or []))
            elif self.execution_interrupted(entry) is not None:
                msg = f"interrupted: {self.execution_interrupted(entry)}"
            else:
                msg = f"status {entry.get('status')}"
            raise ExecutionFailed(msg + self._log_hint(), entry)
        return entry

    def upload_image(self, path, name: str | None = None, subfolder: str = "",
                     overwrite: bool = True, type: str = "input") -> str:
        """``POST /upload/image``; the name to give a LoadImage node (``subfolder/name``)."""
        path = Path(path)
        fields = {"type": type, "subfolder": subfolder, "overwrite": "true" if overwrite else "false"}
        body, ctype = multipart_body(fields, {"image": (name or path.name, path.read_bytes(), "image/png")})
        status, data = self.request("POST", "/upload/image", body, {"Content-Type": ctype})
        if status != 200:
            raise ComfyError(f"POST /upload/image -> HTTP {status}: {data[:500]!r}")
        answer = json.loads(data)
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        q = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type})
        status, data = self.request("GET", "/view?" + q)
        if status != 200:
            raise ComfyError(f"GET /view {filename} -> HTTP {status}")
        return data

    def interrupt(self, prompt_id: str | None = None) -> None:
        self.post_json("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        """``POST /free``: the flags are acted on by the worker when it is next idle."""
        self.post_json("/free", {"unload_models": unload_models, "free_memory": free_memory})

    # -- history helpers
    @staticmethod
    def status_str(entry: dict) -> str | None:
        return (entry.get("status") or {}).get("status_str")

    @staticmethod
    def messages(entry: dict) -> list:
        """[(event, data), ...] recorded for the prompt (execution_start, ..._cached, ...)."""
        return [tuple(m) for m in (entry.get("status") or {}).get("messages", [])]

    @classmethod
    def message(cls, entry: dict, event: str) -> dict | None:
        for ev, data in cls.messages(entry):
            if ev == event:
                return data
        return None

    @classmethod
    def execution_error(cls, entry: dict) -> dict | None:
        """The ``execution_error`` data (node_id, node_type, exception_type,
        exception_message, traceback, ...) or None."""
        return cls.message(entry, "execution_error")

    @classmethod
    def execution_interrupted(cls, entry: dict) -> dict | None:
        """The ``execution_interrupted`` data (node_id, node_type, executed) or None."""
        return cls.message(entry, "execution_interrupted")

    def output_images(self, entry: dict) -> list[Path]:
        """Paths under ``<base>/output`` of every image the prompt's output nodes saved."""
        if self.base_dir is None:
            raise ComfyError("output_images needs the server's base_dir")
        paths = []
        for node_output in (entry.get("outputs") or {}).values():
            for img in node_output.get("images", []) or []:
                if img.get("type", "output") == "output":
                    paths.append(self.base_dir / "output" / img.get("subfolder", "") / img["filename"])
        return paths

    # -- process
    def alive(self) -> bool:
        if self.pid is None:
            return True
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("State:"):
                        return "Z" not in line.split()[1]
        except OSError:
            return False
        return True

    def _proc_status_kb(self, field: str) -> int:
        if self.pid is None:
            raise ComfyError("no server pid known")
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise ComfyError(f"no {field} in /proc/{self.pid}/status")

    def server_rss_bytes(self) -> int:
        """Resident memory of the server process now (VmRSS)."""
        return self._proc_status_kb("VmRSS") * 1024

    def server_peak_rss_bytes(self) -> int:
        """Peak resident memory of the server process so far (VmHWM)."""
        return self._proc_status_kb("VmHWM") * 1024

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _log_hint(self) -> str:
        tail = self.log_tail()
        return f"\n--- server log ({self.log_path}) tail ---\n{tail}" if tail else ""


# ----------------------------------------------------------------------------- server

def _die_with_parent():  # runs in the child between fork and exec
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def server_command(port: int, base_dir, extra_args=(), python: str | None = None) -> list[str]:
    return [python or sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1",
            "--port", str(port), "--disable-auto-launch", "--preview-method", "none",
            "--disable-api-nodes", "--base-directory", str(base_dir),
            "--database-url", "sqlite:///:memory:", *map(str, extra_args)]


class ComfyServer(ComfyClient):
    """A ComfyUI server subprocess (``ComfyServer.start``) that is also its own client."""

    def __init__(self, url, base_dir, proc: subprocess.Popen, log_path, comfy_path, command):
        super().__init__(url, base_dir, pid=proc.pid, log_path=log_path)
        self.proc = proc
        self.comfy_path = Path(comfy_path)
        self.command = command
        self.port = int(url.rsplit(":", 1)[1])
        self.ready_seconds: float | None = None

    @classmethod
    def start(cls, comfy_path, base_dir, *, port: int | None = None, extra_args=(),
              python: str | None = None, ready_timeout: float = DEFAULT_READY_TIMEOUT,
              attempts: int = 3) -> "ComfyServer":
        """Run ``main.py`` (cwd = *comfy_path*) on 127.0.0.1 with *base_dir* and wait until it
        answers. Output goes to ``<base_dir>/server-<port>.log``. Retries on a port clash."""
        base_dir = Path(base_dir)
        (base_dir / "custom_nodes").mkdir(parents=True, exist_ok=True)  # main.py needs it
        python = python or sys.executable
        env = server_env(python)
        last = None
        for _ in range(attempts if port is None else 1):
            p = port or free_port()
            cmd = server_command(p, base_dir, extra_args, python)
            log_path = base_dir / f"server-{p}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(cmd, cwd=str(comfy_path), env=env, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, preexec_fn=_die_with_parent)
            server = cls(f"http://127.0.0.1:{p}", base_dir, proc, log_path, comfy_path, cmd)
            try:
                server.wait_ready(ready_timeout)
                return server
            except ServerUnavailable as e:
                server.stop()
                last = e
                text = server.log_text()
                if "address already in use" not in text.lower() and "errno 98" not in text.lower():
                    raise
        raise last

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> float:
        """Poll ``GET /system_stats`` until it answers 200; seconds waited."""
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise ServerUnavailable(f"ComfyUI exited with code {self.proc.returncode} during "
                                        f"start-up ({' '.join(self.command)}){self._log_hint()}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=5) as r:
                    if r.status == 200:
                        self.ready_seconds = time.monotonic() - t0
                        return self.ready_seconds
            except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
                pass
            if time.monotonic() - t0 > timeout:
                self.stop()
                raise ServerUnavailable(f"ComfyUI did not answer GET /system_stats within "
                                        f"{timeout:.0f} s{self._log_hint()}")
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after *timeout* s; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def add_model(self, folder: str, name: str, source) -> Path:
        """Link *source* as ``models/<folder>/<name>`` of the running server (the host's
        file lists are re-read when a folder's mtime changes)."""
        return link(source, self.base_dir / "models" / folder / name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ----------------------------------------------------------------------------- prompts

def core_txt2img_prompt(ckpt_name: str, *, width: int = 64, height: int = 64, batch_size: int = 1,
                        steps: int = 3, cfg: float = 1.0, sampler_name: str = "euler",
                        scheduler: str = "normal", seed: int = 0, denoise: float = 1.0,
                        filename_prefix: str = "dossr_test", count_log: str | None = None,
                        positive: str = "a photo of a cat", negative: str = "") -> dict:
    """Core-only API prompt: CheckpointLoaderSimple -> CLIPTextEncode x2 -> EmptyLatentImage ->
    [DoSSRTestCountUNet if *count_log*] -> KSampler -> VAEDecode -> SaveImage."""
    model = ["1", 0]
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["1", 1]},
              "_meta": {"title": "Positive"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["1", 1]},
              "_meta": {"title": "Negative"}},
        "4": {"class_type": "EmptyLatentImage",
              "inputs": {"width": width, "height": height, "batch_size": batch_size}},
    }
    if count_log is not None:
        prompt["8"] = {"class_type": "DoSSRTestCountUNet",
                       "inputs": {"model": ["1", 0], "log_path": str(count_log)}}
        model = ["8", 0]
    prompt["5"] = {"class_type": "KSampler", "inputs": {
        "model": model, "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
        "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler_name,
        "scheduler": scheduler, "denoise": denoise}}
    prompt["6"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}}
    prompt["7"] = {"class_type": "SaveImage",
                   "inputs": {"images": ["6", 0], "filename_prefix": filename_prefix}}
    return prompt


def read_unet_calls(path) -> list[dict]:
    """The JSON lines DoSSRTestCountUNet appended to *path* (one per UNet forward)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_api_workflow(path) -> dict:
    """An API-format workflow ({node_id: {class_type, inputs}}) from *path*; a name without a
    directory is looked up in the repo's ``workflows/``. UI-format files are refused."""
    path = Path(path)
    if not path.exists() and path.parent == Path("."):
        path = REPO / "workflows" / path
    with open(path) as f:
        prompt = json.load(f)
    if not isinstance(prompt, dict) or "nodes" in prompt or not all(
            isinstance(v, dict) and "class_type" in v for v in prompt.values()):
        raise ValueError(f"{path} is not an API-format workflow (export it with 'Save (API)')")
    return prompt


def find_nodes(prompt: dict, key: str) -> list[str]:
    """Ids of the nodes whose class_type or ``_meta.title`` equals *key*."""
    return [nid for nid, node in prompt.items()
            if node.get("class_type") == key or (node.get("_meta") or {}).get("title") == key]


def two_files(prompt: dict, sd: str, dossr: str) -> dict:
    """*prompt* (in place) with each DoSSRCheckpointLoader split into the two-file pair: a
    CheckpointLoaderSimple reading *sd* under the same id (MODEL, CLIP, VAE keep their slots)
    and a DoSSRModelLoader ``<id>_dossr`` reading *dossr* (DOSSR_MODEL, UPSCALE_MODEL)."""
    for nid in find_nodes(prompt, "DoSSRCheckpointLoader"):
        dtype = prompt[nid]["inputs"].get("dtype", "auto")
        prompt[nid] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": sd}}
        prompt[f"{nid}_dossr"] = {"class_type": "DoSSRModelLoader",
                                  "inputs": {"model_name": dossr, "dtype": dtype}}
        for node in prompt.values():
            for name, value in node["inputs"].items():
                if is_link(value) and value[0] == nid and value[1] >= 3:
                    node["inputs"][name] = [f"{nid}_dossr", value[1] - 3]
    return prompt


def use_models(prompt: dict, *, release: str, sd: str, dossr: str) -> dict:
    """Point every model loader of *prompt* at test files: *release* for DoSSRCheckpointLoader,
    *sd* / *dossr* for the two-file pair (in place)."""
    for class_type, key, value in (("DoSSRCheckpointLoader", "ckpt_name", release),
                                   ("CheckpointLoaderSimple", "ckpt_name", sd),
                                   ("DoSSRModelLoader", "model_name", dossr)):
        for nid in find_nodes(prompt, class_type):
            prompt[nid]["inputs"][key] = value
    return prompt


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def patch(prompt: dict, key: str, **inputs) -> list[str]:
    """Set *inputs* on every node whose class_type or ``_meta.title`` is *key* (in place);
    KeyError if none matches. Returns the patched node ids."""
    ids = find_nodes(prompt, key)
    if not ids:
        classes = sorted({n.get("class_type") for n in prompt.values()})
        raise KeyError(f"no node with class_type or title {key!r} (classes: {', '.join(classes)})")
    for nid in ids:
        prompt[nid].setdefault("inputs", {}).update(copy.deepcopy(inputs))
    return ids
