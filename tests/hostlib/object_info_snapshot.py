"""Record the host's node definitions (``GET /object_info``) for host-free tests.

    COMFYUI_PATH=/opt/ComfyUI python -m tests.hostlib.object_info_snapshot OUT.json \\
        --nodes LoadImage,CheckpointLoaderSimple,DoSSRSampler \\
        [--model checkpoints/v2-1_512-ema-pruned.safetensors ...] [--comfyui PATH]

Starts a ComfyUI server (127.0.0.1, free port, temporary base directory with this repo linked
as custom_nodes/comfyui-dossr), fetches /object_info and writes the entries of the listed node
classes to OUT.json (``{class: definition}``, sorted keys, indent 1). ``--model FOLDER/NAME``
creates an empty placeholder ``models/FOLDER/NAME`` so that file-list combos (``ckpt_name``,
``model_name``, ...) contain that name. Exit status 1 if a listed node is missing (the server
log's import errors are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.hostlib import server as hs


def snapshot(comfy_path, nodes: list[str], models=(), include_probes: bool = False,
             keep_base: bool = False) -> tuple[dict, list[str], dict]:
    """({class: definition} for the *nodes* found, missing class names, system_stats)."""
    base = Path(tempfile.mkdtemp(prefix="dossr_object_info_"))
    custom = {hs.EXTENSION_NODE_DIR: hs.REPO}
    if include_probes:
        custom[hs.PROBE_NODE_DIR] = hs.PROBE_PACK_DIR
    try:
        hs.prepare_base_dir(base, custom_nodes=custom, input_images={})
        for spec in models:
            folder, _, name = spec.partition("/")
            if not folder or not name:
                raise ValueError(f"--model wants FOLDER/NAME, got {spec!r}")
            path = base / "models" / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        server = hs.ComfyServer.start(comfy_path, base)
        try:
            info = server.object_info()
            stats = server.system_stats()
            log = server.log_text()
        finally:
            server.stop()
    finally:
        if keep_base:
            print(f"base directory kept: {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    found = {n: info[n] for n in nodes if n in info}
    missing = [n for n in nodes if n not in info]
    stats["_log"] = log
    return found, missing, stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.hostlib.object_info_snapshot",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="JSON file to write")
    p.add_argument("--nodes", required=True, help="comma-separated node class names")
    p.add_argument("--model", action="append", default=[], metavar="FOLDER/NAME",
                   help="empty placeholder model file to list in the combos (repeatable)")
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"),
                   help="ComfyUI tree (default: $COMFYUI_PATH)")
    p.add_argument("--include-probes", action="store_true",
                   help="also link the test probe node pack (tests/host/probe_nodes)")
    p.add_argument("--keep-base", action="store_true", help="keep the temporary base directory")
    args = p.parse_args(argv)

    problem = hs.comfy_tree_problem(args.comfyui, label="--comfyui" if args.comfyui else "COMFYUI_PATH")
    if problem:
        print(f"error: {problem} (pass --comfyui PATH or set COMFYUI_PATH)", file=sys.stderr)
        return 2
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
    if not nodes:
        p.error("--nodes is empty")
    try:
        found, missing, stats = snapshot(args.comfyui, nodes, args.model, args.include_probes,
                                         args.keep_base)
    except hs.ComfyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log = stats.pop("_log")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(found, f, sort_keys=True, indent=1)
        f.write("\n")
    version = stats.get("system", {}).get("comfyui_version", "?")
    print(f"wrote {len(found)} node definitions from ComfyUI {version} to {out}")
    if missing:
        print(f"error: not in /object_info: {', '.join(missing)}", file=sys.stderr)
        errors = [line for line in log.splitlines()
                  if "Cannot import" in line or "IMPORT FAILED" in line or "comfy_entrypoint" in line]
        if errors:
            print("server log:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
