"""Every DoSSR node explains itself: a description, and a tooltip on each input and output.

Read from the snapshot of the real host's /object_info (tests/data/object_info.json),
which a host test keeps equal to the live node definitions.
"""

import json
from pathlib import Path

import pytest

from tests.workflow_check import DOSSR_NODE_IDS

SNAPSHOT = Path(__file__).resolve().parent / "data" / "object_info.json"
NODES = json.loads(SNAPSHOT.read_text())
DOSSR = sorted(name for name in NODES if name.startswith("DoSSR"))


def test_snapshot_has_all_dossr_nodes():
    assert DOSSR == sorted(DOSSR_NODE_IDS)


@pytest.mark.parametrize("name", DOSSR)
def test_node_has_description_category_and_tooltips(name):
    info = NODES[name]
    assert len(info["description"]) > 40, name
    assert info["category"] == "image/upscaling/DoSSR" and info["display_name"].startswith("DoSSR")
    inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    missing = [k for k, (_, opts) in ((k, (v + [{}])[:2]) for k, v in inputs.items())
               if not (opts or {}).get("tooltip")]
    assert not missing, f"{name}: inputs without tooltip: {missing}"
    tooltips = info.get("output_tooltips") or []
    if name in ("DoSSRLREncode", "DoSSRModelLoader"):
        assert len(tooltips) == len(info["output"]) and all(tooltips), name
