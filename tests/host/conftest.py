"""Fixtures for tests that need the real ComfyUI host (a server subprocess on 127.0.0.1).

Every test under tests/host is marked ``host`` and skipped unless ``COMFYUI_PATH`` names a
ComfyUI tree. Nothing from ComfyUI is imported here: the tests talk to the server over HTTP.

Fixtures
--------
``comfyui_path``        Path of the host tree (session).
``model_cache``         :class:`ModelCache`: generated model files kept across runs in
                        ``$DOSSR_TEST_CACHE`` (default ~/.cache/dossr-tests) (session).
``sd2_mini_ckpt``       cached fake SD2 "mini" EPS checkpoint (session).
``dossr_mini_ckpt``     cached DoSSR checkpoint matching it ("mini", safetensors) (session).
``fake_sd_checkpoint``  factory ``fake_sd_checkpoint("sd15_mini" | "sd2_v" | ..., seed=0)``.
``comfy_base``          the session server's base directory (session).
``comfy_server``        a running :class:`tests.hostlib.server.ComfyServer` (session).
``start_comfy_server``  factory for fresh servers, stopped at the end of the test.
``count_log``           a fresh path for DoSSRTestCountUNet's log (function).

Model names seen by the session server: ``SD2_MINI`` in models/checkpoints, ``DOSSR_MINI`` in
models/dossr, ``DOSSR_MINI_RRDB`` (the preprocessor alone) in models/upscale_models.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import pytest

from tests.hostlib import server as hs

HOST_DIR = Path(__file__).resolve().parent
REPO = HOST_DIR.parent.parent

SD2_MINI = "fake_sd2_mini.safetensors"
DOSSR_MINI = "fake_dossr_mini.safetensors"
DOSSR_MINI_RRDB = "fake_dossr_mini_rrdb.safetensors"
#: The mini SD and DoSSR weights as one release file in the authors' training form.
RELEASE_MINI = "fake_dossr_release_mini.ckpt"

# spandrel's ESRGAN loader assumes 32 growth channels; the cached DoSSR checkpoint's
# preprocessor always has this many (rebuilt if tests/fake_dossr.py SIZES says otherwise).
SPANDREL_GROW_CH = 32

TIMINGS: dict[str, float] = {}

#: Cached model files of an older version are removed when they are older than this.
STALE_SECONDS = 24 * 3600


# ----------------------------------------------------------------------------- marking

def _host_problem() -> str | None:
    return hs.comfy_tree_problem(os.environ.get("COMFYUI_PATH"))


def pytest_collection_modifyitems(config, items):
    problem = _host_problem()
    skip = pytest.mark.skip(reason=f"host test: {problem} (point COMFYUI_PATH at a ComfyUI "
                                   "checkout to run it)") if problem else None
    for item in items:
        if HOST_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.host)
            if skip is not None:
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "host fixture timings")
        for k, v in TIMINGS.items():
            terminalreporter.write_line(f"{k}: {v:.1f} s")


@pytest.fixture(scope="session")
def comfyui_path() -> Path:
    problem = _host_problem()
    if problem:
        pytest.skip(f"host test: {problem}")
    return Path(os.environ["COMFYUI_PATH"]).resolve()


# ----------------------------------------------------------------------------- model cache

def _digest(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


class ModelCache:
    """Generated model files keyed by kind, variant, seed and a hash of the generator code,
    written atomically (temporary file + rename) so concurrent runs never see half a file."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.made: list[tuple[str, float]] = []  # (file name, seconds) written by this run
        for tmp in self.dir.glob(".*.tmp"):  # left by killed runs
            if time.time() - tmp.stat().st_mtime > 3600:
                tmp.unlink(missing_ok=True)

    def get(self, name: str, writer) -> Path:
        """``<dir>/<name>``, made by ``writer(tmp_path)`` if absent. Names are
        ``<key>-<version>.<ext>``; a new version replaces the older files of the same key
        once they are a day old (another checkout's run may still be using them)."""
        path = self.dir / name
        if path.exists():
            return path
        key, _, _ = name.rpartition("-")
        for old in self.dir.glob(f"{key}-*"):
            if (old.name != name and old.name.rpartition("-")[0] == key
                    and time.time() - old.stat().st_mtime > STALE_SECONDS):
                old.unlink(missing_ok=True)
        tmp = self.dir / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        t0 = time.perf_counter()
        try:
            writer(tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        self.made.append((name, time.perf_counter() - t0))
        TIMINGS[f"generate {name}"] = time.perf_counter() - t0
        return path

    def sd_checkpoint(self, variant: str = "sd2_mini", seed: int = 0) -> Path:
        """Fake SD checkpoint (fp16 safetensors) from tests/hostlib/fake_sd.py."""
        from tests.hostlib import fake_sd

        if variant not in fake_sd.VARIANTS:
            raise ValueError(f"unknown fake SD variant {variant!r}; one of {sorted(fake_sd.VARIANTS)}")
        version = _digest(Path(fake_sd.__file__))
        return self.get(f"{variant}-s{seed}-{version}.safetensors",
                        lambda p: fake_sd.write_fake_sd_checkpoint(p, variant, seed=seed))

    def _dossr_tensors(self, size: str, seed: int) -> dict:
        """``fake_dossr.dossr_state_dict(size, seed)`` in float32; if that size's preprocessor
        does not have 32 growth channels (spandrel cannot load it), the preprocessor is rebuilt
        with 32 (seeded with seed + 1)."""
        import torch

        from tests import fake_dossr

        cfg = dict(fake_dossr.SIZES[size]["preprocessor"])
        if cfg.get("num_grow_ch", 32) == SPANDREL_GROW_CH:
            return fake_dossr.dossr_state_dict(size, seed, torch.float32)
        tensors = fake_dossr.dossr_state_dict(size, seed, torch.float32,
                                              parts=("controlnet", "hint_encoder"))
        cfg["num_grow_ch"] = SPANDREL_GROW_CH
        torch.manual_seed(seed + 1)
        net = fake_dossr.CLASSES["preprocessor"](**cfg)
        prefix = fake_dossr.PREFIXES["preprocessor"]
        tensors.update({prefix + k: v.float() for k, v in net.state_dict().items()})
        return tensors

    def _dossr_version(self) -> str:
        code = [REPO / "tests" / "fake_dossr.py", Path(__file__).resolve(),
                *sorted((REPO / "dossr_core" / "nets").glob("*.py"))]
        return _digest(*code)

    def dossr_checkpoint(self, size: str = "mini", seed: int = 0) -> Path:
        """DoSSR checkpoint (ControlNet + hint encoder + RRDBNet preprocessor with 32 growth
        channels), float32 safetensors, random weights."""
        from tests import fake_dossr

        return self.get(f"dossr_{size}-s{seed}-{self._dossr_version()}.safetensors",
                        lambda p: fake_dossr.write_safetensors(p, self._dossr_tensors(size, seed)))

    def release_checkpoint(self, size: str = "mini", sd_variant: str = "sd2_mini", seed: int = 0,
                           form: str = "training") -> Path:
        """A DoSSR release file as the authors' training writes it: a Lightning training
        checkpoint (tests/training_ckpt.py) whose state_dict holds the DoSSR parts of
        :meth:`dossr_checkpoint` and the SD tensors of :meth:`sd_checkpoint`, unchanged.
        ``form="state_dict"`` writes the same
        tensors as a plain ``{"state_dict": ...}`` file instead."""
        import torch

        from safetensors.torch import load_file

        from tests import training_ckpt

        sd_path = self.sd_checkpoint(sd_variant, seed)
        version = _digest(Path(training_ckpt.__file__), extra=self._dossr_version() + sd_path.name)

        def write(p):
            tensors = load_file(str(sd_path))
            tensors.update(self._dossr_tensors(size, seed))
            if form == "state_dict":
                torch.save({"state_dict": tensors}, str(p))
            else:
                training_ckpt.write_training_ckpt(p, tensors)

        kind = "" if form == "training" else f"-{form}"
        return self.get(f"release_{size}_{sd_variant}{kind}-s{seed}-{version}.ckpt", write)

    def dossr_rrdb(self, size: str = "mini", seed: int = 0) -> Path:
        """The preprocessor of :meth:`dossr_checkpoint` alone, unprefixed (an ESRGAN x4 file
        for the host's UpscaleModelLoader)."""
        from tests import fake_dossr

        prefix = fake_dossr.PREFIXES["preprocessor"]

        def write(p):
            t = self._dossr_tensors(size, seed)
            fake_dossr.write_safetensors(p, {k[len(prefix):]: v for k, v in t.items()
                                             if k.startswith(prefix)})

        return self.get(f"dossr_{size}_rrdb-s{seed}-{self._dossr_version()}.safetensors", write)


@pytest.fixture(scope="session")
def model_cache(comfyui_path) -> ModelCache:
    return ModelCache(Path(os.environ.get("DOSSR_TEST_CACHE",
                                          Path.home() / ".cache" / "dossr-tests")).expanduser())


@pytest.fixture(scope="session")
def sd2_mini_ckpt(model_cache) -> Path:
    return model_cache.sd_checkpoint("sd2_mini")


@pytest.fixture(scope="session")
def dossr_mini_ckpt(model_cache) -> Path:
    return model_cache.dossr_checkpoint("mini")


@pytest.fixture(scope="session")
def release_mini_ckpt(model_cache) -> Path:
    """The mini SD and DoSSR weights as one release file in training-checkpoint form."""
    return model_cache.release_checkpoint("mini")


@pytest.fixture(scope="session")
def fake_sd_checkpoint(model_cache):
    """Factory: ``fake_sd_checkpoint("sd15_mini", seed=0) -> Path`` (cached)."""
    return model_cache.sd_checkpoint


# ----------------------------------------------------------------------------- servers

def _default_models(model_cache, sd2_mini_ckpt, dossr_mini_ckpt) -> dict:
    return {
        "checkpoints": {SD2_MINI: sd2_mini_ckpt},
        "dossr": {DOSSR_MINI: dossr_mini_ckpt, RELEASE_MINI: model_cache.release_checkpoint("mini")},
        "upscale_models": {DOSSR_MINI_RRDB: model_cache.dossr_rrdb("mini")},
    }


@pytest.fixture(scope="session")
def comfy_base(tmp_path_factory, model_cache, sd2_mini_ckpt, dossr_mini_ckpt) -> Path:
    return hs.prepare_base_dir(tmp_path_factory.mktemp("comfy_base"),
                               models=_default_models(model_cache, sd2_mini_ckpt, dossr_mini_ckpt))


@pytest.fixture(scope="session")
def comfy_server(comfyui_path, comfy_base):
    """The session's server: extension + probe pack linked, fake models in place."""
    t0 = time.perf_counter()
    with hs.ComfyServer.start(comfyui_path, comfy_base) as server:
        TIMINGS["session server start (until /system_stats)"] = time.perf_counter() - t0
        yield server


@pytest.fixture
def server(comfy_server):
    """The session's server, under the short name most host tests use."""
    return comfy_server


@pytest.fixture
def add_model(comfy_server):
    """``add_model(folder, name, source)``: link a model file into the server's models dir for
    this test only (removed afterwards, so other tests see the usual model lists)."""
    added = []

    def add(folder: str, name: str, source) -> None:
        added.append(comfy_server.add_model(folder, name, source))

    yield add
    for link in added:
        link.unlink(missing_ok=True)


@pytest.fixture
def start_comfy_server(comfyui_path, tmp_path_factory, model_cache, sd2_mini_ckpt, dossr_mini_ckpt):
    """Factory for fresh servers: ``start_comfy_server(extra_args=(), base_dir=None)``.

    Without *base_dir* each server gets a new base directory laid out like the session
    server's; pass ``base_dir=old.base_dir`` (after ``old.stop()``) to restart on the same
    files. Every server started here is stopped when the test ends.
    """
    started = []

    def start(extra_args=(), base_dir=None, ready_timeout=hs.DEFAULT_READY_TIMEOUT):
        if base_dir is None:
            base_dir = hs.prepare_base_dir(
                tmp_path_factory.mktemp("comfy_base_fresh"),
                models=_default_models(model_cache, sd2_mini_ckpt, dossr_mini_ckpt))
        server = hs.ComfyServer.start(comfyui_path, base_dir, extra_args=extra_args,
                                      ready_timeout=ready_timeout)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def count_log(tmp_path) -> Path:
    """A path (not yet existing) for DoSSRTestCountUNet; unique per test so the host's
    output cache never skips the sampler."""
    return tmp_path / f"unet_calls_{uuid.uuid4().hex[:8]}.jsonl"
