"""workflows/dossr_client.py without ComfyUI: multipart body, arguments, prompt patching, error
messages, and a full run against a small in-process stand-in for the ComfyUI HTTP API."""

import email.parser
import importlib.util
import json
import os
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "workflows" / "dossr_client.py"


def _load_client():
    spec = importlib.util.spec_from_file_location("dossr_client_offline", CLIENT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


client = _load_client()

WORKFLOW = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd21.safetensors"}},
    "3": {"class_type": "DoSSRModelLoader", "inputs": {"model_name": "dossr.safetensors"}},
    "4": {"class_type": "DoSSRSampler", "inputs": {"seed": 1, "model": ["2", 0]}},
    "5": {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}},
    "6": {"class_type": "KSampler", "inputs": {"seed": ["7", 0]}},  # a link: left alone
    "8": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "x"}},
}

PNG = (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\r\n--not-a-boundary\r\n" + b"\x00" * 7)


def parse_multipart(body: bytes, content_type: str) -> dict:
    msg = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    assert msg.is_multipart()
    parts = {}
    for part in msg.get_payload():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
    return parts


def test_multipart_body_round_trips():
    body, ctype = client.build_multipart({"overwrite": "true", "type": "input"},
                                         {"image": ("photo 1.png", PNG, "image/png")}, boundary="XyZ")
    assert ctype == "multipart/form-data; boundary=XyZ"
    assert body.startswith(b"--XyZ\r\n") and body.endswith(b"--XyZ--\r\n")
    parts = parse_multipart(body, ctype)
    assert parts["overwrite"][2] == b"true" and parts["type"][2] == b"input"
    assert parts["image"] == ("photo 1.png", "image/png", PNG)


def test_multipart_default_boundary_is_unique_and_filename_sanitised():
    b1, c1 = client.build_multipart({}, {"image": ('a"b\r\n.png', b"x", "image/png")})
    b2, c2 = client.build_multipart({}, {"image": ("a.png", b"x", "image/png")})
    assert c1 != c2
    assert b'filename="a_b__.png"' in b1


def test_parse_args_defaults_and_options():
    a = client.parse_args(["in.png"])
    assert a.image == "in.png" and a.server == "http://127.0.0.1:8188"
    assert Path(a.workflow) == REPO / "workflows" / "dossr_x4_api.json"
    assert a.output_dir == "." and a.timeout == 600 and a.seed is None
    assert a.sd_checkpoint is None and a.dossr_model is None
    a = client.parse_args(["in.png", "--server", "http://h:1", "--workflow", "w.json",
                           "--sd-checkpoint", "c.safetensors", "--dossr-model", "d.safetensors",
                           "--seed", "42", "--output-dir", "out", "--timeout", "5"])
    assert (a.server, a.workflow, a.sd_checkpoint, a.dossr_model, a.seed, a.output_dir, a.timeout) == (
        "http://h:1", "w.json", "c.safetensors", "d.safetensors", 42, "out", 5.0)


@pytest.mark.parametrize("argv", [[], ["in.png", "--seed", "x"], ["in.png", "--timeout", "0"]])
def test_parse_args_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        client.parse_args(argv)
    assert exc.value.code == 2


def test_normalise_server():
    assert client.normalise_server("127.0.0.1:8188/") == "http://127.0.0.1:8188"
    assert client.normalise_server("https://x.example") == "https://x.example"


def test_prepare_prompt_sets_image_models_and_seeds():
    out = client.prepare_prompt(WORKFLOW, "up.png", sd_checkpoint="c.safetensors",
                                dossr_model="d.safetensors", seed=9)
    assert out["1"]["inputs"]["image"] == "up.png"
    assert out["2"]["inputs"]["ckpt_name"] == "c.safetensors"
    assert out["3"]["inputs"]["model_name"] == "d.safetensors"
    assert out["4"]["inputs"]["seed"] == 9 and out["5"]["inputs"]["noise_seed"] == 9
    assert out["6"]["inputs"]["seed"] == ["7", 0]
    assert WORKFLOW["1"]["inputs"]["image"] == "example.png"  # input not modified
    same = client.prepare_prompt(WORKFLOW, "up.png")
    assert same["2"] == WORKFLOW["2"] and same["4"] == WORKFLOW["4"]


@pytest.mark.parametrize("kwargs, needle", [
    ({"sd_checkpoint": "c"}, "no CheckpointLoaderSimple node"),
    ({"dossr_model": "d"}, "no DoSSRCheckpointLoader or DoSSRModelLoader node"),
    ({"seed": 1}, "no node of the workflow has a seed input"),
])
def test_prepare_prompt_missing_nodes(kwargs, needle):
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}}
    with pytest.raises(client.ClientError, match=needle):
        client.prepare_prompt(wf, "x.png", **kwargs)
    with pytest.raises(client.ClientError, match="no LoadImage node"):
        client.prepare_prompt({"1": {"class_type": "SaveImage", "inputs": {}}}, "x.png")


def test_model_options_on_the_one_file_workflow():
    """--dossr-model names the one file; --sd-checkpoint has nothing to set and says why."""
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
          "2": {"class_type": "DoSSRCheckpointLoader", "inputs": {"ckpt_name": "x.ckpt", "dtype": "auto"}}}
    out = client.prepare_prompt(wf, "up.png", dossr_model="dossr_onestep.ckpt")
    assert out["2"]["inputs"]["ckpt_name"] == "dossr_onestep.ckpt"
    with pytest.raises(client.ClientError, match="takes SD 2.1-base from the DoSSR file"):
        client.prepare_prompt(wf, "up.png", sd_checkpoint="v2-1_512-ema-pruned.safetensors")


def test_load_workflow_errors(tmp_path):
    with pytest.raises(client.ClientError, match="workflow file not found"):
        client.load_workflow(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(client.ClientError, match="not valid JSON"):
        client.load_workflow(bad)
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(client.ClientError, match="UI-format workflow"):
        client.load_workflow(ui)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(WORKFLOW))
    assert client.load_workflow(ok) == WORKFLOW


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_main_server_down(tmp_path, capsys):
    img = tmp_path / "in.png"
    img.write_bytes(PNG)
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(WORKFLOW))
    url = f"http://127.0.0.1:{_closed_port()}"
    assert client.main([str(img), "--server", url, "--workflow", str(wf)]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot reach ComfyUI at {url} (connection refused): start it with " \
           "`python main.py --listen" in err
    assert "or pass --server" in err and "Traceback" not in err


@pytest.mark.parametrize("missing", ["image", "workflow"])
def test_main_missing_files(tmp_path, capsys, missing):
    img, wf = tmp_path / "in.png", tmp_path / "wf.json"
    if missing != "image":
        img.write_bytes(PNG)
    if missing != "workflow":
        wf.write_text(json.dumps(WORKFLOW))
    url = f"http://127.0.0.1:{_closed_port()}"
    assert client.main([str(img), "--server", url, "--workflow", str(wf)]) == 2
    err = capsys.readouterr().err
    assert f"{missing} file not found" in err


# ----------------------------------------------------------------------------- fake API

class FakeComfy:
    """A tiny stand-in for ComfyUI's HTTP API; *mode* picks the outcome of /prompt."""

    BUSY_S = 1.2   # "busy": the prompt finishes this long after it was queued

    def __init__(self, mode="ok"):
        self.mode = mode
        self.uploads = []
        self.prompts = []
        self.deleted = []
        self.interrupts = []
        self.polls = 0
        self.queue_gets = 0
        self.queued_at = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, payload=None, raw=None, ctype="application/json"):
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def do_POST(self):
                body = self._body()
                if self.path == "/upload/image":
                    parts = parse_multipart(body, self.headers["Content-Type"])
                    fake.uploads.append(parts)
                    return self._send(200, {"name": parts["image"][0], "subfolder": "", "type": "input"})
                if self.path == "/prompt":
                    data = json.loads(body)
                    fake.prompts.append(data)
                    fake.queued_at = time.monotonic()
                    if fake.mode == "reject":
                        return self._send(400, {
                            "error": {"type": "prompt_outputs_failed_validation",
                                      "message": "Prompt outputs failed validation", "details": ""},
                            "node_errors": {"2": {"class_type": "CheckpointLoaderSimple", "errors": [{
                                "type": "value_not_in_list", "message": "Value not in list",
                                "details": "ckpt_name: 'bad.safetensors' not in []"}]}}})
                    return self._send(200, {"prompt_id": "p1", "number": 0, "node_errors": {}})
                if self.path == "/queue":
                    fake.deleted.append(json.loads(body))
                    return self._send(200, raw=b"", ctype="text/plain")
                if self.path == "/interrupt":
                    fake.interrupts.append(json.loads(body))
                    return self._send(200, raw=b"", ctype="text/plain")
                return self._send(404, {})

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                if url.path == "/history/p1":
                    fake.polls += 1
                    if (fake.mode == "never" or fake.polls < 2 or fake.mode == "busy"
                            and time.monotonic() - fake.queued_at < fake.BUSY_S):
                        return self._send(200, {})
                    return self._send(200, {"p1": fake.history()})
                if url.path == "/queue":
                    # "busy": other clients' prompts come and go behind ours (progress);
                    # otherwise the queue stands still
                    fake.queue_gets += 1
                    pending = [[1, f"other-{fake.queue_gets}", {}, {}, []]] if fake.mode == "busy" else []
                    return self._send(200, {"queue_running": [[0, "p1", {}, {}, []]],
                                            "queue_pending": pending})
                if url.path == "/view":
                    q = urllib.parse.parse_qs(url.query)
                    return self._send(200, raw=PNG + q["filename"][0].encode(), ctype="image/png")
                return self._send(404, {})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def history(self):
        msgs = [["execution_start", {"prompt_id": "p1"}]]
        status = "success"
        outputs = {"8": {"images": [{"filename": "DoSSR_00001_.png", "subfolder": "", "type": "output"},
                                    {"filename": "DoSSR_00002_.png", "subfolder": "sub", "type": "output"}]},
                   "9": {"images": [{"filename": "preview.png", "subfolder": "", "type": "temp"}]}}
        if self.mode == "error":
            status = "error"
            msgs.append(["execution_error", {"node_id": "4", "node_type": "DoSSRSampler",
                                             "exception_type": "RuntimeError",
                                             "exception_message": "boom\n", "traceback": []}])
            outputs = {}
        if self.mode == "interrupt":
            status = "error"
            msgs.append(["execution_interrupted", {"node_id": "4", "node_type": "DoSSRSampler"}])
            outputs = {}
        return {"prompt": [0, "p1", {}, {}, []], "outputs": outputs,
                "status": {"status_str": status, "completed": status == "success", "messages": msgs}}

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_comfy():
    servers = []

    def make(mode="ok"):
        servers.append(FakeComfy(mode))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def files(tmp_path):
    img = tmp_path / "low res.png"
    img.write_bytes(PNG)
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(WORKFLOW))
    return img, wf


def test_main_success_against_fake_api(fake_comfy, files, tmp_path, capsys):
    fake = fake_comfy("ok")
    img, wf = files
    out = tmp_path / "out"
    (out).mkdir()
    (out / "DoSSR_00001_.png").write_bytes(b"old")  # not overwritten
    rc = client.main([str(img), "--server", fake.url, "--workflow", str(wf), "--seed", "3",
                      "--sd-checkpoint", "c.safetensors", "--output-dir", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert fake.uploads[0]["image"] == ("low res.png", "image/png", PNG)
    assert fake.uploads[0]["overwrite"][2] == b"true"
    sent = fake.prompts[0]
    assert sent["client_id"] and sent["prompt"]["1"]["inputs"]["image"] == "low res.png"
    assert sent["prompt"]["2"]["inputs"]["ckpt_name"] == "c.safetensors"
    assert sent["prompt"]["4"]["inputs"]["seed"] == 3
    printed = [Path(p) for p in cap.out.split()]
    assert printed == [out / "DoSSR_00001_-1.png", out / "DoSSR_00002_.png"]  # temp preview skipped
    assert printed[0].read_bytes() == PNG + b"DoSSR_00001_.png"
    assert (out / "DoSSR_00001_.png").read_bytes() == b"old"


def test_main_rejected_prints_each_node_error(fake_comfy, files, capsys):
    fake = fake_comfy("reject")
    img, wf = files
    assert client.main([str(img), "--server", fake.url, "--workflow", str(wf)]) == 2
    err = capsys.readouterr().err
    assert "ComfyUI rejected the prompt: Prompt outputs failed validation" in err
    assert "node 2 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'bad.safetensors' not in []" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("mode, needle", [
    ("error", "ComfyUI failed at node 4 (DoSSRSampler): RuntimeError: boom"),
    ("interrupt", "the prompt was interrupted at node 4 (DoSSRSampler)"),
])
def test_main_execution_failures(fake_comfy, files, capsys, mode, needle):
    fake = fake_comfy(mode)
    img, wf = files
    assert client.main([str(img), "--server", fake.url, "--workflow", str(wf)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_timeout_cancels(fake_comfy, files, tmp_path):
    """No progress (the queue stands still, no websocket) for --timeout seconds: given up."""
    fake = fake_comfy("never")
    img, wf = files
    t0 = time.monotonic()
    with pytest.raises(client.Timeout, match="no progress from ComfyUI for 0.3 s"):
        client.run_workflow(fake.url, str(wf), img, timeout=0.3, poll=0.05, output_dir=tmp_path)
    assert time.monotonic() - t0 < 5
    assert fake.deleted == [{"delete": ["p1"]}]
    assert fake.interrupts == [{"prompt_id": "p1"}]


def test_timeout_is_a_stall_timeout_not_a_total(fake_comfy, files, tmp_path, monkeypatch):
    """A prompt that takes four times --timeout while the server's queue keeps moving is
    waited for to the end."""
    monkeypatch.setattr(client, "QUEUE_CHECK_S", 0.05)
    fake = fake_comfy("busy")
    img, wf = files
    t0 = time.monotonic()
    paths = client.run_workflow(fake.url, str(wf), img, timeout=0.3, poll=0.05, output_dir=tmp_path)
    assert time.monotonic() - t0 >= FakeComfy.BUSY_S > 0.3
    assert len(paths) == 2 and not fake.deleted and not fake.interrupts
    assert fake.queue_gets > 4


def test_stall_watch_counts_messages_and_queue_changes_as_progress(fake_comfy):
    fake = fake_comfy("busy")
    now = [100.0]
    watch = client.StallWatch(fake.url, timeout=10, clock=lambda: now[0])
    now[0] = 109.0
    assert not watch.stalled()
    watch.progressed()                  # e.g. a websocket progress message
    now[0] = 118.0
    assert not watch.stalled()
    now[0] = 119.5
    assert watch.stalled()
    watch.check_queue()                 # the first look only records the queue
    assert watch.stalled() and fake.queue_gets == 1
    watch.check_queue()                 # too soon to look again
    assert fake.queue_gets == 1
    now[0] = 122.0
    watch.check_queue()                 # changed since: progress
    assert fake.queue_gets == 2 and not watch.stalled()
    fake.mode = "never"                 # from now on it stands still
    now[0] = 125.0
    watch.check_queue()                 # (the change to the still queue is progress, once)
    now[0] = 134.0
    watch.check_queue()
    assert not watch.stalled()
    now[0] = 135.5
    watch.check_queue()
    assert watch.stalled() and fake.queue_gets == 4   # 135.5: too soon after 134 to look


# ----------------------------------------------------------------------------- hostlib helpers
# (tests/hostlib/server.py is the host tests' client; these parts need no server)

def test_hostlib_patch_and_load_api_workflow(tmp_path):
    from tests.hostlib import server as hs

    prompt = hs.core_txt2img_prompt("a.safetensors", count_log="/tmp/x.jsonl")
    assert prompt["5"]["inputs"]["model"] == ["8", 0]
    assert hs.patch(prompt, "KSampler", steps=9, cfg=2.5) == ["5"]
    assert hs.patch(prompt, "Negative", text="blurry") == ["3"]  # by title
    assert hs.patch(prompt, "CLIPTextEncode", clip=["1", 1]) == ["2", "3"]
    assert prompt["5"]["inputs"]["steps"] == 9 and prompt["3"]["inputs"]["text"] == "blurry"
    with pytest.raises(KeyError, match="DoSSRSampler"):
        hs.patch(prompt, "DoSSRSampler", seed=1)
    path = tmp_path / "wf_api.json"
    path.write_text(json.dumps(prompt))
    assert hs.load_api_workflow(path) == prompt
    (tmp_path / "ui.json").write_text(json.dumps({"nodes": [], "links": []}))
    with pytest.raises(ValueError, match="not an API-format"):
        hs.load_api_workflow(tmp_path / "ui.json")


def test_hostlib_png_and_multipart(tmp_path):
    from tests.hostlib import server as hs

    p = hs.write_png(tmp_path / "a.png", 7, 5)
    assert hs.png_size(p) == (7, 5)
    body, ctype = hs.multipart_body({"overwrite": "true"}, {"image": ("a.png", p.read_bytes(), "image/png")})
    parts = parse_multipart(body, ctype)
    assert parts["image"] == ("a.png", "image/png", p.read_bytes())


def test_hostlib_server_env_drops_repo_and_adds_only_needed_stubs(monkeypatch):
    from tests.hostlib import server as hs

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), "/some/where"]))
    monkeypatch.setenv("DOSSR_TORCHVISION_STUB", "1")
    monkeypatch.setenv("DOSSR_TORCHAUDIO_STUB", "0")
    hs.importable.cache_clear()
    try:
        env = hs.server_env()
    finally:
        hs.importable.cache_clear()
    stubs, rest = env["PYTHONPATH"].split(os.pathsep)
    assert rest == "/some/where"
    entries = sorted(p.name for p in Path(stubs).iterdir())
    assert entries == ["_dossr_stub.py", "torchvision"]  # a working torchaudio is not shadowed
    assert hs.comfy_tree_problem(None) == "COMFYUI_PATH is not set"
    assert "not a ComfyUI tree" in hs.comfy_tree_problem(str(REPO))



def test_help_says_timeout_is_a_stall_timeout_and_what_tiling_does(capsys):
    with pytest.raises(SystemExit):
        client.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--timeout TIMEOUT give up on an image (and cancel it on the server) when the server " \
           "shows no progress for this many seconds (default 600)" in text
    assert "on: tiles at every size above one tile" in text and "off: never tiles" in text
