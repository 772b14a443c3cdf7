"""Hand the images of a batch to idle servers, one prompt in flight per server.

Each server has a worker thread: it takes the next image, uploads it, queues the prompt,
waits (woken by the server's websocket as soon as the prompt ends, with ``/history`` polling
as the fallback), downloads the result under its final name, and takes the next one. The
wait gives up after *timeout* seconds without progress (websocket messages about the prompt,
or a change of the server's queue), never because an image takes long in total. When a
server goes away mid-image the image goes back to the front of the queue for any server
(bounded by *tries*), and the worker waits for its server to come back (bounded by
*server_wait* seconds). Results only get their final name once complete, so an image is
never written twice. :meth:`Scheduler.cancel` removes this client's prompts, and only those,
from every server.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import inputs, report
from .ws import WebSocket, WebSocketError

FINISH_EVENTS = ("execution_success", "execution_error", "execution_interrupted")
LOST_CHECK_S = 2.0
WS_CONNECT_S = 3.0
POLL_S, POLL_WS_S = 0.1, 0.25


def reachable(api, url: str) -> bool:
    """Whether the server at *url* answers ``GET /system_stats``."""
    try:
        return api.http(url, "GET", "/system_stats", timeout=5)[0] == 200
    except api.ClientError:
        return False


class ServerLost(Exception):
    """The server stopped answering, or forgot the prompt (it restarted)."""


@dataclass
class Job:
    index: int
    item: inputs.Item
    seed: int | None = None
    tries: int = 0
    last_error: str = ""


class Pool:
    """The queue of jobs shared by the workers, and the results by job index."""

    def __init__(self, jobs, tries: int):
        self.pending = collections.deque(jobs)
        self.tries = tries
        self.active = 0
        self.stopped = False
        self.results: dict[int, report.Result] = {}
        self.cond = threading.Condition()

    def take(self) -> Job | None:
        """The next job; blocks while other workers may still hand one back; None at the end."""
        with self.cond:
            while True:
                if self.stopped:
                    return None
                if self.pending:
                    self.active += 1
                    return self.pending.popleft()
                if not self.active:
                    return None
                self.cond.wait()

    def finish(self, job: Job, result: report.Result) -> None:
        with self.cond:
            self.active -= 1
            self.results[job.index] = result
            self.cond.notify_all()

    def give_back(self, job: Job, reason: str) -> bool:
        """Requeue *job* (first in line) after a lost server; False when it has had its tries."""
        with self.cond:
            self.active -= 1
            job.last_error = reason
            again = job.tries < self.tries and not self.stopped
            if again:
                self.pending.appendleft(job)
            self.cond.notify_all()
            return again

    def over(self) -> bool:
        """Stopped, or nothing left: no job waiting and none running."""
        with self.cond:
            return self.stopped or not (self.pending or self.active)

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()


class Server:
    """One ComfyUI server: its websocket listener and the prompt it is running for us."""

    def __init__(self, url: str, api, client_id: str, progress):
        self.url = url
        self.api = api
        self.client_id = client_id
        self.progress = progress
        self.lock = threading.Lock()
        self.prompt_id = None
        self.prompt = None
        self.name = ""
        self.finished = threading.Event()
        self.ws = None
        self.ws_connected = threading.Event()
        self.closing = False
        self.served = 0
        self.last_progress = time.monotonic()

    # -- websocket
    def start_listening(self) -> None:
        threading.Thread(target=self._listen, name=f"ws {self.url}", daemon=True).start()

    def _listen(self) -> None:
        while not self.closing:
            try:
                self.ws = WebSocket(self.url, self.client_id)
            except (OSError, WebSocketError):
                self.ws_connected.clear()
                time.sleep(0.5)
                continue
            self.ws_connected.set()
            for message in self.ws.messages():
                self._handle(message)
            self.ws_connected.clear()
            if not self.closing:
                time.sleep(0.2)

    def _handle(self, message: dict) -> None:
        kind, data = message.get("type"), message.get("data") or {}
        with self.lock:
            if not self.prompt_id or data.get("prompt_id") != self.prompt_id:
                return
            self.last_progress = time.monotonic()
            if kind in FINISH_EVENTS or (kind == "executing" and data.get("node") is None):
                self.finished.set()
                return
            node = data.get("display_node") or data.get("node")
            meta = (self.prompt or {}).get(str(node), {})
            title = (meta.get("_meta") or {}).get("title") or meta.get("class_type") or node
        if kind == "executing":
            self.progress.step(self.url, self.name, title)
        elif kind == "progress":
            self.progress.step(self.url, self.name, title, data.get("value"), data.get("max"))

    def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            self.ws.close()

    # -- prompts
    def expect(self, prompt_id: str | None, prompt=None, name: str = "") -> None:
        with self.lock:
            self.prompt_id, self.prompt, self.name = prompt_id, prompt, name
            self.finished.clear()
            self.last_progress = time.monotonic()

    def progressed(self) -> None:
        with self.lock:
            self.last_progress = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds since the awaited prompt (or the server's queue) last made progress."""
        with self.lock:
            return time.monotonic() - self.last_progress

    def reachable(self) -> bool:
        return reachable(self.api, self.url)

    def wait_back(self, seconds: float, stopped) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not stopped():
            if self.reachable():
                return True
            time.sleep(1.0)
        return False

    def queued(self, prompt_id: str) -> bool:
        """Whether *prompt_id* is running or waiting in the server's queue."""
        state = self.api.queue_state(self.url)
        if state is None:
            return True  # cannot tell: keep waiting
        return prompt_id in state[0] + state[1]

    def history(self, prompt_id: str):
        status, answer, _ = self.api._json(self.url, "GET", "/history/" + prompt_id)
        return answer.get(prompt_id) if status == 200 and isinstance(answer, dict) else None

    def wait(self, prompt_id: str, timeout: float) -> dict:
        """The finished history entry; ServerLost if the server went away or forgot it;
        Timeout (the prompt cancelled) after *timeout* seconds without progress."""
        last_check = time.monotonic()
        queue = None
        try:
            while True:
                entry = self.history(prompt_id)
                if entry is not None:
                    return entry
                now = time.monotonic()
                if now - last_check > LOST_CHECK_S:
                    last_check = now
                    state = self.api.queue_state(self.url)
                    if state is not None:
                        if queue is not None and state != queue:
                            self.progressed()   # a prompt ahead of ours finished, or ours started
                        queue = state
                        if prompt_id not in state[0] + state[1] and self.history(prompt_id) is None:
                            raise ServerLost(f"{self.url} no longer has the prompt (did it restart?)")
                if self.stalled_for() > timeout:
                    self.api._cancel(self.url, prompt_id)
                    raise self.api.Timeout(
                        f"no progress for {timeout:g} s; the prompt was cancelled on the server. "
                        "If a step of your workflow runs longer than that without reporting "
                        "progress, pass a larger --timeout")
                if self.finished.is_set():
                    time.sleep(0.005)
                else:
                    self.finished.wait(POLL_WS_S if self.ws_connected.is_set() else POLL_S)
        except self.api.ServerUnreachable as e:
            raise ServerLost(str(e)) from None


def upload_name(data: bytes, source: Path) -> str:
    """The name an input gets on the server: its content hash, so two inputs with one name
    never clash and reruns send the same prompt."""
    return f"dossr_batch_{hashlib.sha256(data).hexdigest()[:20]}{source.suffix.lower() or '.png'}"


class Scheduler:
    """Run *jobs* (``Job``) on *servers* (URLs) with the *template* prompt.

    *prepare(template, image_name, seed)* makes each prompt; *api* is the client module."""

    def __init__(self, api, servers, template: dict, prepare, progress, *, timeout: float,
                 tries: int = 3, server_wait: float = 120.0, overwrite: bool = False):
        self.api = api
        self.client_id = uuid.uuid4().hex
        self.servers = [Server(url, api, self.client_id, progress) for url in servers]
        self.template = template
        self.prepare = prepare
        self.progress = progress
        self.timeout = timeout
        self.tries = tries
        self.server_wait = server_wait
        self.overwrite = overwrite
        self.pool: Pool | None = None

    def _result(self, job: Job, status: str, server=None, seconds=None, error=None, extra=()):
        return report.Result(str(job.item.source), str(job.item.output), status, server,
                             None if seconds is None else round(seconds, 3), error, job.tries,
                             [str(p) for p in extra])

    def _run_one(self, server: Server, job: Job) -> report.Result:
        api = self.api
        item = job.item
        try:
            data = item.source.read_bytes()
        except OSError as e:
            return self._result(job, report.FAILED, error=f"cannot read the file: {e.strerror}")
        t0 = time.monotonic()
        name = api.upload_image(server.url, item.source, name=upload_name(data, item.source), data=data)
        prompt = self.prepare(self.template, name, job.seed)
        prompt_id = str(uuid.uuid4())   # newer hosts accept only the canonical form
        server.expect(prompt_id, prompt, item.relative.as_posix())
        api.queue_prompt(server.url, prompt, self.client_id, prompt_id=prompt_id)
        if self.pool.stopped:  # Ctrl-C came while it was being queued
            api._cancel(server.url, prompt_id)
        entry = server.wait(prompt_id, self.timeout)
        server.expect(None)
        api.check_entry(entry, prompt_id)
        images = api.output_images(entry)
        if not images:
            raise api.ClientError("the workflow finished but produced no images "
                                  "(does it have a SaveImage node?)")
        outputs = [item.output] + [item.output.with_name(f"{item.output.stem}-{i}.png")
                                   for i in range(2, len(images) + 1)]
        for img, path in zip(images, outputs):
            try:
                inputs.write_atomically(path, api.view_image(server.url, img), self.overwrite)
            except FileExistsError:
                if path == item.output:
                    return self._result(job, report.SKIPPED, server.url,
                                        error="written meanwhile by another run")
            except OSError as e:
                return self._result(job, report.FAILED, server.url, error=f"cannot write {path}: {e.strerror}")
        return self._result(job, report.DONE, server.url, time.monotonic() - t0, extra=outputs[1:])

    def _worker(self, server: Server) -> None:
        pool = self.pool
        # a prompt that ends before the websocket is up would only be seen by polling
        server.ws_connected.wait(WS_CONNECT_S)
        while True:
            job = pool.take()
            if job is None:
                return
            job.tries += 1
            name = job.item.relative.as_posix()
            self.progress.busy(server.url, name)
            try:
                result = self._run_one(server, job)
            except (ServerLost, self.api.ServerUnreachable) as e:
                server.expect(None)
                reason = f"{server.url} went away during {name}: {e}"
                if pool.give_back(job, reason):
                    self.progress.message(f"{reason}; it goes back in the queue (try {job.tries} "
                                          f"of {self.tries} done)", always=True)
                else:
                    self._fail(job, f"gave up after {job.tries} tries; last: {reason}")
                self.progress.idle(server.url, "down, waiting for it")
                if not server.wait_back(self.server_wait, pool.over):
                    if pool.over():
                        return
                    self.progress.message(f"{server.url} did not come back within "
                                          f"{self.server_wait:g} s; not using it any more", always=True)
                    self.progress.idle(server.url, "gone")
                    return
                self.progress.idle(server.url)
                continue
            except self.api.ClientError as e:
                server.expect(None)
                result = self._result(job, report.FAILED, server.url, error=str(e))
            except Exception as e:  # a bug here must not cost the rest of the batch
                server.expect(None)
                result = self._result(job, report.FAILED, server.url,
                                      error=f"client error {type(e).__name__}: {e}")
            self._record(job, result)
            self.progress.idle(server.url)

    def _record(self, job: Job, result: report.Result) -> None:
        self.pool.finish(job, result)
        name = job.item.relative.as_posix()
        if result.status == report.DONE:
            self.progress.finished(f"done {name} -> {result.output} ({result.seconds:.1f} s, "
                                   f"{result.server})", worked=True)
        elif result.status == report.SKIPPED:
            self.progress.finished(f"skipped {name}: {result.error}", worked=False)
        else:
            self.progress.finished(f"failed {name}: {result.error}", worked=True, failed=True)

    def _fail(self, job: Job, error: str) -> None:
        with self.pool.cond:
            self.pool.results[job.index] = self._result(job, report.FAILED, error=error)
        self.progress.finished(f"failed {job.item.relative.as_posix()}: {error}", worked=True,
                               failed=True)

    def run(self, jobs) -> dict[int, report.Result]:
        """Run every job; the results by job index (jobs left without a server are failed).
        Ctrl-C in the calling thread cancels (see :meth:`cancel`) and is raised again."""
        self.pool = Pool(jobs, self.tries)
        threads = []
        for server in self.servers:
            server.start_listening()
            t = threading.Thread(target=self._worker, args=(server,), name=f"worker {server.url}",
                                 daemon=True)
            t.start()
            threads.append(t)
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.2)
        except KeyboardInterrupt:
            self.cancel()
            raise
        finally:
            for server in self.servers:
                server.close()
        for job in self.pool.pending:
            self.pool.results[job.index] = self._result(
                job, report.FAILED, error=f"no server left to run it; last: {job.last_error}")
        return self.pool.results

    def cancel(self) -> list[str]:
        """Stop handing out images and remove this client's running prompt from each server
        (nothing else is touched); the prompt ids cancelled."""
        self.pool.stop()
        cancelled = []
        for server in self.servers:
            with server.lock:
                prompt_id = server.prompt_id
            if prompt_id:
                self.api._cancel(server.url, prompt_id)
                cancelled.append(prompt_id)
        return cancelled
