"""Every DoSSR node explains itself: a description, and a tooltip on each input and output,
in words a user can act on.

Read from the snapshot of the real host's /object_info (tests/data/object_info.json),
which a host test keeps equal to the live node definitions.
"""

import json
import re
from pathlib import Path

import pytest

from tests.workflow_check import DOSSR_NODE_IDS

SNAPSHOT = Path(__file__).resolve().parent / "data" / "object_info.json"
NODES = json.loads(SNAPSHOT.read_text())
DOSSR = sorted(name for name in NODES if name.startswith("DoSSR"))

#: The SamplerCustomAdvanced pieces, for users who know the method: the only nodes whose
#: texts may use its mathematical names. Every other DoSSR node (new ones too) is plain.
EXPERT_NODES = {"DoSSRSigmas", "DoSSRSamplerSelect", "DoSSRApplyControlNet"}
MATH_WORDS = re.compile(r"\b(xhat0|x̂0|x0|x_t|t1|D1|D2|eps|epsilon|sigmas?|lambda|lam|kappa|"
                        r"timesteps?|DoS-SDE)\b", re.IGNORECASE)


def inputs_of(info: dict) -> dict:
    """{input name: options} of a node's required and optional inputs."""
    inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    return {name: ((spec + [{}])[1] or {}) for name, spec in inputs.items()}


def texts_of(info: dict) -> dict:
    """Every text the editor shows for a node: {where: text}."""
    texts = {"description": info["description"]}
    texts.update({f"input {k}": o.get("tooltip") or "" for k, o in inputs_of(info).items()})
    texts.update({f"output {name}": tip or "" for name, tip
                  in zip(info["output_name"], info.get("output_tooltips") or [None] * len(info["output"]))})
    return texts


def test_snapshot_has_all_dossr_nodes():
    assert DOSSR == sorted(DOSSR_NODE_IDS)


@pytest.mark.parametrize("name", DOSSR)
def test_node_has_description_and_category(name):
    info = NODES[name]
    assert len(info["description"]) > 40, name
    assert info["category"] == "image/upscaling/DoSSR" and info["display_name"].startswith("DoSSR")


@pytest.mark.parametrize("name", DOSSR)
def test_every_input_and_output_has_a_tooltip(name):
    info = NODES[name]
    missing = [k for k, o in inputs_of(info).items() if not o.get("tooltip")]
    assert not missing, f"{name}: inputs without tooltip: {missing}"
    tooltips = info.get("output_tooltips") or []
    assert len(tooltips) == len(info["output"]), f"{name}: {len(info['output'])} outputs, tooltips {tooltips}"
    missing = [out for out, tip in zip(info["output_name"], tooltips) if not tip]
    assert not missing, f"{name}: outputs without tooltip: {missing}"


@pytest.mark.parametrize("name", sorted(set(DOSSR) - EXPERT_NODES))
def test_plain_nodes_use_no_math_names(name):
    """xhat0, t1, D2, eps and the like belong to the expert nodes; node names ("DoSSR
    Sigmas") are not math."""
    names = sorted((NODES[n]["display_name"] for n in DOSSR), key=len, reverse=True)
    found = {}
    for where, text in texts_of(NODES[name]).items():
        for display in names:
            text = text.replace(display, "")
        found.update({where: m.group(0) for m in [MATH_WORDS.search(text)] if m})
    assert not found, f"{name}: math names in {found}"


def test_expert_order_tooltip_says_which_order_to_pick():
    order = inputs_of(NODES["DoSSRSamplerSelect"])["order"]["tooltip"]
    assert "default" in order and "3-corrected" in order and "paper" in order


@pytest.mark.parametrize("name", DOSSR)
def test_color_is_spelled_one_way(name):
    """"Color Fix" / "color" in every text a user sees (node names, descriptions, tooltips)."""
    texts = {"display_name": NODES[name]["display_name"], **texts_of(NODES[name])}
    assert not {w: t for w, t in texts.items() if re.search(r"colour", t, re.IGNORECASE)}
