"""dossr_core.download against a loopback server that cuts, ignores Range or sends HTML."""

import hashlib
import io
import os
import pty
import socket

import pytest

from dossr_core.download import DownloadError, ServerSentPage, download
from dossr_core.progress import Progress
from tests.fetch_files import HTML_QUOTA
from tests.loopback_http import LoopbackServer

DATA = os.urandom(3_000_000)


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        srv.files["/f"] = DATA
        yield srv


def fetch(server, part, **kw):
    kw.setdefault("retry_wait", 0)
    return download(server.url("/f"), str(part), **kw)


def test_cut_connection_resumes_with_range_from_the_cut(server, tmp_path):
    server.cut_after["/f"] = [1_234_567, 1_000_000]
    got = fetch(server, tmp_path / "f.part", sha256=True)
    assert server.ranges("/f") == [None, "bytes=1234567-", "bytes=2234567-"]
    assert (tmp_path / "f.part").read_bytes() == DATA
    assert got.size == len(DATA) and got.resumed_from == 0
    assert got.sha256 == hashlib.sha256(DATA).hexdigest()


def test_rerun_continues_the_part_and_rehashes_it_from_its_start(server, tmp_path):
    part = tmp_path / "f.part"
    server.cut_after["/f"] = [700_000]
    with pytest.raises(DownloadError, match=r"failed 1 times in a row at 700,000 of 3,000,000 "
                                            r"bytes.*kept in .*f\.part.*rerun continues") as err:
        fetch(server, part, retries=0)
    assert err.value.resumable and part.read_bytes() == DATA[:700_000]
    got = fetch(server, part, sha256=True)
    assert server.ranges("/f") == [None, "bytes=700000-"]
    assert got.resumed_from == 700_000 and part.read_bytes() == DATA
    assert got.sha256 == hashlib.sha256(DATA).hexdigest()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    part = tmp_path / "f.part"
    part.write_bytes(b"x" * 5000)          # bytes that are not the file's
    server.ignore_range.add("/f")
    lines = []
    got = fetch(server, part, sha256=True, log=lines.append)
    assert server.ranges("/f") == ["bytes=5000-", None]
    assert part.read_bytes() == DATA and got.sha256 == hashlib.sha256(DATA).hexdigest()
    assert any("ignored the Range request" in line for line in lines)


def test_416_for_a_complete_part_is_done(server, tmp_path):
    part = tmp_path / "f.part"
    part.write_bytes(DATA)
    got = fetch(server, part, sha256=True)
    assert server.ranges("/f") == [f"bytes={len(DATA)}-"]
    assert got.size == len(DATA) and got.sha256 == hashlib.sha256(DATA).hexdigest()


def test_416_for_a_longer_part_restarts(server, tmp_path):
    part = tmp_path / "f.part"
    part.write_bytes(DATA + b"tail")
    fetch(server, part)
    assert server.ranges("/f") == [f"bytes={len(DATA) + 4}-", None]
    assert part.read_bytes() == DATA


class _Answer(io.BytesIO):
    def __init__(self, status, headers, body):
        super().__init__(body)
        self.status, self.headers = status, headers


def test_content_range_for_other_bytes_restarts(tmp_path):
    part = tmp_path / "f.part"
    part.write_bytes(DATA[:1000])
    asked = []

    def opener(request, timeout):
        asked.append(request.get_header("Range"))
        if request.get_header("Range"):   # claims to continue, but at another place
            return _Answer(206, {"Content-Range": f"bytes 0-{len(DATA) - 1}/{len(DATA)}",
                                 "Content-Length": str(len(DATA))}, DATA)
        return _Answer(200, {"Content-Length": str(len(DATA))}, DATA)

    download("http://example.invalid/f", str(part), opener=opener, retry_wait=0)
    assert asked == ["bytes=1000-", None] and part.read_bytes() == DATA


def test_html_page_is_not_written_into_the_part(server, tmp_path):
    part = tmp_path / "f.part"
    part.write_bytes(DATA[:1000])
    server.html["/f"] = HTML_QUOTA
    with pytest.raises(ServerSentPage, match=r"an HTML page titled 'Google Drive - Quota "
                                             r"exceeded' \(\d+ bytes\) instead of the file") as err:
        fetch(server, part)
    assert err.value.resumable and part.read_bytes() == DATA[:1000]


def test_wrong_size_is_another_file(server, tmp_path):
    with pytest.raises(DownloadError, match=r"offers 3,000,000 bytes .* expected file has "
                                            r"3,000,001 bytes: it is another file") as err:
        fetch(server, tmp_path / "f.part", expected_size=len(DATA) + 1)
    assert not err.value.resumable and not (tmp_path / "f.part").exists()


def test_http_error_and_unreachable_server(server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404"):
        download(server.url("/missing"), str(tmp_path / "m.part"), retry_wait=0)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()                              # nothing listens there now
    with pytest.raises(DownloadError, match=r"failed 3 times in a row.*cannot reach the server") as err:
        download(f"http://127.0.0.1:{port}/f", str(tmp_path / "u.part"), retries=2, retry_wait=0)
    assert not err.value.resumable


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 0.5
        return self.t


def test_progress_on_a_terminal_is_one_updating_line():
    out = io.StringIO()
    p = Progress("dossr_default.ckpt", stream=out, tty=True, clock=_Clock())
    p.start(0, 4_000_000_000, source="http://x/f")
    for done in range(500_000_000, 4_000_000_001, 500_000_000):
        p.update(done, 4_000_000_000)
    p.finish()
    text = out.getvalue()
    first, rest = text.split("\n", 1)
    assert first == "fetching dossr_default.ckpt from http://x/f (4.00 GB)"
    frames = rest.split("\r")
    assert len(frames) >= 8                          # redrawn in place, not one line per update
    assert "dossr_default.ckpt: 2.00 GB of 4.00 GB (50 %), " in rest
    assert "MB/s, " in rest and " left" in rest
    assert rest.count("\n") == 1 and rest.endswith("\n")    # the summary closes the line
    assert "\x1b" not in text


def test_progress_off_a_terminal_is_a_start_and_an_end_line():
    out = io.StringIO()
    now = [100.0]
    p = Progress("f", stream=out, tty=False, clock=lambda: now[0])
    p.start(1_000_000, 3_000_000, source="http://x/f")
    for done in range(1_100_000, 3_000_001, 100_000):    # 20 updates, 0.5 s apart
        now[0] += 0.5
        p.update(done, 3_000_000)
    p.finish()
    lines = out.getvalue().splitlines()
    assert lines == ["fetching f from http://x/f (3.00 MB), resuming at 1.00 MB",
                     "f: 3.00 MB (2.00 MB in 10 s, 200.00 kB/s)"]
    assert "\r" not in out.getvalue()


def test_download_shows_progress_on_a_pseudo_terminal(server, tmp_path):
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as term:
        p = Progress("f", stream=term, interval=0)
        assert p.tty
        fetch(server, tmp_path / "f.part", progress=p)
    shown = b""
    while True:
        try:
            block = os.read(master, 65536)
        except OSError:
            break
        if not block:
            break
        shown += block
    os.close(master)
    assert b"\rf: 3.00 MB of 3.00 MB (100 %)" in shown
    assert b"\x1b" not in shown
