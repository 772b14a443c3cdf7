"""DoSSR LR Encode: the low-resolution image becomes the start latent xhat0 and the hint (DESIGN §4).

1. ``pre`` = RRDBNet x4 of the LR image (or bicubic, or the image as given),
   resized to the target size and clamped to [0, 1]; it is also the colour-fix
   reference.
2. ``pre`` is padded to a multiple of 8 (replicate), then encoded twice: by the
   host's VAE (the LATENT the sampler starts from) and by DoSSR's own hint
   encoder (the DOSSR_HINT). Images larger than one tile are encoded on
   overlapping tiles of equal size in a single pass, blended like the sampler's
   tiles, so time and memory grow linearly with the pixels.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io

import comfy.model_management as mm
import comfy.utils

from ..dossr_core.sizes import LATENT_MULTIPLE, pad_to_multiple, resize, target_size
from ..dossr_core.tiling import tile_grid, tiled_map
from .io_types import DoSSRHint, DoSSRModel
from .validation import check_choices, combos_only
from .host_compat import schema
from .menu import CATEGORY, search_aliases

PREPROCESS = ("rrdbnet", "bicubic", "none")
ENCODE_TILE, ENCODE_OVERLAP = 64, 16    # latents (512 px, 128 px): see encode_latent
RRDB_TILE, RRDB_OVERLAP = 256, 32   # at x4 a 512 px tile means 1 GB activations


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


def run_preprocessor(net, pixels: torch.Tensor, device, dtype) -> torch.Tensor:
    """RRDBNet x4 over overlapping tiles, halving the tile on out-of-memory."""
    tile = RRDB_TILE
    while True:
        try:
            return tiled(lambda a: net(a.to(device, dtype)), pixels, tile, RRDB_OVERLAP,
                         (1, net.scale))
        except mm.OOM_EXCEPTION:
            tile //= 2
            if tile < 64:
                raise


def prepare_reference(handle, pixels: torch.Tensor, scale: float, mode: str) -> torch.Tensor:
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
    mm.load_models_gpu([handle.encoder_patcher])
    x4 = run_preprocessor(handle.preprocessor, pixels, handle.encoder_patcher.load_device, handle.dtype)
    return resize(x4.clamp(0, 1), size)


def encode_hint(handle, padded: torch.Tensor) -> torch.Tensor:
    """The hint latent of the padded ``pre`` by DoSSR's hint encoder."""
    mm.load_models_gpu([handle.encoder_patcher])
    device = handle.encoder_patcher.load_device
    return tiled(lambda a: handle.hint_encoder(a.to(device, handle.dtype)), padded,
                 ENCODE_TILE, ENCODE_OVERLAP, (LATENT_MULTIPLE, 1))


def encode_latent(vae, padded: torch.Tensor) -> torch.Tensor:
    """xhat0 by the host's VAE, one ``vae.encode`` per tile.

    One pass of equal tiles rather than the host's ``encode_tiled`` (three passes of tiles
    stepping from 0): about a third of the work, the same share at every size, and the
    sampler's window, which ignores the outer quarter of each overlap where a tile's border
    effects are.
    """
    return tiled(lambda a: vae.encode(a.movedim(1, -1)), padded, ENCODE_TILE,
                 ENCODE_OVERLAP, (LATENT_MULTIPLE, 1))


@combos_only
class DoSSRLREncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="DoSSRLREncode",
            display_name="DoSSR LR Encode",
            category=CATEGORY,
            search_aliases=search_aliases("encode", "low resolution", "rrdbnet", "esrgan"),
            description=("Prepares a low-resolution image for DoSSR: restores and upscales it with "
                         "the RRDBNet preprocessor, then encodes it into the latent sampling starts "
                         "from and the hint that steers the ControlNet."),
            inputs=[
                io.Image.Input("image", tooltip="The low-resolution RGB image (any size, any batch)."),
                DoSSRModel.Input("dossr_model", tooltip="From DoSSR Model Loader."),
                io.Vae.Input("vae", tooltip="The VAE of your SD 2.1-base checkpoint."),
                io.Float.Input("scale", default=4.0, min=1.0, max=16.0, step=0.05,
                               tooltip="Output size = round(scale x input size). The preprocessor is "
                                       "x4; other factors resize its result."),
                io.Combo.Input("preprocess", options=list(PREPROCESS), default="rrdbnet",
                               tooltip="rrdbnet: restore and upscale with DoSSR's preprocessor (the "
                                       "paper's pipeline). bicubic: plain resize. none: use the "
                                       "image as given (already upscaled elsewhere; scale is "
                                       "ignored)."),
            ],
            outputs=[
                io.Latent.Output("latent", display_name="latent", tooltip="The start latent xhat0, padded to a multiple of "
                                                   "8 px. Feed to the DoSSR sampler."),
                io.Image.Output("reference", display_name="reference", tooltip="The preprocessed image at the exact target "
                                                     "size: the colour-fix reference."),
                DoSSRHint.Output("hint", display_name="hint", tooltip="The hint latent for the DoSSR ControlNet."),
            ],
        )

    @classmethod
    def validate_inputs(cls, preprocess):
        return check_choices(preprocess=(preprocess, PREPROCESS))

    @classmethod
    def execute(cls, image, dossr_model, vae, scale, preprocess) -> io.NodeOutput:
        check_image(image)
        pixels = image.movedim(-1, 1).float()
        pre = prepare_reference(dossr_model, pixels, scale, preprocess)
        padded = pad_to_multiple(pre)
        hint = encode_hint(dossr_model, padded)
        latent = encode_latent(vae, padded)
        return io.NodeOutput({"samples": latent}, pre.movedim(1, -1).contiguous(), hint)
