"""DoSSR LR Encode: the low-resolution image becomes the start latent xhat0 and the hint (DESIGN §4).

1. ``pre`` = RRDBNet x4 of the LR image (or bicubic, or the image as given),
   resized to the target size and clamped to [0, 1]; it is also the color-fix
   reference.
2. ``pre`` is padded to a multiple of 8 (replicate), then encoded twice: by the
   host's VAE (the LATENT the sampler starts from) and by DoSSR's own hint
   encoder (the DOSSR_HINT).

Each network runs on the whole image, as the authors' code does, whenever the host's
memory management says the device has room for its activations (DESIGN §6: GroupNorm
statistics per tile would move xhat0 and the hint). Beyond that, after an out-of-memory
error, or with ``tiling`` "always", it runs on overlapping tiles of equal size in a single
pass, blended like the sampler's tiles, so time and memory grow linearly with the pixels.
"""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

import comfy.model_management as mm
import comfy.utils

from ..dossr_core.sizes import LATENT_MULTIPLE, pad_to_multiple, resize, target_size
from ..dossr_core.tiling import tile_grid, tiled_map
from .host_compat import is_oom
from .io_types import DoSSRHint, DoSSRModel
from .validation import check_choices, combos_only
from .host_compat import schema
from .menu import CATEGORY, search_aliases

PREPROCESS = ("rrdbnet", "bicubic", "none")
ENCODE_TILE, ENCODE_OVERLAP = 64, 16    # latents (512 px, 128 px): see encode_latent
RRDB_TILE, RRDB_OVERLAP = 256, 32   # at x4 a 512 px tile means 1 GB activations
TILING = ("auto", "always")     # auto: whole image when it fits, tiles beyond

# Activation memory of a whole-image pass, in values per input pixel (times the dtype's size).
# The hint encoder is the SD VAE encoder, so it gets the host's own figure for that encoder;
# RRDBNet's peak is its x4 tail: about three 64-channel maps at 16x the input's pixels.
HINT_ENCODER_PER_PX = 1767
RRDB_PER_LR_PX = 4096


def check_image(image: torch.Tensor) -> None:
    """ValueError for anything but a batch of RGB images of at least 8x8 pixels."""
    if image.dim() != 4:
        raise ValueError(f"DoSSR: expected an IMAGE batch (B, H, W, C), got shape {tuple(image.shape)}")
    b, h, w, c = image.shape
    if c != 3:
        kind = {1: "a greyscale", 2: "a greyscale+alpha", 4: "an RGBA"}.get(c, f"a {c}-channel")
        raise ValueError(f"DoSSR: the LR image is {kind} image; DoSSR needs RGB (3 channels). "
                         f"Convert it first (LoadImage already gives RGB; drop the alpha channel "
                         f"or repeat the grey channel).")
    if h < 8 or w < 8:
        raise ValueError(f"DoSSR: the LR image is {w}x{h} px; it must be at least 8x8 px.")


def tiled(fn, x: torch.Tensor, tile: int, overlap: int, zoom: tuple[int, int]) -> torch.Tensor:
    """``fn`` over equal overlapping tiles of ``x`` (B, C, H, W), blended like the sampler's tiles.

    ``tile`` and ``overlap`` are in cells of ``zoom[0]`` input px (see ``tiled_map``, which also
    casts each output to float32); an ``x`` that fits in one tile is passed to ``fn`` whole.
    Progress and interruption per tile.
    """
    tiles = tile_grid(x.shape[-2] // zoom[0], x.shape[-1] // zoom[0], tile, overlap, even=True)
    bar = comfy.utils.ProgressBar(len(tiles))

    def run(xs, chunk):
        mm.throw_exception_if_processing_interrupted()
        ys = fn(xs)
        bar.update(1)
        return ys

    return tiled_map(run, x, tiles, overlap, zoom=zoom)


def activation_bytes(x: torch.Tensor, per_px: int, dtype: torch.dtype) -> int:
    """Memory a whole-image pass over ``x`` (B, C, H, W) needs: ``per_px`` values per pixel."""
    return x.shape[0] * x.shape[-2] * x.shape[-1] * per_px * mm.dtype_size(dtype)


def whole_fits(patcher, need: int, tiling: str) -> bool:
    """Whether a whole-image pass needing ``need`` bytes should run, asking the host.

    As the host's own VAE encode does: load ``patcher`` with ``need`` bytes to spare (the
    host offloads other models to make room), then compare with the device's free memory.
    On the CPU only half the free RAM counts: there is no out-of-memory error to fall back
    on there. ``tiling`` "always" answers no (the model is loaded all the same).
    """
    mm.load_models_gpu([patcher], memory_required=need)
    free = mm.get_free_memory(patcher.load_device)
    if mm.is_device_cpu(patcher.load_device):
        free //= 2   # RAM is shared, and running out kills the process instead of raising
    return tiling != "always" and free >= need


def whole_or_tiled(fn, x: torch.Tensor, fits: bool, tiles) -> torch.Tensor:
    """``fn(x)`` on the whole image when it ``fits``, else (or after out-of-memory) ``tiles()``.

    The whole result is returned exactly as ``fn`` makes it, on ``x``'s device and dtype, so
    it equals an untiled encode bit for bit.
    """
    if fits:
        try:
            mm.throw_exception_if_processing_interrupted()
            return fn(x).to(x.device, x.dtype)
        except Exception as err:  # noqa: BLE001 - anything but out-of-memory is re-raised
            if not is_oom(err):
                raise
            logging.warning("DoSSR LR Encode: out of memory on the whole image (%s); "
                            "encoding on tiles instead", type(err).__name__)
        mm.soft_empty_cache()       # outside the except block, so the failed pass is freed
    return tiles()


def run_preprocessor(net, pixels: torch.Tensor, device, dtype, fits: bool) -> torch.Tensor:
    """RRDBNet x4, whole when it ``fits``, else over tiles halving the tile on out-of-memory."""
    def upscale(a):
        return net(a.to(device, dtype))

    def on_tiles():
        tile = RRDB_TILE
        while True:
            try:
                return tiled(upscale, pixels, tile, RRDB_OVERLAP, (1, net.scale))
            except Exception as err:  # noqa: BLE001 - anything but out-of-memory is re-raised
                if not is_oom(err) or tile // 2 < 64:
                    raise
            tile //= 2
            mm.soft_empty_cache()

    return whole_or_tiled(upscale, pixels, fits, on_tiles)


def prepare_reference(handle, pixels: torch.Tensor, scale: float, mode: str,
                      tiling: str = "auto") -> torch.Tensor:
    """``pre`` in [0, 1] at the target size, (B, 3, H, W) float32 on the intermediate device."""
    h, w = pixels.shape[-2:]
    if mode == "none":
        return pixels.clamp(0, 1)
    size = target_size(h, w, scale)
    if mode == "bicubic":
        return resize(pixels, size)
    if handle.preprocessor is None:
        raise ValueError("DoSSR: this DoSSR checkpoint has no RRDBNet preprocessor "
                         "(preprocess_model.*); choose preprocess 'bicubic' or 'none'.")
    patcher = handle.encoder_patcher
    fits = whole_fits(patcher, activation_bytes(pixels, RRDB_PER_LR_PX, handle.dtype), tiling)
    x4 = run_preprocessor(handle.preprocessor, pixels, patcher.load_device, handle.dtype, fits)
    return resize(x4.clamp(0, 1), size)


def encoder_tiles(fn, padded: torch.Tensor):
    """``tiled`` with the encoders' latent tiles, as a function of nothing (for ``whole_or_tiled``)."""
    return lambda: tiled(fn, padded, ENCODE_TILE, ENCODE_OVERLAP, (LATENT_MULTIPLE, 1))


def encode_hint(handle, padded: torch.Tensor, tiling: str = "auto") -> torch.Tensor:
    """The hint latent of the padded ``pre`` by DoSSR's hint encoder."""
    patcher = handle.encoder_patcher

    def encode(a):
        return handle.hint_encoder(a.to(patcher.load_device, handle.dtype))

    fits = whole_fits(patcher, activation_bytes(padded, HINT_ENCODER_PER_PX, handle.dtype), tiling)
    return whole_or_tiled(encode, padded, fits, encoder_tiles(encode, padded))


def encode_latent(vae, padded: torch.Tensor, tiling: str = "auto") -> torch.Tensor:
    """xhat0 by the host's VAE: one ``vae.encode`` of the whole image when the host says it
    fits (the host's own estimate of its encoder's memory), else one per tile.

    One pass of equal tiles rather than the host's ``encode_tiled`` (three passes of tiles
    stepping from 0): about a third of the work, the same share at every size, and the
    sampler's window, which ignores the outer quarter of each overlap where a tile's border
    effects are.
    """
    def encode(a):
        return vae.encode(a.movedim(1, -1))

    fits = whole_fits(vae.patcher, vae.memory_used_encode(padded.shape, vae.vae_dtype), tiling)
    return whole_or_tiled(encode, padded, fits, encoder_tiles(encode, padded))


@combos_only
class DoSSRLREncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="DoSSRLREncode",
            display_name="DoSSR LR Encode",
            category=CATEGORY,
            search_aliases=search_aliases("encode", "low resolution", "rrdbnet", "esrgan"),
            description=("Prepares a low-resolution image for DoSSR: restores and enlarges it with "
                         "DoSSR's image restorer (RRDBNet), then turns it into the sampler's starting "
                         "point, the color reference for DoSSR Color Fix and the hint that guides the "
                         "ControlNet."),
            inputs=[
                io.Image.Input("image", tooltip="The low-resolution picture to upscale (RGB, any size; "
                                                  "every image of a batch is upscaled)."),
                DoSSRModel.Input("dossr_model", tooltip="From DoSSR Model Loader."),
                io.Vae.Input("vae", tooltip="The VAE of your Stable Diffusion 2.1-base checkpoint "
                                            "(Load Checkpoint's VAE output)."),
                io.Float.Input("scale", default=4.0, min=1.0, max=16.0, step=0.05,
                               tooltip="How many times larger the result is. 4 is the paper's "
                                       "setting (the restorer works at x4); other values resize its "
                                       "x4 result, e.g. 2 for a smaller output. Ignored when "
                                       "preprocess is none."),
                io.Combo.Input("preprocess", options=list(PREPROCESS), default="rrdbnet",
                               tooltip="rrdbnet (recommended, the paper's): DoSSR's restorer cleans "
                                       "up and enlarges the image first. bicubic: a plain "
                                       "enlargement without that cleanup. none: the image is "
                                       "already at the final size (upscaled elsewhere); scale is "
                                       "ignored."),
                io.Combo.Input("tiling", options=list(TILING), default="auto", optional=True,
                               tooltip="auto (recommended): works on the whole image when your "
                                       "device has the memory for it, as the paper does, and in "
                                       "512 px tiles beyond that. always: always in tiles, which "
                                       "needs less memory; pick it if auto runs out of memory or "
                                       "slows the computer down. The result can differ very "
                                       "slightly from a whole-image pass."),
            ],
            outputs=[
                io.Latent.Output("latent", display_name="latent",
                                 tooltip="The image prepared as the sampler's starting point (its size "
                                         "rounded up to a multiple of 8 px; DoSSR Color Fix crops it "
                                         "back): connect to DoSSR Sampler's latent."),
                io.Image.Output("reference", display_name="reference",
                                tooltip="The restored, enlarged image at exactly the final size: "
                                        "connect to DoSSR Color Fix's reference, which keeps the "
                                        "colors true and sets the final size."),
                DoSSRHint.Output("hint", display_name="hint",
                                 tooltip="The guide for the DoSSR ControlNet: connect to DoSSR "
                                         "Sampler's hint (or DoSSR Apply ControlNet's)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, preprocess, tiling="auto"):
        return check_choices(preprocess=(preprocess, PREPROCESS), tiling=(tiling, TILING))

    @classmethod
    def execute(cls, image, dossr_model, vae, scale, preprocess, tiling="auto") -> io.NodeOutput:
        check_image(image)
        pixels = image.movedim(-1, 1).float()
        pre = prepare_reference(dossr_model, pixels, scale, preprocess, tiling)
        padded = pad_to_multiple(pre)
        hint = encode_hint(dossr_model, padded, tiling)
        latent = encode_latent(vae, padded, tiling)
        return io.NodeOutput({"samples": latent}, pre.movedim(1, -1).contiguous(), hint)
