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

from ..dossr_core.control_range import sigma_range, timestep_range
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
        """As the host's, but the percent range runs over the DoSSR steps (below t1), not
        over the host's whole 0..999 schedule (see ``dossr_core.control_range``)."""
        check_backbone(model, self.dossr_model)   # whichever sampler runs us
        super().pre_run(model, percent_to_timestep_function)
        sampling = model.model_sampling
        self.timestep_range = sigma_range(*self.timestep_percent_range,
                                          lambda t: sampling.sigma(torch.tensor(t)).item())
        self.model_sampling_current = sampling

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
                         "ControlNet, so any sampler (SamplerCustomAdvanced, KSampler) uses it. "
                         "start_percent/end_percent run over the DoSSR steps: 0 = the first step, "
                         "1 = the end of sampling."),
            inputs=[
                io.Conditioning.Input("positive", tooltip="Text conditioning from CLIP Text Encode with "
                                                          "your SD 2.1-base CLIP. The paper's prompt: "
                                                          "\"clean, high-resolution, 8k\"."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning; the sampler uses it only "
                                                          "when cfg is not 1."),
                DoSSRModel.Input("dossr_model", tooltip="From DoSSR Model Loader."),
                DoSSRHint.Input("hint", tooltip="The hint output of DoSSR LR Encode (the hint encoder's "
                                                "latent of the preprocessed image)."),
                io.Float.Input("strength", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="Scales every ControlNet residual. 1 is the paper's setting; lower "
                                       "keeps less closely to the low-resolution image; 0 turns the "
                                       "ControlNet off."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the DoSSR steps the ControlNet starts acting: 0 = the "
                                       "first step (timestep t1 - 1 = 499), 1 = the end (timestep 0). "
                                       "Not the host's full 0..999 scale: step k of n sits at k/n "
                                       "(5 steps: 0, 0.2, 0.4, 0.6, 0.8). Keep 0 for the paper's result."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the DoSSR steps it stops acting (inclusive), on the "
                                       "same scale: 1 = through the last step. E.g. start 0.5, end 1 "
                                       "controls the second half (5 steps: the last two). Must not be "
                                       "below start_percent."),
            ],
            outputs=[io.Conditioning.Output(display_name="positive",
                                            tooltip="The positive conditioning with the DoSSR "
                                                    "ControlNet attached: "
                                                    "connect to CFGGuider (or any sampler's positive)."),
                     io.Conditioning.Output(display_name="negative",
                                            tooltip="The negative conditioning, sharing the same "
                                                    "ControlNet so cond "
                                                    "and uncond run in one batch: connect to the "
                                                    "guider's negative.")],
        )

    @classmethod
    def execute(cls, positive, negative, dossr_model, hint, strength, start_percent,
                end_percent) -> io.NodeOutput:
        try:
            timestep_range(start_percent, end_percent)
        except ValueError as err:
            raise ValueError(f"DoSSR Apply ControlNet: {err}") from None
        return io.NodeOutput(*apply_dossr_control(positive, negative, dossr_model, hint, strength,
                                                  start_percent, end_percent))
