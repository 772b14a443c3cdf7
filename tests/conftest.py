"""Shared fixtures: where the recorded reference data lives, and the host tree if any."""

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


SHARED_GOLDEN = REPO.parent / "shared" / "golden"


def golden_dir() -> Path:
    """The reference data: a copy kept in the repo (checked against ../shared/golden)."""
    return Path(os.environ.get("DOSSR_GOLDEN_DIR", REPO / "tests" / "golden"))


def load_golden(name: str):
    path = golden_dir() / name
    if not path.exists():
        pytest.skip(f"reference data {path} not found (set DOSSR_GOLDEN_DIR)")
    with open(path) as f:
        return json.load(f)


def pytest_report_header(config):
    """Name the host the host tests run against, so every result says where it came from."""
    from tests.hostlib.server import comfy_tree_problem, host_version

    tree = os.environ.get("COMFYUI_PATH")
    if comfy_tree_problem(tree):
        return "ComfyUI host: none (host tests skipped)"
    return f"ComfyUI host: {host_version(tree)} at {tree}"
