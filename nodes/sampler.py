"""DoS-SDE sampling inside the host's sampler machinery (DESIGN §5).

The host works in k-diffusion space, ``x_k = x_t / alpha_t`` with noise level
``s = sigma_t / alpha_t``, and its denoiser returns x0_hat. The DoSSR grid is
a list of such sigmas taken from the model's own table, so each maps back to
its integer timestep exactly; the solver itself is ``dossr_core``'s, run on
``x_t = alpha_t * x_k``. Like the paper, the result is x at timestep 0.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io

import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..dossr_core.sampling import CORRECTED_THIRD_ORDER, solve_dos
from ..dossr_core.schedule import T1, DomainShiftSchedule, respaced_timesteps
from .backbone import check_backbone
from .control import apply_dossr_control
from .io_types import DoSSRHint, DoSSRModel
from .validation import check_choices, combos_only
from .host_compat import schema
from .menu import CATEGORY, search_aliases

ORDER_CHOICES = ["1", "2", "3", CORRECTED_THIRD_ORDER]
MODES = ["sde", "ode"]
MAX_STEPS = T1 - 1
STEP_SEED_OFFSET = 0x9E3779B97F4A7C15
ORDER_TOOLTIP = ("How each step is worked out. 3 (recommended) is the paper's rule, the one the "
                 "released weights were tested with. 3-corrected follows the math more exactly; "
                 "worth a try when you use many steps (10 or more). 1 and 2 are simpler rules, "
                 "for comparison.")
ORDER_TOOLTIP_EXPERT = ("Solver order. 3 (default): the paper's published rule, whose D1 is a plain "
                        "backward difference, so it is second-order accurate; pick it to reproduce "
                        "the paper. 3-corrected: D1 corrected by D2, truly third order; try it with "
                        "many steps (10 or more), where the solver's accuracy weighs more than at "
                        "the paper's 5. 1, 2: lower orders, for "
                        "comparison. The first step is always order 1, the second at most 2.")
MODE_TOOLTIP = ("sde (recommended, the paper's): each step adds fresh noise drawn from the seed, so "
                "another seed gives slightly different fine detail. ode: no added noise; the same "
                "input always gives the same image, whatever the seed.")
MODE_TOOLTIP_EXPERT = ("sde: the paper's stochastic DoS-SDE solver. ode: its deterministic "
                       "probability-flow counterpart (not in the paper); it starts from xhat0 "
                       "itself, so the result does not depend on the seed.")
STEPS_TOOLTIP = ("How many steps: 5 for dossr_default (the paper's setting), 1 for dossr_onestep. "
                 "Each step runs the model once, so the time grows with the steps.")
STEPS_TOOLTIP_EXPERT = ("Model evaluations: 5 for dossr_default (the paper's), 1 for dossr_onestep. "
                        "steps + 1 timesteps respaced over 0..t1-1 (t1 = 500), e.g. 5 steps: "
                        "499, 399, 299, 200, 100, 0; the model runs at all but the last.")


def dossr_sigmas(model_sampling, steps: int) -> torch.Tensor:
    """The paper's timestep grid as host sigmas, largest first, ending at timestep 0 (not 0)."""
    timesteps = respaced_timesteps(steps)[::-1]
    return model_sampling.sigmas[timesteps].float().cpu()


def sigmas_to_timesteps(model_sampling, sigmas: torch.Tensor) -> list[int]:
    """The integer timestep of every sigma; ValueError unless they are a DoSSR-usable grid."""
    problem = None
    timesteps = [int(round(float(model_sampling.timestep(s)))) for s in sigmas]
    if len(timesteps) < 2:
        problem = "at least two sigmas are needed"
    elif any(a <= b for a, b in zip(timesteps, timesteps[1:])):
        problem = "they must decrease strictly"
    elif timesteps[0] >= T1:
        problem = f"they start at timestep {timesteps[0]}, at or beyond t1={T1} where the shift is complete"
    else:
        table = model_sampling.sigmas[timesteps].to(sigmas)
        if not torch.allclose(table, sigmas, rtol=1e-4, atol=0):
            problem = "some are not on the model's own sigma table (or a final 0 was appended)"
    if problem is not None:
        raise ValueError(f"DoSSR sampler: unusable sigmas ({problem}): use the DoSSR Sigmas node. "
                         f"Got {[round(float(s), 4) for s in sigmas]}.")
    return timesteps


def step_seed(seed: int) -> int:
    """The seed of the per-step noise, kept apart from the start noise the host draws from ``seed``."""
    return (int(seed) + STEP_SEED_OFFSET) % 2 ** 64


@torch.no_grad()
def sample_dossr(model, x, sigmas, extra_args=None, callback=None, disable=None, order="3", ode=False):
    """Host sampler function: DoS-SDE (or ODE) from the LR latent the guider was given."""
    extra_args = {} if extra_args is None else extra_args
    check_backbone(model.inner_model.model_patcher)
    model_sampling = model.inner_model.model_patcher.get_model_object("model_sampling")
    schedule = DomainShiftSchedule.from_timesteps(sigmas_to_timesteps(model_sampling, sigmas))
    xhat0 = getattr(model, "latent_image", None)
    if xhat0 is None or not torch.count_nonzero(xhat0):
        raise ValueError("DoSSR sampler: the latent input must be the LATENT of DoSSR LR Encode "
                         "(sampling starts from the low-resolution image, not an empty latent).")
    alpha = schedule.alpha.flip(0).tolist()          # largest timestep first, like sigmas
    s_in = x.new_ones([x.shape[0]])

    def denoiser(x_t, t):
        i = step_of[int(t[0])]
        return model(x_t / alpha[i], sigmas[i] * s_in, **extra_args)

    def on_step(i, total, x_t, x0_hat):
        if callback is not None:
            callback({"i": i, "x": x_t / alpha[i], "denoised": x0_hat, "sigma": sigmas[i],
                      "sigma_hat": sigmas[i]})

    step_of = {t: i for i, t in enumerate(schedule.timesteps.flip(0).tolist())}
    generator = None
    if extra_args.get("seed") is not None:
        generator = torch.Generator("cpu").manual_seed(step_seed(extra_args["seed"]))
    start = alpha[0] * (xhat0 if ode else x)
    return solve_dos(denoiser, start, xhat0.to(x), schedule, order, generator=generator, ode=ode,
                     callback=on_step)


def check_solver_choices(order: str, mode: str):
    return check_choices(order=(order, ORDER_CHOICES), mode=(mode, MODES))


def dossr_sampler(order: str, mode: str):
    return comfy.samplers.KSAMPLER(sample_dossr, extra_options={"order": order, "ode": mode == "ode"})


class DoSSRSigmas(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="DoSSRSigmas",
            display_name="DoSSR Sigmas",
            category=CATEGORY,
            search_aliases=search_aliases("sigmas", "scheduler"),
            description=("The DoSSR timestep grid (steps + 1 timesteps below t1 = 500, where the "
                         "domain shift is complete) as SIGMAS for SamplerCustom/SamplerCustomAdvanced. "
                         "Sampling starts half-way, from the low-resolution image, so half of the "
                         "usual trajectory is skipped. Use it with DoSSR SDE Sampler."),
            inputs=[io.Model.Input("model", tooltip="Your SD 2.1-base MODEL (512 px, eps prediction): "
                                                    "the sigmas are its own table values, so each "
                                                    "maps back to its exact timestep."),
                    io.Int.Input("steps", default=5, min=1, max=MAX_STEPS, tooltip=STEPS_TOOLTIP_EXPERT)],
            outputs=[io.Sigmas.Output(tooltip="The DoSSR sigmas, largest first, ending at timestep 0 "
                                              "(not at sigma 0): connect to SamplerCustomAdvanced's "
                                              "sigmas, with DoSSR SDE Sampler as its sampler (other "
                                              "samplers do not undo the domain shift).")],
        )

    @classmethod
    def execute(cls, model, steps) -> io.NodeOutput:
        check_backbone(model)
        return io.NodeOutput(dossr_sigmas(model.get_model_object("model_sampling"), steps))


@combos_only
class DoSSRSamplerSelect(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="DoSSRSamplerSelect",
            display_name="DoSSR SDE Sampler",
            category=CATEGORY,
            search_aliases=search_aliases("sampler", "sde", "ode"),
            description=("The DoS-SDE solver as a SAMPLER for SamplerCustom/SamplerCustomAdvanced; "
                         "use it with DoSSR Sigmas, DoSSR Apply ControlNet and a latent from DoSSR "
                         "LR Encode."),
            inputs=[io.Combo.Input("order", options=ORDER_CHOICES, default="3", tooltip=ORDER_TOOLTIP_EXPERT),
                    io.Combo.Input("mode", options=MODES, default="sde", tooltip=MODE_TOOLTIP_EXPERT)],
            outputs=[io.Sampler.Output(tooltip="The DoSSR solver: connect to SamplerCustomAdvanced's "
                                               "sampler. Its latent must be DoSSR LR Encode's (xhat0, "
                                               "where sampling starts) and its sigmas DoSSR Sigmas'.")],
        )

    @classmethod
    def validate_inputs(cls, order, mode):
        return check_solver_choices(order, mode)

    @classmethod
    def execute(cls, order, mode) -> io.NodeOutput:
        return io.NodeOutput(dossr_sampler(order, mode))


@combos_only
class DoSSRSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="DoSSRSampler",
            display_name="DoSSR Sampler",
            category=CATEGORY,
            search_aliases=search_aliases("sampler", "ksampler", "diffusion upscale"),
            description=("Upscales: starts from the prepared low-resolution image and adds detail in "
                         "a few steps, with the DoSSR ControlNet steering your Stable Diffusion "
                         "2.1-base model. The same as DoSSR Apply ControlNet + DoSSR Sigmas + DoSSR "
                         "SDE Sampler in SamplerCustomAdvanced."),
            inputs=[
                io.Model.Input("model", tooltip="Your Stable Diffusion 2.1-base model, the 512 px "
                                                "version (v2-1_512-ema-pruned), from Load Checkpoint. "
                                                "Other models are refused with a message."),
                DoSSRModel.Input("dossr_model", tooltip="From DoSSR Model Loader."),
                io.Conditioning.Input("positive", tooltip="The text prompt (CLIP Text Encode). The paper "
                                                          "uses \"clean, high-resolution, 8k\"."),
                io.Conditioning.Input("negative", tooltip="What to avoid. Only used when cfg is not 1 "
                                                          "(at 1, the default, it is skipped)."),
                io.Latent.Input("latent", tooltip="The latent output of DoSSR LR Encode."),
                DoSSRHint.Input("hint", tooltip="The hint output of the same DoSSR LR Encode."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="The random noise of the steps: another seed gives slightly "
                                     "different fine detail, the same seed the same image on every "
                                     "computer. Has no effect in ode mode."),
                io.Int.Input("steps", default=5, min=1, max=MAX_STEPS, tooltip=STEPS_TOOLTIP),
                io.Combo.Input("order", options=ORDER_CHOICES, default="3", tooltip=ORDER_TOOLTIP),
                io.Combo.Input("mode", options=MODES, default="sde", tooltip=MODE_TOOLTIP),
                io.Float.Input("cfg", default=1.0, min=0.0, max=30.0, step=0.1, round=0.01,
                               tooltip="How strongly the prompts steer the result. 1 (the paper's, "
                                       "recommended) ignores the negative prompt and is twice as "
                                       "fast; higher values follow the prompts more and risk "
                                       "artifacts."),
                io.Float.Input("control_strength", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="How closely the result keeps to the low-resolution image. 1 is "
                                       "the paper's setting; lower values let the model invent more "
                                       "(and drift from the original); 0 ignores the image."),
            ],
            outputs=[io.Latent.Output(tooltip="The upscaled latent: connect to VAE Decode, then to "
                                              "DoSSR Color Fix.")],
        )

    @classmethod
    def validate_inputs(cls, order, mode):
        return check_solver_choices(order, mode)

    @classmethod
    def execute(cls, model, dossr_model, positive, negative, latent, hint, seed, steps, order, mode,
                cfg, control_strength) -> io.NodeOutput:
        check_backbone(model, dossr_model)
        samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        positive, negative = apply_dossr_control(positive, negative, dossr_model, hint, control_strength)
        sigmas = dossr_sigmas(model.get_model_object("model_sampling"), steps)
        noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
        x0_output = {}
        callback = latent_preview.prepare_callback(model, steps, x0_output)
        out = comfy.sample.sample_custom(model, noise, cfg, dossr_sampler(order, mode), sigmas,
                                         positive, negative, samples, noise_mask=latent.get("noise_mask"),
                                         callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
                                         seed=seed)
        result = latent.copy()
        result["samples"] = out
        return io.NodeOutput(result)
