"""The DoSSR ControlNet as a host control object, so any host sampler can use it (DESIGN §5).

Attached to conditioning like a core ControlNet, it is called once per model
evaluation with the k-diffusion latent and sigma, and returns the 12 skip
residuals and the middle residual in the host's control format. The samplers
load and offload its network together with the UNet.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io

import comfy.controlnet

from .backbone import check_backbone
from .io_types import DoSSRHint, DoSSRModel
from .tiling import TILES_KEY
from .host_compat import schema
from .menu import CATEGORY, search_aliases


class DoSSRControl(comfy.controlnet.ControlBase):
    """ControlBase whose hint is a latent concatenated to x_t at the network's first conv."""

    def __init__(self, dossr_model):
        super().__init__()
        self.dossr_model = dossr_model
        self.model_sampling_current = None

    def copy(self):
        c = DoSSRControl(self.dossr_model)
        self.copy_to(c)
        return c

    def deepclone_multigpu(self, load_device, autoregister=False):
        """A copy with its own ControlNet on *load_device*, for hosts that split sampling over
        several GPUs ("MultiGPU CFG Split"); registered in ``multigpu_clones`` if asked."""
        c = self.copy()
        c.dossr_model = self.dossr_model.for_device(load_device)
        if autoregister:
            if not hasattr(self, "multigpu_clones"):
                self.multigpu_clones = {}
            self.multigpu_clones[load_device] = c
        return c

    def get_models(self):
        return super().get_models() + [self.dossr_model.control_patcher]

    def pre_run(self, model, percent_to_timestep_function):
        check_backbone(model, self.dossr_model)   # whichever sampler runs us
        super().pre_run(model, percent_to_timestep_function)
        self.model_sampling_current = model.model_sampling

    def cleanup(self):
        self.model_sampling_current = None
        super().cleanup()

    def hint_for(self, x_noisy: torch.Tensor, batched_number: int, transformer_options: dict) -> torch.Tensor:
        """The hint matching ``x_noisy``: same size, one per batch item (cond and uncond alike).

        Under DoSSR Tiled Sampling ``x_noisy`` holds tiles (tile-major), and the
        hint is cropped and stacked the same way.
        """
        hint = self.cond_hint_original
        tiles = transformer_options.get(TILES_KEY)
        per_tile = x_noisy.shape[0] // (batched_number * max(len(tiles or ()), 1))
        if hint.shape[0] not in (1, per_tile):
            raise ValueError(f"DoSSR: the latent has {per_tile} images but the hint has {hint.shape[0]}: "
                             f"use the latent and hint of the same DoSSR LR Encode.")
        if tiles:
            hint = torch.cat([t.of(hint).expand(per_tile, -1, -1, -1) if hint.shape[0] == 1 else t.of(hint)
                              for t in tiles])
        if hint.shape[-2:] != x_noisy.shape[-2:]:
            raise ValueError(f"DoSSR: the hint is {hint.shape[-1]}x{hint.shape[-2]} latents but the "
                             f"latent being sampled is {x_noisy.shape[-1]}x{x_noisy.shape[-2]}: feed "
                             f"the latent and hint of the same DoSSR LR Encode.")
        if hint.shape[0] != x_noisy.shape[0]:
            hint = comfy.controlnet.broadcast_image_to(hint, x_noisy.shape[0], batched_number)
        return hint.expand(x_noisy.shape[0], -1, -1, -1)

    def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
        control_prev = None
        if self.previous_controlnet is not None:
            control_prev = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number,
                                                                transformer_options)
        if self.timestep_range is not None and not self.timestep_range[1] <= t[0] <= self.timestep_range[0]:
            return control_prev
        net = self.dossr_model.controlnet
        dtype = self.dossr_model.dtype
        sampling = self.model_sampling_current
        x = sampling.calculate_input(t, x_noisy).to(dtype)
        hint = self.hint_for(x_noisy, batched_number, transformer_options).to(x.device, dtype)
        context = cond.get("crossattn_controlnet", cond["c_crossattn"]).to(x.device, dtype)
        residuals = net(x, hint, sampling.timestep(t), context, strength=1.0)
        control = {"input": [], "middle": residuals[-1:], "output": residuals[:-1]}
        return self.control_merge(control, control_prev, x_noisy.dtype)


def apply_dossr_control(positive, negative, dossr_model, hint, strength: float,
                        start_percent: float = 0.0, end_percent: float = 1.0):
    """Positive and negative conditioning with the DoSSR ControlNet attached (one shared object)."""
    if strength == 0:
        return positive, negative
    if hint.dim() != 4 or hint.shape[1] != dossr_model.config.controlnet["hint_channels"]:
        raise ValueError(f"DoSSR: the hint has shape {tuple(hint.shape)}; expected (B, "
                         f"{dossr_model.config.controlnet['hint_channels']}, H/8, W/8) from DoSSR LR Encode.")
    made = {}
    out = []
    for conditioning in (positive, negative):
        entries = []
        for embedding, options in conditioning:
            options = options.copy()
            previous = options.get("control", None)
            if previous not in made:
                control = DoSSRControl(dossr_model).set_cond_hint(hint, strength, (start_percent, end_percent))
                made[previous] = control.set_previous_controlnet(previous)
            options["control"] = made[previous]
            options["control_apply_to_uncond"] = False
            entries.append([embedding, options])
        out.append(entries)
    return out[0], out[1]


class DoSSRApplyControlNet(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="DoSSRApplyControlNet",
            display_name="DoSSR Apply ControlNet",
            category=CATEGORY,
            search_aliases=search_aliases("controlnet", "apply controlnet"),
            description=("Attaches the DoSSR ControlNet to conditioning, like the host's Apply "
                         "ControlNet, so any sampler (SamplerCustomAdvanced, KSampler) uses it."),
            inputs=[
                io.Conditioning.Input("positive", tooltip="Text conditioning of your SD 2.1-base CLIP."),
                io.Conditioning.Input("negative", tooltip="Used by the sampler only when cfg is not 1."),
                DoSSRModel.Input("dossr_model", tooltip="From DoSSR Model Loader."),
                DoSSRHint.Input("hint", tooltip="From DoSSR LR Encode."),
                io.Float.Input("strength", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="Scales every ControlNet residual; 1 is the paper's setting, "
                                       "0 turns the ControlNet off."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the sampling (0 = start) the ControlNet starts acting."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the sampling (1 = end) it stops."),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"),
                     io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def execute(cls, positive, negative, dossr_model, hint, strength, start_percent,
                end_percent) -> io.NodeOutput:
        return io.NodeOutput(*apply_dossr_control(positive, negative, dossr_model, hint, strength,
                                                  start_percent, end_percent))
