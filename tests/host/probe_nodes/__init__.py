"""Test-only ComfyUI node pack (V1 registration), linked into the test server's custom_nodes
as ``dossr_test_probes``. Never shipped to users.

``DoSSRTestCountUNet`` (MODEL -> MODEL) clones the model patcher and adds a DIFFUSION_MODEL
wrapper that appends one JSON line per UNet forward to ``log_path``::

    {"batch": 2, "shape": [2, 4, 8, 8], "timestep": 999.0, "cond_or_uncond": [1, 0],
     "control": {"input": 0, "middle": 1, "output": 12} | null, "pid": 1234}

so a test process can count model evaluations, their batch sizes and whether a ControlNet
residual dict reached the UNet.
"""

import json
import os

WRAPPER_KEY = "dossr_test_count_unet"


def _summarise_control(control):
    if control is None:
        return None
    if isinstance(control, dict):
        return {k: len(v) if isinstance(v, (list, tuple)) else None for k, v in control.items()}
    return type(control).__name__


def make_counting_wrapper(log_path: str):
    """A DIFFUSION_MODEL wrapper: ``fn(executor, x, timesteps, context, y, control,
    transformer_options, **kwargs)``; records the call, then continues the chain."""

    def count_unet(executor, x, *args, **kwargs):
        timesteps = args[0] if args else kwargs.get("timesteps")
        control = args[3] if len(args) > 3 else kwargs.get("control")
        topts = args[4] if len(args) > 4 else kwargs.get("transformer_options", {})
        record = {
            "batch": int(x.shape[0]),
            "shape": [int(s) for s in x.shape],
            "timestep": float(timesteps.reshape(-1)[0]) if timesteps is not None else None,
            "cond_or_uncond": list((topts or {}).get("cond_or_uncond", []) or []),
            "control": _summarise_control(control),  # before the UNet pops the lists
            "pid": os.getpid(),
        }
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        return executor(x, *args, **kwargs)

    return count_unet


class DoSSRTestCountUNet:
    """Counts UNet forward calls (and their batch sizes) into a JSON-lines file."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "log_path": ("STRING", {"default": "", "tooltip": "file to append one JSON line per UNet call to"}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "testing/dossr"
    DESCRIPTION = "Test probe: logs every UNet forward call (batch size, timestep) to a file."

    def patch(self, model, log_path):
        import comfy.patcher_extension

        if not log_path:
            raise ValueError("DoSSRTestCountUNet needs a log_path")
        m = model.clone()
        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY,
                               make_counting_wrapper(os.path.abspath(log_path)))
        return (m,)


NODE_CLASS_MAPPINGS = {"DoSSRTestCountUNet": DoSSRTestCountUNet}
NODE_DISPLAY_NAME_MAPPINGS = {"DoSSRTestCountUNet": "DoSSR test: count UNet calls"}
