"""ComfyUI and this pack imported into the current process (no server), for tests and benches.

The host's top-level ``nodes`` module and this pack's ``nodes`` package share a name, so the
pack is imported under ``PACK`` (a namespace pointing at the repository), the way the host
itself imports a custom node under a name of its own.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
PACK = "dossr_pack"


def import_host(comfy_path, args=("--cpu",)):
    """``comfy.model_management`` of the tree at *comfy_path*, parsed with the host *args*.

    Where torchvision or torchaudio does not import, its stand-in in tests/host_stubs is put
    on the path, as for the test server. The host reads its command line once, at the first import of ``comfy.*``; later calls
    return the already imported module whatever *args* say.
    """
    from tests.hostlib import server

    root = str(Path(comfy_path).resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    needed = server.stubs_needed()
    if needed and str(server.stub_path(needed)) not in sys.path:
        sys.path.append(str(server.stub_path(needed)))   # the import-only stand-ins (HOST.md)
    saved = sys.argv
    sys.argv = [saved[0], *args]
    try:
        import comfy.options

        comfy.options.enable_args_parsing()
        import comfy.model_management as mm
    finally:
        sys.argv = saved
    return mm


def import_pack(module: str = ""):
    """This repository's ``module`` (e.g. ``"nodes.encode"``) as the host would load it."""
    if PACK not in sys.modules:
        pkg = types.ModuleType(PACK)
        pkg.__path__ = [str(REPO)]
        sys.modules[PACK] = pkg
    return importlib.import_module(f"{PACK}.{module}" if module else PACK)
