"""Check ComfyUI workflow files against the host's node definitions (``GET /object_info``).

Used by tests/test_workflows.py (with the recorded snapshot tests/data/object_info.json, no
host needed) and tests/host/test_workflows_host.py (snapshot against the live host).
Standard library only. Every ``check_*`` function returns a list of problems (sentences);
an empty list means the file is fine.

Refresh the snapshot after changing a node's inputs or outputs (or to follow a new host):

    COMFYUI_PATH=/path/to/ComfyUI python -m tests.workflow_check --refresh-snapshot

It derives the node classes and the model placeholder files from the shipped workflows and
runs tests/hostlib/object_info_snapshot.py.

Formats (see the host notes, ../shared/HOST.md §6):

* API: ``{node_id: {"class_type", "inputs": {name: literal | [source_id, output_index]},
  "_meta": {"title"}}}``, what ``POST /prompt`` takes.
* UI: ``{"nodes", "links", "groups", "config", "extra", "version", ...}``, what the editor
  saves. A node's ``widgets_values`` hold the widget inputs by position, in the order of the
  class's ``input_order`` (required, then optional), with the editor's extra values: a
  "control after generate" value after an INT input with ``control_after_generate`` (or, by
  the legacy convention, named ``seed``/``noise_seed``), two after such a COMBO (control and
  filter), and the upload button's value after the widgets of a node with an
  ``image_upload``/``video_upload``/``animated_image_upload`` combo. ``links`` entries are
  ``[link_id, source_id, source_slot, target_id, target_slot, type]``.
* Model downloads (UI format only): a loader node's ``properties.models`` lists
  ``{"name", "url", "directory"}`` entries. When a workflow is loaded, the editor (frontend
  1.27, ``getSelectedModelsMetadata`` and ``loadGraphData``) keeps the entries whose ``name``
  is one of the node's widget values, looks for ``name`` in the host's model folder
  ``directory`` and lists the absent ones in its "Missing Models" dialog. It offers a
  download only for a ``url`` under https://huggingface.co/ or https://civitai.com/ and a
  ``name`` ending in .safetensors or .sft (and three addresses it whitelists); any other
  entry is shown with an error and its Download and Copy URL buttons disabled
  (``MissingModelsWarning``). Frontend 1.49 (the "Errors" side panel) lists every missing
  model file, with or without an entry; an entry gives the row its folder and a Copy URL
  button, and a Download button where the url is downloadable. An entry is either a
  download (held to the 1.27 rules above) or a release page to get the file from by hand
  (``RELEASE_PAGES``: the DoSSR weights' Google Drive folder): both frontends show its
  address, offer no download for it, and 1.49 copies it, so a user without the file gets
  where to fetch it and which folder it goes to.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS_DIR = REPO / "workflows"
EXAMPLES_DIR = REPO / "example_workflows"
SNAPSHOT = REPO / "tests" / "data" / "object_info.json"
DOSSR_NODE_IDS = ("DoSSRCheckpointLoader", "DoSSRModelLoader", "DoSSRLREncode", "DoSSRSampler", "DoSSRApplyControlNet",
                  "DoSSRSigmas", "DoSSRSamplerSelect", "DoSSRColorFix", "DoSSRTiledDiffusion",
                  "DoSSRVAEDecode")
#: Host classes recorded besides those the shipped workflows use: VAE Decode is what the
#: client's ``--tiling off`` turns a forced-tiles workflow's VAE Decode (Tiled) into.
EXTRA_CLASSES = ("VAEDecode",)
REFRESH_COMMAND = "COMFYUI_PATH=/path/to/ComfyUI python -m tests.workflow_check --refresh-snapshot"

#: Inputs whose options are the files of a host folder: (class, input) -> folder. The
#: shipped names cannot be in a test host's lists, so only their kind is checked (a plain,
#: non-empty string), and the live-host comparison ignores these option lists.
FILE_INPUTS = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("DoSSRModelLoader", "model_name"): "dossr",
    ("DoSSRCheckpointLoader", "ckpt_name"): "dossr",
    ("LoadImage", "image"): "input",
}
#: Editor-only node types: they never reach the server and are not in /object_info.
UI_ONLY_TYPES = frozenset({"Note", "MarkdownNote"})
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
UI_KEYS = ("nodes", "links", "groups", "config", "extra", "version", "last_node_id", "last_link_id")
#: What the editor's "Missing Models" dialog (frontend 1.27) accepts for a download.
DOWNLOAD_SOURCES = ("https://huggingface.co/", "https://civitai.com/")
DOWNLOAD_SUFFIXES = (".safetensors", ".sft")
#: Pages to fetch a file from by hand (no download offered): an entry with such a url is
#: shown with its address by both frontends (1.27: "Download not allowed", buttons
#: disabled; 1.49: Copy URL, no Download button). The DoSSR release is a Google Drive folder.
RELEASE_PAGES = ("https://drive.google.com/drive/folders/",)
MODEL_ENTRY_KEYS = frozenset({"name", "url", "directory"})
MODEL_ENTRY_OPTIONAL = frozenset({"hash", "hash_type"})


# ----------------------------------------------------------------------------- files

def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_snapshot(path=SNAPSHOT) -> dict:
    return load_json(path)


def is_api_format(data) -> bool:
    return (isinstance(data, dict) and "nodes" not in data and bool(data)
            and all(isinstance(v, dict) and "class_type" in v for v in data.values()))


def is_ui_format(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def shipped_workflows() -> dict[str, Path]:
    """Every shipped workflow file by name (``dossr_x4``, ``dossr_x4_api``, ...)."""
    return {p.stem: p for p in sorted(WORKFLOWS_DIR.glob("*.json"))}


def workflow_pairs() -> dict[str, tuple[Path, Path]]:
    """``{name: (ui_path, api_path)}`` for every ``workflows/NAME.json`` + ``NAME_api.json``."""
    files = shipped_workflows()
    return {n: (p, files[n + "_api"]) for n, p in files.items()
            if not n.endswith("_api") and n + "_api" in files}


def classes_used(*workflows) -> list[str]:
    """The node classes (server-side types) that the given parsed workflows use."""
    found = set()
    for wf in workflows:
        if is_ui_format(wf):
            found |= {n["type"] for n in wf["nodes"] if n.get("type") not in UI_ONLY_TYPES}
        elif isinstance(wf, dict):
            found |= {n.get("class_type") for n in wf.values() if isinstance(n, dict)}
    return sorted(c for c in found if c)


def model_placeholders(*workflows) -> list[str]:
    """``folder/name`` of every model file the given API workflows name (for the snapshot)."""
    out = set()
    for wf in workflows:
        if not is_api_format(wf):
            continue
        for node in wf.values():
            for name, value in node.get("inputs", {}).items():
                folder = FILE_INPUTS.get((node["class_type"], name))
                if folder and folder != "input" and isinstance(value, str):
                    out.add(f"{folder}/{value}")
    return sorted(out)


# ----------------------------------------------------------------------------- definitions

def input_specs(defn: dict) -> dict:
    """``{name: (spec, required)}`` of a class's required and optional inputs (not hidden)."""
    out = {}
    for section, required in (("required", True), ("optional", False)):
        for name, spec in (defn.get("input", {}).get(section) or {}).items():
            out[name] = (spec, required)
    return out


def ordered_inputs(defn: dict) -> list[str]:
    """Input names in the editor's order: ``input_order`` required then optional, then the rest."""
    specs = input_specs(defn)
    order = defn.get("input_order") or {}
    names = [n for n in order.get("required", []) if n in specs and specs[n][1]]
    names += [n for n in order.get("optional", []) if n in specs and not specs[n][1]]
    return names + [n for n in specs if n not in names]


def spec_type(spec) -> str:
    """INT, FLOAT, STRING, BOOLEAN, COMBO (an option list or ``"COMBO"``) or a socket type."""
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    return "COMBO" if isinstance(kind, list) else str(kind)


def spec_options(spec) -> dict:
    return spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_values(spec) -> list:
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    return list(kind) if isinstance(kind, list) else list(spec_options(spec).get("options", []))


def is_widget(spec) -> bool:
    return spec_type(spec) in WIDGET_TYPES and not spec_options(spec).get("forceInput", False)


def widget_layout(defn: dict) -> list[tuple[str, str | None]]:
    """The editor's widget values of a class in order: ``(input name, None)`` for an input's
    own value, ``(input name, "control")``/``(..., "filter")`` for the extra control values
    and ``("upload", "upload")`` for an upload button."""
    specs = input_specs(defn)
    layout, upload = [], False
    for name in ordered_inputs(defn):
        spec = specs[name][0]
        if not is_widget(spec):
            continue
        layout.append((name, None))
        kind, opts = spec_type(spec), spec_options(spec)
        control = opts.get("control_after_generate")
        if kind == "INT" and (control if control is not None else name in ("seed", "noise_seed")):
            layout.append((name, "control"))
        elif kind == "COMBO" and control:
            layout += [(name, "control"), (name, "filter")]
        if kind == "COMBO" and any(opts.get(k) is True for k in UPLOAD_OPTIONS):
            upload = True
    if upload:
        layout.append(("upload", "upload"))
    return layout


def types_match(output_type: str, input_type: str) -> bool:
    """The host's rule (``comfy_execution.validation``): equal, ``*`` on either side, or a
    common member of comma-separated unions."""
    if output_type == input_type or "*" in (output_type, input_type):
        return True
    return bool(set(output_type.split(",")) & set(input_type.split(",")))


def check_literal(class_type: str, name: str, spec, value) -> list[str]:
    """Problems of a literal input value against its spec."""
    where = f"{class_type}.{name}"
    kind, opts = spec_type(spec), spec_options(spec)
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: {value!r} is not an INT"]
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"{where}: {value!r} is not a FLOAT"]
    elif kind == "STRING":
        return [] if isinstance(value, str) else [f"{where}: {value!r} is not a STRING"]
    elif kind == "BOOLEAN":
        return [] if isinstance(value, bool) else [f"{where}: {value!r} is not a BOOLEAN"]
    elif kind == "COMBO":
        if (class_type, name) in FILE_INPUTS:
            ok = isinstance(value, str) and value.strip() != ""
            return [] if ok else [f"{where}: file name {value!r} is not a plain non-empty string"]
        options = combo_values(spec)
        return [] if value in options else [f"{where}: {value!r} is not one of {options}"]
    else:
        return [f"{where}: {kind} is a socket; it needs a link, not the literal {value!r}"]
    problems = []
    if "min" in opts and value < opts["min"]:
        problems.append(f"{where}: {value} is below the minimum {opts['min']}")
    if "max" in opts and value > opts["max"]:
        problems.append(f"{where}: {value} is above the maximum {opts['max']}")
    return problems


# ----------------------------------------------------------------------------- API format

def is_link(value) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def check_api(prompt, info: dict) -> list[str]:
    """Problems of an API-format workflow against the node definitions ``info``."""
    if not is_api_format(prompt):
        return ["not an API-format workflow ({node_id: {class_type, inputs}})"]
    problems = []
    for nid, node in prompt.items():
        cls = node["class_type"]
        if cls in UI_ONLY_TYPES:
            problems.append(f"node {nid}: {cls} is an editor-only node; it has no place in the API file")
            continue
        if cls not in info:
            problems.append(f"node {nid}: class {cls} is not defined by the host")
            continue
        defn, inputs = info[cls], node.get("inputs")
        if not isinstance(inputs, dict):
            problems.append(f"node {nid} ({cls}): inputs is not a mapping")
            continue
        specs = input_specs(defn)
        for name, value in inputs.items():
            if name not in specs:
                problems.append(f"node {nid} ({cls}): no input named {name!r} (has {sorted(specs)})")
                continue
            spec = specs[name][0]
            if is_link(value):
                src = prompt.get(value[0])
                if src is None:
                    problems.append(f"node {nid} ({cls}).{name}: links to missing node {value[0]}")
                    continue
                src_def = info.get(src["class_type"])
                if src_def is None:
                    continue  # reported for the source node
                outs = src_def.get("output", [])
                if not 0 <= value[1] < len(outs):
                    problems.append(f"node {nid} ({cls}).{name}: node {value[0]} ({src['class_type']}) "
                                    f"has no output {value[1]} (has {len(outs)})")
                elif not types_match(outs[value[1]], spec_type(spec)):
                    problems.append(f"node {nid} ({cls}).{name}: gets {outs[value[1]]} from node "
                                    f"{value[0]} ({src['class_type']}) but wants {spec_type(spec)}")
            else:
                problems += [f"node {nid}: {p}" for p in check_literal(cls, name, spec, value)]
        for name, (spec, required) in specs.items():
            if required and name not in inputs:
                problems.append(f"node {nid} ({cls}): required input {name!r} is missing")
    if not problems:
        problems += _check_api_graph(prompt, info)
    return problems


def _check_api_graph(prompt: dict, info: dict) -> list[str]:
    problems = []
    if not any(info[n["class_type"]].get("output_node") for n in prompt.values()):
        problems.append("no output node (nothing would run)")
    state = {}

    def visit(nid, path):
        if state.get(nid) == "done":
            return
        if state.get(nid) == "open":
            problems.append(f"cycle through nodes {' -> '.join(path + [nid])}")
            return
        state[nid] = "open"
        for value in prompt[nid]["inputs"].values():
            if is_link(value):
                visit(value[0], path + [nid])
        state[nid] = "done"

    for nid in prompt:
        visit(nid, [])
    return problems


# ----------------------------------------------------------------------------- UI format

def check_ui(wf, info: dict) -> list[str]:
    """Problems of a UI-format workflow against the node definitions ``info``."""
    if not is_ui_format(wf):
        return ["not a UI-format workflow (nodes, links, ...)"]
    problems = [f"top-level key {k!r} is missing" for k in UI_KEYS if k not in wf]
    nodes = {}
    for node in wf["nodes"]:
        if node.get("id") in nodes:
            problems.append(f"node id {node.get('id')} is used twice")
        nodes[node.get("id")] = node
    if nodes and isinstance(wf.get("last_node_id"), int) and wf["last_node_id"] < max(nodes):
        problems.append(f"last_node_id {wf['last_node_id']} is below the highest node id {max(nodes)}")
    links = {}
    for link in wf["links"]:
        if not (isinstance(link, list) and len(link) == 6):
            problems.append(f"link {link!r} is not [id, source, slot, target, slot, type]")
            continue
        if link[0] in links:
            problems.append(f"link id {link[0]} is used twice")
        links[link[0]] = link
    if links and isinstance(wf.get("last_link_id"), int) and wf["last_link_id"] < max(links):
        problems.append(f"last_link_id {wf['last_link_id']} is below the highest link id {max(links)}")

    for nid, node in nodes.items():
        problems += _check_ui_node(nid, node, info)
        problems += check_model_entries(node, info)
    for lid, (_, src, src_slot, dst, dst_slot, ltype) in links.items():
        problems += _check_ui_link(lid, src, src_slot, dst, dst_slot, ltype, nodes)
    # every slot's link reference has its link
    for nid, node in nodes.items():
        for i, inp in enumerate(node.get("inputs") or []):
            lid = inp.get("link")
            if lid is not None and (lid not in links or links[lid][3:5] != [nid, i]):
                problems.append(f"node {nid} input {inp.get('name')!r} refers to link {lid}, "
                                f"which does not end there")
        for i, out in enumerate(node.get("outputs") or []):
            for lid in out.get("links") or []:
                if lid not in links or links[lid][1:3] != [nid, i]:
                    problems.append(f"node {nid} output {out.get('name')!r} lists link {lid}, "
                                    f"which does not start there")
    return problems


def _check_ui_node(nid, node: dict, info: dict) -> list[str]:
    ntype = node.get("type")
    values = node.get("widgets_values")
    if ntype in UI_ONLY_TYPES:
        ok = isinstance(values, list) and len(values) == 1 and isinstance(values[0], str)
        return [] if ok else [f"node {nid} ({ntype}): widgets_values should be [text]"]
    if ntype not in info:
        return [f"node {nid}: type {ntype} is not defined by the host"]
    defn = info[ntype]
    problems = []
    specs = input_specs(defn)
    inputs = node.get("inputs") or []
    seen = set()
    for inp in inputs:
        name = inp.get("name")
        if name in seen:
            problems.append(f"node {nid} ({ntype}): input {name!r} listed twice")
        seen.add(name)
        if "widget" in inp:
            if inp["widget"].get("name") != name:
                problems.append(f"node {nid} ({ntype}): input {name!r} names widget {inp['widget']}")
            if name == "upload":
                continue
        if name not in specs:
            problems.append(f"node {nid} ({ntype}): no input named {name!r} (has {sorted(specs)})")
            continue
        spec = specs[name][0]
        if inp.get("type") != spec_type(spec):
            problems.append(f"node {nid} ({ntype}).{name}: slot type {inp.get('type')} but the "
                            f"class says {spec_type(spec)}")
        if ("widget" in inp) != is_widget(spec):
            problems.append(f"node {nid} ({ntype}).{name}: widget marker does not match the class")
    for name, (spec, required) in specs.items():
        if is_widget(spec):
            continue
        slot = next((i for i in inputs if i.get("name") == name), None)
        if slot is None and required:
            problems.append(f"node {nid} ({ntype}): required input {name!r} has no slot")
        elif required and slot.get("link") is None:
            problems.append(f"node {nid} ({ntype}): required input {name!r} is not connected")
    outputs = node.get("outputs") or []
    want = list(zip(defn.get("output_name") or defn.get("output", []), defn.get("output", [])))
    have = [(o.get("name"), o.get("type")) for o in outputs]
    if have != want:
        problems.append(f"node {nid} ({ntype}): outputs {have} but the class has {want}")
    layout = widget_layout(defn)
    if not isinstance(values, list):
        values = [] if values is None else values
    if not isinstance(values, list) or len(values) != len(layout):
        return problems + [f"node {nid} ({ntype}): {len(values) if isinstance(values, list) else values!r} "
                           f"widget values but the class has {len(layout)}: "
                           f"{[n if k is None else f'{n}:{k}' for n, k in layout]}"]
    for (name, extra), value in zip(layout, values):
        if extra == "control":
            if value not in CONTROL_VALUES + ("increment-wrap",):
                problems.append(f"node {nid} ({ntype}).{name}: control value {value!r} is not one "
                                f"of {CONTROL_VALUES}")
        elif extra is None:
            problems += [f"node {nid}: {p}" for p in check_literal(ntype, name, specs[name][0], value)]
    return problems


def model_entries(node: dict) -> list:
    """The node's ``properties.models`` (download addresses for the editor), [] if none."""
    return (node.get("properties") or {}).get("models") or []


def model_widgets(node: dict, info: dict) -> dict[str, tuple[str, str]]:
    """``{widget value: (input name, host folder)}`` of the node's model-file widgets."""
    defn = info.get(node.get("type"))
    if defn is None:
        return {}
    out = {}
    for (name, extra), value in zip(widget_layout(defn), node.get("widgets_values") or []):
        folder = FILE_INPUTS.get((node["type"], name))
        if extra is None and folder and folder != "input" and isinstance(value, str):
            out[value] = (name, folder)
    return out


def check_model_entries(node: dict, info: dict) -> list[str]:
    """Problems of a UI node's ``properties.models``: entries the editor would reject or
    ignore, or whose download it would refuse."""
    where = f"node {node.get('id')} ({node.get('type')}) properties.models"
    props = node.get("properties") or {}
    if "models" not in props:
        return []
    entries = props["models"]
    if not isinstance(entries, list) or not entries:
        return [f"{where}: not a non-empty list"]
    widgets = model_widgets(node, info)
    problems = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{at}: not an object")
            continue
        missing = sorted(MODEL_ENTRY_KEYS - set(entry))
        extra = sorted(set(entry) - MODEL_ENTRY_KEYS - MODEL_ENTRY_OPTIONAL)
        if missing or extra:
            problems.append(f"{at}: keys {sorted(entry)}; wants {sorted(MODEL_ENTRY_KEYS)}")
            continue
        if not all(isinstance(entry[k], str) and entry[k].strip() for k in entry):
            problems.append(f"{at}: every value must be a non-empty string")
            continue
        name, url, directory = entry["name"], entry["url"], entry["directory"]
        if name not in widgets:
            problems.append(f"{at}: name {name!r} is not a model widget value of the node "
                            f"({sorted(widgets)}), so the editor ignores the entry")
        elif directory != widgets[name][1]:
            problems.append(f"{at}: directory {directory!r}, but {widgets[name][0]} lists the "
                            f"host folder {widgets[name][1]!r}")
        if any(c.isspace() for c in url):
            problems.append(f"{at}: url {url!r} contains white space")
            continue
        if url.startswith(RELEASE_PAGES):
            if not url[len(next(p for p in RELEASE_PAGES if url.startswith(p))):].strip("/"):
                problems.append(f"{at}: {url!r} names no folder")
            continue   # a page to fetch the file from by hand: the download rules do not apply
        if not url.startswith(DOWNLOAD_SOURCES):
            problems.append(f"{at}: the editor refuses downloads from {url!r} (only from "
                            f"{', '.join(DOWNLOAD_SOURCES)}), and it is no release page "
                            f"({', '.join(RELEASE_PAGES)})")
        elif url.startswith("https://huggingface.co/") and (
                "/resolve/" not in url or url.split("?")[0].rsplit("/", 1)[-1] != name):
            problems.append(f"{at}: {url!r} is not a Hugging Face file address (.../resolve/"
                            f"<revision>/{name})")
        if not name.endswith(DOWNLOAD_SUFFIXES):
            problems.append(f"{at}: the editor refuses downloads of {name!r} (only "
                            f"{', '.join(DOWNLOAD_SUFFIXES)} files)")
    return problems


def _check_ui_link(lid, src, src_slot, dst, dst_slot, ltype, nodes: dict) -> list[str]:
    where = f"link {lid} ({src}:{src_slot} -> {dst}:{dst_slot})"
    if src not in nodes or dst not in nodes:
        return [f"{where}: node {src if src not in nodes else dst} does not exist"]
    outs, ins = nodes[src].get("outputs") or [], nodes[dst].get("inputs") or []
    if not 0 <= src_slot < len(outs):
        return [f"{where}: node {src} has no output slot {src_slot}"]
    if not 0 <= dst_slot < len(ins):
        return [f"{where}: node {dst} has no input slot {dst_slot}"]
    out, inp = outs[src_slot], ins[dst_slot]
    problems = []
    if out.get("type") != ltype:
        problems.append(f"{where}: type {ltype} but the output is {out.get('type')}")
    if not types_match(ltype, inp.get("type", "")):
        problems.append(f"{where}: carries {ltype} into input {inp.get('name')!r} of type {inp.get('type')}")
    if lid not in (out.get("links") or []):
        problems.append(f"{where}: not listed in the output's links")
    if inp.get("link") != lid:
        problems.append(f"{where}: the input's link is {inp.get('link')}")
    return problems


# ----------------------------------------------------------------------------- UI <-> API

def api_from_ui(wf: dict, info: dict) -> dict:
    """The API-format graph a UI workflow describes (what the editor's "Export (API)" gives):
    editor-only nodes left out, widget values by name, links as [source_id, slot]."""
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {l[0]: l for l in wf["links"]}
    out = {}
    for nid, node in nodes.items():
        if node["type"] in UI_ONLY_TYPES:
            continue
        defn = info[node["type"]]
        inputs = {}
        for (name, extra), value in zip(widget_layout(defn), node.get("widgets_values") or []):
            if extra is None:
                inputs[name] = value
        for inp in node.get("inputs") or []:
            if inp.get("link") is not None:
                link = links[inp["link"]]
                inputs[inp["name"]] = [str(link[1]), link[2]]
        out[str(nid)] = {"inputs": inputs, "class_type": node["type"],
                         "_meta": {"title": node.get("title") or defn.get("display_name") or node["type"]}}
    return out


def compare_ui_api(wf: dict, prompt: dict, info: dict) -> list[str]:
    """Differences between the graph of a UI workflow and an API workflow (node ids, classes,
    connections, widget values and titles)."""
    want = api_from_ui(wf, info)
    problems = []
    for nid in sorted(set(want) | set(prompt), key=lambda s: (len(s), s)):
        if nid not in prompt:
            problems.append(f"node {nid} ({want[nid]['class_type']}) is in the UI file only")
        elif nid not in want:
            problems.append(f"node {nid} ({prompt[nid].get('class_type')}) is in the API file only")
        else:
            a, b = want[nid], prompt[nid]
            if a["class_type"] != b.get("class_type"):
                problems.append(f"node {nid}: {a['class_type']} in the UI file, {b.get('class_type')} in the API file")
                continue
            for name in sorted(set(a["inputs"]) | set(b.get("inputs", {}))):
                va, vb = a["inputs"].get(name, "<absent>"), b.get("inputs", {}).get(name, "<absent>")
                if va != vb or type(va) is not type(vb) and not _same_number(va, vb):
                    problems.append(f"node {nid} ({a['class_type']}).{name}: {va!r} in the UI file, "
                                    f"{vb!r} in the API file")
            title = (b.get("_meta") or {}).get("title")
            if title != a["_meta"]["title"]:
                problems.append(f"node {nid}: title {a['_meta']['title']!r} in the UI file, {title!r} "
                                f"in the API file")
    return problems


def _same_number(a, b) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)) and a == b


# ----------------------------------------------------------------------------- live host

def normalise_definition(class_type: str, defn: dict) -> dict:
    """``defn`` with the option lists of file inputs (FILE_INPUTS) blanked, for comparing a
    recorded definition with a live one."""
    defn = json.loads(json.dumps(defn))
    for section in ("required", "optional"):
        for name, spec in (defn.get("input", {}).get(section) or {}).items():
            if (class_type, name) not in FILE_INPUTS:
                continue
            if isinstance(spec[0], list):
                spec[0] = ["<files>"]
            elif len(spec) > 1 and isinstance(spec[1], dict) and "options" in spec[1]:
                spec[1]["options"] = ["<files>"]
    return defn


#: Keys of a core node's definition that are the host's own business (where it files the
#: node, how it describes it); the workflows depend on the rest.
CORE_PRESENTATION = ("category", "description", "display_name", "python_module")


def snapshot_mismatches(class_type: str, recorded: dict, live: dict) -> list[str]:
    """Where a live definition breaks what the recorded one promises (paths of the keys).

    Hosts add keys over time (``search_aliases``, ``dev_only``, an input's ``advanced``), so
    only what the snapshot holds is compared. A DoSSR node must match it exactly otherwise;
    a core node may also grow lists (an output slot, a new option) and move categories.
    """
    ours = class_type in DOSSR_NODE_IDS
    recorded = normalise_definition(class_type, recorded)
    live = normalise_definition(class_type, live)
    if not ours:
        for key in CORE_PRESENTATION:
            recorded.pop(key, None)
    found: list[str] = []

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for k, v in a.items():
                if k not in b:
                    found.append(f"{path}.{k} (gone)")
                else:
                    walk(v, b[k], f"{path}.{k}")
        elif isinstance(a, list) and isinstance(b, list) and (len(a) == len(b) or (not ours and len(a) < len(b))):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")
        elif a != b:
            found.append(path)

    walk(recorded, live, class_type)
    return found


def refresh_snapshot(out=SNAPSHOT, comfyui=None) -> int:
    """Re-record ``out`` from the host for every DoSSR node and every class (and model name)
    the shipped workflows use."""
    from tests.hostlib import object_info_snapshot

    workflows = [load_json(p) for p in shipped_workflows().values()]
    classes = sorted(set(classes_used(*workflows)) | set(DOSSR_NODE_IDS) | set(EXTRA_CLASSES))
    argv = [str(out), "--nodes", ",".join(classes)]
    for spec in model_placeholders(*workflows):
        argv += ["--model", spec]
    if comfyui:
        argv += ["--comfyui", str(comfyui)]
    print("python -m tests.hostlib.object_info_snapshot " + " ".join(argv))
    return object_info_snapshot.main(argv)


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m tests.workflow_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--refresh-snapshot", action="store_true",
                   help=f"re-record {SNAPSHOT.relative_to(REPO)} from the host ($COMFYUI_PATH)")
    p.add_argument("--comfyui", help="ComfyUI tree (default: $COMFYUI_PATH)")
    args = p.parse_args(argv)
    if args.refresh_snapshot:
        return refresh_snapshot(comfyui=args.comfyui)
    info = load_snapshot()
    failed = False
    for name, path in shipped_workflows().items():
        wf = load_json(path)
        problems = check_api(wf, info) if is_api_format(wf) else check_ui(wf, info)
        print(f"{path.relative_to(REPO)}: {'ok' if not problems else ''}")
        for problem in problems:
            print("  " + problem)
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
