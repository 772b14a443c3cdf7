"""The README's two-command quick start, run as a user runs it, on a fresh copy of a ComfyUI tree.

A temporary folder plays the user's machine: it holds ``ComfyUI/``, a copy of the host tree
(tests/hostlib/comfy_copy.py) with empty ``custom_nodes/`` and ``models/``, and is the working
directory of every command. The commands are read from README.md (the code blocks marked
``<!-- command: NAME -->``, see tests/test_packaging.py) and run by bash as they are, with these
substitutions only:

* ``<repository-url>`` (the placeholder of the clone command) becomes a local git repository
  whose one commit is this working tree (tracked and new files, as ``git ls-files`` lists
  them), so uncommitted work is what gets installed;
* ``python`` is a shell function calling the interpreter that runs the tests; for
  ``python -m pip install`` it adds ``--dry-run --no-index``, so the requirements are
  checked against this environment and nothing in it changes;
* the install's ``python -m dossr_core.fetch default`` gets ``--from`` a loopback HTTP server
  that serves the mini release file (fixture ``release_mini_ckpt``: SD 2.1-base and DoSSR
  tensors of reduced size in the authors' training-checkpoint form), and the fetch checks it
  against manifests made from that file (``DOSSR_FETCH_MANIFESTS``; every tensor name in them
  is one of the real release's);
* the run command stays as written (no ``--server``); ``DOSSR_CLIENT_DEFAULT_SERVER`` points
  the client's "is a ComfyUI running?" probe at a free port instead of 8188, which other tests
  on this machine may hold, so the client starts the ComfyUI it sits in, as for a user with no
  ComfyUI running.

The time of each command and the bytes the loopback server sent are printed and written to
``tests/out/quickstart.json`` (one entry per host version).

With Chromium and playwright (see tests/host/test_editor.py) the template browser of the
installed pack is opened in the real editor (a server started on the user's tree after the
commands) and every card must show its ``example_workflows/<name>.jpg``.
``DOSSR_WRITE_THUMBNAILS=1`` (re)renders those thumbnails from the editor (graph cropped,
1200 px wide, JPEG) into the repository first.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import test_packaging as pk
from tests.fetch_files import write_manifests
from tests.host import test_editor as te
from tests.hostlib import server as hs
from tests.hostlib.comfy_copy import main_py_processes, make_comfy_copy
from tests.loopback_http import LoopbackServer

REPO = hs.REPO
OUT_DIR = REPO / "tests" / "out" / "editor"
MEASURED_JSON = REPO / "tests" / "out" / "quickstart.json"
RELEASE_PATH = "/dossr_default.ckpt"
#: The fetch step of the install command; the test appends ``--from <loopback URL>`` to it.
FETCH_STEP = "python -m dossr_core.fetch default"
#: The install command's last step, a subshell in the pack folder: rerun on its own.
FETCH_SUBSHELL = re.compile(r"\(cd [^()]*&& " + re.escape(FETCH_STEP) + r"[^()]*\)")
STARTED_AT = re.compile(r"starting ComfyUI from (\S+) at http://127\.0\.0\.1:(\d+)")
READY_AFTER = re.compile(r"ComfyUI is ready after (\d+(?:\.\d+)?) s")
IMAGE_SIZE = (24, 16)
THUMBNAIL_WIDTH = 1200
THUMBNAIL_QUALITY = 85
#: The editor's viewport while rendering a thumbnail: the whole graph at scale 1 fits in it.
RENDER_VIEWPORT = {"width": 2400, "height": 1600}

SHELL_PRELUDE = r"""
set -o pipefail
python() {
  if [ "$1" = "-m" ] && [ "$2" = "pip" ] && [ "$3" = "install" ]; then
    shift 3
    "$DOSSR_TEST_PYTHON" -m pip install --dry-run --no-index "$@"
  else
    "$DOSSR_TEST_PYTHON" "$@"
  fi
}
"""

#: What the tests measured, by name; written to MEASURED_JSON after the run command.
MEASURED: dict = {}


# ----------------------------------------------------------------------------- helpers

def run_shell(command: str, cwd: Path, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    """*command* in bash (cwd *cwd*), ``python`` meaning this interpreter (see the prelude)."""
    return subprocess.run(["bash", "-c", SHELL_PRELUDE + command], cwd=str(cwd), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def _git(*args, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=dossr-tests", "-c", "user.email=tests@localhost",
                           "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
                          cwd=str(cwd), capture_output=True, text=True, check=True).stdout


def snapshot_repository(dst: Path) -> Path:
    """A git repository at *dst* whose single commit holds this working tree's files."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True).stdout
    dst.mkdir(parents=True)
    for rel in filter(None, listed.decode().split("\0")):
        src = REPO / rel
        if src.is_file():   # deleted but still tracked: left out, as the next commit would
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    _git("init", "-q", cwd=dst)
    _git("add", "-A", cwd=dst)
    _git("commit", "-q", "-m", "working tree snapshot for the README install test", cwd=dst)
    return dst


def mini_manifests(release: Path, folder: Path) -> Path:
    """The two fetch manifests made from the mini release file's own tensors (names and
    shapes), after checking that every name is one the real release manifests list."""
    from dossr_core import verify
    from dossr_core.safe_load import checkpoint_shapes

    shapes = checkpoint_shapes(str(release))
    dossr = {k: v for k, v in shapes.items() if k.startswith(verify.DOSSR_PREFIXES)}
    sd = {k: v for k, v in shapes.items() if k.startswith(tuple(verify.SD_PARTS))}
    assert dossr and sd and len(dossr) + len(sd) == len(shapes), "the mini file is not release-like"
    unknown = (set(dossr) - set(verify.release_manifest())) | (set(sd) - set(verify.sd21_manifest()))
    assert not unknown, f"the mini release file has tensors the release lacks: {sorted(unknown)[:5]}"
    folder.mkdir(parents=True, exist_ok=True)
    write_manifests(folder, dossr, sd)
    return folder


def shell_env(home: Path, manifests: Path) -> dict:
    """The user's shell: the host's environment (PYTHONPATH without this checkout, the
    import-only stand-ins where the host needs them), the mini manifests for the fetch, temp
    files (the started server's log) under *home*, and the client's probe address on a free
    port (nothing listens there, so the client starts its own ComfyUI)."""
    env = hs.server_env(sys.executable)
    temp = home / "tmp"
    temp.mkdir(exist_ok=True)
    env.update(DOSSR_TEST_PYTHON=sys.executable, PIP_DISABLE_PIP_VERSION_CHECK="1",
               GIT_TERMINAL_PROMPT="0", PYTHONUNBUFFERED="1", TMPDIR=str(temp),
               DOSSR_FETCH_MANIFESTS=str(manifests),
               DOSSR_CLIENT_DEFAULT_SERVER=f"http://127.0.0.1:{hs.free_port()}")
    return env


def with_loopback_fetch(command: str, url: str) -> str:
    """*command* with ``--from URL`` after its one fetch step."""
    assert command.count(FETCH_STEP) == 1, f"no single '{FETCH_STEP}' in: {command}"
    return command.replace(FETCH_STEP, f"{FETCH_STEP} --from {shlex.quote(url)}")


def output_paths(result: subprocess.CompletedProcess) -> list[Path]:
    return [Path(line) for line in result.stdout.splitlines() if line.strip()]


def _describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


# ----------------------------------------------------------------------------- the user's machine

class Machine:
    """The temporary user machine after the install command: paths, the loopback release
    server, the install's output and what it cost."""

    def __init__(self, home: Path, source: Path, release: LoopbackServer, env: dict, manifests: Path):
        self.home = home
        self.comfy = home / "ComfyUI"
        self.pack = self.comfy / "custom_nodes" / pk.PACK_DIR
        self.model = self.comfy / "models" / "dossr" / "dossr_default.ckpt"
        self.source = source
        self.release = release
        self.env = env
        self.manifests = manifests
        self.install: subprocess.CompletedProcess | None = None

    def command(self, name: str) -> str:
        """The README's command *name*, with this test's substitutions."""
        command = pk.readme_commands()[name]
        if name == "install":
            command = command.replace(pk.REPO_URL_PLACEHOLDER, shlex.quote(str(self.source)))
        if FETCH_STEP in command:
            command = with_loopback_fetch(command, self.release.url(RELEASE_PATH))
        return command

    def run(self, command: str) -> tuple[subprocess.CompletedProcess, float]:
        t0 = time.perf_counter()
        result = run_shell(command, self.home, self.env)
        return result, time.perf_counter() - t0

    def server_log(self) -> str:
        """The last lines of the newest log of a ComfyUI the client started."""
        logs = sorted((self.home / "tmp").glob("dossr-comfyui-*.log"), key=lambda p: p.stat().st_mtime)
        if not logs:
            return ""
        lines = logs[-1].read_text(errors="replace").splitlines()[-60:]
        return f"\n--- {logs[-1]} (last lines)\n" + "\n".join(lines)


@pytest.fixture(scope="module")
def machine(comfyui_path, tmp_path_factory, release_mini_ckpt):
    home = tmp_path_factory.mktemp("readme_user")
    source = snapshot_repository(tmp_path_factory.mktemp("readme_source") / "repo")
    make_comfy_copy(comfyui_path, home / "ComfyUI", pack=False)
    manifests = mini_manifests(release_mini_ckpt, tmp_path_factory.mktemp("mini_manifests"))
    with LoopbackServer() as release:
        release.files[RELEASE_PATH] = str(release_mini_ckpt)
        m = Machine(home, source, release, shell_env(home, manifests), manifests)
        assert not m.pack.exists() and not any((m.comfy / "models").iterdir())
        m.install, seconds = m.run(m.command("install"))
        assert m.install.returncode == 0, f"the README's install command failed: {_describe(m.install)}"
        MEASURED.update(install_s=round(seconds, 1), install_bytes_downloaded=release.bytes_sent,
                        model_file_bytes=release_mini_ckpt.stat().st_size)
        try:
            yield m
        finally:   # the model files are big: leave no copies in the temp folders
            for path in (m.comfy / "models").rglob("*"):
                if path.is_file():
                    path.unlink()


# ----------------------------------------------------------------------------- install

def test_install_command_clones_the_pack_and_finds_its_requirements(machine):
    # a real clone of the repository, under the name the template browser shows
    assert (machine.pack / ".git").is_dir()
    assert (_git("rev-parse", "HEAD", cwd=machine.pack).strip()
            == _git("rev-parse", "HEAD", cwd=machine.source).strip())
    assert (machine.pack / "__init__.py").is_file()
    # the pip step ran on the clone's requirements and gdown, and had nothing to install here
    out = machine.install.stdout + machine.install.stderr
    names = [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]
             for r in pk.requirement_lines(machine.pack / "requirements.txt")]
    assert "gdown" in shlex.split(pk.readme_commands()["install"])
    for name in names + ["gdown"]:
        assert re.search(rf"Requirement already satisfied: {re.escape(name)}\b", out, re.I), out
    assert "Would install" not in out, out


def test_install_command_fetches_the_model_file_into_the_tree(machine, release_mini_ckpt):
    url = machine.release.url(RELEASE_PATH)
    assert machine.model.is_file() and not machine.model.is_symlink()
    assert filecmp.cmp(machine.model, release_mini_ckpt, shallow=False)   # byte for byte
    assert os.listdir(machine.model.parent) == [machine.model.name]   # no partial file left
    # one download of the whole file, no second request, nothing beyond the file's bytes
    assert machine.release.requests == [(RELEASE_PATH, None)]
    assert MEASURED["install_bytes_downloaded"] == release_mini_ckpt.stat().st_size
    assert machine.install.stderr.count(f"fetching dossr_default.ckpt from {url}") == 1
    assert re.search(rf"installed {re.escape(str(machine.model))} \(all \d+ DoSSR tensors and the "
                     r"complete SD 2.1-base: serves the one-file", machine.install.stdout), \
        _describe(machine.install)


def test_fetch_step_run_again_says_the_file_is_in_place(machine):
    (step,) = FETCH_SUBSHELL.findall(machine.command("install"))
    before = list(machine.release.requests)
    mtime = machine.model.stat().st_mtime_ns
    r, _ = machine.run(step)
    assert r.returncode == 0, _describe(r)
    assert f"{machine.model}: already in place and verified" in r.stdout, _describe(r)
    assert machine.release.requests == before            # nothing fetched again
    assert machine.model.stat().st_mtime_ns == mtime     # nor replaced


# ----------------------------------------------------------------------------- upscale

def _input_image(command: str, home: Path, width: int, height: int) -> Path:
    words = shlex.split(command)
    image = next(w for w in words[2:] if Path(w).suffix.lower() in (".png", ".jpg", ".jpeg"))
    return hs.write_png(home / image, width, height, seed=5)


def assert_nothing_left(machine: Machine, stderr: str) -> float:
    """The client started the user's tree and stopped it: no main.py of the tree runs, its port
    is closed. Returns the server's start-up seconds the client reported."""
    m = STARTED_AT.search(stderr)
    assert m, f"the client started no ComfyUI:\n{stderr}"
    assert Path(m.group(1)).resolve() == machine.comfy.resolve()
    assert "stopped the ComfyUI this client started" in stderr, stderr
    assert main_py_processes(machine.comfy) == [], f"{machine.comfy}/main.py still runs"
    assert port_closed(int(m.group(2))), f"port {m.group(2)} still listens"
    return float(READY_AFTER.search(stderr).group(1))


def test_run_command_upscales_4x_with_the_comfyui_it_starts(machine, capsys):
    command = machine.command("run")
    assert "--server" not in command
    _input_image(command, machine.home, *IMAGE_SIZE)
    sent = machine.release.bytes_sent
    r, seconds = machine.run(command)
    assert r.returncode == 0, _describe(r) + machine.server_log()
    (printed,) = output_paths(r)
    result = machine.home / printed
    assert result.is_file(), f"the client printed {printed}, which does not exist"
    assert hs.png_size(result) == (4 * IMAGE_SIZE[0], 4 * IMAGE_SIZE[1])
    # the README's example of the printed path is what the client prints
    (example,) = re.findall(r"`(\S+/DoSSR_x4_\d{5}_\.png)`", pk.readme_text())
    assert re.sub(r"\d{5}", "#", str(printed)) == re.sub(r"\d{5}", "#", example)
    words = shlex.split(command)
    assert printed.parent == Path(words[words.index("--output-dir") + 1])
    server_start = assert_nothing_left(machine, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert machine.release.bytes_sent == sent            # the upscale downloads nothing

    MEASURED.update(run_s=round(seconds, 1), run_server_start_s=server_start,
                    run_bytes_downloaded=machine.release.bytes_sent - sent,
                    image=f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} -> {4 * IMAGE_SIZE[0]}x{4 * IMAGE_SIZE[1]}")
    record_measurements(host_version_of(machine))
    with capsys.disabled():
        print(f"\nREADME quick start on a fresh ComfyUI {host_version_of(machine)} copy, mini models "
              f"served on 127.0.0.1: install {MEASURED['install_s']:.1f} s "
              f"({MEASURED['install_bytes_downloaded']:,} bytes downloaded), upscale "
              f"{MEASURED['run_s']:.1f} s (its ComfyUI answered after {server_start:.1f} s; "
              f"{MEASURED['run_bytes_downloaded']} bytes downloaded); written to {MEASURED_JSON}")


def host_version_of(machine: Machine) -> str:
    return hs.host_version(machine.comfy)


def record_measurements(host: str) -> None:
    """MEASURED under *host* in MEASURED_JSON (the other hosts' entries kept)."""
    try:
        data = json.loads(MEASURED_JSON.read_text())
    except (OSError, ValueError):
        data = {}
    data[host] = {**MEASURED, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    MEASURED_JSON.parent.mkdir(parents=True, exist_ok=True)
    MEASURED_JSON.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def test_convert_command_makes_a_file_the_client_can_use(machine, tmp_path):
    from safetensors import safe_open

    from dossr_core.verify import DOSSR_MANIFEST, SD21_MANIFEST, load_manifest, verify_dossr

    command = machine.command("convert")
    words = shlex.split(command.strip("()"))
    assert "--with-backbone" in words
    pack_dir = machine.home / words[words.index("cd") + 1]
    src, dst = (pack_dir / w for w in words[words.index("dossr_core.convert") + 1:][:2])
    assert src.resolve() == machine.model.resolve(), \
        f"the convert command reads {src}, not the file the install command fetched"
    r, _ = machine.run(command)
    assert r.returncode == 0, _describe(r)
    assert dst.is_file() and dst.stat().st_size < src.stat().st_size
    assert dst.resolve().parent == machine.model.parent.resolve()
    # fp16 with the backbone: every (mini) release tensor, the whole SD 2.1-base
    assert verify_dossr(dst, load_manifest(machine.manifests / DOSSR_MANIFEST),
                        load_manifest(machine.manifests / SD21_MANIFEST)).full
    with safe_open(str(dst), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert "F16" in dtypes and "F32" not in dtypes, dtypes
    # "add --dossr-model <converted name> to the client's command"; "the .ckpt can go"
    hint = f"--dossr-model {dst.name}"
    assert f"`{hint}`" in pk.readme_text()
    run = machine.command("run") + " " + hint
    _input_image(run, machine.home, 16, 16)
    aside = machine.model.rename(tmp_path / machine.model.name)
    try:
        r, _ = machine.run(run)
    finally:
        aside.rename(machine.model)
    assert r.returncode == 0, _describe(r) + machine.server_log()
    (printed,) = output_paths(r)
    assert hs.png_size(machine.home / printed) == (64, 64)
    assert_nothing_left(machine, r.stderr)


# ----------------------------------------------------------------------------- a server on the tree

@pytest.fixture(scope="module")
def served(machine, comfyui_path):
    """ComfyUI started on the user's tree after the commands (as a user restarts it to get
    the nodes), with empty files under the other shipped workflows' model names (so the
    editor's combos hold them), the host's example image and a returning user's settings."""
    apis = [json.loads(p.read_text()) for p in (machine.pack / "workflows").glob("*_api.json")]
    for spec in te.wc.model_placeholders(*apis):
        path = machine.comfy / "models" / spec
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    example = comfyui_path / "input" / "example.png"
    if example.is_file():
        shutil.copyfile(example, machine.comfy / "input" / "example.png")
    else:
        hs.write_png(machine.comfy / "input" / "example.png", 96, 64)
    settings = machine.comfy / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({**te.FIRST_RUN_DONE, "Comfy.Minimap.Visible": False}))
    with hs.ComfyServer.start(comfyui_path, machine.comfy) as server:
        yield server


def test_server_loads_the_installed_pack(served, machine, comfyui_path):
    info = served.object_info()
    missing = [n for n in te.wc.DOSSR_NODE_IDS if n not in info]
    assert not missing, f"nodes missing after the install: {missing}\n{served.log_tail()}"
    # the import-time table names the clone (not this checkout), without IMPORT FAILED
    lines = [line for line in served.log_text().splitlines() if str(machine.pack) in line]
    assert any(re.search(r"\d seconds: ", line) for line in lines), served.log_tail(80)
    assert not [line for line in lines if "IMPORT FAILED" in line or "Cannot import" in line], lines
    # the host's own pyproject reader accepts the clone's metadata
    probe = ("import json, sys; from comfy_config import config_parser as c; "
             "cfg = c.extract_node_configuration(sys.argv[1]); "
             "print(json.dumps([cfg.project.name, cfg.project.version, cfg.tool_comfy.display_name, "
             "cfg.tool_comfy.includes, cfg.project.dependencies]))")
    r = subprocess.run([sys.executable, "-c", probe, str(machine.pack)], cwd=str(comfyui_path),
                       env=hs.server_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    project = pk.pyproject()["project"]
    assert json.loads(r.stdout.splitlines()[-1]) == [
        project["name"], project["version"], "DoSSR Super-Resolution",
        pk.pyproject()["tool"]["comfy"]["includes"], project["dependencies"]]


# ----------------------------------------------------------------------------- template browser

FRAME_JS = """
(margin) => {
  // scale 1, the graph's top-left corner (node badges included) at (margin, margin) of the
  // canvas; returns the clip (page pixels) around the whole graph
  const c = window.app.canvas;
  const r = c.canvas.getBoundingClientRect();
  const b = window.app.graph._nodes.map((n) => n.getBounding());
  const badge = 20;
  const x0 = Math.min(...b.map((v) => v[0])), y0 = Math.min(...b.map((v) => v[1])) - badge;
  const x1 = Math.max(...b.map((v) => v[0] + v[2])), y1 = Math.max(...b.map((v) => v[1] + v[3]));
  c.ds.scale = 1;
  c.ds.offset[0] = margin - x0;
  c.ds.offset[1] = margin - y0;
  c.setDirty(true, true);
  c.draw(true, true);
  return {x: r.x, y: r.y, width: Math.ceil(x1 - x0 + 2 * margin),
          height: Math.ceil(y1 - y0 + 2 * margin)};
}
"""

CARDS_JS = """
() => [...document.querySelectorAll("[data-testid^='template-workflow-']")].map((card) => ({
  id: card.dataset.testid,
  images: [...card.querySelectorAll('img')].map((img) => ({
    src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth,
    height: img.naturalHeight, shown: img.getBoundingClientRect().width > 0})),
}))
"""


@pytest.fixture(scope="module")
def browser():
    problem = te._browser_problem()
    if problem:
        pytest.skip(f"template browser check: {problem}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=te._chromium(), args=te.BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def render_thumbnail(editor: te.Editor, workflow: dict, name: str) -> bytes:
    """JPEG of *workflow* in the editor: the graph at scale 1, cropped, THUMBNAIL_WIDTH wide."""
    import io

    PIL = pytest.importorskip("PIL.Image")
    page = editor.page
    page.evaluate("async ([wf, name]) => { await window.app.loadGraphData(wf, true, true, name); }",
                  [workflow, name])
    page.wait_for_timeout(1000)   # node previews (Load Image) load
    clip = page.evaluate(FRAME_JS, 24)
    page.wait_for_timeout(300)
    png = page.screenshot(clip=clip)
    image = PIL.open(io.BytesIO(png)).convert("RGB")
    height = round(image.height * THUMBNAIL_WIDTH / image.width)
    image = image.resize((THUMBNAIL_WIDTH, height), PIL.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True, progressive=True)
    return out.getvalue()


@pytest.mark.skipif(os.environ.get("DOSSR_WRITE_THUMBNAILS") != "1",
                    reason="writes example_workflows/*.jpg; set DOSSR_WRITE_THUMBNAILS=1 to render them")
def test_write_thumbnails(machine, served, browser):
    editor = te.Editor(browser.new_page(viewport=RENDER_VIEWPORT), served.url + "/")
    try:
        editor.open()
        for name in pk.ui_workflow_names():
            workflow = json.loads((REPO / "workflows" / f"{name}.json").read_text())
            data = render_thumbnail(editor, workflow, name)
            assert len(data) <= pk.THUMBNAIL_MAX_BYTES, f"{name}: {len(data)} bytes"
            for folder in (REPO, machine.pack):   # the repo, and the copy the server serves
                (folder / "example_workflows" / f"{name}.jpg").write_bytes(data)
            print(f"wrote example_workflows/{name}.jpg ({len(data) // 1024} KB, "
                  f"{pk.jpeg_size(data)})")
        errors = editor.take_errors()
        assert not errors, "\n".join(errors)
    finally:
        editor.page.close()


def test_template_browser_cards_show_the_thumbnails(machine, served, browser):
    editor = te.Editor(browser.new_page(viewport=te.VIEWPORT), served.url + "/")
    try:
        editor.open()
        page = editor.page
        editor.take_errors()
        fetched = {}   # the frontend fetches each thumbnail and shows it through a blob: URL
        page.on("response", lambda resp: fetched.setdefault(resp.url, resp)
                if resp.url.endswith(".jpg") else None)
        page.evaluate("() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        page.get_by_text(pk.PACK_DIR, exact=True).first.click(timeout=30_000)
        page.locator("[data-testid^='template-workflow-']").first.wait_for(timeout=30_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll(\"[data-testid^='template-workflow-'] img\")]"
            ".every((img) => img.complete)", timeout=30_000)
        page.wait_for_timeout(500)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        shot = OUT_DIR / "template_thumbnails.png"
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        cards = {c["id"].removeprefix("template-workflow-"): c for c in page.evaluate(CARDS_JS)}
        names = pk.ui_workflow_names()
        assert sorted(cards) == names
        for name in names:
            expected = f"{served.url}/api/workflow_templates/{pk.PACK_DIR}/{name}.jpg"
            shipped = (machine.pack / "example_workflows" / f"{name}.jpg").read_bytes()
            assert expected in fetched, f"the page never asked for {expected}: {sorted(fetched)}"
            assert fetched[expected].status == 200
            status, body = served.request("GET", expected[len(served.url):])
            assert status == 200 and body == shipped
            images = [i for i in cards[name]["images"]
                      if i["complete"] and i["shown"] and (i["width"], i["height"]) == pk.jpeg_size(shipped)]
            assert images, f"the {name} card shows no image of its thumbnail's size: {cards[name]['images']}"
        errors = [e for e in editor.take_errors() if not te.NETWORK_ERROR.match(e)]
        assert not errors, "\n".join(errors)
    finally:
        editor.page.close()
