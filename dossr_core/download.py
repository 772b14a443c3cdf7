"""HTTP(S) downloads into a ``.part`` file that survive cut connections and reruns.

Plain ``urllib``: an existing ``.part`` is continued with an HTTP Range request,
a connection that breaks is retried a few times from where it broke, and a
server that ignores Range (200 instead of 206), answers 416, or sends a
Content-Range for other bytes makes the download start again from 0. The
caller verifies the finished ``.part`` and renames it into place; nothing here
touches the final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional

from .progress import Progress, human_bytes
from .verify import html_title

CHUNK = 1 << 20
USER_AGENT = "comfyui-dossr-fetch/1 (python urllib)"
#: Failures of the connection itself, worth a retry from where the bytes stopped.
NETWORK_ONLY = (ConnectionError, TimeoutError, socket.timeout, urllib.error.URLError)
NETWORK_ERRORS = (http.client.HTTPException, OSError)   # OSError: socket errors of any kind
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")


class DownloadError(Exception):
    """The download did not finish. ``resumable``: the ``.part`` was kept and a rerun continues it."""

    def __init__(self, message: str, resumable: bool = False):
        super().__init__(message)
        self.resumable = resumable


class ServerSentPage(DownloadError):
    """An HTML page came instead of the file (sign-in, quota or error page); the .part is untouched."""


@dataclass
class Downloaded:
    size: int
    sha256: Optional[str]      # hex digest of the whole file when asked for
    resumed_from: int          # bytes that were already in the .part when this run began


class _Restart(Exception):
    """The server's answer does not continue the .part: start again from byte 0."""


class _Retry(Exception):
    """A transient failure (cut connection, 5xx): try again from the bytes we have."""


class _Disk:
    """Local file errors while downloading: never retried as network trouble."""

    def __init__(self, part: str):
        self.part = part

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if isinstance(err, OSError) and not isinstance(err, NETWORK_ONLY):
            raise DownloadError(f"cannot write {self.part}: {err}", resumable=True) from err
        return False


def _rehash(path: str, upto: int):
    h = hashlib.sha256()
    with _Disk(path), open(path, "rb") as f:
        left = upto
        while left:
            block = f.read(min(CHUNK, left))
            if not block:
                break
            h.update(block)
            left -= len(block)
    return h


def _part_size(part: str) -> int:
    return os.path.getsize(part) if os.path.exists(part) else 0


def _truncate(part: str, size: int) -> None:
    with _Disk(part), open(part, "ab") as f:
        f.truncate(size)


def _open(url: str, offset: int, timeout: float, opener):
    """The response for bytes from ``offset`` on, and the file's total size (None if unknown).

    Returns ``(None, total)`` when the server says the .part already holds everything.
    """
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = opener(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        with err:
            if err.code == 416 and offset:
                m = _UNSATISFIED_RANGE.fullmatch(err.headers.get("Content-Range", "") or "")
                if m and int(m[1]) == offset:
                    return None, offset
                raise _Restart(f"the server cannot continue at {offset} bytes (HTTP 416)") from None
            if err.code in (408, 425, 429) or err.code >= 500:
                raise _Retry(f"HTTP {err.code} {err.reason}") from None
            raise DownloadError(f"the server answered HTTP {err.code} {err.reason} for {url}",
                                resumable=offset > 0) from None
    ctype = resp.headers.get("Content-Type", "") or ""
    if ctype.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        with resp:
            body = resp.read(256 * 1024)
        title = html_title(body)
        raise ServerSentPage(
            f"the server sent an HTML page{f' titled {title!r}' if title else ''} "
            f"({human_bytes(len(body))}{'+' if len(body) == 256 * 1024 else ''}) instead of the file",
            resumable=offset > 0)
    length = resp.headers.get("Content-Length")
    if resp.status == 206:
        m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "") or "")
        if not offset or not m or int(m[1]) != offset:
            resp.close()
            raise _Restart(f"the server sent other bytes than asked for "
                           f"(Content-Range {resp.headers.get('Content-Range')!r})")
        return resp, (int(m[3]) if m[3] != "*" else None)
    if offset:   # 200: the server ignored Range and sends the whole file
        resp.close()
        raise _Restart("the server does not support resuming (it ignored the Range request)")
    return resp, (int(length) if length and length.isdigit() else None)


def download(url: str, part: str, *, progress: Optional[Progress] = None, sha256: bool = False,
             expected_size: Optional[int] = None, retries: int = 4, retry_wait: float = 2.0,
             timeout: float = 60.0, opener: Callable = urllib.request.urlopen,
             log: Callable[[str], None] = lambda msg: None) -> Downloaded:
    """Fetch ``url`` into ``part``, continuing what ``part`` already holds.

    ``retries``: attempts in a row that bring no new byte before giving up
    (``DownloadError`` with ``resumable=True``: the ``.part`` stays for a rerun).
    ``sha256``: hash the file while it arrives; a resumed ``.part`` is re-hashed
    from its start first. ``log`` receives one line per retry or restart.
    """
    resumed_from = offset = _part_size(part)
    if expected_size is not None and offset > expected_size:
        log(f"{part} is larger than the expected {expected_size} bytes: starting again from 0")
        _truncate(part, 0)
        resumed_from = offset = 0
    hasher, hashed = None, -1
    failures = 0
    started = False
    total = expected_size
    try:
        while True:
            try:
                resp, total = _open(url, offset, timeout, opener)
                if expected_size is not None and total is not None and total != expected_size:
                    if resp is not None:
                        resp.close()
                    if os.path.exists(part):
                        os.remove(part)
                    raise DownloadError(f"the server offers {total:,} bytes at {url}; the expected "
                                        f"file has {expected_size:,} bytes: it is another file")
                if sha256 and hashed != offset:
                    hasher, hashed = _rehash(part, offset) if offset else hashlib.sha256(), offset
                if progress is not None and not started:
                    progress.start(offset, total, source=url)
                    started = True
                if resp is None:        # 416 for exactly our size: nothing was missing
                    break
                before = offset
                offset, cut = _receive(resp, part, offset, total, hasher, progress)
                hashed = offset
                if cut is None:
                    break
                if offset > before:
                    failures = 0        # count only attempts in a row that bring nothing
                raise _Retry(cut)
            except _Restart as why:
                failures += 1
                if failures > retries:
                    raise DownloadError(f"the download from {url} cannot be continued ({why}); "
                                        f"giving up after {failures} tries") from None
                log(f"{why}: starting again from 0")
                _truncate(part, 0)
                offset, hashed = 0, -1
            except (_Retry, *NETWORK_ERRORS) as err:
                failures += 1
                where = f"at {offset:,}" + (f" of {total:,}" if total else "") + " bytes"
                if failures > retries:
                    raise DownloadError(
                        f"the download from {url} failed {failures} times in a row {where} "
                        f"(last: {_describe(err)}); the {offset:,} bytes received are kept in "
                        f"{part}, and a rerun continues from there", resumable=offset > 0) from None
                log(f"connection problem {where} ({_describe(err)}); retrying "
                    f"({failures} of {retries})")
                time.sleep(retry_wait * failures)
    finally:
        if progress is not None and started:
            progress.finish(offset)
    digest = hasher.hexdigest() if hasher is not None else None
    return Downloaded(size=offset, sha256=digest, resumed_from=resumed_from)


def _receive(resp, part, offset, total, hasher, progress):
    """Append the response body to ``part``: ``(new offset, None)`` when the body is complete,
    ``(new offset, reason)`` when the connection broke first."""
    with resp, _Disk(part), open(part, "ab") as f:
        f.truncate(offset)
        while total is None or offset < total:
            try:
                block = resp.read(min(CHUNK, total - offset) if total is not None else CHUNK)
            except NETWORK_ERRORS as err:
                return offset, _describe(err)
            if not block:
                break
            f.write(block)
            if hasher is not None:
                hasher.update(block)
            offset += len(block)
            if progress is not None:
                progress.update(offset, total)
    if total is not None and offset < total:
        return offset, f"the connection closed at {offset:,} of {total:,} bytes"
    return offset, None


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        return f"cannot reach the server: {err.reason}"
    text = str(err) or type(err).__name__
    return text if isinstance(err, _Retry) else f"{type(err).__name__}: {text}"
