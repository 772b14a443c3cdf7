"""The checkers a new user or the Comfy registry runs on a pack find this one clean, offline.

* ``comfy-import-guard check`` reads every ``comfy.*`` reference of the pack (imports,
  attributes, call signatures) and resolves it against a ComfyUI tree. It reads that tree
  from a git clone, so each host tree of ``COMFYUI_PATH`` (or ``COMFYUI_PATHS``) becomes a
  one-commit repository in a temporary folder, the tree itself its work tree (nothing is
  written into the tree). The pack is linked into a temporary ``custom_nodes`` beside a
  canary pack whose reference is missing from every host, so a run that checked nothing
  cannot pass. Skipped without a host tree.
* ``comfy node validate`` (comfy-cli) is what ``comfy node publish`` checks first:
  pyproject.toml for the registry, and ruff's rules against exec/eval.

Both run as subprocesses: no stdin, a timeout, HOME in a temporary folder, telemetry and
update checks off, the guard with ``--offline --no-update``. Versions are pinned in
requirements-test.txt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostlib.server import comfy_tree_problem

REPO = Path(__file__).resolve().parent.parent
PACK = "comfyui-dossr"
CANARY = "guard_canary"
CANARY_SYMBOL = "comfy.model_management.dossr_guard_canary_not_in_comfyui"
TIMEOUT = 180

#: References the guard may report as guarded (try/except) and missing on some host: each
#: is a deliberate probe of a host feature, with a fallback for hosts without it.
HOST_FEATURE_PROBES = {
    "comfy.model_management.is_oom": "nodes/host_compat.py",   # absent from ComfyUI 0.3.64
}


def host_trees() -> list[str]:
    """The host tree of this run: COMFYUI_PATH, else every tree of COMFYUI_PATHS."""
    if os.environ.get("COMFYUI_PATH"):
        return [os.environ["COMFYUI_PATH"]]
    entries = os.environ.get("COMFYUI_PATHS", "").split(os.pathsep)
    return [e.partition("=")[0].strip() for e in entries if e.strip()]


def quiet_env(home: Path) -> dict:
    """The environment of a checker: its own HOME, no telemetry, no update checks, no prompts."""
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), RUFF_CACHE_DIR=str(home / "ruff-cache"),
               DO_NOT_TRACK="1", COMFY_NO_TELEMETRY="1", COMFY_NO_UPDATE_CHECK="1",
               GIT_TERMINAL_PROMPT="0", PIP_DISABLE_PIP_VERSION_CHECK="1", NO_COLOR="1")
    env.pop("POSTHOG_API_KEY", None)
    return env


def run(cmd: list, cwd, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=str(cwd), env=quiet_env(home),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT)


def console_script(name: str) -> Path:
    """A tool installed beside this Python (the test environment's), else on PATH."""
    here = Path(sys.executable).parent / name
    found = here if here.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed in this environment ({sys.executable}): "
                    f"pip install -r requirements-test.txt")
    return Path(found)


def git(*args, cwd=None) -> str:
    done = subprocess.run(["git", "-c", "safe.directory=*", *map(str, args)], cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"git {' '.join(map(str, args))} failed: {done.stderr}"
    return done.stdout


def guard_clone(tree: Path, cache_dir: Path) -> None:
    """*tree* as the clone comfy-import-guard reads (``cache_dir/ComfyUI``): one commit of its
    Python files, with *tree* as the work tree so the tool's own "local modifications" check
    compares against the real files."""
    repo = cache_dir / "ComfyUI"
    git("init", "-q", repo)
    git("-C", repo, "config", "core.worktree", tree)
    git("-C", repo, "config", "status.showUntrackedFiles", "no")
    git("-C", repo, "add", "-A", "--", "*.py")
    git("-C", repo, "-c", "user.name=dossr tests", "-c", "user.email=tests@localhost",
        "commit", "-q", "--no-gpg-sign", "-m", f"ComfyUI tree {tree}")


def write_canary(pack: Path) -> None:
    """A pack whose one call is missing from every ComfyUI: the guard must call it WILL BREAK."""
    pack.mkdir(parents=True)
    module, _, symbol = CANARY_SYMBOL.rpartition(".")
    (pack / "__init__.py").write_text(f"import {module} as mm\n\n\ndef probe():\n"
                                      f"    return mm.{symbol}()\n")


@pytest.mark.parametrize("tree", host_trees() or [None])
def test_import_guard_finds_nothing_that_breaks(tree, tmp_path):
    if tree is None:
        pytest.skip("comfy-import-guard needs a ComfyUI tree: set COMFYUI_PATH or COMFYUI_PATHS")
    problem = comfy_tree_problem(tree)
    assert problem is None, problem   # a host named for the tests must be usable: never a skip
    guard_clone(Path(tree).resolve(), tmp_path / "cache")
    custom_nodes = tmp_path / "install" / "custom_nodes"
    custom_nodes.mkdir(parents=True)
    (custom_nodes / PACK).symlink_to(REPO, target_is_directory=True)
    write_canary(custom_nodes / CANARY)

    done = run([console_script("comfy-import-guard"), "check", "--offline", "--no-update", "--json",
                "--quiet", "--cache-dir", tmp_path / "cache", "--comfy-dir", tmp_path / "install",
                "--target", "HEAD"], tmp_path, tmp_path / "home")
    assert done.stdout.strip(), f"no report (exit {done.returncode}): {done.stderr}"
    packs = {p["pack"]: p for p in json.loads(done.stdout)["packs"]}

    canary = packs[CANARY]
    assert canary["verdict"] == "WILL BREAK", canary
    assert [r["dotted"] for r in canary["breaking"]] == [CANARY_SYMBOL], canary

    ours = packs[PACK]
    assert ours["python_files"] > 50 and ours["references"] > 20, ours   # it read the pack
    assert ours["breaking"] == [], f"comfy-import-guard: {PACK} WILL BREAK on {tree}: {ours['breaking']}"
    for kind in ("unresolvable", "unparseable", "signature_drift"):
        assert ours[kind] == [], f"comfy-import-guard warns ({kind}) on {tree}: {ours[kind]}"
    unexpected = [r for r in ours["soft"] if HOST_FEATURE_PROBES.get(r["dotted"]) != r["file"]]
    assert not unexpected, f"comfy-import-guard: guarded references missing on {tree}: {unexpected}"
    assert ours["verdict"] == ("WARN" if ours["soft"] else "SAFE"), ours


def validate_problems(done: subprocess.CompletedProcess) -> list[str]:
    """What ``comfy node validate`` complained about: its exit status, warnings, errors."""
    text = done.stdout + done.stderr
    problems = [line.strip() for line in text.splitlines()
                if any(w in line for w in ("Warning", "warning", "Error", "error", "Traceback"))]
    if done.returncode != 0:
        problems.append(f"exit status {done.returncode}")
    if "All validation checks passed" not in text:
        problems.append("no 'All validation checks passed' line")
    return problems


def comfy_node_validate(folder: Path, home: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "comfy_cli", "--skip-prompt", "--no-enable-telemetry",
                "node", "validate"], folder, home)


def test_comfy_node_validate_passes(tmp_path):
    console_script("comfy")   # installed (a clear message if not)
    done = comfy_node_validate(REPO, tmp_path / "home")
    assert validate_problems(done) == [], done.stdout + done.stderr


def test_comfy_node_validate_problems_are_caught(tmp_path):
    """The same check on a copy of pyproject.toml with a license the registry cannot read
    and an eval() in the code: both are reported, so the test above would see them."""
    console_script("comfy")
    bad = tmp_path / "pack"
    bad.mkdir()
    text = (REPO / "pyproject.toml").read_text()
    license_line = next(line for line in text.splitlines() if line.startswith("license"))
    (bad / "pyproject.toml").write_text(text.replace(license_line, 'license = { name = "GPL" }'))
    (bad / "__init__.py").write_text("VALUE = eval('1 + 1')\n")
    problems = validate_problems(comfy_node_validate(bad, tmp_path / "home"))
    assert any("License" in p for p in problems), problems
    assert any("no 'All validation checks passed'" in p for p in problems), problems
