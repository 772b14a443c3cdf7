"""DoSSR Color Fix: the decoded result takes its colors from the preprocessed LR image."""

from __future__ import annotations

from comfy_api.latest import io

from ..dossr_core.colorfix import COLOR_FIX_MODES, color_fix
from ..dossr_core.sizes import crop_padding
from .validation import check_choices, combos_only
from .host_compat import schema
from .menu import CATEGORY, search_aliases


@combos_only
class DoSSRColorFix(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="DoSSRColorFix",
            display_name="DoSSR Color Fix",
            category=CATEGORY,
            search_aliases=search_aliases("color fix", "colour fix", "color match", "wavelet"),
            description=("Corrects the color drift of the diffusion result against the restored "
                         "low-resolution image, and crops away the padding added for the sampler, so "
                         "the result has exactly the target size. Put it after VAE Decode."),
            inputs=[
                io.Image.Input("image", tooltip="The decoded DoSSR result (VAE Decode's output)."),
                io.Image.Input("reference", tooltip="The reference output of the same DoSSR LR Encode."),
                io.Combo.Input("mode", options=list(COLOR_FIX_MODES), default="wavelet",
                               tooltip="wavelet (recommended, the paper's): keeps the result's detail "
                                       "and takes the overall colors from the reference. adain: "
                                       "matches each color channel's average and contrast; try it if "
                                       "wavelet's colors look blotchy. none: no color change, only "
                                       "the crop."),
            ],
            outputs=[io.Image.Output(tooltip="The finished image at exactly the target size: connect "
                                             "to Save Image or Preview Image.")],
        )

    @classmethod
    def validate_inputs(cls, mode):
        return check_choices(mode=(mode, COLOR_FIX_MODES))

    @classmethod
    def execute(cls, image, reference, mode) -> io.NodeOutput:
        if reference.shape[0] not in (1, image.shape[0]):
            raise ValueError(f"DoSSR Color Fix: {image.shape[0]} images but {reference.shape[0]} "
                             f"references: give one reference, or one per image.")
        if image.shape[-1] != 3 or reference.shape[-1] != 3:
            raise ValueError("DoSSR Color Fix: image and reference must be RGB (3 channels).")
        pixels = crop_padding(image.movedim(-1, 1), *reference.shape[1:3])
        fixed = color_fix(pixels, reference.movedim(-1, 1), mode)
        return io.NodeOutput(fixed.clamp(0, 1).movedim(1, -1).contiguous())
