"""DoSSR LR Encode: the low-resolution image becomes the start latent xhat0 and the hint (DESIGN §4).

1. ``pre`` = RRDBNet x4 of the LR image (or bicubic, or the image as given),
   resized to the target size and clamped to [0, 1]; it is also the colour-fix
   reference.
2. ``pre`` is padded to a multiple of 8 (replicate), then encoded twice: by the
   host's VAE (the LATENT the sampler starts from) and by DoSSR's own hint
   encoder (the DOSSR_HINT). Above 1 megapixel both encoders run on tiles.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io

import comfy.model_management as mm
import comfy.utils

from ..dossr_core.sizes import LATENT_MULTIPLE, pad_to_multiple, resize, target_size
from .io_types import DoSSRHint, DoSSRModel
from .validation import check_choices

PREPROCESS = ("rrdbnet", "bicubic", "none")
TILED_ENCODE_PIXELS = 1024 * 1024
ENCODE_TILE, ENCODE_OVERLAP = 512, 64
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


def run_preprocessor(net, pixels: torch.Tensor, device, dtype) -> torch.Tensor:
    """RRDBNet x4 over overlapping tiles (the host's tiler), halving the tile on out-of-memory."""
    tile = RRDB_TILE
    while True:
        steps = pixels.shape[0] * comfy.utils.get_tiled_scale_steps(
            pixels.shape[-1], pixels.shape[-2], tile, tile, RRDB_OVERLAP)
        pbar = comfy.utils.ProgressBar(steps)
        try:
            return comfy.utils.tiled_scale(
                pixels, lambda a: net(a.to(device, dtype)).float(), tile_x=tile, tile_y=tile,
                overlap=RRDB_OVERLAP, upscale_amount=net.scale, out_channels=3, pbar=pbar,
                output_device=mm.intermediate_device())
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


def is_large(pixels: torch.Tensor) -> bool:
    """Above this size the encoders run on tiles, so memory stays bounded."""
    return pixels.shape[-2] * pixels.shape[-1] > TILED_ENCODE_PIXELS


def encode_hint(handle, padded: torch.Tensor) -> torch.Tensor:
    """The hint latent of the padded ``pre``: whole for normal sizes, on tiles when large."""
    mm.load_models_gpu([handle.encoder_patcher])
    device = handle.encoder_patcher.load_device
    encode = lambda a: handle.hint_encoder(a.to(device, handle.dtype)).float()
    if is_large(padded):
        steps = padded.shape[0] * comfy.utils.get_tiled_scale_steps(
            padded.shape[-1], padded.shape[-2], ENCODE_TILE, ENCODE_TILE, ENCODE_OVERLAP)
        return comfy.utils.tiled_scale(padded, encode, tile_x=ENCODE_TILE, tile_y=ENCODE_TILE,
                                       overlap=ENCODE_OVERLAP, upscale_amount=1 / LATENT_MULTIPLE,
                                       out_channels=4, output_device=mm.intermediate_device(),
                                       pbar=comfy.utils.ProgressBar(steps))
    hints = []
    for image in padded.split(1):
        mm.throw_exception_if_processing_interrupted()
        hints.append(encode(image).to(mm.intermediate_device()))
    return torch.cat(hints)


def encode_latent(vae, padded: torch.Tensor) -> torch.Tensor:
    """xhat0 by the host's VAE, through its tiled encoder when the image is large."""
    pixels = padded.movedim(1, -1)
    if is_large(padded):
        return vae.encode_tiled(pixels, tile_x=ENCODE_TILE, tile_y=ENCODE_TILE, overlap=ENCODE_OVERLAP)
    return vae.encode(pixels)


class DoSSRLREncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DoSSRLREncode",
            display_name="DoSSR LR Encode",
            category="DoSSR",
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
