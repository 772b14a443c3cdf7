"""How a long copy or download reports itself: one updating line on a terminal, two lines otherwise.

On a terminal the line is rewritten in place (carriage return, no ANSI codes)
with bytes so far, rate and time left. Anywhere else (a log, CI, a pipe) a line
at the start and one at the end, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO


def human_bytes(n: float) -> str:
    """``1.23 GB`` style (decimal units, as file managers and ``ls -lh --si`` show)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_time(seconds: float) -> str:
    """``5 min 02 s`` / ``42 s`` / ``1 h 03 min``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """Reports ``update(done, total)`` calls for one transfer named ``label``.

    ``tty=None`` asks the stream whether it is a terminal; tests inject it.
    """

    def __init__(self, label: str, stream: Optional[TextIO] = None, tty: Optional[bool] = None,
                 clock: Callable[[], float] = time.monotonic, interval: float = 0.25,
                 verb: str = "fetching"):
        self.label = label
        self.verb = verb
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.clock = clock
        self.interval = interval
        self._t0 = None
        self._first = 0
        self._last_draw = -1e9
        self._width = 0
        self._done = 0

    def start(self, done: int, total: Optional[int], source: str = "") -> None:
        """The transfer begins at ``done`` bytes (more than 0 when resuming)."""
        self._t0 = self.clock()
        self._first = self._done = done
        what = f"{self.label}" + (f" from {source}" if source else "")
        size = f" ({human_bytes(total)})" if total else ""
        resume = f", resuming at {human_bytes(done)}" if done else ""
        print(f"{self.verb} {what}{size}{resume}", file=self.stream, flush=True)
        if self.tty:
            self._draw(done, total, force=True)

    def update(self, done: int, total: Optional[int]) -> None:
        if self._t0 is None:
            self.start(done, total)
        self._done = done
        if self.tty:
            self._draw(done, total)

    def finish(self, done: Optional[int] = None) -> None:
        """The transfer ended (completely or not): close the line, or print the summary."""
        if self._t0 is None:
            return
        done = self._done if done is None else done
        elapsed = self.clock() - self._t0
        got = done - self._first
        rate = f", {human_bytes(got / elapsed)}/s" if elapsed > 0 and got > 0 else ""
        summary = f"{self.label}: {human_bytes(done)} ({human_bytes(got)} in {human_time(elapsed)}{rate})"
        if self.tty:
            self._erase()
        print(summary, file=self.stream, flush=True)
        self._t0 = None

    # -- terminal line
    def _draw(self, done: int, total: Optional[int], force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_draw < self.interval and done != total:
            return
        self._last_draw = now
        elapsed = now - self._t0
        rate = (done - self._first) / elapsed if elapsed > 0 else 0.0
        text = f"{self.label}: {human_bytes(done)}"
        if total:
            text += f" of {human_bytes(total)} ({100 * done / total:.0f} %)"
        if rate > 0:
            text += f", {human_bytes(rate)}/s"
            if total and total > done:
                text += f", {human_time((total - done) / rate)} left"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def _erase(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
