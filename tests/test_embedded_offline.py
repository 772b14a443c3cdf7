"""The client's embedded server without ComfyUI: tree detection, when to start one, the
command line (--cpu, the database option), and the process life cycle, run on fake trees
whose main.py is a few lines of standard-library Python."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflows"))
from dossr_batch import embedded  # noqa: E402

from tests.test_client_offline import _load_client  # noqa: E402

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and prctl")

#: A stand-in for ComfyUI's main.py: records its argv, then behaves as the tree's "mode"
#: file says: serve (GET /system_stats), fail, hang, clash-once (port taken on the first
#: start), stubborn (ignores SIGTERM and has a child that does too).
FAKE_MAIN = textwrap.dedent("""
    import http.server, json, os, signal, subprocess, sys, time
    here = os.path.dirname(os.path.abspath(__file__))
    mode = open(os.path.join(here, "mode")).read().strip()
    with open(os.path.join(here, "argv.json"), "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\\n")
    port = int(sys.argv[sys.argv.index("--port") + 1])
    if mode == "fail":
        print("fake comfy: loading", flush=True)
        print("ModuleNotFoundError: No module named 'fake_missing'", flush=True)
        sys.exit(3)
    if mode == "hang":
        print("fake comfy: hanging", flush=True)
        time.sleep(600)
    if mode == "clash-once" and not os.path.exists(os.path.join(here, "clashed")):
        open(os.path.join(here, "clashed"), "w").close()
        print("OSError: [Errno 98] error while attempting to bind: address already in use", flush=True)
        sys.exit(1)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        open(os.path.join(here, "child.pid"), "w").write(str(child.pid))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/system_stats" else 404)
            self.end_headers()
            self.wfile.write(b"{}")
        def log_message(self, *args):
            pass

    print("fake comfy: serving", flush=True)
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
""")


def make_tree(root: Path, mode: str = "serve", database_option: bool = True) -> Path:
    """A folder with ComfyUI's top-level markers and the fake main.py."""
    (root / "comfy").mkdir(parents=True)
    for name in ("nodes.py", "folder_paths.py", "execution.py"):
        (root / name).write_text("")
    (root / "main.py").write_text(FAKE_MAIN)
    (root / "mode").write_text(mode)
    opts = ['parser.add_argument("--cpu", action="store_true")']
    if database_option:
        opts.append('parser.add_argument("--database-url", type=str, default="sqlite:///x.db")')
    (root / "comfy" / "cli_args.py").write_text("\n".join(opts) + "\n")
    return root


def recorded_argv(tree: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tree / "argv.json").read_text().splitlines()]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gone(pid: int) -> bool:
    """Exited (absent, or a zombie nobody reaped: its sockets and memory are released)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(autouse=True)
def temp_dir(tmp_path, monkeypatch) -> Path:
    """The temp folder (server logs) is the test's own."""
    folder = tmp_path / "temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def no_torch_probe(monkeypatch):
    """Skip the torch subprocess (seconds on this CPU); answers 'needs --cpu'."""
    monkeypatch.setattr(embedded, "needs_cpu_flag", lambda *a, **k: True)


# ----------------------------------------------------------------------------- deciding

def test_tree_problem_names_what_is_missing(tmp_path):
    tree = make_tree(tmp_path / "ComfyUI")
    assert embedded.tree_problem(tree) is None
    (tree / "nodes.py").unlink()
    assert "no nodes.py" in embedded.tree_problem(tree)
    assert "not a folder" in embedded.tree_problem(tmp_path / "nowhere")


def test_enclosing_tree_through_a_linked_pack(tmp_path):
    tree = make_tree(tmp_path / "ComfyUI")
    checkout = tmp_path / "src" / "dossr"
    (checkout / "workflows").mkdir(parents=True)
    (checkout / "workflows" / "dossr_client.py").write_text("")
    (tree / "custom_nodes").mkdir()
    (tree / "custom_nodes" / "comfyui-dossr").symlink_to(checkout)
    via_tree = tree / "custom_nodes" / "comfyui-dossr" / "workflows" / "dossr_client.py"
    assert embedded.enclosing_tree(via_tree) == tree
    # the checkout itself is in no tree
    assert embedded.enclosing_tree(checkout / "workflows" / "dossr_client.py") is None


def test_enclosing_tree_needs_custom_nodes_and_a_real_tree(tmp_path):
    tree = make_tree(tmp_path / "ComfyUI")
    elsewhere = tree / "plugins" / "pack" / "workflows" / "dossr_client.py"
    elsewhere.parent.mkdir(parents=True)
    assert embedded.enclosing_tree(elsewhere) is None
    inside = tree / "custom_nodes" / "pack" / "workflows" / "dossr_client.py"
    inside.parent.mkdir(parents=True)
    assert embedded.enclosing_tree(inside) == tree
    (tree / "main.py").unlink()
    assert embedded.enclosing_tree(inside) is None


def test_choose_tree(tmp_path):
    tree = make_tree(tmp_path / "ComfyUI")
    client = tree / "custom_nodes" / "pack" / "workflows" / "dossr_client.py"
    client.parent.mkdir(parents=True)
    outside = tmp_path / "repo" / "workflows" / "dossr_client.py"
    asked = []

    def probe(result):
        def answer(url):
            asked.append(url)
            return result
        return answer

    def choose(server_given=False, comfyui=None, client_file=client, answers=False):
        return embedded.choose_tree(server_given=server_given, comfyui=comfyui,
                                    default_server="http://127.0.0.1:8188", client_file=client_file,
                                    probe=probe(answers))[0]

    assert choose() == tree
    assert asked == ["http://127.0.0.1:8188"]
    assert choose(answers=True) is None                       # a server runs: use it
    assert choose(client_file=outside) is None                 # nothing to start
    asked.clear()
    assert choose(server_given=True) is None and asked == []   # --server: not even a probe
    other = make_tree(tmp_path / "Other")
    assert choose(comfyui=other, answers=True, client_file=outside) == other
    outside.parent.mkdir(parents=True)
    with pytest.raises(embedded.EmbeddedError, match=r"--comfyui: .*repo is not a ComfyUI folder "
                                                     r"\(it has no main\.py.*holds main\.py"):
        choose(comfyui=tmp_path / "repo")


def test_answers_means_something_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        assert embedded.answers(url)
    assert not embedded.answers(url)
    assert embedded.host_port("127.0.0.1:9") == ("127.0.0.1", 9)


# ----------------------------------------------------------------------------- command line

def test_server_command_is_loopback_only(tmp_path):
    cmd = embedded.server_command(tmp_path, 4321, cpu=True, memory_db=True, python="/py")
    assert cmd[:2] == ["/py", str(tmp_path / "main.py")]
    assert cmd[cmd.index("--listen") + 1] == "127.0.0.1" and "0.0.0.0" not in cmd
    assert cmd[cmd.index("--port") + 1] == "4321"
    assert "--disable-auto-launch" in cmd and "--cpu" in cmd
    assert cmd[cmd.index("--database-url") + 1] == "sqlite:///:memory:"
    plain = embedded.server_command(tmp_path, 4321, cpu=False, memory_db=False)
    assert plain[0] == sys.executable
    assert "--cpu" not in plain and "--database-url" not in plain


def test_knows_option_reads_the_trees_arguments(tmp_path):
    assert embedded.knows_option(make_tree(tmp_path / "a"), "--database-url")
    assert not embedded.knows_option(make_tree(tmp_path / "b", database_option=False), "--database-url")
    assert not embedded.knows_option(tmp_path / "nowhere", "--database-url")
    for host in (Path("/opt/ComfyUI"), Path("/opt/ComfyUI-0.33")):
        if (host / "comfy" / "cli_args.py").exists():
            assert embedded.knows_option(host, "--database-url")
            assert not embedded.knows_option(host, "--no-such-option")


FAKE_TORCH = """
class _Dev:
    def __init__(self, present): self.present = present
    def is_available(self):
        if self.present == "raise":
            raise RuntimeError("driver too old")
        return self.present
cuda = _Dev({cuda!r})
xpu = _Dev({xpu!r})
class backends:
    mps = _Dev({mps!r})
"""


@pytest.mark.parametrize("cuda, mps, xpu, cpu", [
    (False, False, False, True),
    (True, False, False, False),
    (False, True, False, False),
    (False, False, True, False),
    ("raise", False, False, True),    # a broken CUDA counts as none
])
def test_cpu_flag_follows_the_devices_torch_sees(tmp_path, cuda, mps, xpu, cpu):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(FAKE_TORCH.format(cuda=cuda, mps=mps, xpu=xpu))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    assert embedded.needs_cpu_flag(sys.executable, env) is cpu


def test_cpu_probe_without_torch_says_which_python(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('no torch here')")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    with pytest.raises(embedded.EmbeddedError) as e:
        embedded.needs_cpu_flag(sys.executable, env)
    assert f"({sys.executable}) cannot import torch (ImportError: no torch here)" in str(e.value)
    assert "Python of your ComfyUI install" in str(e.value)


# ----------------------------------------------------------------------------- life cycle

def test_running_starts_waits_and_stops(tmp_path, temp_dir, no_torch_probe):
    tree = make_tree(tmp_path / "ComfyUI")
    said = []
    with embedded.running(tree, log=said.append, why="nothing answers") as url:
        assert embedded.answers(url)
        (argv,) = recorded_argv(tree)
        assert url == f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"
        assert "--cpu" in argv and "sqlite:///:memory:" in argv
    assert not embedded.answers(url)
    assert said[0].startswith(f"starting ComfyUI from {tree} at {url} (nothing answers), with --cpu")
    log = Path(said[0].split("its log: ")[1])
    assert log.parent == temp_dir and "fake comfy: serving" in log.read_text()
    assert said[2].startswith("ComfyUI is ready after ")
    assert said[-1].startswith("stopped the ComfyUI this client started")


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_running_stops_the_server_when_the_job_fails(tmp_path, no_torch_probe, exc):
    tree = make_tree(tmp_path / "ComfyUI")
    with pytest.raises(exc), embedded.running(tree, log=lambda m: None) as url:
        raise exc()
    assert not embedded.answers(url)


@linux_only
def test_keep_leaves_it_running(tmp_path, no_torch_probe):
    tree = make_tree(tmp_path / "ComfyUI")
    said = []
    with embedded.running(tree, keep=True, log=said.append) as url:
        pass
    pid = int(said[-1].split("(pid ")[1].split(";")[0])
    try:
        assert embedded.answers(url)
        assert f"keeps running at {url}" in said[-1] and f"--server {url}" in said[-1]
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)  # our child: the client is this test process


def test_start_failure_shows_the_log_tail(tmp_path, no_torch_probe):
    tree = make_tree(tmp_path / "ComfyUI", mode="fail")
    with pytest.raises(embedded.EmbeddedError) as e:
        embedded.start(tree, log=lambda m: None)
    msg = str(e.value)
    assert msg.startswith("ComfyUI exited with code 3 while starting; its last log lines:")
    assert "  | fake comfy: loading\n  | ModuleNotFoundError: No module named 'fake_missing'" in msg
    assert "full log: " in msg and "pass --server URL" in msg
    assert len(recorded_argv(tree)) == 1  # not retried: no port clash


def test_start_timeout_stops_the_hanging_server(tmp_path, no_torch_probe):
    tree = make_tree(tmp_path / "ComfyUI", mode="hang")
    with pytest.raises(embedded.EmbeddedError) as e:
        embedded.start(tree, start_timeout=1, log=lambda m: None)
    assert str(e.value).startswith("ComfyUI did not answer within 1 s (--start-timeout); its last "
                                   "log lines:\n  | fake comfy: hanging\n")
    port = recorded_argv(tree)[0][recorded_argv(tree)[0].index("--port") + 1]
    assert not embedded.answers(f"http://127.0.0.1:{port}")


def test_port_clash_retries_on_another_port(tmp_path, no_torch_probe):
    tree = make_tree(tmp_path / "ComfyUI", mode="clash-once")
    said = []
    server = embedded.start(tree, log=said.append)
    try:
        assert embedded.answers(server.url)
        assert len(recorded_argv(tree)) == 2
        assert any("was taken meanwhile; trying another" in m for m in said)
    finally:
        server.stop()


@linux_only
def test_stop_kills_the_whole_group_after_the_grace_period(tmp_path, no_torch_probe):
    tree = make_tree(tmp_path / "ComfyUI", mode="stubborn")
    server = embedded.start(tree, log=lambda m: None)
    child = int((tree / "child.pid").read_text())
    t0 = time.monotonic()
    code = server.stop(grace=0.5)
    assert code == -signal.SIGKILL and time.monotonic() - t0 < 5
    assert wait_gone(child), "the server's child outlived it"


HOLDER = """
import sys, time
sys.path.insert(0, {workflows!r})
from dossr_batch import embedded
tree = {tree!r}
server = embedded.EmbeddedServer(tree, embedded.server_command(tree, {port}, cpu=True, memory_db=False),
                                  embedded.new_log_path(), die_with_client={die!r})
print(server.pid, flush=True)
time.sleep(600)
"""


@linux_only
@pytest.mark.parametrize("die", [True, False])
def test_a_killed_client_takes_its_server_along_unless_kept(tmp_path, temp_dir, die):
    tree = make_tree(tmp_path / "ComfyUI")
    port = closed_port()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(
        workflows=str(REPO / "workflows"), tree=str(tree), port=port, die=die)],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, TMPDIR=str(temp_dir)))
    pid = int(holder.stdout.readline())
    try:
        deadline = time.monotonic() + 20
        while not embedded.answers(f"http://127.0.0.1:{port}") and time.monotonic() < deadline:
            time.sleep(0.05)
        holder.kill()  # SIGKILL: no finally block runs in the client
        holder.wait()
        if die:
            assert wait_gone(pid), "the server outlived the killed client"
        else:
            time.sleep(0.5)
            assert not gone(pid) and embedded.answers(f"http://127.0.0.1:{port}")
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid)


# ----------------------------------------------------------------------------- the client

def test_client_outside_a_tree_explains_how_to_get_a_server(tmp_path, capsys, monkeypatch):
    client = _load_client()
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv(client.DEFAULT_SERVER_ENV, url)
    img = tmp_path / "in.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert client.main([str(img), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach ComfyUI at {url} (connection refused)" in err
    assert "starts ComfyUI itself" in err and "--comfyui DIR" in err
    assert "starting ComfyUI" not in err and "Traceback" not in err


def test_client_reports_a_tree_that_cannot_start(tmp_path, capsys, no_torch_probe):
    client = _load_client()
    tree = make_tree(tmp_path / "ComfyUI", mode="fail")
    img = tmp_path / "in.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert client.main([str(img), "--comfyui", str(tree)]) == 2
    err = capsys.readouterr().err
    assert "error: ComfyUI exited with code 3 while starting" in err
    assert "No module named 'fake_missing'" in err and "Traceback" not in err


@pytest.mark.parametrize("option", [["--comfyui", "x"], ["--keep-server"]])
def test_client_refuses_server_with_start_options(capsys, option):
    client = _load_client()
    with pytest.raises(SystemExit) as e:
        client.parse_args(["in.png", "--server", "http://127.0.0.1:1", *option])
    assert e.value.code == 2
    assert "give one or the other" in capsys.readouterr().err
