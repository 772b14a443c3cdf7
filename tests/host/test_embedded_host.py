"""The client's embedded default against real ComfyUI copies: with no server running, the
client started from ``<copy>/custom_nodes/comfyui-dossr/workflows/`` starts that copy, runs
the job and leaves no process or listening port behind (also on Ctrl-C and failed starts);
``--server`` never starts anything; ``--keep-server`` leaves the server running.

Most tests run a model-free workflow (LoadImage -> ImageScaleBy -> SaveImage: seconds); the
DoSSR run with the mini models (one server start plus the model loads, about a minute here)
is ``slow`` and records the time from the command to the first image.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.host.conftest import RELEASE_MINI
from tests.hostlib.comfy_copy import client_in, main_py_processes, make_comfy_copy
from tests.hostlib.server import free_port, host_version, png_size, server_env, write_png

REPO = Path(__file__).resolve().parents[2]
MODELS = ("--dossr-model", RELEASE_MINI)
SCALE_WORKFLOW = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
    "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact",
                                                   "scale_by": 2.0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "embedded"}},
}
STARTED_AT = re.compile(r"starting ComfyUI from (\S+) at (http://127\.0\.0\.1:(\d+))")


@pytest.fixture(scope="module")
def comfy_copy(comfyui_path, tmp_path_factory, release_mini_ckpt) -> Path:
    """A user's ComfyUI with one model file: the DoSSR release file (SD 2.1-base inside)."""
    return make_comfy_copy(comfyui_path, tmp_path_factory.mktemp("user") / "ComfyUI",
                           models={"dossr": {RELEASE_MINI: release_mini_ckpt}})


@pytest.fixture
def scale_workflow(tmp_path) -> Path:
    path = tmp_path / "scale_api.json"
    path.write_text(json.dumps(SCALE_WORKFLOW))
    return path


@pytest.fixture
def lr_image(tmp_path) -> Path:
    return write_png(tmp_path / "lr_16.png", 16, 16, seed=5)


def client_env(temp_dir: Path) -> dict:
    """The host's environment (import-only stand-ins where needed), *temp_dir* as the temp
    folder (where the server log goes), and a default address where nothing listens: 8188
    may be another test's server on this machine."""
    env = server_env(sys.executable)
    env["DOSSR_CLIENT_DEFAULT_SERVER"] = f"http://127.0.0.1:{free_port()}"
    env["TMPDIR"] = str(temp_dir)
    return env


def terminal_ctrl_c() -> None:
    """SIGINT as at a terminal, also when the test run itself ignores it (started with '&')."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_client(client: Path, *args, cwd: Path) -> subprocess.Popen:
    """The client run with the host's Python from *cwd*; temp files in *cwd*/temp."""
    temp_dir = cwd / "temp"
    temp_dir.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, str(client), *map(str, args)], cwd=str(cwd),
                            env=client_env(temp_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=terminal_ctrl_c)


def finish(proc: subprocess.Popen, timeout=600) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


def started_port(err: str, tree: Path) -> int:
    m = STARTED_AT.search(err)
    assert m, f"no 'starting ComfyUI' message:\n{err}"
    assert m.group(1) == str(tree)
    return int(m.group(3))


def assert_nothing_left(tree: Path, err: str) -> None:
    port = started_port(err, tree)
    assert main_py_processes(tree) == [], f"{tree}/main.py still runs:\n{err}"
    assert port_closed(port), f"port {port} still listens"


class ProcessWatch:
    """Samples /proc for *tree*'s main.py while a block runs: every pid seen."""

    def __init__(self, tree: Path):
        self.tree, self.seen, self._stop = tree, set(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.seen.update(main_py_processes(self.tree))
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_starts_the_tree_it_sits_in_and_stops_it(comfy_copy, tmp_path, lr_image, scale_workflow):
    out = tmp_path / "out"
    proc = start_client(client_in(comfy_copy), lr_image, "--workflow", scale_workflow,
                        "--output-dir", out, cwd=tmp_path)
    stdout, err = finish(proc)
    assert proc.returncode == 0, err
    (path,) = [Path(line) for line in stdout.splitlines() if line.strip()]
    assert path.parent == out and png_size(path) == (32, 32)
    assert re.search(r"ComfyUI is ready after \d+\.\d s", err), err
    log = Path(re.search(r"its log: (\S+\.log)", err).group(1))
    assert log.parent == tmp_path / "temp"  # the temp folder, kept after the run
    assert "Starting server" in log.read_text(errors="replace")
    assert "stopped the ComfyUI this client started" in err
    assert "Traceback" not in err
    assert_nothing_left(comfy_copy, err)


def test_batch_mode_runs_on_the_started_server(comfy_copy, tmp_path, scale_workflow):
    src = tmp_path / "in"
    src.mkdir()
    for i, size in enumerate((16, 24)):
        write_png(src / f"img_{i}.png", size, size, seed=i)
    out = tmp_path / "out"
    proc = start_client(client_in(comfy_copy), src, "--workflow", scale_workflow, "--suffix", "_s2",
                        "--output-dir", out, "--quiet", cwd=tmp_path)
    _, err = finish(proc)
    assert proc.returncode == 0, err
    assert {p.name: png_size(p) for p in out.iterdir()} == {"img_0_s2.png": (32, 32),
                                                           "img_1_s2.png": (48, 48)}
    assert_nothing_left(comfy_copy, err)


def test_ctrl_c_during_the_job_stops_the_server(comfy_copy, tmp_path, lr_image):
    out = tmp_path / "out"
    proc = start_client(client_in(comfy_copy), lr_image, *MODELS, "--steps", 400,
                        "--output-dir", out, cwd=tmp_path)
    lines = []
    try:
        deadline = time.monotonic() + 300
        for line in proc.stderr:  # the job runs once the prompt is queued
            lines.append(line)
            if line.startswith("queued prompt") or time.monotonic() > deadline:
                break
        assert lines and lines[-1].startswith("queued prompt"), "".join(lines)
        proc.send_signal(signal.SIGINT)
        _, rest = finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines) + rest
    assert proc.returncode == 130, err
    assert "cancelled" in err and "Traceback" not in err
    assert "stopped the ComfyUI this client started" in err
    assert not out.exists() or not list(out.iterdir())
    assert_nothing_left(comfy_copy, err)


def test_server_option_never_starts_one(comfy_copy, tmp_path, lr_image, scale_workflow):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with ProcessWatch(comfy_copy) as watch:
        proc = start_client(client_in(comfy_copy), lr_image, "--workflow", scale_workflow,
                            "--server", url, cwd=tmp_path)
        _, err = finish(proc, timeout=120)
    assert proc.returncode == 2
    assert f"cannot reach ComfyUI at {url} (connection refused)" in err
    assert "--comfyui" in err and "Traceback" not in err
    assert "starting ComfyUI" not in err
    assert watch.seen == set()


def test_keep_server_leaves_it_running(comfy_copy, tmp_path, lr_image, scale_workflow):
    proc = start_client(client_in(comfy_copy), lr_image, "--workflow", scale_workflow,
                        "--output-dir", tmp_path / "out", "--keep-server", cwd=tmp_path)
    _, err = finish(proc)
    m = re.search(r"ComfyUI keeps running at (http://127\.0\.0\.1:(\d+)) \(pid (\d+);", err)
    assert m, err
    url, port, pid = m.group(1), int(m.group(2)), int(m.group(3))
    try:
        assert proc.returncode == 0, err
        assert f"--server {url}" in err
        assert main_py_processes(comfy_copy) == [pid]
        with urllib.request.urlopen(url + "/system_stats", timeout=10) as r:
            assert r.status == 200
        # a second command uses it as it is
        second = start_client(client_in(comfy_copy), lr_image, "--workflow", scale_workflow,
                              "--output-dir", tmp_path / "out2", "--server", url, cwd=tmp_path)
        stdout, err2 = finish(second)
        assert second.returncode == 0, err2
        assert "starting ComfyUI" not in err2 and len(stdout.split()) == 1
    finally:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        # not the test's child: wait for it to exit (and to close its socket) by looking
        while ((main_py_processes(comfy_copy) or not port_closed(port))
               and time.monotonic() < deadline):
            time.sleep(0.1)
    assert main_py_processes(comfy_copy) == [] and port_closed(port)


def broken_copy(comfyui_path, dest: Path, first_line: str) -> Path:
    """A copy whose main.py begins with *first_line*."""
    tree = make_comfy_copy(comfyui_path, dest)
    main = tree / "main.py"
    main.write_text(first_line + "\n" + main.read_text())
    return tree


def test_a_tree_that_cannot_start_gives_its_log_and_exit_2(comfyui_path, tmp_path, lr_image,
                                                             scale_workflow):
    tree = broken_copy(comfyui_path, tmp_path / "ComfyUI",
                       "import dossr_test_missing_dependency  # not installed anywhere")
    # --comfyui names the tree; the client runs from the repo, outside any tree
    proc = start_client(REPO / "workflows" / "dossr_client.py", lr_image, "--workflow", scale_workflow,
                        "--comfyui", tree, "--output-dir", tmp_path / "out", cwd=tmp_path)
    _, err = finish(proc, timeout=120)
    assert proc.returncode == 2, err
    assert "ComfyUI exited with code 1 while starting" in err
    assert "No module named 'dossr_test_missing_dependency'" in err  # the log's last lines
    assert "Traceback (most recent call last)" in err.split("its last log lines:")[1]  # from the log
    assert "full log: " in err and "pass --server" in err
    assert_nothing_left(tree, err)


def test_a_tree_that_never_answers_is_stopped_after_the_start_timeout(comfyui_path, tmp_path,
                                                                       lr_image, scale_workflow):
    tree = broken_copy(comfyui_path, tmp_path / "ComfyUI",
                       "print('dossr test: hanging at start-up', flush=True); "
                       "import time; time.sleep(600)")
    proc = start_client(REPO / "workflows" / "dossr_client.py", lr_image, "--workflow", scale_workflow,
                        "--comfyui", tree, "--start-timeout", 3, cwd=tmp_path)
    _, err = finish(proc, timeout=120)
    assert proc.returncode == 2, err
    assert "ComfyUI did not answer within 3 s" in err
    assert "dossr test: hanging at start-up" in err
    assert_nothing_left(tree, err)


@pytest.mark.slow  # a server start and the mini models' loads: about a minute on two cores
def test_dossr_upscale_from_a_user_tree(comfy_copy, comfyui_path, tmp_path, lr_image, capsys):
    """The README case: nothing running, the DoSSR x4 workflow, the mini models."""
    out = tmp_path / "out"
    t0 = time.perf_counter()
    proc = start_client(client_in(comfy_copy), lr_image, *MODELS, "--steps", 1, "--seed", 1,
                        "--output-dir", out, cwd=tmp_path)
    first = proc.stdout.readline()  # the first result's path, printed once it is written
    to_image = time.perf_counter() - t0
    rest, err = finish(proc)
    assert proc.returncode == 0, err
    paths = [Path(line) for line in (first + rest).splitlines() if line.strip()]
    assert [png_size(p) for p in paths] == [(64, 64)]
    with capsys.disabled():  # shown with -q too: the number the README quotes
        print(f"\nembedded client, command to first image (ComfyUI {host_version(comfyui_path)}): "
              f"{to_image:.1f} s")
    assert_nothing_left(comfy_copy, err)
