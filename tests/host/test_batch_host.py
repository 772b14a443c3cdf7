"""Batch mode of workflows/dossr_client.py against real ComfyUI servers (mini models, 1-3
steps, 12-32 px images): a mixed folder, resume after a killed run, two servers with one
stopped mid-image."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.host.conftest import RELEASE_MINI
from tests.hostlib.server import png_size, write_png

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "workflows" / "dossr_client.py"
MODELS = ("--dossr-model", RELEASE_MINI)


def write_grey_png(path, width: int, height: int) -> Path:
    """An 8-bit greyscale PNG (colour type 0)."""
    rows = b"".join(b"\0" + bytes((x * 7 + y * 13) % 256 for x in range(width)) for y in range(height))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return Path(path)


def client_cmd(*args):
    return [sys.executable, str(CLIENT), *map(str, args)]


def run_client(*args, timeout=600):
    return subprocess.run(client_cmd(*args), cwd=str(REPO), capture_output=True, text=True,
                          timeout=timeout)


def read_report(path) -> dict:
    """input file name -> its entry in the JSON report."""
    return {Path(e["input"]).name: e for e in json.loads(Path(path).read_text())["images"]}


def results(folder) -> set:
    return {p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file()}


def small_folder(folder, count, size=16) -> Path:
    folder.mkdir()
    for i in range(count):
        write_png(folder / f"img_{i}.png", size, size, seed=i)
    return folder


def test_mixed_folder_reports_the_bad_ones(comfy_server, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_png(src / "a.png", 16, 16)
    write_png(src / "b.png", 24, 16, seed=1)
    write_png(src / "sub" / "c.png", 32, 24, seed=2)
    # 16 px or more on each side: ComfyUI 0.33's PyAV decoding refuses grey PNGs with a side
    # under 16 px ("Invalid argument"), a host limit, not the client's
    write_grey_png(src / "grey.png", 20, 16)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    (src / "notes.txt").write_text("not an input")
    out, rep = tmp_path / "out", tmp_path / "report.json"
    r = run_client(src, "--recursive", "--server", comfy_server.url, *MODELS, "--steps", 1,
                   "--seed", 3, "--output-dir", out, "--report", rep, "--quiet")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    expected = {"a_x4.png": (64, 64), "b_x4.png": (96, 64), "sub/c_x4.png": (128, 96),
                "grey_x4.png": (80, 64)}
    assert results(out) == set(expected), (r.stdout[-2000:], r.stderr[-3000:])
    for name, size in expected.items():
        assert png_size(out / name) == size, name
    entries = read_report(rep)
    assert set(entries) == {"a.png", "b.png", "c.png", "grey.png", "broken.png"}
    assert {n for n, e in entries.items() if e["status"] == "done"} == {"a.png", "b.png", "c.png", "grey.png"}
    broken = entries["broken.png"]
    assert broken["status"] == "failed" and "LoadImage" in broken["error"]
    assert "failed: " in r.stderr and "broken.png" in r.stderr and "LoadImage" in r.stderr
    assert "4 done, 0 skipped (already done), 1 failed of 5 images" in r.stderr


def test_rerun_after_kill_does_only_the_rest(comfy_server, tmp_path):
    src = small_folder(tmp_path / "in", 6)
    args = (src, "--server", comfy_server.url, *MODELS, "--steps", 1, "--seed", 5, "--quiet")
    out = tmp_path / "out"
    proc = subprocess.Popen(client_cmd(*args, "--output-dir", out), cwd=str(REPO),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("*_x4.png")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(60)
    first = {p.name for p in out.glob("*_x4.png")}
    assert first, "the first run was killed before any result existed"
    assert len(first) < 6, "the first run finished before it could be killed"

    rep = tmp_path / "report.json"
    r = run_client(*args, "--output-dir", out, "--report", rep)
    assert r.returncode == 0, r.stderr
    entries = read_report(rep)
    skipped = {n.replace(".png", "_x4.png") for n, e in entries.items() if e["status"] == "skipped"}
    done = {n.replace(".png", "_x4.png") for n, e in entries.items() if e["status"] == "done"}
    assert skipped == first and len(done) == 6 - len(first)

    ref = tmp_path / "ref"
    r = run_client(*args, "--output-dir", ref)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == {p.name for p in ref.iterdir()}
    for p in ref.iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name


def _successes(server) -> int:
    return sum(1 for e in server.get_json("/history").values()
               if (e.get("status") or {}).get("status_str") == "success")


@pytest.mark.slow  # two fresh servers and their model loads: about two minutes on two cores
def test_two_servers_share_the_batch_and_survive_one_stopping(start_comfy_server, tmp_path):
    a, b = start_comfy_server(), start_comfy_server()
    src = small_folder(tmp_path / "in", 8)
    out, rep = tmp_path / "out", tmp_path / "report.json"
    proc = subprocess.Popen(client_cmd(src, "--server", f"{a.url},{b.url}", *MODELS, "--steps", 3,
                                       "--seed", 1, "--output-dir", out, "--report", rep,
                                       "--server-wait", 5),
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped_running = False
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            if _successes(b) >= 1 and b.queue()["queue_running"]:
                b.stop()
                stopped_running = True
                break
            time.sleep(0.02)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stopped_running, "server B never got a second image"
    assert proc.returncode == 0, err
    assert "went away" in err
    entries = read_report(rep)
    assert all(e["status"] == "done" for e in entries.values()), entries
    servers = {e["server"] for e in entries.values()}
    assert servers == {a.url, b.url}
    retried = [e for e in entries.values() if e["tries"] > 1]
    assert len(retried) == 1 and retried[0]["server"] == a.url
    assert results(out) == {f"img_{i}_x4.png" for i in range(8)}


def terminal_ctrl_c() -> None:
    """In the client's process: SIGINT as at a terminal. A test run started in the background
    (``cmd &`` in a script) ignores SIGINT, its children inherit that, and Python then installs
    no KeyboardInterrupt handler, so the Ctrl-C this test sends would be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_cancels_only_this_clients_prompts(comfy_server, tmp_path):
    src = small_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    proc = subprocess.Popen(client_cmd(src, "--server", comfy_server.url, *MODELS, "--steps", 100,
                                       "--seed", 9, "--output-dir", out),
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=terminal_ctrl_c)
    try:
        deadline = time.monotonic() + 120
        while not comfy_server.queue()["queue_running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        (ours,) = [item[1] for item in comfy_server.queue()["queue_running"]]
        other = json.loads((REPO / "workflows" / "dossr_x4_api.json").read_text())
        other["1"]["inputs"]["image"] = "dossr_test_16.png"
        other["2"]["inputs"]["ckpt_name"] = RELEASE_MINI
        other["7"]["inputs"]["steps"] = 1
        foreign = comfy_server.queue_prompt(other, client_id="someone-else")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "cancelled" in err and "Traceback" not in err
    assert comfy_server.status_str(comfy_server.wait(foreign, timeout=300)) == "success"
    assert comfy_server.execution_interrupted(comfy_server.wait(ours, timeout=60)) is not None
    assert not out.exists() or not list(out.glob("*.png"))


def test_ctrl_c_cancels_a_single_image_prompt(comfy_server, tmp_path):
    """One image (no batch): Ctrl-C takes this client's prompt off the server too."""
    image = tmp_path / "one.png"
    write_png(image, 16, 16, seed=3)
    proc = subprocess.Popen(client_cmd(image, "--server", comfy_server.url, *MODELS, "--steps", 100,
                                       "--output-dir", tmp_path / "out"),
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=terminal_ctrl_c)
    try:
        deadline = time.monotonic() + 120
        while not comfy_server.queue()["queue_running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        (ours,) = [item[1] for item in comfy_server.queue()["queue_running"]]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "removed from the server" in err and "Traceback" not in err
    assert comfy_server.execution_interrupted(comfy_server.wait(ours, timeout=60)) is not None
