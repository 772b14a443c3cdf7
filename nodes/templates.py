"""The host's template browser offers this pack's UI workflows, never its API-format files.

The host answers ``GET /workflow_templates`` with every ``*.json`` in a pack's
``example_workflows/``, ``example/``, ``examples/``, ``workflow/`` and ``workflows/``
folders (``app/custom_node_manager.py``), but serves the files under
``/api/workflow_templates/<pack>/`` from the first of those folders that exists only. This
pack keeps its UI workflows in ``example_workflows/`` (byte-identical copies of
``workflows/*.json`` without ``_api``) and the API-format files in ``workflows/``, so the
unfiltered listing names every UI workflow twice and the API files once each; opening an
API entry fails (404 here; on a host serving ``workflows/`` it clears the canvas and shows
a schema error). A response filter keeps this pack's entry of the listing to the names in
``example_workflows/``, once each. Other packs' entries pass unchanged.

Only the standard library is imported at module level, so the listing logic can be tested
without the host.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = PACK_ROOT / "example_workflows"
LISTING_PATHS = frozenset({"/workflow_templates", "/api/workflow_templates"})


def template_names(directory: Path = EXAMPLES_DIR) -> list[str]:
    """The template names (file stems) the browser should offer for this pack."""
    return sorted(p.stem for p in Path(directory).glob("*.json"))


def filter_listing(listing: dict, pack_keys, names) -> dict:
    """``listing`` ({pack: [names]}) with each entry of ``pack_keys`` reduced to ``names``
    that it lists, in listing order, without repeats. Other entries are returned as they are."""
    allowed = set(names)
    out = {}
    for pack, entries in listing.items():
        if pack in pack_keys and isinstance(entries, list):
            entries = [n for n in dict.fromkeys(entries) if n in allowed]
        out[pack] = entries
    return out


def pack_keys(listing: dict, custom_node_dirs, root: Path = PACK_ROOT) -> set[str]:
    """The listing keys (folder names under a ``custom_nodes`` directory) that are this pack,
    whatever the folder is called and whether or not it is a symlink."""
    real_root = os.path.realpath(root)
    keys = set()
    for folder in custom_node_dirs:
        for key in listing:
            if os.path.realpath(os.path.join(folder, key)) == real_root:
                keys.add(key)
    return keys


def _filtered_body(body: bytes) -> bytes | None:
    """The filtered listing as JSON, or None to leave the response untouched."""
    import folder_paths

    try:
        listing = json.loads(body)
    except (TypeError, ValueError):
        return None
    if not isinstance(listing, dict):
        return None
    keys = pack_keys(listing, folder_paths.get_folder_paths("custom_nodes"))
    if not keys:
        return None
    return json.dumps(filter_listing(listing, keys, template_names())).encode("utf-8")


def install_template_filter(app=None) -> bool:
    """Add the listing filter to the host's aiohttp application (``PromptServer.instance.app``
    by default). False, with a log line, where that is not possible (no server, or it has
    already started); the browser then also lists the API files, which fail to open."""
    from aiohttp import web

    if app is None:
        try:
            from server import PromptServer
        except ImportError:
            return False
        instance = getattr(PromptServer, "instance", None)
        app = getattr(instance, "app", None)
        if app is None:
            return False
    if any(getattr(m, "_dossr_template_filter", False) for m in app.middlewares):
        return True
    if app.frozen:
        logging.info("DoSSR: the server is already running; the template list is not filtered")
        return False

    @web.middleware
    async def dossr_template_filter(request, handler):
        response = await handler(request)
        if (request.method != "GET" or request.path not in LISTING_PATHS
                or response.status != 200 or not isinstance(response, web.Response)):
            return response
        body = _filtered_body(response.body)
        if body is None:
            return response
        return web.Response(body=body, status=200, content_type="application/json")

    dossr_template_filter._dossr_template_filter = True
    app.middlewares.append(dossr_template_filter)
    return True
