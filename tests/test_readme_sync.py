"""The README stays in step with the code: every option it names exists and every client option
is documented, its node names are the nodes' display names, and its workflow files are shipped."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re

import pytest

from tests import workflow_check as wc
from tests.test_packaging import readme_text

#: ComfyUI's own command-line options the README tells users to pass to ComfyUI itself.
HOST_OPTIONS = {"--cuda-device", "--port", "--lowvram", "--cpu"}
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]+)")


class _Parser(Exception):
    def __init__(self, parser):
        self.parser = parser


def _parser_of(call, monkeypatch) -> argparse.ArgumentParser:
    """The parser *call* builds, caught when it starts parsing."""
    def catch(self, *args, **kwargs):
        raise _Parser(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    with pytest.raises(_Parser) as caught:
        call()
    monkeypatch.undo()
    return caught.value.parser


def _client():
    path = wc.REPO / "workflows" / "dossr_client.py"
    spec = importlib.util.spec_from_file_location("dossr_client_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _options(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings if s.startswith("--")}


@pytest.fixture
def tools(monkeypatch):
    from dossr_core import convert, fetch

    return {"client": _options(_parser_of(lambda: _client().parse_args(["x.png"]), monkeypatch)),
            "fetch": _options(_parser_of(lambda: fetch.main(["default"]), monkeypatch)),
            "convert": _options(_parser_of(lambda: convert.main(["a.ckpt", "b.safetensors"]), monkeypatch))}


def test_every_option_the_readme_names_exists(tools):
    known = set().union(*tools.values()) | HOST_OPTIONS
    named = set(OPTION.findall(readme_text()))
    assert named, "the README names no option?"
    unknown = sorted(named - known)
    assert not unknown, f"the README names options no tool has: {unknown}"


def test_every_client_option_is_documented(tools):
    named = set(OPTION.findall(readme_text()))
    missing = sorted(tools["client"] - named - {"--help"})
    assert not missing, f"client options the README does not mention: {missing}"


def test_node_names_are_the_display_names():
    snapshot = wc.load_snapshot()
    shown = {defn["display_name"] for cls, defn in snapshot.items() if cls.startswith("DoSSR")}
    rows = [line for line in readme_text().splitlines() if line.startswith("| **")]
    in_table = {name for row in rows for name in re.findall(r"\*\*([^*]+)\*\*", row.split("|")[1])}
    assert in_table == shown, f"README node table vs the nodes' display names: {sorted(in_table ^ shown)}"


def test_workflow_files_the_readme_names_are_shipped():
    text = readme_text()
    named = set(re.findall(r"`workflows/([\w.]+\.json)`", text))
    shipped = {p.name for p in wc.shipped_workflows().values()}
    assert named and named <= shipped, sorted(named - shipped)
    for name in wc.workflow_pairs():
        assert f"`workflows/{name}.json`" in text, f"the README's workflow table lacks {name}"


def test_the_template_tile_count_the_readme_states():
    """"W x H px result on N tiles" in the README is what the shipped default's tiling makes."""
    from dossr_core.tiling import tile_grid

    claims = re.findall(r"(\d+)x(\d+) px result on (\d+) tiles", " ".join(readme_text().split()))
    assert claims, "the README no longer states the template's tile count"
    prompt = json.loads((wc.REPO / "workflows" / "dossr_x4_api.json").read_text())
    (tiling,) = [n["inputs"] for n in prompt.values() if n["class_type"] == "DoSSRTiledDiffusion"]
    for w, h, n in claims:
        tiles = tile_grid(int(h) // 8, int(w) // 8, tiling["tile_size"] // 8, tiling["tile_overlap"] // 8)
        assert len(tiles) == int(n), f"{w}x{h} px: the README says {n} tiles, the template makes {len(tiles)}"
