"""The client's batch parts that need no server: input discovery, output naming, resume
bookkeeping, workflow settings, seeds, the summary and exit status."""

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflows"))
from dossr_batch import cli, inputs, knobs, report  # noqa: E402

X4 = json.loads((REPO / "workflows" / "dossr_x4_api.json").read_text())
TILED = json.loads((REPO / "workflows" / "dossr_x4_tiled_api.json").read_text())


def _client():
    spec = importlib.util.spec_from_file_location("dossr_client_batch", REPO / "workflows" / "dossr_client.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def touch(path: Path, data=b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "photos"
    for rel in ("a.png", "b.JPG", "notes.txt", ".hidden.png", "sub/c.webp", "sub/deep/d.tif"):
        touch(root / rel)
    return root


def test_folder_lists_images_only_and_recursion_is_optional(tree):
    flat = [rel.as_posix() for _, rel in inputs.discover([tree])]
    assert flat == ["a.png", "b.JPG"]
    deep = [rel.as_posix() for _, rel in inputs.discover([tree], recursive=True)]
    assert deep == ["a.png", "b.JPG", "sub/c.webp", "sub/deep/d.tif"]


def test_patterns_keep_the_path_below_their_fixed_part(tree):
    found = inputs.discover([str(tree / "sub" / "**" / "*.*")])
    assert sorted(rel.as_posix() for _, rel in found) == ["c.webp", "deep/d.tif"]
    with pytest.raises(inputs.InputError, match="no image matches the pattern"):
        inputs.discover([str(tree / "*.gif")])


def test_named_files_whatever_their_extension_and_each_once(tree):
    found = inputs.discover([tree / "notes.txt", tree / "a.png", tree, str(tree / "a.*")])
    assert [rel.as_posix() for _, rel in found] == ["notes.txt", "a.png", "b.JPG"]
    with pytest.raises(inputs.InputError, match="input not found: .*missing.png"):
        inputs.discover([tree / "missing.png"])


def test_outputs_mirror_the_inputs_with_suffix_and_png(tree, tmp_path):
    items = inputs.plan([tree], tmp_path / "out", "_x4", recursive=True)
    assert [i.output.relative_to(tmp_path / "out").as_posix() for i in items] == [
        "a_x4.png", "b_x4.png", "sub/c_x4.png", "sub/deep/d_x4.png"]


def test_two_inputs_for_one_output_is_an_error(tmp_path):
    touch(tmp_path / "in" / "a.png")
    touch(tmp_path / "in" / "a.jpg")
    with pytest.raises(inputs.InputError, match=r"a\.jpg and .*a\.png would both be saved as .*a_x4\.png"):
        inputs.plan([tmp_path / "in"], tmp_path / "out", "_x4")


def test_resume_counts_only_finished_results(tmp_path):
    (item,) = inputs.plan([touch(tmp_path / "a.png")], tmp_path / "out", "_x4")
    assert not inputs.is_done(item)
    touch(item.output.parent / f".{item.output.name}.123.part", b"half")  # a killed write
    assert not inputs.is_done(item)
    inputs.write_atomically(item.output, b"result")
    assert inputs.is_done(item) and item.output.read_bytes() == b"result"
    assert [p.name for p in item.output.parent.iterdir() if p.name.endswith(".part")] == [
        f".{item.output.name}.123.part"]  # the write itself left nothing behind


def test_results_are_never_overwritten_unless_asked(tmp_path):
    path = touch(tmp_path / "a_x4.png", b"first")
    with pytest.raises(FileExistsError):
        inputs.write_atomically(path, b"second")
    assert path.read_bytes() == b"first"
    inputs.write_atomically(path, b"second", overwrite=True)
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_x4.png"]


def test_settings_reach_their_nodes():
    out = knobs.apply(X4, scale=2, steps=1, order="2", mode="ode")
    assert out["6"]["inputs"]["scale"] == 2
    assert (out["7"]["inputs"]["steps"], out["7"]["inputs"]["order"], out["7"]["inputs"]["mode"]) == (1, "2", "ode")
    assert X4["7"]["inputs"]["steps"] == 5  # the template is not changed
    assert knobs.default_suffix(out) == "_x2" and knobs.default_suffix(X4) == "_x4"
    assert knobs.default_suffix(knobs.apply(X4, scale=2.5)) == "_x2.5"


def test_tiling_on_off_and_tile_size():
    """--tiling maps onto the tiling nodes' modes of any workflow, the default one included;
    --tile-size reaches every tiling node."""
    assert (X4["12"]["inputs"]["mode"], X4["8"]["inputs"]["tiling"]) == ("auto", "auto")
    sized = knobs.apply(X4, tile_size=384)
    assert sized["12"]["inputs"]["tile_size"] == 384 and sized["8"]["inputs"]["tile_size"] == 384
    on = knobs.apply(X4, tiling=True)
    assert (on["12"]["inputs"]["mode"], on["8"]["inputs"]["tiling"]) == ("always", "always")
    off = knobs.apply(X4, tiling=False)
    assert (off["12"]["inputs"]["mode"], off["8"]["inputs"]["tiling"]) == ("off", "off")
    for out in (on, off):   # nothing else changes
        assert {k: v for k, v in out.items() if k not in ("8", "12")} == {
            k: v for k, v in X4.items() if k not in ("8", "12")}
    assert X4["12"]["inputs"]["mode"] == "auto"  # the template is not changed

    tiled = knobs.apply(TILED, tile_size=256)
    assert tiled["12"]["inputs"]["tile_size"] == 256 and tiled["8"]["inputs"]["tile_size"] == 256
    plain = knobs.apply(TILED, tiling=False)
    assert plain["12"]["inputs"]["mode"] == "off" and plain["7"]["inputs"]["model"] == ["12", 0]
    assert plain["8"] == {**TILED["8"], "class_type": "VAEDecode",
                          "inputs": {"samples": ["7", 0], "vae": ["2", 2]}}
    assert knobs.apply(TILED, tiling=True) == TILED   # it already forces tiles


def test_tiling_on_names_the_default_workflow_by_an_absolute_path():
    """A workflow without a tiling node cannot be switched on; the message names a workflow
    that can, by a path that works from any folder."""
    untiled = {k: v for k, v in X4.items() if k not in ("12",)}
    untiled = json.loads(json.dumps(untiled))
    untiled["7"]["inputs"]["model"] = ["2", 0]
    with pytest.raises(knobs.KnobError) as err:
        knobs.apply(untiled, tiling=True)
    message = str(err.value)
    assert "no DoSSR Tiled Sampling node" in message
    path = Path(message.split("such as ")[1].split(" (the default)")[0])
    assert path.is_absolute() and path == REPO / "workflows" / "dossr_x4_api.json" and path.is_file()
    assert knobs.apply(untiled, tiling=False)["8"]["inputs"]["tiling"] == "off"


@pytest.mark.parametrize("settings, needle", [
    ({"tile_size": 256}, r"--tile-size given, but the workflow has no node input for it \(looked for DoSSRTiledDiffusion.tile_size"),
    ({"tiling": True}, "no DoSSR Tiled Sampling node to switch"),
])
def test_settings_without_a_node_are_errors(settings, needle):
    bare = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
            "7": {"class_type": "DoSSRSampler", "inputs": {"steps": 5}}}
    with pytest.raises(knobs.KnobError, match=needle):
        knobs.apply(bare, **settings)


def test_steps_need_a_sampler():
    with pytest.raises(knobs.KnobError, match="--steps given"):
        knobs.apply({"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}}, steps=3)


def test_per_image_seeds_are_reproducible_and_differ():
    a = knobs.image_seed(7, Path("sub/a.png"))
    assert a == knobs.image_seed(7, Path("sub/a.png"))
    assert len({a, knobs.image_seed(7, Path("sub/b.png")), knobs.image_seed(8, Path("sub/a.png"))}) == 3
    assert 0 <= a < knobs.SEED_LIMIT


def test_summary_counts_and_reasons_and_exit_status():
    results = [report.Result("a.png", "a_x4.png", report.DONE, "s1", 1.5),
               report.Result("b.png", "b_x4.png", report.SKIPPED),
               report.Result("bad.png", "bad_x4.png", report.FAILED, "s1", error="node 1 (LoadImage): boom")]
    text = report.summary(results)
    assert text.splitlines() == ["1 done, 1 skipped (already done), 1 failed of 3 images",
                                 "  failed: bad.png: node 1 (LoadImage): boom"]
    assert report.exit_status(results) == 1
    assert report.exit_status(results[:2]) == 0


def test_json_report(tmp_path):
    results = [report.Result("a.png", "a_x4.png", report.DONE, "http://s", 2.0, tries=1)]
    report.write_json(tmp_path / "r.json", results, lambda p, d: p.write_bytes(d))
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["counts"]["done"] == 1
    assert data["images"][0] == {"input": "a.png", "output": "a_x4.png", "status": "done",
                                 "server": "http://s", "seconds": 2.0, "error": None, "tries": 1,
                                 "extra_outputs": []}


def test_servers_from_repeats_and_comma_lists():
    client = _client()
    args = client.parse_args(["in.png", "--server", "127.0.0.1:1,127.0.0.1:2", "--server", "127.0.0.1:1"])
    assert args.servers == ["http://127.0.0.1:1", "http://127.0.0.1:2"] and cli.wants_batch(args)


def test_batch_mode_only_when_asked_or_implied(tree):
    client = _client()
    assert not cli.wants_batch(client.parse_args([str(tree / "a.png")]))
    for argv in ([str(tree)], [str(tree / "a.png"), str(tree / "b.JPG")], [str(tree / "*.png")],
                 [str(tree / "a.png"), "--batch"], [str(tree / "a.png"), "--report", "r.json"]):
        assert cli.wants_batch(client.parse_args(argv)), argv


def test_batch_errors_are_messages_not_tracebacks(tree, tmp_path, capsys):
    client = _client()
    assert client.main([str(tree), "--tile-size", "256", "--tiling", "off",
                        "--output-dir", str(tmp_path)]) == 2
    assert "--tile-size given together with --tiling off" in capsys.readouterr().err
    assert client.main([str(tree), "--per-image-seed"]) == 2
    assert "--per-image-seed needs --seed" in capsys.readouterr().err
    assert client.main([str(tmp_path / "nothing*.png")]) == 2
    assert "no image matches the pattern" in capsys.readouterr().err


def _job(i):
    from dossr_batch import scheduler

    return scheduler.Job(i, inputs.Item(Path(f"{i}.png"), Path(f"{i}.png"), Path(f"{i}_x4.png")))


def test_pool_hands_a_lost_image_back_first_and_only_for_its_tries():
    from dossr_batch import scheduler

    pool = scheduler.Pool([_job(0), _job(1)], tries=2)
    first = pool.take()
    first.tries += 1
    assert pool.give_back(first, "server went away")
    again = pool.take()
    assert again is first  # first in line, before image 1
    again.tries += 1
    assert not pool.give_back(again, "server went away again")  # 2 tries used
    last = pool.take()
    assert last.index == 1
    pool.finish(last, report.Result("1.png", "1_x4.png", report.DONE))
    assert pool.take() is None and pool.over()
    assert list(pool.results) == [1]


def test_upload_names_follow_the_content():
    from dossr_batch import scheduler

    a = scheduler.upload_name(b"one", Path("x/a.PNG"))
    assert a == scheduler.upload_name(b"one", Path("y/b.png")) and a.endswith(".png")
    assert a != scheduler.upload_name(b"two", Path("x/a.PNG"))


def test_progress_line_and_estimate_ignore_skipped_images():
    import io

    from dossr_batch.progress import Progress

    now = [100.0]
    stream = io.StringIO()
    p = Progress(5, stream=stream, live=True, now=lambda: now[0])
    p.finished("skipped a.png", worked=False)  # already done: costs no time
    p.busy("http://s1", "b.png")
    now[0] += 10
    p.step("http://s1", "b.png", "DoSSR Sampler", 2, 5)
    assert p.line() == "1/5 images, 00:10 elapsed, estimating | http://s1: b.png DoSSR Sampler 2/5"
    p.finished("done b.png", worked=True)
    p.idle("http://s1")
    assert p.remaining() == 30.0  # 10 s per upscaled image, 3 left
    assert p.line() == "2/5 images, 00:10 elapsed, ~00:30 left"
    assert "[2/5] done b.png\n" in stream.getvalue()


def test_quiet_progress_prints_only_failures():
    import io

    from dossr_batch.progress import Progress

    stream = io.StringIO()
    p = Progress(2, stream=stream, quiet=True)
    p.finished("done a.png", worked=True)
    p.finished("failed b.png: boom", worked=True, failed=True)
    assert stream.getvalue() == "[2/2] failed b.png: boom\n"


class _StallApi:
    """The client functions a batch Server waits with, answering from a script: the prompt
    finishes *finish_s* after the start, and the queue moves only if *queue_moves*."""

    def __init__(self, client, finish_s: float, queue_moves: bool):
        self.client, self.finish_s, self.queue_moves = client, finish_s, queue_moves
        self.start = time.monotonic()
        self.looks = 0
        self.cancelled = []
        self.Timeout, self.ServerUnreachable = client.Timeout, client.ServerUnreachable

    def _json(self, url, method, path, payload=None, timeout=60.0):
        done = time.monotonic() - self.start >= self.finish_s
        return 200, ({"p": {"outputs": {}}} if done else {}), b""

    def queue_state(self, url):
        self.looks += 1
        pending = (f"other-{self.looks}",) if self.queue_moves else ()
        return ("p",), pending

    def _cancel(self, url, prompt_id):
        self.cancelled.append(prompt_id)


class _Steps:
    def step(self, *args):
        pass


@pytest.mark.parametrize("signal", ["queue", "websocket"])
def test_batch_wait_is_a_stall_timeout(monkeypatch, signal):
    """A prompt that takes four times the timeout is waited for while the server shows
    progress (its queue moves, or progress messages come); without any it is cancelled."""
    from dossr_batch import scheduler

    client = _client()
    monkeypatch.setattr(scheduler, "LOST_CHECK_S", 0.05)
    api = _StallApi(client, finish_s=1.2, queue_moves=signal == "queue")
    server = scheduler.Server("http://fake", api, "c", _Steps())
    server.expect("p")
    stop = threading.Event()

    def messages():
        while not stop.wait(0.1):
            server._handle({"type": "progress", "data": {"prompt_id": "p", "value": 1, "max": 9}})

    if signal == "websocket":
        threading.Thread(target=messages, daemon=True).start()
    try:
        assert server.wait("p", timeout=0.3) == {"outputs": {}}
    finally:
        stop.set()
    assert time.monotonic() - api.start >= 1.2 and not api.cancelled

    still = _StallApi(client, finish_s=60, queue_moves=False)
    server = scheduler.Server("http://fake", still, "c", _Steps())
    server.expect("p")
    t0 = time.monotonic()
    with pytest.raises(client.Timeout, match="no progress for 0.3 s"):
        server.wait("p", timeout=0.3)
    assert time.monotonic() - t0 < 5 and still.cancelled == ["p"]
