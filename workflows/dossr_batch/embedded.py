"""The "embedded default" of dossr_client.py: start the ComfyUI the client sits in when no
server runs, and stop it again when the job ends.

Standard library only (the client must run before anything else is known about the Python
it runs in). The pieces, each usable on its own:

* :func:`tree_problem`, :func:`enclosing_tree` - is a folder a ComfyUI tree; which tree holds
  this client (``<tree>/custom_nodes/<pack>/workflows/dossr_client.py``).
* :func:`choose_tree` - whether to start a server at all, and which tree.
* :func:`needs_cpu_flag`, :func:`knows_option`, :func:`server_command` - the command line.
* :class:`EmbeddedServer` and :func:`running` - start, wait until it answers, stop (the whole
  process group: SIGTERM, a grace period, SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

#: Files and folders every ComfyUI tree has at its top.
TREE_MARKERS = ("main.py", "nodes.py", "folder_paths.py", "execution.py", "comfy")
DEFAULT_START_TIMEOUT = 300.0
STOP_GRACE = 10.0
LOG_TAIL_LINES = 25
PROBE_TIMEOUT = 2.0

#: Run by sys.executable to learn whether torch sees an accelerator that ComfyUI would use
#: without --cpu (HOST.md: CUDA, MPS or XPU). The last stdout line is the answer.
TORCH_PROBE = """
import torch
def has(check):
    try:
        return bool(check())
    except Exception:
        return False
found = (has(lambda: torch.cuda.is_available())
         or has(lambda: torch.backends.mps.is_available())
         or has(lambda: torch.xpu.is_available()))
print("DOSSR_ACCELERATOR=" + ("1" if found else "0"))
"""

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class EmbeddedError(Exception):
    """A failure to start or use the embedded server, with a message meant for the user."""


# ----------------------------------------------------------------------------- deciding

def tree_problem(path) -> str | None:
    """None if *path* is a ComfyUI tree (its top-level files are there), else what is wrong."""
    p = Path(path)
    if not p.is_dir():
        return f"{path} is not a folder"
    missing = [name for name in TREE_MARKERS if not (p / name).exists()]
    if missing:
        return f"{path} is not a ComfyUI folder (it has no {', '.join(missing)})"
    return None


def enclosing_tree(client_file) -> Path | None:
    """The ComfyUI tree whose ``custom_nodes/<pack>/workflows/`` holds *client_file*, or None.

    The path as given is tried before the resolved one: ``custom_nodes/comfyui-dossr`` is
    often a symlink to a checkout elsewhere, and only the unresolved path runs through it.
    """
    candidates = [Path(os.path.abspath(client_file)), Path(os.path.realpath(client_file))]
    for path in candidates:
        parents = path.parents
        if len(parents) > 3 and parents[2].name == "custom_nodes" and tree_problem(parents[3]) is None:
            return parents[3]
    return None


def host_port(url: str) -> tuple[str, int]:
    """(host, port) of an http URL (port 80 when none is written)."""
    parts = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def answers(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether anything accepts a TCP connection at *url*'s host and port."""
    try:
        with socket.create_connection(host_port(url), timeout=timeout):
            return True
    except OSError:
        return False


def choose_tree(*, server_given: bool, comfyui, default_server: str, client_file,
                probe=answers) -> tuple[Path | None, str]:
    """(tree to start or None, why). None means: use the given or the default server.

    Nothing starts with ``--server``. ``--comfyui DIR`` always starts DIR (an explicit
    request; a server at the default address may be another install). Otherwise the tree
    around the client starts when nothing answers at *default_server*.
    """
    if server_given:
        return None, "--server given"
    if comfyui:
        problem = tree_problem(comfyui)
        if problem:
            raise EmbeddedError(f"--comfyui: {problem}; pass the ComfyUI folder, the one that "
                                "holds main.py, comfy/ and custom_nodes/")
        return Path(os.path.abspath(comfyui)), "--comfyui given"
    if probe(default_server):
        return None, f"a server answers at {default_server}"
    tree = enclosing_tree(client_file)
    if tree is None:
        return None, f"nothing answers at {default_server}, and this client is not inside a ComfyUI tree"
    return tree, f"nothing answers at {default_server}"


# ----------------------------------------------------------------------------- command line

def server_env() -> dict:
    """The server's environment: the client's, with unbuffered output so the log is current."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def needs_cpu_flag(python: str = sys.executable, env: dict | None = None,
                   timeout: float = 300.0) -> bool:
    """Whether ComfyUI must get ``--cpu``: torch in *python* sees no CUDA, MPS or XPU device
    (without --cpu such a host dies at start-up). Asked in a subprocess: the client itself
    never imports torch."""
    try:
        r = subprocess.run([python, "-c", TORCH_PROBE], env=env or server_env(), check=False,
                           cwd=tempfile.gettempdir(), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EmbeddedError(f"cannot ask {python} which devices torch sees: {e}") from None
    answer = [line for line in r.stdout.splitlines() if line.startswith("DOSSR_ACCELERATOR=")]
    if r.returncode != 0 or not answer:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise EmbeddedError(
            f"the Python running this client ({python}) cannot import torch ({last}), so it "
            "cannot run ComfyUI: run the client with the Python of your ComfyUI install, or "
            "start ComfyUI yourself and pass --server")
    return answer[-1].endswith("=0")


def knows_option(tree, option: str) -> bool:
    """Whether the tree's command line (comfy/cli_args.py) defines *option* (read, not imported)."""
    try:
        text = (Path(tree) / "comfy" / "cli_args.py").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(r"""["']""" + re.escape(option) + r"""["']""", text) is not None


def server_command(tree, port: int, *, cpu: bool, memory_db: bool,
                   python: str = sys.executable) -> list[str]:
    """``main.py`` on 127.0.0.1:*port*, no browser; ``--cpu`` and an in-memory database as
    decided by the caller. The database is in memory because a file one may be locked by the
    user's own ComfyUI on the same tree (newer hosts then exit) and this run needs none."""
    cmd = [python, str(Path(tree) / "main.py"), "--listen", "127.0.0.1", "--port", str(port),
           "--disable-auto-launch"]
    if cpu:
        cmd.append("--cpu")
    if memory_db:
        cmd += ["--database-url", "sqlite:///:memory:"]
    return cmd


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- process

def _child_setup(parent_pid: int):
    """What the child runs between fork and exec on Linux: die with the client (so a killed
    client leaves no server behind), or at once if the client is already gone."""
    def setup():
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no libc symbol table / no prctl: best effort
            pass
        if os.getppid() != parent_pid:
            os._exit(1)
    return setup


def strip_ansi(text: str) -> str:
    return ANSI_ESCAPE.sub("", text)


class EmbeddedServer:
    """One ComfyUI process started from *tree*, in its own process group, output to *log_path*."""

    def __init__(self, tree, command: list[str], log_path: Path, *, die_with_client: bool):
        self.tree = Path(tree)
        self.command = command
        self.port = int(command[command.index("--port") + 1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self.ready_seconds: float | None = None
        popen = {}
        if os.name == "posix":
            # Own session: the terminal's Ctrl-C and hang-up reach only the client, which
            # then stops the server itself (finally), instead of both dying out of order.
            popen["start_new_session"] = True
            if die_with_client and sys.platform.startswith("linux"):
                popen["preexec_fn"] = _child_setup(os.getpid())
        else:
            popen["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=str(self.tree), env=server_env(),
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, **popen)
        self.pid = self.proc.pid

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(strip_ansi(text).rstrip().splitlines()[-lines:])

    def _answers_http(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float) -> float:
        """Seconds until GET /system_stats answered; EmbeddedError (with the log's last lines)
        when the process exits first or *timeout* passes."""
        t0 = time.monotonic()
        while not self._answers_http():
            if self.proc.poll() is not None:
                raise EmbeddedError(self._failure(f"ComfyUI exited with code {self.proc.returncode} "
                                                  "while starting"))
            if time.monotonic() - t0 > timeout:
                raise EmbeddedError(self._failure(f"ComfyUI did not answer within {timeout:g} s "
                                                  "(--start-timeout)"))
            time.sleep(0.25)
        self.ready_seconds = time.monotonic() - t0
        return self.ready_seconds

    def _failure(self, what: str) -> str:
        tail = self.log_tail()
        shown = ("its last log lines:\n" + "\n".join("  | " + line for line in tail.splitlines())
                 if tail else "its log is empty")
        return (f"{what}; {shown}\n(full log: {self.log_path}; command: {' '.join(self.command)}). "
                "Fix what the log shows, or start ComfyUI yourself and pass --server URL")

    def port_clash(self) -> bool:
        text = self.log_tail(200).lower()
        return "address already in use" in text or "errno 98" in text or "10048" in text

    def _signal_group(self, sig) -> None:
        try:
            if os.name == "posix":
                os.killpg(self.pid, sig)
            elif sig == getattr(signal, "SIGKILL", None):
                self.proc.kill()
            else:
                self.proc.terminate()
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """End the server's whole process group: SIGTERM, then SIGKILL after *grace* seconds
        (or at once on a second Ctrl-C). Returns the exit code."""
        kill = getattr(signal, "SIGKILL", signal.SIGTERM)
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal_group(kill)
                self.proc.wait()
            except KeyboardInterrupt:
                self._signal_group(kill)
                self.proc.wait()
                raise
        self._signal_group(kill)  # anything the server started and left in its group
        return self.proc.returncode


def new_log_path() -> Path:
    """A fresh log file in the temp folder: always writable (the tree may not be), kept after
    the run for reading, and never among the results in the output folder."""
    fd, path = tempfile.mkstemp(prefix="dossr-comfyui-", suffix=".log")
    os.close(fd)
    return Path(path)


def start(tree, *, start_timeout: float = DEFAULT_START_TIMEOUT, die_with_client: bool = True,
          log=print, why: str = "", attempts: int = 3) -> EmbeddedServer:
    """Start *tree*'s ComfyUI on a free loopback port and wait until it answers (retrying
    with another port when one was taken meanwhile)."""
    cpu = needs_cpu_flag()
    memory_db = knows_option(tree, "--database-url")
    log_path = new_log_path()
    for attempt in range(attempts):
        command = server_command(tree, free_port(), cpu=cpu, memory_db=memory_db)
        server = EmbeddedServer(tree, command, log_path, die_with_client=die_with_client)
        log(f"starting ComfyUI from {tree} at {server.url}{f' ({why})' if why else ''}"
            f"{', with --cpu: torch sees no CUDA/MPS/XPU device' if cpu else ''}; "
            f"its log: {log_path}")
        log(f"waiting for ComfyUI to answer (up to {start_timeout:g} s) ...")
        try:
            seconds = server.wait_ready(start_timeout)
        except EmbeddedError:
            server.stop()
            if server.port_clash() and attempt + 1 < attempts:
                log(f"port {server.port} was taken meanwhile; trying another")
                continue
            raise
        except BaseException:
            server.stop()
            raise
        log(f"ComfyUI is ready after {seconds:.1f} s")
        return server
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _terminate_as_exit():
    """SIGTERM/SIGHUP to the client raise SystemExit, so its finally blocks stop the server."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def running(tree, *, keep: bool = False, start_timeout: float = DEFAULT_START_TIMEOUT, log=print,
            why: str = ""):
    """Start *tree*'s ComfyUI, yield its URL, and stop it when the block ends by any way
    (success, error, Ctrl-C) unless *keep*: then it keeps running and its address is printed."""
    with _terminate_as_exit():
        server = start(tree, start_timeout=start_timeout, die_with_client=not keep, log=log, why=why)
        try:
            yield server.url
        finally:
            if keep and server.proc.poll() is None:
                log(f"ComfyUI keeps running at {server.url} (pid {server.pid}; log: "
                    f"{server.log_path}): use it with --server {server.url}; stop it with "
                    f"`kill {server.pid}`")
            else:
                code = server.stop()
                log(f"stopped the ComfyUI this client started (pid {server.pid}, exit code {code})")
