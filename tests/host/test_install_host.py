"""The README's user commands, run as written, against a real ComfyUI server.

A temporary folder plays the user's machine: it holds ``ComfyUI/`` (the server's
``--base-directory``: ``custom_nodes/``, ``models/``, ``input/``, ``output/``, ``user/``) and
is the working directory of every command. The commands are read from README.md (the code
blocks marked ``<!-- command: NAME -->``, see tests/test_packaging.py) and run by bash as they
are, with these substitutions only:

* ``<repository-url>`` (the placeholder of the clone command) becomes a local git repository
  whose one commit is this working tree (tracked and new files, as ``git ls-files`` lists
  them), so uncommitted work is what gets installed;
* ``python`` is a shell function calling the interpreter that runs the tests; for
  ``python -m pip install`` it adds ``--dry-run --no-index``, so the requirements are
  checked against this environment and nothing in it changes;
* the upscale command gets ``--server URL`` appended only when port 8188 (ComfyUI's and the
  client's default) is taken on this machine.

Models: random-weight fakes under the real file names of the shipped x4 workflow (the SD2
"mini" checkpoint as ``v2-1_512-ema-pruned.safetensors``; a released-style DoSSR ``.ckpt``
(``state_dict`` wrapper, SD extras) as ``dossr_default.ckpt``), so the upscale command needs no
model options, exactly as for a user with the real files.

With Chromium and playwright (see tests/host/test_editor.py) the template browser of the
installed pack is opened in the real editor and every card must show its
``example_workflows/<name>.jpg``. ``DOSSR_WRITE_THUMBNAILS=1`` (re)renders those thumbnails
from the editor (graph cropped, 1200 px wide, JPEG) into the repository first.
"""

from __future__ import annotations

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
from tests.host import test_editor as te
from tests.hostlib import server as hs

REPO = hs.REPO
DEFAULT_PORT = 8188
OUT_DIR = REPO / "tests" / "out" / "editor"
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


# ----------------------------------------------------------------------------- helpers

def run_shell(command: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """*command* in bash (cwd *cwd*), ``python`` meaning this interpreter (see the prelude)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)   # the repo root would shadow the clone's packages
    env.update(DOSSR_TEST_PYTHON=sys.executable, PIP_DISABLE_PIP_VERSION_CHECK="1",
               GIT_TERMINAL_PROMPT="0", PYTHONUNBUFFERED="1")
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


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_server(comfyui_path: Path, base: Path) -> tuple[hs.ComfyServer, bool]:
    """(server, on the default port). Port 8188 when it is free and this server, not some
    other one, ends up listening there (its own log says so); any free port otherwise."""
    if _port_free(DEFAULT_PORT):
        try:
            server = hs.ComfyServer.start(comfyui_path, base, port=DEFAULT_PORT)
        except hs.ServerUnavailable:
            server = None
        if server is not None:
            banner = f"To see the GUI go to: http://127.0.0.1:{DEFAULT_PORT}"
            deadline = time.monotonic() + 60
            while server.alive() and time.monotonic() < deadline:
                if banner in server.log_text():
                    return server, True
                time.sleep(0.2)
            server.stop()
    return hs.ComfyServer.start(comfyui_path, base), False


def fake_released_dossr_ckpt(model_cache) -> Path:
    """A DoSSR ``.ckpt`` laid out like the released files (random "mini" weights), cached."""
    from tests import fake_dossr

    return model_cache.get(
        f"dossr_mini_released-s0-{model_cache._dossr_version()}.ckpt",
        lambda p: fake_dossr.write_ckpt(p, model_cache._dossr_tensors("mini", 0)))


def output_paths(result: subprocess.CompletedProcess) -> list[Path]:
    return [Path(line) for line in result.stdout.splitlines() if line.strip()]


def _describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


# ----------------------------------------------------------------------------- the user's machine

class Machine:
    """The temporary user machine after the install command: paths, server, install output."""

    def __init__(self, home: Path, source: Path, install: subprocess.CompletedProcess):
        self.home = home
        self.comfy = home / "ComfyUI"
        self.pack = self.comfy / "custom_nodes" / pk.PACK_DIR
        self.source = source
        self.install = install
        self.server: hs.ComfyServer | None = None
        self.on_default_port = False

    def command(self, name: str) -> str:
        command = pk.readme_commands()[name]
        if name == "run" and not self.on_default_port:
            command += f" --server {shlex.quote(self.server.url)}"
        return command


@pytest.fixture(scope="module")
def machine(comfyui_path, tmp_path_factory, model_cache, sd2_mini_ckpt):
    home = tmp_path_factory.mktemp("readme_user")
    source = snapshot_repository(tmp_path_factory.mktemp("readme_source") / "repo")
    hs.prepare_base_dir(home / "ComfyUI", custom_nodes={}, input_images={})

    install = pk.readme_commands()["install"].replace(pk.REPO_URL_PLACEHOLDER,
                                                      shlex.quote(str(source)))
    m = Machine(home, source, run_shell(install, home))
    assert m.install.returncode == 0, f"the README's install command failed: {_describe(m.install)}"

    # the model files of the model table, under the names the shipped x4 workflow uses
    prompt = json.loads((m.pack / "workflows" / "dossr_x4_api.json").read_text())
    (sd_name,) = {n["inputs"]["ckpt_name"] for n in prompt.values()
                  if n["class_type"] == "CheckpointLoaderSimple"}
    (dossr_name,) = {n["inputs"]["model_name"] for n in prompt.values()
                     if n["class_type"] == "DoSSRModelLoader"}
    hs.link(sd2_mini_ckpt, m.comfy / "models" / "checkpoints" / sd_name)
    hs.link(fake_released_dossr_ckpt(model_cache), m.comfy / "models" / "dossr" / dossr_name)
    # the other shipped workflows' model names exist too (empty), so the editor's combos hold
    # them; and the host's example image fills their Load Image node
    apis = [json.loads(p.read_text()) for p in (m.pack / "workflows").glob("*_api.json")]
    for spec in te.wc.model_placeholders(*apis):
        path = m.comfy / "models" / spec
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    example = comfyui_path / "input" / "example.png"
    if example.is_file():
        shutil.copyfile(example, m.comfy / "input" / "example.png")
    else:
        hs.write_png(m.comfy / "input" / "example.png", 96, 64)
    settings = m.comfy / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({**te.FIRST_RUN_DONE, "Comfy.Minimap.Visible": False}))

    m.server, m.on_default_port = start_server(comfyui_path, m.comfy)
    try:
        yield m
    finally:
        m.server.stop()


# ----------------------------------------------------------------------------- install

def test_install_command_clones_the_pack_and_finds_its_requirements(machine):
    # a real clone of the repository, under the name the template browser shows
    assert (machine.pack / ".git").is_dir()
    assert (_git("rev-parse", "HEAD", cwd=machine.pack).strip()
            == _git("rev-parse", "HEAD", cwd=machine.source).strip())
    assert (machine.pack / "__init__.py").is_file()
    # the pip step ran on the clone's requirements and had nothing to install here
    out = machine.install.stdout + machine.install.stderr
    for requirement in pk.requirement_lines(machine.pack / "requirements.txt"):
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        assert re.search(rf"Requirement already satisfied: {re.escape(name)}\b", out, re.I), out
    assert "Would install" not in out, out


def test_server_loads_the_installed_pack(machine, comfyui_path):
    info = machine.server.object_info()
    missing = [n for n in te.wc.DOSSR_NODE_IDS if n not in info]
    assert not missing, f"nodes missing after the install: {missing}\n{machine.server.log_tail()}"
    # the import-time table names the clone (not this checkout), without IMPORT FAILED
    lines = [line for line in machine.server.log_text().splitlines() if str(machine.pack) in line]
    assert any(re.search(r"\d seconds: ", line) for line in lines), machine.server.log_tail(80)
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


# ----------------------------------------------------------------------------- upscale

def _input_image(command: str, home: Path, width: int, height: int) -> Path:
    words = shlex.split(command)
    image = next(w for w in words[2:] if Path(w).suffix.lower() in (".png", ".jpg", ".jpeg"))
    return hs.write_png(home / image, width, height, seed=5)


def test_run_command_upscales_4x_and_prints_the_path(machine):
    command = machine.command("run")
    print(f"running: {command}   (default port: {machine.on_default_port})")
    _input_image(command, machine.home, 24, 16)
    t0 = time.monotonic()
    r = run_shell(command, machine.home)
    print(f"upscale command: {time.monotonic() - t0:.1f} s")
    assert r.returncode == 0, _describe(r) + machine.server.log_tail()
    (printed,) = output_paths(r)
    result = machine.home / printed
    assert result.is_file(), f"the client printed {printed}, which does not exist"
    assert hs.png_size(result) == (96, 64)
    # the README's example of the printed path is what the client prints
    (example,) = re.findall(r"`(\S+/DoSSR_x4_\d{5}_\.png)`", pk.readme_text())
    assert re.sub(r"\d{5}", "#", str(printed)) == re.sub(r"\d{5}", "#", example)
    words = shlex.split(command)
    assert printed.parent == Path(words[words.index("--output-dir") + 1])


def test_convert_command_makes_a_file_the_client_can_use(machine):
    command = machine.command("convert")
    words = shlex.split(command.strip("()"))
    pack_dir = machine.home / words[words.index("cd") + 1]
    src, dst = (pack_dir / w for w in words[words.index("dossr_core.convert") + 1:][:2])
    assert src.exists(), f"the convert command reads {src}, where the model table puts no file"
    r = run_shell(command, machine.home)
    assert r.returncode == 0, _describe(r)
    assert dst.is_file() and dst.stat().st_size < src.stat().st_size
    assert dst.resolve().parent == (machine.comfy / "models" / "dossr").resolve()
    # "add --dossr-model <converted name> to the client's command"
    hint = f"--dossr-model {dst.name}"
    assert f"`{hint}`" in pk.readme_text()
    run = machine.command("run") + " " + hint
    _input_image(run, machine.home, 16, 16)
    r = run_shell(run, machine.home)
    assert r.returncode == 0, _describe(r) + machine.server.log_tail()
    (printed,) = output_paths(r)
    assert hs.png_size(machine.home / printed) == (64, 64)
    last = max(machine.server.get_json("/history").values(), key=lambda e: e["prompt"][0])
    loaders = [n for n in last["prompt"][2].values() if n["class_type"] == "DoSSRModelLoader"]
    assert [n["inputs"]["model_name"] for n in loaders] == [dst.name]


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
def test_write_thumbnails(machine, browser):
    editor = te.Editor(browser.new_page(viewport=RENDER_VIEWPORT), machine.server.url + "/")
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


def test_template_browser_cards_show_the_thumbnails(machine, browser):
    editor = te.Editor(browser.new_page(viewport=te.VIEWPORT), machine.server.url + "/")
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
            expected = f"{machine.server.url}/api/workflow_templates/{pk.PACK_DIR}/{name}.jpg"
            shipped = (machine.pack / "example_workflows" / f"{name}.jpg").read_bytes()
            assert expected in fetched, f"the page never asked for {expected}: {sorted(fetched)}"
            assert fetched[expected].status == 200
            status, served = machine.server.request("GET", expected[len(machine.server.url):])
            assert status == 200 and served == shipped
            images = [i for i in cards[name]["images"]
                      if i["complete"] and i["shown"] and (i["width"], i["height"]) == pk.jpeg_size(shipped)]
            assert images, f"the {name} card shows no image of its thumbnail's size: {cards[name]['images']}"
        errors = [e for e in editor.take_errors() if not te.NETWORK_ERROR.match(e)]
        assert not errors, "\n".join(errors)
    finally:
        editor.page.close()
