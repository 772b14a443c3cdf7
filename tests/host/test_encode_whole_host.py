"""DoSSR LR Encode on the whole image when it fits, on tiles beyond that, in the host's process.

The host's memory management is real (``comfy.model_management`` of the tree at
``COMFYUI_PATH``, on the CPU); the DoSSR networks are the "small" random-weight ones, and the
VAE is a stand-in with the host VAE's encode interface around a small GroupNorm encoder, so a
tiled encode differs from a whole one (DESIGN §6) and the tests can tell which ran.
"""

from __future__ import annotations

import pytest
import torch

from tests import fake_dossr
from tests.hostlib.inprocess import import_host, import_pack

LR = (24, 288)          # x4: 96 x 1152 px, wider than one RRDBNet tile and three encoder tiles


class StandInVAE:
    """What DoSSR LR Encode uses of the host's VAE: ``encode`` (BHWC in [0, 1]), its memory
    estimate (the host's figure for the SD VAE encoder), ``vae_dtype`` and ``patcher``."""

    def __init__(self, mm, patcher):
        self.mm, self.patcher, self.vae_dtype = mm, patcher, torch.float32
        self.calls = []

    def memory_used_encode(self, shape, dtype):
        return 1767 * shape[2] * shape[3] * self.mm.dtype_size(dtype)

    def encode(self, pixels):
        self.calls.append(tuple(pixels.shape))
        return self.patcher.model(pixels.movedim(-1, 1)).float()


@pytest.fixture(scope="module")
def host(comfyui_path):
    return import_host(comfyui_path)


@pytest.fixture(scope="module")
def encode(host):
    return import_pack("nodes.encode")


@pytest.fixture(scope="module")
def handle(host, tmp_path_factory):
    path = tmp_path_factory.mktemp("dossr") / "small.safetensors"
    fake_dossr.write_safetensors(path, fake_dossr.dossr_state_dict("small", seed=3))
    return import_pack("nodes.model").DoSSRModelHandle(str(path), torch.float32)


@pytest.fixture
def vae(host):
    torch.manual_seed(7)
    net = fake_dossr.CLASSES["hint_encoder"](**fake_dossr.SIZES["small"]["hint_encoder"]).eval()
    return StandInVAE(host, import_pack("nodes.host_compat").new_patcher(net))


@pytest.fixture(scope="module")
def pixels():
    torch.manual_seed(0)
    return torch.rand(1, 3, *LR)


def run(encode, handle, vae, pixels, tiling):
    """(pre, xhat0, hint) as DoSSR LR Encode makes them."""
    with torch.no_grad():
        pre = encode.prepare_reference(handle, pixels, 4.0, "rrdbnet", tiling)
        padded = import_pack("dossr_core.sizes").pad_to_multiple(pre)
        return pre, encode.encode_latent(vae, padded, tiling), encode.encode_hint(handle, padded, tiling)


def untiled(handle, vae, pixels):
    """The authors' pipeline: every network once on the whole image."""
    sizes = import_pack("dossr_core.sizes")
    with torch.no_grad():
        pre = sizes.resize(handle.preprocessor(pixels).clamp(0, 1), sizes.target_size(*LR, 4.0))
        padded = sizes.pad_to_multiple(pre)
        return pre, vae.encode(padded.movedim(1, -1)), handle.hint_encoder(padded)


def assert_same(got, expected):
    for name, a, b in zip(("pre", "xhat0", "hint"), got, expected):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def assert_all_differ(got, expected):
    for name, a, b in zip(("pre", "xhat0", "hint"), got, expected):
        assert a.shape == b.shape and not torch.equal(a, b), name


def test_below_the_budget_the_encode_equals_the_untiled_networks(encode, handle, vae, pixels):
    whole = run(encode, handle, vae, pixels, "auto")
    assert_same(whole, untiled(handle, vae, pixels))
    assert vae.calls[0] == (1, 96, 1152, 3)                  # one call, the whole image


def test_tiling_always_forces_tiles(encode, handle, vae, pixels):
    tiles = run(encode, handle, vae, pixels, "always")
    assert len(vae.calls) == 3 and all(shape[2] < 1152 for shape in vae.calls)
    assert_all_differ(tiles, untiled(handle, vae, pixels))


def test_beyond_the_budget_it_tiles(encode, handle, vae, pixels, host, monkeypatch):
    forced = run(encode, handle, vae, pixels, "always")
    monkeypatch.setattr(host, "get_free_memory", lambda *a, **k: 1 << 20)   # 1 MiB free
    assert_same(run(encode, handle, vae, pixels, "auto"), forced)


def test_out_of_memory_on_the_whole_image_falls_back_to_tiles(encode, handle, vae, pixels,
                                                               monkeypatch):
    forced = run(encode, handle, vae, pixels, "always")
    nets = [handle.preprocessor, handle.hint_encoder, vae.patcher.model]
    real = {net: net.forward for net in nets}
    whole_widths = {LR[1], 4 * LR[1]}

    def failing(net):
        def forward(x):
            if x.shape[-1] in whole_widths:
                raise torch.OutOfMemoryError("stand-in: out of memory")
            return real[net](x)
        return forward

    for net in nets:
        monkeypatch.setattr(net, "forward", failing(net))
    assert_same(run(encode, handle, vae, pixels, "auto"), forced)


def test_other_errors_of_the_whole_pass_are_not_retried_on_tiles(encode, handle, vae, pixels,
                                                                    host, monkeypatch):
    real = handle.hint_encoder.forward

    def interrupted_on_the_whole_image(x):
        if x.shape[-1] == 4 * LR[1]:
            raise host.InterruptProcessingException()
        return real(x)

    monkeypatch.setattr(handle.hint_encoder, "forward", interrupted_on_the_whole_image)
    with pytest.raises(host.InterruptProcessingException):
        run(encode, handle, vae, pixels, "auto")


def test_on_the_cpu_only_half_the_free_ram_counts(encode, vae, host, monkeypatch):
    """No out-of-memory error on the CPU (the system kills the process), so a whole pass
    must fit in half of what the host reports free."""
    need = 10 << 20
    monkeypatch.setattr(host, "get_free_memory", lambda *a, **k: 3 * need // 2)
    assert not encode.whole_fits(vae.patcher, need, "auto")
    monkeypatch.setattr(host, "get_free_memory", lambda *a, **k: 2 * need)
    assert encode.whole_fits(vae.patcher, need, "auto")
    assert not encode.whole_fits(vae.patcher, need, "always")


def test_the_node_takes_tiling_and_rejects_unknown_values(encode):
    if import_pack("nodes.validation").HOST_CHECKS_COMBOS:
        # this host checks combo values itself (tests/host/test_nodes_host.py shows it
        # refusing them), so the node names none in its own validation
        assert "validate_inputs" not in vars(encode.DoSSRLREncode)
        return
    assert encode.DoSSRLREncode.validate_inputs("rrdbnet", "always") is True
    assert encode.DoSSRLREncode.validate_inputs("rrdbnet") is True
    message = encode.DoSSRLREncode.validate_inputs("rrdbnet", "sometimes")
    assert "tiling" in message and "sometimes" in message
