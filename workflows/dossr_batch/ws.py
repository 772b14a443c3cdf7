"""A minimal websocket client (RFC 6455, client side, text messages) for ComfyUI's ``/ws``.

Only what progress needs: connect, read JSON text messages, answer pings, close. Binary
frames (preview images) are read and dropped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import urllib.parse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketError(Exception):
    """The handshake failed or the connection ended."""


class WebSocket:
    """``WebSocket(server_url, client_id)`` connects to ``<server>/ws?clientId=<id>``;
    :meth:`messages` yields the decoded JSON messages until the connection ends."""

    def __init__(self, server: str, client_id: str, timeout: float = 10.0):
        url = urllib.parse.urlparse(server)
        if url.scheme not in ("http", "ws"):
            raise WebSocketError(f"websocket progress needs an http:// server, not {server}")
        host, port = url.hostname, url.port or 80
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        path = (url.path.rstrip("/") or "") + "/ws?clientId=" + urllib.parse.quote(client_id)
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode("ascii"))
        self._buf = b""
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status = head.split("\r\n", 1)[0]
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if " 101 " not in status + " " or expected not in head:
            self.close()
            raise WebSocketError(f"websocket handshake refused: {status}")
        self.sock.settimeout(None)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise WebSocketError("connection closed during the handshake")
            self._buf += chunk
        head, _, self._buf = self._buf.partition(marker)
        return head

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WebSocketError("connection closed")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _frame(self) -> tuple[int, bool, bytes]:
        b0, b1 = self._read(2)
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read(8))[0]
        mask = self._read(4) if b1 & 0x80 else None
        payload = self._read(length)
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return b0 & 0x0F, bool(b0 & 0x80), payload

    def send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))

    def messages(self):
        """Decoded JSON text messages, until the server closes (or :meth:`close`)."""
        parts, kind = [], None
        try:
            while True:
                opcode, final, payload = self._frame()
                if opcode == OP_PING:
                    self.send(OP_PONG, payload)
                    continue
                if opcode == OP_CLOSE:
                    return
                if opcode in (OP_TEXT, OP_BINARY):
                    parts, kind = [payload], opcode
                elif opcode == OP_CONT:
                    parts.append(payload)
                else:
                    continue
                if final and kind == OP_TEXT:
                    try:
                        yield json.loads(b"".join(parts))
                    except ValueError:
                        pass
        except (OSError, WebSocketError):
            return

    def close(self) -> None:
        try:
            self.send(OP_CLOSE)
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
