"""DoSSR Tiled Sampling: a MODEL patch that denoises large latents tile by tile, seamlessly.

At every model evaluation the host's guided prediction (UNet + DoSSR ControlNet
on the matching crop of the hint, cond and uncond) runs on batches of
overlapping latent tiles, and the tiles' x0_hat are blended into one. The
sampler above it, DoSSR's or any other, still updates one full-size latent with
one noise field.

``mode`` says when tiles are used: "auto" (the default) samples a latent that is no larger
than one tile in one piece, exactly as without this node, and tiles a larger one; "always"
tiles whenever a side is longer than a tile; "off" never tiles. So a workflow with the node
in "auto" serves every image size, and its small images are bit for bit the untiled result.
"""

from __future__ import annotations

import logging

from comfy_api.latest import io

import comfy.model_management as mm
import comfy.patcher_extension
import comfy.utils

from ..dossr_core.tiling import tile_grid, tiled_map
from .host_compat import schema
from .menu import CATEGORY, search_aliases
from .validation import check_choices, combos_only

TILES_KEY = "dossr_tiles"
"""transformer_options key: the tiles (latent rectangles) of the batch being evaluated."""
WRAPPER_KEY = "dossr_tiled_sampling"
LATENT_SCALE = 8
MODES = ("auto", "always", "off")


def needs_tiles(height: int, width: int, tile: int, mode: str) -> bool:
    """Whether a ``height x width`` latent is sampled on tiles of side ``tile`` under ``mode``.

    "auto" tiles only a latent larger than one tile in area, so a latent that costs no more
    than a tile (512x512 px, or 768x320 px at 512 px tiles) keeps the paper's whole-image
    sampling; "always" tiles whenever a side is longer than a tile; "off" never tiles.
    """
    if mode == "off":
        return False
    if mode == "auto":
        return height * width > tile * tile
    return height > tile or width > tile


class TileProgress:
    """Per-tile progress on the node's bar, consistent with the sampler's per-step updates."""

    def __init__(self, model_options: dict, sigma, tiles: int):
        sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
        self.steps = max(len(sigmas) - 1, 1) if sigmas is not None else 1
        self.step = int((sigmas.to(sigma) - sigma).abs().argmin()) if sigmas is not None else 0
        self.tiles, self.done = tiles, 0
        self.bar = comfy.utils.ProgressBar(self.steps * tiles)

    def advance(self, count: int) -> None:
        self.done += count
        total = self.steps * self.tiles
        self.bar.update_absolute(min(self.step * self.tiles + self.done, total), total)


def tiled_predict_noise(tile: int, overlap: int, tile_batch: int, mode: str = "always"):
    """A PREDICT_NOISE wrapper running the guided prediction on latent tiles (sizes in latents)
    when ``needs_tiles`` says so, and unchanged otherwise."""

    def wrapper(executor, x, timestep, model_options, seed):
        if not needs_tiles(x.shape[-2], x.shape[-1], tile, mode):
            return executor(x, timestep, model_options, seed)
        tiles = tile_grid(x.shape[-2], x.shape[-1], tile, overlap)
        progress = TileProgress(model_options, timestep[0], len(tiles))
        if progress.step == 0:
            logging.info("DoSSR Tiled Sampling: %dx%d px on %d tiles of %d px (mode %s)",
                         x.shape[-1] * LATENT_SCALE, x.shape[-2] * LATENT_SCALE, len(tiles),
                         tile * LATENT_SCALE, mode)

        def denoise_tiles(xs, chunk):
            mm.throw_exception_if_processing_interrupted()
            options = dict(model_options)
            options["transformer_options"] = {**model_options.get("transformer_options", {}),
                                              TILES_KEY: list(chunk)}
            out = executor(xs, timestep.repeat(len(chunk)), options, seed)
            progress.advance(len(chunk))
            return out

        return tiled_map(denoise_tiles, x, tiles, overlap, tile_batch)

    return wrapper


@combos_only
class DoSSRTiledDiffusion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="DoSSRTiledDiffusion",
            display_name="DoSSR Tiled Sampling",
            category=CATEGORY,
            search_aliases=search_aliases("tiled", "tiles", "large image"),
            description=("Lets a sampler handle images larger than SD 2.1's 512 px: each step runs the "
                         "model on overlapping tiles and blends them into one seamless prediction, so "
                         "memory stays bounded. Put it between your MODEL and the DoSSR Sampler (or "
                         "any sampler)."),
            inputs=[
                io.Model.Input("model", tooltip="Your Stable Diffusion 2.1-base model (from Load "
                                                "Checkpoint)."),
                io.Int.Input("tile_size", default=512, min=256, max=4096, step=64,
                             tooltip="Tile side in pixels of the result. 512 (recommended) is the size "
                                     "the model was trained at; larger tiles need more memory. An "
                                     "image no larger than one tile is sampled whole, exactly as "
                                     "without this node."),
                io.Int.Input("tile_overlap", default=128, min=0, max=1024, step=8,
                             tooltip="How much neighboring tiles overlap, in pixels. Raise it (e.g. "
                                     "192) if you see seams; lower it to save time, since wider "
                                     "overlaps mean more tiles."),
                io.Int.Input("tile_batch_size", default=4, min=1, max=64,
                             tooltip="Tiles computed at once: higher is faster on a GPU but needs "
                                     "more memory; lower it if you run out of memory."),
                io.Combo.Input("mode", options=list(MODES), default="auto", optional=True,
                               tooltip="auto: sample the whole image while it is no larger than "
                                       "one tile in area (e.g. 512x512 or 768x320 px at 512 px "
                                       "tiles), exactly as without this node; on tiles beyond. "
                                       "always: on tiles whenever a side is longer than a tile "
                                       "(less memory). off: never on tiles."),
            ],
            outputs=[io.Model.Output(tooltip="The same model, now sampling large images tile by tile: "
                                             "connect to DoSSR Sampler's model (or any sampler's).")],
        )

    @classmethod
    def validate_inputs(cls, mode="auto"):
        return check_choices(mode=(mode, MODES))

    @classmethod
    def execute(cls, model, tile_size, tile_overlap, tile_batch_size,
                mode="always") -> io.NodeOutput:
        # a prompt saved before ``mode`` existed has none: it keeps the tiling it had ("always")
        if tile_overlap >= tile_size:
            raise ValueError(f"DoSSR Tiled Sampling: tile_overlap ({tile_overlap}) must be smaller "
                             f"than tile_size ({tile_size}).")
        if mode == "off":
            return io.NodeOutput(model)
        patched = model.clone()
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, WRAPPER_KEY,
                                     tiled_predict_noise(tile_size // LATENT_SCALE,
                                                         tile_overlap // LATENT_SCALE, tile_batch_size,
                                                         mode))
        return io.NodeOutput(patched)
