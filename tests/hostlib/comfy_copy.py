"""A disposable "ComfyUI copy" laid out the way a user has it, for tests of the client's
embedded server: the host tree's top-level files copied, its code folders linked, its own
``custom_nodes/comfyui-dossr`` (-> this repo), ``models``, ``input``, ``output`` and ``user``.

Top-level files are copied, not linked: Python puts the *resolved* folder of the script on
``sys.path`` and ``folder_paths.py`` finds the models through ``realpath(__file__)``, so a linked
``main.py`` would run the original tree with the original tree's models. Standard library only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.hostlib.server import EXTENSION_NODE_DIR, REPO, link

#: Folders the copy gets for itself (empty or with test files) instead of linking the host's.
OWN_FOLDERS = ("custom_nodes", "models", "input", "output", "user", "temp")


def make_comfy_copy(host_tree, dest, *, models: dict | None = None, pack: bool = True) -> Path:
    """*dest* as a ComfyUI tree running *host_tree*'s code, with this repo as the DoSSR pack.

    *models*: ``{folder: {file_name: source}}`` -> links under ``dest/models``.
    *pack*: False leaves ``custom_nodes/`` empty (a tree before the pack is installed).
    """
    host_tree, dest = Path(host_tree).resolve(), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for entry in host_tree.iterdir():
        if entry.name in OWN_FOLDERS or entry.name.startswith("."):
            continue
        target = dest / entry.name
        if entry.is_dir():
            link(entry, target)
        else:
            shutil.copy2(entry, target)
    for name in OWN_FOLDERS:
        (dest / name).mkdir(exist_ok=True)
    if pack:
        link(REPO, dest / "custom_nodes" / EXTENSION_NODE_DIR)
    for folder, files in (models or {}).items():
        for name, source in files.items():
            link(source, dest / "models" / folder / name)
    return dest


def client_in(tree) -> Path:
    """The client as a user runs it: through the copy's custom_nodes link, unresolved."""
    return Path(tree) / "custom_nodes" / EXTENSION_NODE_DIR / "workflows" / "dossr_client.py"


def main_py_processes(tree) -> list[int]:
    """Pids of live processes running *tree*'s main.py (zombies have no command line)."""
    main = os.fsencode(str(Path(tree) / "main.py"))
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if main in argv:
            pids.append(int(entry.name))
    return pids
