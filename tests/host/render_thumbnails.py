"""Render the template thumbnails ``example_workflows/<name>.jpg`` from the host's real editor.

    COMFYUI_PATH=/opt/ComfyUI .venv-hosts/ComfyUI/bin/python -m tests.host.render_thumbnails

Re-run it whenever a shipped UI workflow's graph changes: the template browser shows these
images as the workflows' cards. It starts a server with this pack and empty files under every
model name the shipped workflows use (``test_editor.prepare_user_base``: the combos hold the
workflows' values, nothing is marked missing), opens the editor in Chromium and renders each
UI workflow with ``test_install_host.render_thumbnail`` (graph at scale 1, cropped,
``THUMBNAIL_WIDTH`` wide, JPEG), the render ``DOSSR_WRITE_THUMBNAILS=1`` runs there. Each
image is held to tests/test_packaging.py's size limit before it is written. Needs Chromium and
playwright like the editor test; nothing is fetched from outside 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests import test_packaging as pk
from tests import workflow_check as wc
from tests.host import test_editor as te
from tests.host import test_install_host as ih
from tests.hostlib import server as hs

#: Editor settings for the render: a returning user, and no minimap over the graph.
RENDER_SETTINGS = {"Comfy.Minimap.Visible": False}


def render_all(comfyui_path: Path, out_dir: Path) -> list[str]:
    """Write ``<name>.jpg`` for every shipped UI workflow into *out_dir*; returns the page's
    errors (empty when the editor reported none)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="dossr_thumbnails_") as tmp:
        base = te.prepare_user_base(Path(tmp) / "base", comfyui_path, RENDER_SETTINGS)
        with hs.ComfyServer.start(comfyui_path, base) as server, sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=te._chromium(), args=te.BROWSER_ARGS)
            try:
                editor = te.Editor(chromium.new_page(viewport=ih.RENDER_VIEWPORT), server.url + "/")
                editor.open()
                for name in pk.ui_workflow_names():
                    workflow = wc.load_json(wc.workflow_pairs()[name][0])
                    data = ih.render_thumbnail(editor, workflow, name)
                    if len(data) > pk.THUMBNAIL_MAX_BYTES:
                        return [f"{name}: {len(data)} bytes, over the {pk.THUMBNAIL_MAX_BYTES} "
                                "bytes tests/test_packaging.py allows; nothing more written"]
                    (out_dir / f"{name}.jpg").write_bytes(data)
                    print(f"wrote {out_dir.name}/{name}.jpg ({len(data) // 1024} KB, "
                          f"{pk.jpeg_size(data)[0]}x{pk.jpeg_size(data)[1]})")
                return editor.take_errors()
            finally:
                chromium.close()


def main() -> int:
    comfyui_path = os.environ.get("COMFYUI_PATH")
    problem = hs.comfy_tree_problem(comfyui_path) or te._browser_problem()
    if problem:
        print(f"render_thumbnails: {problem}; set COMFYUI_PATH to a ComfyUI tree and run this "
              "with that host's Python (see tests/host/test_editor.py for the browser)",
              file=sys.stderr)
        return 2
    errors = render_all(Path(comfyui_path), wc.EXAMPLES_DIR)
    if errors:
        print("render_thumbnails: the editor reported:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
