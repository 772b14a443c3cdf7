"""Progress of a batch: a live line on a terminal, one line per image otherwise, nothing but
failures in quiet mode.

The live line shows images finished/total, each busy server's image with its current node and
step (from the websocket ``executing``/``progress`` messages), elapsed and estimated remaining
time (from the images this run actually upscaled; skipped ones cost nothing)."""

from __future__ import annotations

import sys
import threading
import time


def clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Thread-safe; :meth:`busy`, :meth:`step` and :meth:`finished` are called by the
    scheduler, :meth:`close` at the end."""

    def __init__(self, total: int, stream=None, quiet: bool = False, live: bool | None = None,
                 now=time.monotonic):
        self.total = total
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = (not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()) \
            if live is None else live
        self.now = now
        self.t0 = now()
        self.finished_count = 0
        self.worked = 0       # images upscaled (or failed) in this run, for the estimate
        self.work_started = None
        self.state: dict[str, str] = {}   # server -> what it is doing
        self.lock = threading.Lock()
        self._width = 0

    def remaining(self) -> float | None:
        """Estimated seconds left, or None before the first image finished."""
        if not self.worked or self.work_started is None:
            return None
        per_image = (self.now() - self.work_started) / self.worked
        return per_image * (self.total - self.finished_count)

    def line(self) -> str:
        left = self.remaining()
        parts = [f"{self.finished_count}/{self.total} images", f"{clock(self.now() - self.t0)} elapsed"]
        parts.append(f"~{clock(left)} left" if left is not None else "estimating")
        text = ", ".join(parts)
        for server, doing in self.state.items():
            text += f" | {server}: {doing}"
        return text

    def _draw(self) -> None:
        if not self.live:
            return
        text = self.line()
        pad = max(self._width - len(text), 0)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def _print(self, message: str) -> None:
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(message + "\n")
        self.stream.flush()

    def busy(self, server: str, name: str) -> None:
        with self.lock:
            if self.work_started is None:
                self.work_started = self.now()
            self.state[server] = name
            self._draw()

    def step(self, server: str, name: str, node: str | None, value=None, maximum=None) -> None:
        with self.lock:
            doing = name + (f" {node}" if node else "")
            if value is not None and maximum:
                doing += f" {value}/{maximum}"
            self.state[server] = doing
            self._draw()

    def idle(self, server: str, why: str | None = None) -> None:
        with self.lock:
            if why:
                self.state[server] = why
            else:
                self.state.pop(server, None)
            self._draw()

    def message(self, text: str, always: bool = False) -> None:
        """A line of its own (errors and warnings print even in quiet mode with *always*)."""
        with self.lock:
            if always or not self.quiet:
                self._print(text)
                self._draw()

    def finished(self, text: str, worked: bool, failed: bool = False) -> None:
        with self.lock:
            self.finished_count += 1
            self.worked += bool(worked)
            if failed or not self.quiet:
                self._print(f"[{self.finished_count}/{self.total}] {text}")
            self._draw()

    def close(self) -> None:
        with self.lock:
            if self.live and self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
                self._width = 0
