"""python -m dossr_core.fetch: what goes where, refusals, reruns, Google Drive through gdown.

Most tests run the command in-process (``main(argv, fetcher=...)``) with small DoSSR files
and a manifest made from them; the end-to-end ones start the real command in a subprocess
(small files via DOSSR_FETCH_MANIFESTS; the slow one with the release manifests and a
full-shape file).
"""

import hashlib
import io
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from dossr_core import drive, fetch
from dossr_core.fetch import Fetcher, Target, find_models_dir, main
from tests.conftest import REPO
from tests.fetch_files import (HTML_QUOTA, SMALL_SD, small_manifest, small_tensors, write_manifests,
                               write_small, write_sparse_safetensors)
from tests.loopback_http import LoopbackServer

DRIVE_URL = "https://drive.google.com/drive/folders/1BTGRbAqXDSNWjyUnTLgDfmjd2xyu8GvP"


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Bytes of a good small DoSSR file (Lightning-style ckpt) and of another good one."""
    d = tmp_path_factory.mktemp("good")
    a = write_small(d / "a.ckpt", "ckpt")
    b = write_small(d / "b.safetensors", "safetensors", with_sd=True)
    return SimpleNamespace(ckpt=a, full=b)


class Run:
    """One in-process run of the command: exit status, stdout, stderr."""

    def __init__(self, argv, targets=None, **knobs):
        self.fetcher = Fetcher(out=io.StringIO(), err=io.StringIO(), tty=False,
                               manifest=small_manifest(), sd_manifest=SMALL_SD, retry_wait=0,
                               **knobs)
        self.rc = main([str(a) for a in argv], fetcher=self.fetcher, targets=targets)
        self.out = self.fetcher.out.getvalue()
        self.err = self.fetcher.err.getvalue()
        assert "\x1b" not in self.out + self.err


def installed(models, name="dossr_default.ckpt", folder="dossr"):
    return models / folder / name


# ----------------------------------------------------------------------------- --from URL

def test_from_url_cut_once_resumes_and_installs(server, models, good):
    server.files["/dossr_default.ckpt"] = good.ckpt
    server.cut_after["/dossr_default.ckpt"] = [len(good.ckpt) // 2]
    run = Run(["default", "--from", server.url("/dossr_default.ckpt"), "--models-dir", models])
    assert run.rc == 0, run.err
    assert server.ranges("/dossr_default.ckpt") == [None, f"bytes={len(good.ckpt) // 2}-"]
    assert installed(models).read_bytes() == good.ckpt
    assert os.listdir(models / "dossr") == ["dossr_default.ckpt"]
    assert f"installed {installed(models)} (all {len(small_manifest())} DoSSR tensors, no SD " \
           f"2.1-base: serves the two-file workflow" in run.out
    assert "the one-file workflow needs the full release file" in run.out


def test_rerun_after_an_interrupted_run_continues_the_part(server, models, good):
    server.files["/d"] = good.ckpt
    cut = len(good.ckpt) // 3
    server.cut_after["/d"] = [cut]
    first = Run(["default", "--from", server.url("/d"), "--models-dir", models], retries=0)
    part = models / "dossr" / "dossr_default.ckpt.part"
    assert first.rc == 2 and not installed(models).exists()
    assert part.read_bytes() == good.ckpt[:cut]
    assert f"The partial file {part} is kept: rerun the same command to continue" in first.err
    second = Run(["default", "--from", server.url("/d"), "--models-dir", models])
    assert second.rc == 0, second.err
    assert server.ranges("/d") == [None, f"bytes={cut}-"]
    assert installed(models).read_bytes() == good.ckpt and not part.exists()


def test_full_release_file_is_reported_as_serving_both_workflows(server, models, good):
    server.files["/d"] = good.full
    run = Run(["onestep", "--from", server.url("/d"), "--models-dir", models])
    assert run.rc == 0, run.err
    assert installed(models, "dossr_onestep.ckpt").read_bytes() == good.full
    assert "and the complete SD 2.1-base: serves the one-file and the two-file workflow" in run.out


# ----------------------------------------------------------------------------- refusals

def _refused(run, models, name="dossr_default.ckpt", folder="dossr"):
    assert run.rc == 2
    assert run.err.splitlines()[-1].startswith("error: refused ")
    assert f"Nothing was installed as {installed(models, name, folder)}" in run.err
    assert not installed(models, name, folder).exists()
    assert os.listdir(models / folder) == []      # the bad complete download is removed too


def test_truncated_file_is_refused(server, models, good):
    n = len(good.ckpt) - 4096
    server.files["/d"] = good.ckpt[:n]             # the server's own copy is cut short
    run = Run(["default", "--from", server.url("/d"), "--models-dir", models])
    _refused(run, models)
    assert f"received a torch checkpoint cut off at {n:,} bytes" in run.err
    assert "Check the address, or use another copy" in run.err


def test_html_page_is_refused_with_its_title(server, models):
    server.html["/d"] = HTML_QUOTA
    run = Run(["default", "--from", server.url("/d"), "--models-dir", models])
    assert run.rc == 2 and not installed(models).exists()
    assert "the server sent an HTML page titled 'Google Drive - Quota exceeded'" in run.err
    assert os.listdir(models / "dossr") == []


def test_html_page_saved_as_a_file_is_refused(server, models):
    server.files["/d"] = HTML_QUOTA.encode()        # served as octet-stream: caught by verification
    run = Run(["default", "--from", server.url("/d"), "--models-dir", models])
    _refused(run, models)
    assert "received an HTML page titled 'Google Drive - Quota exceeded'" in run.err


def test_plain_sd_checkpoint_is_refused(server, models, tmp_path):
    sd = write_small(tmp_path / "sd.safetensors", tensors={
        k: v for k, v in small_tensors(with_sd=True).items() if not k.startswith(
            ("control_model.", "cond_encoder.", "preprocess_model."))})
    server.files["/d"] = sd
    run = Run(["default", "--from", server.url("/d"), "--models-dir", models])
    _refused(run, models)
    assert "received a plain Stable Diffusion checkpoint" in run.err


def _sd_target(data, url):
    return {"sd21": Target("sd21", "v2-1_512-ema-pruned.safetensors", "checkpoints", url,
                           len(data), hashlib.sha256(data).hexdigest())}


def test_sd21_is_verified_by_sha256(server, models):
    data = os.urandom(2_500_000)
    server.files["/sd"] = data
    server.cut_after["/sd"] = [1_000_000]          # the resumed part is re-hashed from its start
    run = Run(["sd21", "--models-dir", models], targets=_sd_target(data, server.url("/sd")))
    assert run.rc == 0, run.err
    assert server.ranges("/sd") == [None, "bytes=1000000-"]
    assert installed(models, "v2-1_512-ema-pruned.safetensors", "checkpoints").read_bytes() == data
    assert "Stability AI's file" in run.out


def test_sd21_with_a_wrong_hash_is_refused(server, models):
    data = os.urandom(100_000)
    server.files["/sd"] = data
    targets = _sd_target(data[:-1] + bytes([data[-1] ^ 1]), server.url("/sd"))
    run = Run(["sd21", "--models-dir", models], targets=targets)
    _refused(run, models, "v2-1_512-ema-pruned.safetensors", "checkpoints")
    assert (f"received a file of the right size (100,000 bytes) with another content: sha256 "
            f"{hashlib.sha256(data).hexdigest()}") in run.err
    assert "download v2-1_512-ema-pruned.safetensors from http://127.0.0.1" in run.err


# ----------------------------------------------------------------------------- reruns

def test_good_file_in_place_is_never_replaced(server, models, good, tmp_path):
    write_small(installed(models).parent.mkdir() or installed(models), "ckpt")
    before = installed(models).read_bytes()
    for source in (server.url("/other"), tmp_path / "nonexistent.ckpt"):
        server.files["/other"] = good.full
        run = Run(["default", "--from", source, "--models-dir", models])
        assert run.rc == 0 and run.err == ""
        assert run.out == (f"{installed(models)}: already in place and verified (all "
                           f"{len(small_manifest())} DoSSR tensors, no SD 2.1-base: serves the "
                           f"two-file workflow (SD 2.1-base from its own checkpoint); the one-file "
                           f"workflow needs the full release file)\n")
    assert server.requests == [] and installed(models).read_bytes() == before


def test_rerun_with_everything_in_place_does_not_contact_drive(models, monkeypatch):
    write_small(installed(models).parent.mkdir() or installed(models), "ckpt")
    monkeypatch.setattr(drive, "find_file_id", lambda *a, **k: pytest.fail("Drive was contacted"))
    run = Run(["default", "--models-dir", models])
    assert run.rc == 0 and "already in place and verified" in run.out


def test_bad_file_in_place_is_replaced_only_by_a_verified_one(server, models, good):
    installed(models).parent.mkdir()
    installed(models).write_text(HTML_QUOTA)
    server.files["/bad"] = good.ckpt[:1000]
    run = Run(["default", "--from", server.url("/bad"), "--models-dir", models])
    assert run.rc == 2 and installed(models).read_text() == HTML_QUOTA
    assert "is there but is an HTML page titled 'Google Drive - Quota exceeded'" in run.err
    server.files["/good"] = good.ckpt
    run = Run(["default", "--from", server.url("/good"), "--models-dir", models])
    assert run.rc == 0 and installed(models).read_bytes() == good.ckpt


def test_sd21_in_place_is_rehashed_on_a_rerun(server, models):
    data = os.urandom(400_000)
    server.files["/sd"] = data
    targets = _sd_target(data, server.url("/sd"))
    dest = installed(models, "v2-1_512-ema-pruned.safetensors", "checkpoints")
    assert Run(["sd21", "--models-dir", models], targets=targets).rc == 0
    again = Run(["sd21", "--models-dir", models], targets=targets)
    assert again.rc == 0 and f"{dest}: already in place and verified" in again.out
    assert again.err.startswith(f"checking the sha256 of {dest} (400.00 kB)")
    assert len(server.requests) == 1
    dest.write_bytes(data[:-1] + b"?")                 # same size, other content
    fixed = Run(["sd21", "--models-dir", models], targets=targets)
    assert fixed.rc == 0 and "is there but is a file of the right size" in fixed.err
    assert dest.read_bytes() == data and len(server.requests) == 2


# ----------------------------------------------------------------------------- --from PATH

def test_local_copy_is_copied_not_moved(models, good, tmp_path):
    src = tmp_path / "colleague.ckpt"
    src.write_bytes(good.ckpt)
    run = Run(["default", "--from", src, "--models-dir", models])
    assert run.rc == 0, run.err
    assert src.read_bytes() == good.ckpt and installed(models).read_bytes() == good.ckpt


def test_bad_local_copy_is_refused_before_copying(models, good, tmp_path):
    src = tmp_path / "cut.ckpt"
    src.write_bytes(good.ckpt[:-100])
    run = Run(["default", "--from", src, "--models-dir", models])
    assert run.rc == 2 and f"refused {src}: it is a torch checkpoint cut off at" in run.err
    assert "Get a complete copy of dossr_default.ckpt" in run.err
    assert os.listdir(models / "dossr") == []


def test_local_sd21_copy_is_hashed(models, tmp_path):
    data = os.urandom(300_000)
    src = tmp_path / "sd.safetensors"
    src.write_bytes(data)
    good_target = _sd_target(data, "http://127.0.0.1:9/unused")
    assert Run(["sd21", "--from", src, "--models-dir", models], targets=good_target).rc == 0
    assert installed(models, "v2-1_512-ema-pruned.safetensors", "checkpoints").read_bytes() == data
    other = tmp_path / "other" / "models"
    other.mkdir(parents=True)
    src.write_bytes(data[::-1])
    run = Run(["sd21", "--from", src, "--models-dir", other], targets=good_target)
    _refused(run, other, "v2-1_512-ema-pruned.safetensors", "checkpoints")
    assert src.exists()


def test_from_other_scheme_and_missing_file(models):
    run = Run(["default", "--from", "ftp://example.org/f.ckpt", "--models-dir", models])
    assert run.rc == 2 and "only http:// and https:// addresses or a local file" in run.err
    run = Run(["default", "--from", "/nonexistent/f.ckpt", "--models-dir", models])
    assert run.rc == 2 and "--from /nonexistent/f.ckpt: no such file" in run.err


# ----------------------------------------------------------------------------- where files go

def test_models_dir_is_found_from_custom_nodes(tmp_path):
    pack = tmp_path / "ComfyUI" / "custom_nodes" / "comfyui-dossr"
    pack.mkdir(parents=True)
    (tmp_path / "ComfyUI" / "models").mkdir()
    assert find_models_dir(None, pack) == tmp_path / "ComfyUI" / "models"
    with pytest.raises(fetch.FetchError, match=r"not in ComfyUI/custom_nodes/. Pass the folder "
                                               r"with --models-dir"):
        find_models_dir(None, tmp_path / "elsewhere" / "comfyui-dossr")
    with pytest.raises(fetch.FetchError, match=r"--models-dir .*nope: no such folder"):
        find_models_dir(str(tmp_path / "nope"))


def test_without_models_dir_outside_comfyui_says_to_pass_it(monkeypatch, tmp_path):
    monkeypatch.setattr(fetch, "pack_dir", lambda: tmp_path / "checkout")
    run = Run(["default"])
    assert run.rc == 2 and "Pass the folder with --models-dir" in run.err


# ----------------------------------------------------------------------------- Google Drive

class FakeGdown:
    """Stands in for gdown's two calls; records what they were asked."""

    def __init__(self, write=None, fail=None):
        import gdown
        self.exceptions = gdown.exceptions
        self.entry = gdown.download_folder.__globals__["GoogleDriveFileToDownload"]
        self.write, self.fail, self.calls = write, fail, []

    def download_folder(self, **kw):
        self.calls.append(("download_folder", kw))
        return [self.entry(id="1" * 33, path="dossr_default.ckpt", local_path="x"),
                self.entry(id="2" * 33, path="dossr_onestep.ckpt", local_path="y"),
                self.entry(id="3" * 33, path="README.txt", local_path="z")]

    def download(self, **kw):
        self.calls.append(("download", kw))
        if self.fail:
            raise self.fail
        with open(kw["output"], "wb") as f:
            f.write(self.write)
        kw["progress"](len(self.write), len(self.write))
        return kw["output"]


def test_drive_lists_the_folder_and_downloads_only_the_asked_file(models, good, monkeypatch):
    fake = FakeGdown(write=good.ckpt)
    real = sys.modules.get("gdown")
    monkeypatch.setitem(sys.modules, "gdown", fake)
    run = Run(["onestep", "--models-dir", models])
    assert run.rc == 0, run.err
    (what, listing), (_, get) = fake.calls
    assert what == "download_folder"
    assert listing["url"] == DRIVE_URL and listing["skip_download"] is True
    assert get["url"] == "https://drive.google.com/uc?id=" + "2" * 33
    assert get["output"] == str(models / "dossr" / "dossr_onestep.ckpt.gdown")
    assert get["resume"] is True and get["quiet"] is True
    import inspect
    inspect.signature(real.download_folder).bind(**listing)    # the real gdown takes our calls
    inspect.signature(real.download).bind(**get)
    assert installed(models, "dossr_onestep.ckpt").read_bytes() == good.ckpt
    assert os.listdir(models / "dossr") == ["dossr_onestep.ckpt"]


def test_drive_html_is_refused(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", FakeGdown(write=HTML_QUOTA.encode()))
    run = Run(["default", "--models-dir", models])
    _refused(run, models)
    assert "refused dossr_default.ckpt from Google Drive: received an HTML page" in run.err
    assert f"from {DRIVE_URL} with a browser, then either put it at {installed(models)}" in run.err


def test_drive_refusal_gives_the_manual_route(models, monkeypatch):
    import gdown
    err = gdown.exceptions.FileURLRetrievalError(
        "Failed to retrieve file url:\n\n\tToo many users have viewed or downloaded this file "
        "recently. Please try accessing the file again later.\n")
    monkeypatch.setitem(sys.modules, "gdown", FakeGdown(fail=err))
    run = Run(["default", "--models-dir", models])
    assert run.rc == 2 and not installed(models).exists()
    assert "Google Drive did not deliver dossr_default.ckpt: Failed to retrieve file url: Too " \
           "many users have viewed or downloaded this file recently" in run.err
    assert DRIVE_URL in run.err and str(installed(models)) in run.err
    assert f"python -m dossr_core.fetch default --from /path/to/dossr_default.ckpt --models-dir " \
           f"{models}" in run.err


def test_drive_network_failure_says_so(models, monkeypatch):
    import requests
    monkeypatch.setitem(sys.modules, "gdown",
                        FakeGdown(fail=requests.ConnectionError("Name or service not known")))
    run = Run(["default", "--models-dir", models])
    assert run.rc == 2 and "cannot reach Google Drive (Name or service not known)" in run.err
    assert DRIVE_URL in run.err


def test_gdown_missing_says_how_to_install_it(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", None)      # import gdown raises ImportError
    run = Run(["default", "--models-dir", models])
    assert run.rc == 2
    assert "needs gdown, which is not installed in this Python; install it with: python -m pip " \
           "install gdown" in run.err
    assert DRIVE_URL in run.err and "--from /path/to/dossr_default.ckpt" in run.err


def test_real_gdown_downloads_a_plain_url_with_our_progress(server, tmp_path):
    """gdown 6 takes non-Drive URLs too; a cut connection is resumed by its own retries."""
    pytest.importorskip("gdown")
    data = os.urandom(2_000_000)
    server.files["/f"] = data
    server.cut_after["/f"] = [800_000]
    seen = []
    out = tmp_path / "f.gdown"
    got = drive.download(server.url("/f"), str(out), progress=lambda d, t: seen.append((d, t)),
                         use_cookies=False)
    assert got == str(out) and out.read_bytes() == data
    first, resumed = server.ranges("/f")         # gdown keeps whole 512 kB chunks of the cut
    assert first is None and resumed.startswith("bytes=")
    assert 0 < int(resumed[len("bytes="):-1]) <= 800_000
    assert seen[-1] == (len(data), len(data))
    assert [p for p in os.listdir(tmp_path)] == ["f.gdown"]


# ----------------------------------------------------------------------------- --convert

def test_convert_writes_the_small_file_next_to_it(models, good, tmp_path):
    from safetensors import safe_open
    src = tmp_path / "c.ckpt"
    src.write_bytes(good.ckpt)
    run = Run(["default", "--from", src, "--models-dir", models, "--convert", "fp16"])
    assert run.rc == 0, run.err
    out = models / "dossr" / "dossr_default_fp16.safetensors"
    with safe_open(str(out), "pt") as f:
        assert {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()} == small_manifest()
        assert f.get_slice("control_model.time_embed.0.weight").get_dtype() == "F16"
    assert f"wrote {out} (" in run.out
    again = Run(["default", "--models-dir", models, "--convert", "fp16"])
    assert again.rc == 0
    assert again.out.count("already in place and verified") == 2


def test_convert_is_for_dossr_files_only(models):
    run = Run(["sd21", "--models-dir", models, "--convert", "fp16"])
    assert run.rc == 2 and "--convert applies to the DoSSR files" in run.err


# ----------------------------------------------------------------------------- the real command

def _cli(args, env_extra=None, cwd=REPO):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "dossr_core.fetch", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def test_command_installs_and_a_second_run_does_nothing(server, models, good, tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    write_manifests(manifests, small_manifest(), SMALL_SD)
    env = {"DOSSR_FETCH_MANIFESTS": str(manifests)}
    server.files["/dossr_default.ckpt"] = good.ckpt
    url = server.url("/dossr_default.ckpt")
    first = _cli(["default", "--from", url, "--models-dir", models], env)
    assert first.returncode == 0, first.stderr
    assert installed(models).read_bytes() == good.ckpt
    assert first.stderr.startswith(f"fetching dossr_default.ckpt from {url}")
    second = _cli(["default", "--from", url, "--models-dir", models], env)
    assert second.returncode == 0
    assert f"{installed(models)}: already in place and verified" in second.stdout
    assert len(server.requests) == 1


@pytest.mark.slow
def test_command_with_the_release_manifest_on_a_full_shape_file(server, models, tmp_path):
    """The shipped manifests, a full-shape (sparse, fp16, 0.83 GB) file over loopback."""
    from dossr_core.verify import release_manifest
    src = tmp_path / "served.ckpt"
    size = write_sparse_safetensors(src, release_manifest())
    server.files["/dossr_default.ckpt"] = str(src)
    env = {"DOSSR_FETCH_MANIFESTS": ""}
    t0 = time.perf_counter()
    first = _cli(["default", "--from", server.url("/dossr_default.ckpt"), "--models-dir", models],
                 env)
    took = time.perf_counter() - t0
    assert first.returncode == 0, first.stderr
    assert os.path.getsize(installed(models)) == size
    assert "all 1134 DoSSR tensors, no SD 2.1-base" in first.stdout
    t0 = time.perf_counter()
    second = _cli(["default", "--models-dir", models], env)
    assert second.returncode == 0 and "already in place and verified" in second.stdout
    print(f"\nfull-shape DoSSR file, {size / 1e9:.2f} GB: download + verify + install "
          f"{took:.1f} s; rerun (verify only) {time.perf_counter() - t0:.1f} s")
