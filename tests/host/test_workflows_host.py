"""The shipped workflows on the real host: the recorded node definitions are current, every
API workflow runs, and the template browser offers the UI workflows only."""

from __future__ import annotations

import json

import pytest

from tests import workflow_check as wc
from tests.host.conftest import DOSSR_MINI, RELEASE_MINI, SD2_MINI
from tests.hostlib.server import (EXTENSION_NODE_DIR, find_nodes, load_api_workflow, patch, png_size,
                                  use_models, write_png)

API_FILES = {n + "_api": paths[1] for n, paths in wc.workflow_pairs().items()}
UI_NAMES = sorted(wc.workflow_pairs())
LR_SIZE = (20, 14)   # width, height of the uploaded test image


def test_object_info_snapshot_is_current(comfy_server):
    """tests/data/object_info.json must still describe the live host's nodes (file lists
    aside): a DoSSR node change without a refreshed snapshot fails here, on every host,
    while keys a newer host adds, and core nodes that only grow, do not."""
    recorded = wc.load_snapshot()
    live = comfy_server.object_info()
    missing = sorted(c for c in recorded if c not in live)
    assert not missing, f"classes gone from the host: {missing}"
    stale = [m for cls in sorted(recorded) for m in wc.snapshot_mismatches(cls, recorded[cls], live[cls])]
    assert not stale, (f"{wc.SNAPSHOT.relative_to(wc.REPO)} is out of date for: {'; '.join(stale)}. "
                       f"Refresh it: {wc.REFRESH_COMMAND}")


def test_every_shipped_api_workflow_is_run():
    """The run below covers every API file in workflows/ (a new file without its UI twin
    would otherwise be left out silently), the tiled one included."""
    shipped = sorted(n for n, p in wc.shipped_workflows().items() if wc.is_api_format(wc.load_json(p)))
    assert sorted(API_FILES) == shipped
    assert "dossr_x4_tiled_api" in API_FILES


@pytest.mark.parametrize("name", sorted(API_FILES))
def test_shipped_api_workflow_runs(comfy_server, tmp_path, name):
    """Each shipped API file runs as shipped, with the test models and image swapped in. The
    20x14 image gives an 80x56 result, a single tile for the tiled workflow's 512 px tiles
    (several tiles are covered by tests/host/test_tiling_host.py)."""
    prompt = load_api_workflow(API_FILES[name])
    w, h = LR_SIZE
    image = comfy_server.upload_image(write_png(tmp_path / f"lr_{w}x{h}.png", w, h, seed=5),
                                      name=f"workflows_{name}_{w}x{h}.png")
    patch(prompt, "LoadImage", image=image)
    use_models(prompt, release=RELEASE_MINI, sd=SD2_MINI, dossr=DOSSR_MINI)
    (save_id,) = patch(prompt, "SaveImage", filename_prefix=f"workflows_{name}")
    (encode_id,) = find_nodes(prompt, "DoSSRLREncode")
    scale = prompt[encode_id]["inputs"]["scale"]

    entry = comfy_server.run(prompt, timeout=600)
    assert comfy_server.status_str(entry) == "success"
    saved = (entry.get("outputs") or {}).get(save_id, {}).get("images", [])
    assert len(saved) == 1, f"one LR image in, so one image out; got {saved}"
    (path,) = comfy_server.output_images(entry)
    assert png_size(path) == (round(scale * w), round(scale * h))


def test_template_browser_offers_only_the_ui_workflows(comfy_server):
    for route in ("/api/workflow_templates", "/workflow_templates"):
        listing = comfy_server.get_json(route)
        names = listing.get(EXTENSION_NODE_DIR, [])
        assert sorted(names) == UI_NAMES, (route, listing)   # no *_api, each name once
    for name in UI_NAMES:
        status, body = comfy_server.request("GET", f"/api/workflow_templates/{EXTENSION_NODE_DIR}/{name}.json")
        assert status == 200
        assert body == (wc.EXAMPLES_DIR / f"{name}.json").read_bytes()
        assert wc.is_ui_format(json.loads(body))
