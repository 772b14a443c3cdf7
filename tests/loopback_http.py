"""A file server on 127.0.0.1 for download tests, misbehaving on request.

``LoopbackServer`` serves ``files`` (URL path -> bytes or a file path),
records every request's Range header and counts the body bytes it sent (``bytes_sent``). Per path it can cut the connection after
N bytes (``cut_after[path] = [N, ...]``, one entry per request, consumed in
order), ignore Range requests, or answer with an HTML page instead.
"""

from __future__ import annotations

import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RANGE = re.compile(r"bytes=(\d+)-$")


class LoopbackServer:
    def __init__(self):
        self.files = {}            # "/name" -> bytes | str (path of a file to serve)
        self.html = {}             # "/name" -> HTML text served with 200 text/html
        self.cut_after = {}        # "/name" -> [bytes to send before closing, ...]
        self.ignore_range = set()  # paths served whole even when a Range is asked for
        self.requests = []         # (path, Range header or None) in arrival order
        self.bytes_sent = 0        # bytes of `files` sent (bodies), all requests together
        self._count_lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ranges(self, path: str) -> list:
        return [r for p, r in self.requests if p == path]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _handler(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):   # keep test output clean
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                srv.requests.append((path, self.headers.get("Range")))
                if path in srv.html:
                    body = srv.html[path].encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if path not in srv.files:
                    self.send_error(404)
                    return
                data = srv.files[path]
                size = len(data) if isinstance(data, bytes) else os.path.getsize(data)
                start = 0
                m = _RANGE.match(self.headers.get("Range") or "")
                if m and path not in srv.ignore_range:
                    start = int(m[1])
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size - start))
                self.end_headers()
                cuts = srv.cut_after.get(path)
                limit = cuts.pop(0) if cuts else None
                self._send(data, start, size, limit)
                if limit is not None:
                    self.close_connection = True

            def _write(self, block):
                self.wfile.write(block)
                with srv._count_lock:
                    srv.bytes_sent += len(block)

            def _send(self, data, start, end, limit):
                if limit is not None:
                    end = min(end, start + limit)
                if isinstance(data, bytes):
                    self._write(data[start:end])
                    return
                with open(data, "rb") as f:
                    f.seek(start)
                    left = end - start
                    while left:
                        block = f.read(min(left, 1 << 20))
                        if not block:
                            break
                        self._write(block)
                        left -= len(block)

        return Handler
