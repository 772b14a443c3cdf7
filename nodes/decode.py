"""DoSSR VAE Decode: the host's VAE decode, whole when the image allows, on tiles when it must.

Small images are decoded exactly as the host's *VAE Decode* does (one ``vae.decode``, bit
for bit), so a workflow using this node gives the untiled result wherever one tile covers
the image. Larger ones are decoded whole while the host says the device has the memory for
it (fewer seams than tiles), and otherwise by the host's own tiled decode (``vae.decode_tiled``,
what *VAE Decode (Tiled)* runs), so a 3000 px result fits an 8 GB GPU or a laptop's RAM.
"""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from .encode import whole_fits
from .host_compat import schema
from .menu import CATEGORY, search_aliases
from .validation import check_choices, combos_only

TILING = ("auto", "always", "off")


def within_one_tile(latent: torch.Tensor, tile_px: int, compression: int) -> bool:
    """Whether the latent's image is no larger than one ``tile_px`` square tile in area."""
    return latent.shape[-2] * latent.shape[-1] * compression * compression <= tile_px * tile_px


def decode_whole(vae, latent: torch.Tensor) -> torch.Tensor:
    """What the host's VAE Decode node returns for ``latent``."""
    images = vae.decode(latent)
    if images.dim() == 5:   # video VAEs: frames into the batch, as the host's node does
        images = images.reshape(-1, *images.shape[-3:])
    return images


def decode_tiles(vae, latent: torch.Tensor, tile_px: int, overlap_px: int) -> torch.Tensor:
    """What the host's VAE Decode (Tiled) node returns for an image VAE's ``latent``."""
    if tile_px < overlap_px * 4:
        overlap_px = tile_px // 4
    c = vae.spacial_compression_decode()
    images = vae.decode_tiled(latent, tile_x=tile_px // c, tile_y=tile_px // c, overlap=overlap_px // c)
    if images.dim() == 5:
        images = images.reshape(-1, *images.shape[-3:])
    return images


def use_tiles(vae, latent: torch.Tensor, tile_px: int, tiling: str) -> bool:
    """"off" never, "always" always; "auto" only beyond one tile and when the host says a
    whole decode does not fit the device's memory (the host's estimate of its decoder)."""
    if tiling != "auto":
        return tiling == "always"
    if within_one_tile(latent, tile_px, vae.spacial_compression_decode()):
        return False
    return not whole_fits(vae.patcher, vae.memory_used_decode(latent.shape, vae.vae_dtype), tiling)


@combos_only
class DoSSRVAEDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="DoSSRVAEDecode",
            display_name="DoSSR VAE Decode",
            category=CATEGORY,
            search_aliases=search_aliases("decode", "vae decode", "tiled decode"),
            description=("Decodes the sampled latent with your VAE for any image size: an image of "
                         "up to one tile exactly as VAE Decode does, a larger one whole while the "
                         "device has the memory for it and on tiles (the host's VAE Decode (Tiled)) "
                         "beyond that."),
            inputs=[
                io.Latent.Input("samples", tooltip="The latent from the DoSSR Sampler."),
                io.Vae.Input("vae", tooltip="The VAE of your SD 2.1-base checkpoint."),
                io.Combo.Input("tiling", options=list(TILING), default="auto",
                               tooltip="auto: whole up to one tile, and beyond that while the "
                                       "device has the memory for it; tiles otherwise. always: "
                                       "tiles at every size (least memory; tile borders can "
                                       "show faintly). off: always whole, like VAE Decode."),
                io.Int.Input("tile_size", default=512, min=64, max=4096, step=32,
                             tooltip="Tile side in pixels, as in VAE Decode (Tiled); an image no "
                                     "larger than this square (in area) is decoded whole."),
                io.Int.Input("overlap", default=64, min=0, max=4096, step=32,
                             tooltip="Overlap of neighbouring tiles in pixels (at most a quarter "
                                     "of tile_size is used)."),
            ],
            outputs=[io.Image.Output(tooltip="The decoded image (before the color fix).")],
        )

    @classmethod
    def validate_inputs(cls, tiling):
        return check_choices(tiling=(tiling, TILING))

    @classmethod
    def execute(cls, samples, vae, tiling, tile_size, overlap) -> io.NodeOutput:
        latent = samples["samples"]
        if getattr(latent, "is_nested", False):   # newer hosts: the image part, as their nodes do
            latent = latent.unbind()[0]
        if latent.dim() != 4:
            raise ValueError(f"DoSSR VAE Decode: expected an image latent (B, C, H, W), got shape "
                             f"{tuple(latent.shape)}; use the host's VAE Decode for video latents.")
        if use_tiles(vae, latent, tile_size, tiling):
            c = vae.spacial_compression_decode()
            logging.info("DoSSR VAE Decode: %dx%d px on %d px tiles", latent.shape[-1] * c,
                         latent.shape[-2] * c, tile_size)
            return io.NodeOutput(decode_tiles(vae, latent, tile_size, overlap))
        return io.NodeOutput(decode_whole(vae, latent))
