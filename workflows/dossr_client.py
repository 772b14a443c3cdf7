#!/usr/bin/env python3
"""Run a DoSSR workflow on a ComfyUI server without the browser.

    python workflows/dossr_client.py photo.png
    python workflows/dossr_client.py photo.png --server http://127.0.0.1:8188 \\
        --dossr-model dossr_default.ckpt --seed 42 --output-dir out/

Uploads IMAGE (POST /upload/image), loads an API-format workflow (default: dossr_x4_api.json
next to this script), points its LoadImage node at the upload, optionally sets ``ckpt_name``
on CheckpointLoaderSimple nodes, the DoSSR file on DoSSRCheckpointLoader / DoSSRModelLoader
nodes and the seed
(``seed``/``noise_seed`` inputs), queues it (POST /prompt), waits for the result
(GET /history/<id>) and downloads every saved image (GET /view) into --output-dir, printing
the paths. Any failure prints one clear message and exits with status 2.

Without --server, when nothing answers at http://127.0.0.1:8188 and this script sits in a
ComfyUI tree (ComfyUI/custom_nodes/<pack>/workflows/), it starts that ComfyUI itself on a free
loopback port, runs the job and stops it again (--comfyui DIR names the tree; --keep-server
leaves it running). See dossr_batch/embedded.py.

Standard library only; works with any ComfyUI that has the DoSSR nodes installed. Export your
own workflow for it from the ComfyUI menu with "Export (API)".
"""

from __future__ import annotations

import argparse
import copy
import http.client as http_client
import json
import mimetypes
import os
import socket
import sys
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

DEFAULT_SERVER = "http://127.0.0.1:8188"
#: Overrides DEFAULT_SERVER, the address probed before starting ComfyUI (for tests: 8188 may
#: belong to someone else's server).
DEFAULT_SERVER_ENV = "DOSSR_CLIENT_DEFAULT_SERVER"
DEFAULT_WORKFLOW = Path(__file__).resolve().parent / "dossr_x4_api.json"
SEED_INPUTS = ("seed", "noise_seed")
#: Which node input each model option sets: (class_type, input name) pairs.
MODEL_INPUTS = {
    "--sd-checkpoint": (("CheckpointLoaderSimple", "ckpt_name"),),
    "--dossr-model": (("DoSSRCheckpointLoader", "ckpt_name"), ("DoSSRModelLoader", "model_name")),
}
EXIT_ERROR = 2
QUEUE_CHECK_S = 2.0


class ClientError(Exception):
    """A failure with a message meant for the user (printed without a traceback)."""


class ServerUnreachable(ClientError):
    pass


class PromptRejected(ClientError):
    def __init__(self, error: dict, node_errors: dict):
        self.error = error if isinstance(error, dict) else {"message": str(error)}
        self.node_errors = node_errors or {}
        lines = ["ComfyUI rejected the prompt: " + " ".join(
            s for s in (self.error.get("message", ""), self.error.get("details", "")) if s)]
        for node_id, ne in self.node_errors.items():
            for e in ne.get("errors", []):
                details = f": {e['details']}" if e.get("details") else ""
                lines.append(f"  node {node_id} ({ne.get('class_type', '?')}): "
                             f"{e.get('message', '')}{details}")
        super().__init__("\n".join(lines))


class ExecutionError(ClientError):
    pass


class Interrupted(ClientError):
    pass


class Timeout(ClientError):
    pass


# ----------------------------------------------------------------------------- HTTP

def normalise_server(server: str) -> str:
    server = server.strip().rstrip("/")
    if "://" not in server:
        server = "http://" + server
    return server


def _unreachable(server: str, reason) -> ServerUnreachable:
    if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason).lower():
        why = "connection refused"
    elif isinstance(reason, (socket.timeout, TimeoutError)):
        why = "timed out"
    else:
        why = str(reason)
    return ServerUnreachable(
        f"cannot reach ComfyUI at {server} ({why}): start it with "
        f"`python main.py --listen 127.0.0.1 --port 8188` or pass --server URL of a running one. "
        f"Without --server this client starts ComfyUI itself when nothing answers at "
        f"{DEFAULT_SERVER}: the ComfyUI it sits in (ComfyUI/custom_nodes/<pack>/workflows/), "
        f"or the one --comfyui DIR names")


def http(server: str, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None, timeout: float = 60.0) -> tuple[int, bytes]:
    """(status, body); HTTP error statuses are returned; connection failures raise
    ServerUnreachable."""
    req = urllib.request.Request(server + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except urllib.error.URLError as e:
        raise _unreachable(server, e.reason) from None
    except (ConnectionError, socket.timeout, TimeoutError) as e:
        raise _unreachable(server, e) from None
    except http_client.HTTPException as e:
        raise ClientError(f"unexpected answer from {server} to {method} {path}: {e!r} "
                          "(is that a ComfyUI server?)") from None


def _json(server: str, method: str, path: str, payload=None, timeout: float = 60.0):
    body = None if payload is None else json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json"} if body is not None else {}
    status, data = http(server, method, path, body, headers, timeout)
    try:
        answer = json.loads(data) if data else None
    except ValueError:
        answer = None
    return status, answer, data


def build_multipart(fields: dict, files: dict, boundary: str | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body: *fields* name -> str, *files* name -> (filename, bytes,
    content type). Returns (body, Content-Type header value)."""
    boundary = boundary or "----dossr-client-" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     .encode("utf-8") + str(value).encode("utf-8") + b"\r\n")
    for name, (filename, data, ctype) in files.items():
        safe = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{safe}"\r\nContent-Type: {ctype}\r\n\r\n'.encode("utf-8")
                     + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode("utf-8"))
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload_image(server: str, image_path, timeout: float = 120.0, *, name: str | None = None,
                 data: bytes | None = None) -> str:
    """POST /upload/image (overwrite=true), as *name* (default: the file's name) with *data*
    (default: the file's bytes); the name to put into a LoadImage node."""
    image_path = Path(image_path)
    if data is None:
        if not image_path.is_file():
            raise ClientError(f"image file not found: {image_path}")
        try:
            data = image_path.read_bytes()
        except OSError as e:
            raise ClientError(f"cannot read the image {image_path}: {e.strerror}") from None
    name = name or image_path.name
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    body, header = build_multipart({"overwrite": "true", "type": "input"},
                                   {"image": (name, data, ctype)})
    status, data = http(server, "POST", "/upload/image", body, {"Content-Type": header}, timeout)
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict) or "name" not in answer:
        raise ClientError(f"ComfyUI answered HTTP {status} to POST /upload/image: "
                          f"{data[:300].decode('utf-8', 'replace')}")
    return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]


# ----------------------------------------------------------------------------- workflow

def load_workflow(workflow) -> dict:
    """An API-format prompt from a path or a dict (copied)."""
    if isinstance(workflow, dict):
        prompt = copy.deepcopy(workflow)
        where = "the workflow"
    else:
        path = Path(workflow)
        if not path.is_file():
            raise ClientError(f"workflow file not found: {path}")
        try:
            prompt = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ClientError(f"workflow {path} is not valid JSON: {e}") from None
        where = str(path)
    if isinstance(prompt, dict) and "nodes" in prompt and "links" in prompt:
        raise ClientError(f"{where} is a UI-format workflow; export it from ComfyUI with "
                          "'Export (API)' and pass that file")
    if not isinstance(prompt, dict) or not prompt or not all(
            isinstance(n, dict) and "class_type" in n for n in prompt.values()):
        raise ClientError(f"{where} is not an API-format ComfyUI workflow "
                          "({node_id: {class_type, inputs}})")
    return prompt


def _nodes(prompt: dict, class_type: str) -> list[str]:
    return [nid for nid, n in prompt.items() if n.get("class_type") == class_type]


def prepare_prompt(prompt: dict, image_name: str, *, sd_checkpoint: str | None = None,
                   dossr_model: str | None = None, seed: int | None = None) -> dict:
    """Set the image, model names and seed on a copy of *prompt*."""
    prompt = copy.deepcopy(prompt)
    loaders = _nodes(prompt, "LoadImage")
    if not loaders:
        raise ClientError("the workflow has no LoadImage node to feed the image into")
    for nid in loaders:
        prompt[nid].setdefault("inputs", {})["image"] = image_name
    for value, targets, option in ((sd_checkpoint, MODEL_INPUTS["--sd-checkpoint"], "--sd-checkpoint"),
                                   (dossr_model, MODEL_INPUTS["--dossr-model"], "--dossr-model")):
        if value is None:
            continue
        ids = [(nid, key) for class_type, key in targets for nid in _nodes(prompt, class_type)]
        if not ids:
            names = " or ".join(class_type for class_type, _ in targets)
            hint = (" (the one-file workflow takes SD 2.1-base from the DoSSR file: use "
                    "--dossr-model, or the two-file workflow dossr_x4_sd21_api.json)"
                    if option == "--sd-checkpoint" and _nodes(prompt, "DoSSRCheckpointLoader") else "")
            raise ClientError(f"{option} given, but the workflow has no {names} node{hint}")
        for nid, key in ids:
            prompt[nid].setdefault("inputs", {})[key] = value
    if seed is not None:
        hits = 0
        for node in prompt.values():
            for key in SEED_INPUTS:
                inputs = node.get("inputs", {})
                if key in inputs and not isinstance(inputs[key], list):  # a literal, not a link
                    inputs[key] = int(seed)
                    hits += 1
        if not hits:
            raise ClientError("--seed given, but no node of the workflow has a seed input")
    return prompt


# ----------------------------------------------------------------------------- running

def queue_prompt(server: str, prompt: dict, client_id: str, prompt_id: str | None = None) -> str:
    """POST /prompt; the prompt id (*prompt_id* if given: the server uses the caller's id)."""
    payload = {"prompt": prompt, "client_id": client_id}
    if prompt_id is not None:
        payload["prompt_id"] = prompt_id
    status, answer, data = _json(server, "POST", "/prompt", payload)
    if status == 400 and isinstance(answer, dict):
        raise PromptRejected(answer.get("error") or {}, answer.get("node_errors") or {})
    if status != 200 or not isinstance(answer, dict) or "prompt_id" not in answer:
        raise ClientError(f"ComfyUI answered HTTP {status} to POST /prompt: "
                          f"{data[:300].decode('utf-8', 'replace')}")
    return answer["prompt_id"]


def _cancel(server: str, prompt_id: str) -> None:
    try:
        _json(server, "POST", "/queue", {"delete": [prompt_id]}, timeout=10)
        _json(server, "POST", "/interrupt", {"prompt_id": prompt_id}, timeout=10)
    except ClientError:
        pass


def queue_state(server: str):
    """The ids of the prompts running and waiting on *server* (None when it does not say), to
    tell whether its queue moved."""
    try:
        status, answer, _ = _json(server, "GET", "/queue", timeout=10)
    except ClientError:
        return None
    if status != 200 or not isinstance(answer, dict):
        return None

    def ids(items):
        return tuple(str(it[1]) for it in items or [] if isinstance(it, (list, tuple)) and len(it) > 1)

    return ids(answer.get("queue_running")), ids(answer.get("queue_pending"))


class StallWatch:
    """When the server last showed progress; a wait gives up after *timeout* seconds without.

    Progress is a websocket message about the awaited prompt (a node starts, a progress bar
    moves, a node finishes: :meth:`progressed`) or a change of the server's queue (a prompt
    ahead of ours finished: :meth:`check_queue` polls it). A large image that keeps making
    progress is therefore waited for however long it takes in total.
    """

    def __init__(self, server: str, timeout: float, clock=time.monotonic):
        self.server, self.timeout, self.clock = server, timeout, clock
        self.last = clock()
        self.queue = None
        self.queue_checked = None
        self.lock = threading.Lock()

    def progressed(self) -> None:
        with self.lock:
            self.last = self.clock()

    def check_queue(self, every: float | None = None) -> None:
        """Poll the queue (at most every *every* s, default QUEUE_CHECK_S); a change is progress."""
        every = QUEUE_CHECK_S if every is None else every
        now = self.clock()
        if self.queue_checked is not None and now - self.queue_checked < every:
            return
        self.queue_checked = now
        state = queue_state(self.server)
        if state is not None:
            if self.queue is not None and state != self.queue:
                self.progressed()
            self.queue = state

    def stalled(self) -> bool:
        with self.lock:
            return self.clock() - self.last > self.timeout


def listen_for_progress(server: str, client_id: str, watch: StallWatch):
    """Count every websocket message the server sends *client_id* as progress of *watch*, in a
    background thread; returns the function that stops listening. Without the websocket
    helper next to this script (dossr_batch/ws.py), or when the server refuses the websocket,
    the queue alone tells progress."""
    try:
        _batch_cli()   # puts the package next to this script on the import path
        from dossr_batch.ws import WebSocket
        ws = WebSocket(server, client_id, timeout=5)
    except Exception:  # noqa: BLE001 - any failure: fall back to polling the queue
        return lambda: None

    def read():
        for message in ws.messages():
            data = message.get("data") if isinstance(message, dict) else None
            if isinstance(data, dict) and (data.get("prompt_id") or message.get("type") == "status"):
                watch.progressed()

    threading.Thread(target=read, name="dossr progress", daemon=True).start()
    return ws.close


def wait_for(server: str, prompt_id: str, timeout: float, poll: float = 0.5,
             watch: StallWatch | None = None) -> dict:
    """The history entry of *prompt_id* once it has finished; raises on error/interruption,
    and Timeout (after cancelling the prompt) when the server showed no progress for *timeout*
    seconds (*watch*; by default the server's queue is the only sign of progress)."""
    watch = watch or StallWatch(server, timeout)
    while True:
        try:
            status, answer, _ = _json(server, "GET", "/history/" + urllib.parse.quote(prompt_id, safe=""))
        except ServerUnreachable as e:
            raise ServerUnreachable(f"lost the connection to ComfyUI while waiting for prompt "
                                    f"{prompt_id}: {e}") from None
        entry = answer.get(prompt_id) if status == 200 and isinstance(answer, dict) else None
        if entry is not None:
            break
        watch.check_queue()
        if watch.stalled():
            _cancel(server, prompt_id)
            raise Timeout(f"no progress from ComfyUI for {timeout:g} s (prompt {prompt_id}); it was "
                          "cancelled on the server. If a step of your workflow runs longer than "
                          "that without reporting progress, pass a larger --timeout")
        time.sleep(poll)
    return check_entry(entry, prompt_id)


def check_entry(entry: dict, prompt_id: str) -> dict:
    """*entry* if its prompt succeeded; ExecutionError / Interrupted with the server's
    message otherwise."""
    messages = (entry.get("status") or {}).get("messages") or []
    for event, data in messages:
        if event == "execution_error":
            raise ExecutionError(
                f"ComfyUI failed at node {data.get('node_id')} ({data.get('node_type')}): "
                f"{data.get('exception_type', 'error')}: {data.get('exception_message', '').strip()}")
        if event == "execution_interrupted":
            raise Interrupted(f"the prompt was interrupted at node {data.get('node_id')} "
                              f"({data.get('node_type')})")
    if (entry.get("status") or {}).get("status_str") not in (None, "success"):
        raise ExecutionError(f"ComfyUI reported status {entry['status'].get('status_str')!r} "
                             f"for prompt {prompt_id}")
    return entry


def output_images(entry: dict) -> list[dict]:
    """The image records ({filename, subfolder, type}) of a history entry: saved ('output')
    images, or if there are none, every image (previews)."""
    images = [img for out in (entry.get("outputs") or {}).values() for img in out.get("images") or []]
    saved = [img for img in images if img.get("type") == "output"]
    return saved or images


def _free_path(directory: Path, name: str) -> Path:
    path = directory / name
    stem, suffix = os.path.splitext(name)
    n = 1
    while path.exists():
        path = directory / f"{stem}-{n}{suffix}"
        n += 1
    return path


def view_image(server: str, img: dict) -> bytes:
    """The bytes of one image record of a history entry (GET /view)."""
    query = urllib.parse.urlencode({"filename": img["filename"], "subfolder": img.get("subfolder", ""),
                                    "type": img.get("type", "output")})
    status, data = http(server, "GET", "/view?" + query, timeout=300)
    if status != 200:
        raise ClientError(f"ComfyUI answered HTTP {status} to GET /view for {img['filename']}")
    return data


def download_images(server: str, entry: dict, output_dir) -> list[Path]:
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ClientError(f"cannot create the output directory {output_dir}: {e.strerror}") from None
    paths = []
    for img in output_images(entry):
        data = view_image(server, img)
        path = _free_path(output_dir, os.path.basename(img["filename"]))
        try:
            path.write_bytes(data)
        except OSError as e:
            raise ClientError(f"cannot write {path}: {e.strerror}") from None
        paths.append(path)
    return paths


def run_workflow(server: str, workflow, image_path, *, sd_checkpoint: str | None = None,
                 dossr_model: str | None = None, seed: int | None = None, output_dir=".",
                 timeout: float = 600.0, poll: float = 0.5, log=None) -> list[Path]:
    """Upload *image_path*, run *workflow* (path or API dict) on *server* and download the
    images; the written paths. *timeout*: seconds without progress before giving up. Raises
    :class:`ClientError` with a user-facing message."""
    log = log or (lambda msg: None)
    server = normalise_server(server)
    image_path = Path(image_path)
    if not image_path.is_file():
        raise ClientError(f"image file not found: {image_path}")
    prompt = load_workflow(workflow)
    name = upload_image(server, image_path)
    log(f"uploaded {image_path} as {name}")
    prompt = prepare_prompt(prompt, name, sd_checkpoint=sd_checkpoint, dossr_model=dossr_model, seed=seed)
    t0 = time.monotonic()
    client_id = uuid.uuid4().hex
    watch = StallWatch(server, timeout)
    stop_listening = listen_for_progress(server, client_id, watch)
    prompt_id = str(uuid.uuid4())   # ours from the start, so Ctrl-C can always name it
    try:
        prompt_id = queue_prompt(server, prompt, client_id, prompt_id)   # the id the server uses
        log(f"queued prompt {prompt_id}")
        entry = wait_for(server, prompt_id, timeout, poll, watch)
    except KeyboardInterrupt:
        _cancel(server, prompt_id)   # Ctrl-C: take our prompt off the server, as a batch does
        raise
    finally:
        stop_listening()
    paths = download_images(server, entry, output_dir)
    if not paths:
        raise ClientError("the workflow finished but produced no images (does it have a SaveImage node?)")
    log(f"finished in {time.monotonic() - t0:.1f} s")
    return paths


def _batch_cli():
    """The batch package next to this script (imported on demand; the script stays one file
    to copy for single images)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from dossr_batch import cli
    return cli


def _api():
    """This module's functions and errors as one object for the batch code (works however the
    script was loaded, also when it is not in sys.modules)."""
    return types.SimpleNamespace(**globals())


def _embedded():
    """dossr_batch/embedded.py: start and stop the ComfyUI this script sits in."""
    _batch_cli()  # puts the package on sys.path
    from dossr_batch import embedded
    return embedded


def parse_args(argv=None) -> argparse.Namespace:
    batch = _batch_cli()
    embedded = _embedded()
    p = argparse.ArgumentParser(
        prog="dossr_client.py",
        description="Upscale images with a DoSSR workflow on ComfyUI servers (started here when "
                    "none runs and this script sits in a ComfyUI tree). One image "
                    "file: the result keeps the workflow's name (e.g. DoSSR_x4_00001_.png). Several "
                    "inputs, folders or patterns: a batch, each result named after its input "
                    "(photo.jpg -> photo_x4.png), skipping results that exist.")
    p.add_argument("image", help="an image file, a folder or a glob pattern ('scans/*.tif')")
    p.add_argument("more", nargs="*", metavar="image", help="more inputs")
    default_server = os.environ.get(DEFAULT_SERVER_ENV) or DEFAULT_SERVER
    p.add_argument("--server", action="append", metavar="URL",
                   help=f"ComfyUI URL (default {DEFAULT_SERVER}); repeat it or give a comma "
                        "list to spread a batch over several servers. With it nothing is started")
    e = p.add_argument_group("starting ComfyUI (without --server, when nothing answers at "
                             f"{DEFAULT_SERVER})")
    e.add_argument("--comfyui", metavar="DIR",
                   help="start the ComfyUI in DIR (default: the tree this script sits in, "
                        "ComfyUI/custom_nodes/<pack>/workflows/)")
    e.add_argument("--keep-server", action="store_true",
                   help="leave the started ComfyUI running and print its address for --server")
    e.add_argument("--start-timeout", type=float, default=embedded.DEFAULT_START_TIMEOUT,
                   metavar="SECONDS",
                   help=f"how long to wait for it to answer (default {embedded.DEFAULT_START_TIMEOUT:g})")
    p.add_argument("--workflow", default=str(DEFAULT_WORKFLOW),
                   help="API-format workflow JSON (default: dossr_x4_api.json next to this script)")
    p.add_argument("--sd-checkpoint", help="ckpt_name for the CheckpointLoaderSimple node(s) "
                                           "(the two-file workflow's SD 2.1-base)")
    p.add_argument("--dossr-model", help="the DoSSR file: ckpt_name of DoSSR Checkpoint Loader, "
                                         "model_name of DoSSR Model Loader")
    p.add_argument("--seed", type=int, help="seed for every node with a seed/noise_seed input")
    p.add_argument("--output-dir", default=".", help="where to write the results (default: .)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="give up on an image (and cancel it on the server) when the server shows "
                        "no progress for this many seconds (default 600); a large image that "
                        "keeps making progress is waited for however long it takes")
    batch.add_arguments(p)
    args = p.parse_args(argv)
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    if args.server_wait < 0:
        p.error("--server-wait must not be negative")
    if args.start_timeout <= 0:
        p.error("--start-timeout must be positive")
    args.server_given = bool(args.server)
    if args.server_given and (args.comfyui or args.keep_server):
        p.error(f"{'--comfyui' if args.comfyui else '--keep-server'} is for a ComfyUI this client "
                "starts, and --server uses a running one: give one or the other")
    args.servers = batch.split_servers(args.server, default_server, normalise_server)
    if not args.servers:
        p.error("--server needs a URL")
    args.server = args.servers[0]
    return args


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_job(args, batch, *, owns_server: bool = False) -> int:
    """The single image or the batch of *args* on ``args.servers``; the exit status.
    *owns_server*: the server is stopped afterwards, so a cancelled prompt ends with it."""
    if batch.wants_batch(args):
        return batch.run(args, _api())
    try:
        workflow = batch.knobs.apply(load_workflow(args.workflow), **batch.workflow_settings(args))
        paths = run_workflow(args.server, workflow, args.image, sd_checkpoint=args.sd_checkpoint,
                             dossr_model=args.dossr_model, seed=args.seed, output_dir=args.output_dir,
                             timeout=args.timeout, log=_say)
    except (ClientError, batch.knobs.KnobError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: cancelled; the prompt was removed from the server", file=sys.stderr)
        return 130
    for path in paths:
        print(path, flush=True)  # as soon as known, also into a pipe
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    batch = _batch_cli()
    embedded = _embedded()
    try:
        tree, why = embedded.choose_tree(server_given=args.server_given, comfyui=args.comfyui,
                                         default_server=args.server, client_file=__file__)
    except embedded.EmbeddedError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if tree is None:
        if args.keep_server:
            _say(f"note: --keep-server ignored: {why}, so this client starts no server")
        return run_job(args, batch)
    try:
        with embedded.running(tree, keep=args.keep_server, start_timeout=args.start_timeout,
                              log=_say, why=why) as url:
            args.servers, args.server = [url], url
            return run_job(args, batch, owns_server=not args.keep_server)
    except embedded.EmbeddedError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: cancelled; no ComfyUI started by this client is left running", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
