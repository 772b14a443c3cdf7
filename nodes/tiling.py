"""DoSSR Tiled Sampling: a MODEL patch that denoises large latents tile by tile, seamlessly.

At every model evaluation the host's guided prediction (UNet + DoSSR ControlNet
on the matching crop of the hint, cond and uncond) runs on batches of
overlapping latent tiles, and the tiles' x0_hat are blended into one. The
sampler above it, DoSSR's or any other, still updates one full-size latent with
one noise field. A latent that fits in one tile is passed through untouched.
"""

from __future__ import annotations

from comfy_api.latest import io

import comfy.model_management as mm
import comfy.patcher_extension
import comfy.utils

from ..dossr_core.tiling import tile_grid, tiled_map
from .host_compat import schema
from .menu import CATEGORY, search_aliases

TILES_KEY = "dossr_tiles"
"""transformer_options key: the tiles (latent rectangles) of the batch being evaluated."""
WRAPPER_KEY = "dossr_tiled_sampling"
LATENT_SCALE = 8


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


def tiled_predict_noise(tile: int, overlap: int, tile_batch: int):
    """A PREDICT_NOISE wrapper running the guided prediction on latent tiles (sizes in latents)."""

    def wrapper(executor, x, timestep, model_options, seed):
        tiles = tile_grid(x.shape[-2], x.shape[-1], tile, overlap)
        if len(tiles) == 1:
            return executor(x, timestep, model_options, seed)
        progress = TileProgress(model_options, timestep[0], len(tiles))

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
            ],
            outputs=[io.Model.Output(tooltip="The same model, now sampling large images tile by tile: "
                                             "connect to DoSSR Sampler's model (or any sampler's).")],
        )

    @classmethod
    def execute(cls, model, tile_size, tile_overlap, tile_batch_size) -> io.NodeOutput:
        if tile_overlap >= tile_size:
            raise ValueError(f"DoSSR Tiled Sampling: tile_overlap ({tile_overlap}) must be smaller "
                             f"than tile_size ({tile_size}).")
        patched = model.clone()
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, WRAPPER_KEY,
                                     tiled_predict_noise(tile_size // LATENT_SCALE,
                                                         tile_overlap // LATENT_SCALE, tile_batch_size))
        return io.NodeOutput(patched)
