"""Test-only ComfyUI node pack (V1 registration), linked into the test server's custom_nodes
as ``dossr_test_probes``. Never shipped to users.

``DoSSRTestCountUNet`` (MODEL -> MODEL) clones the model patcher and adds a DIFFUSION_MODEL
wrapper that appends one JSON line per UNet forward to ``log_path``::

    {"batch": 2, "shape": [2, 4, 8, 8], "timestep": 999.0, "cond_or_uncond": [1, 0],
     "control": {"input": 0, "middle": 1, "output": 12} | null, "pid": 1234}

so a test process can count model evaluations, their batch sizes and whether a ControlNet
residual dict reached the UNet.

``DoSSRTestStall`` (IMAGE -> IMAGE) passes its image on after ``seconds``, reporting
progress every ``progress_every`` seconds (0: never) and stopping at an interruption, so the
client's stall timeout can be tested on the real server.

``DoSSRTestProbeLoading`` (DOSSR_MODEL, CONDITIONING) writes a JSON report of where the DoSSR
networks' weights are after the host loads them (also under a partial load towards another
device) and of the control object's multi-GPU clone.
"""

import json
import os
import time

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


def _devices(module) -> list[str]:
    return sorted({str(p.device) for p in module.parameters()} | {str(b.device) for b in module.buffers()})


def _loading_report(patcher) -> dict:
    """How a DoSSR patcher behaves under the host's loading: a real ``load_models_gpu``, and
    a partial load / unload towards a load device that differs from the offload device
    ("meta": nothing is computed, so a CPU machine can tell the two devices apart)."""
    import copy

    import torch

    import comfy.model_management as mm
    import comfy.model_patcher

    mm.load_models_gpu([patcher])
    report = {"class": type(patcher).__name__, "load_device": str(patcher.load_device),
              "after_load_models_gpu": _devices(patcher.model),
              "loaded_size": patcher.loaded_size(), "model_size": patcher.model_size()}
    meta, cpu = torch.device("meta"), torch.device("cpu")
    for name, cls in (("ours", type(patcher)), ("plain", comfy.model_patcher.ModelPatcher)):
        # load towards meta, where the host found room for one byte only
        twin = cls(copy.deepcopy(patcher.model).to(cpu), load_device=meta, offload_device=cpu)
        twin.partially_load(meta, extra_memory=1)
        report[f"{name}_partial_load"] = _devices(twin.model)
        # loaded whole on the CPU, then the host asks for one byte back (offload: meta)
        twin = cls(copy.deepcopy(patcher.model).to(cpu), load_device=cpu, offload_device=cpu)
        twin.partially_load(cpu, extra_memory=1e32)
        twin.offload_device = meta
        twin.partially_unload(meta, memory_to_free=1)
        report[f"{name}_partial_unload"] = _devices(twin.model)
    return report


def _multigpu_report(conditioning) -> dict:
    import torch

    control = conditioning[0][1]["control"]
    meta = torch.device("meta")
    clone = control.deepclone_multigpu(meta, autoregister=True)
    ours, theirs = control.dossr_model, clone.dossr_model
    return {
        "class": type(clone).__name__,
        "registered": getattr(control, "multigpu_clones", {}).get(meta) is clone,
        "clone_load_device": str(theirs.control_patcher.load_device),
        "original_load_device": str(ours.control_patcher.load_device),
        "own_network": theirs.controlnet is not ours.controlnet,
        "same_weights": all(torch.equal(a, b) for a, b in zip(theirs.controlnet.state_dict().values(),
                                                               ours.controlnet.state_dict().values())),
        "same_hint": clone.cond_hint_original is control.cond_hint_original,
        "same_strength": clone.strength == control.strength,
        "clone_models_devices": [str(m.load_device) for m in clone.get_models()],
    }


class DoSSRTestProbeLoading:
    """Writes how the DoSSR patchers load and how the control object clones for multi-GPU."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "dossr_model": ("DOSSR_MODEL",),
            "positive": ("CONDITIONING", {"tooltip": "conditioning with the DoSSR ControlNet attached"}),
            "log_path": ("STRING", {"default": ""}),
        }}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "probe"
    CATEGORY = "testing/dossr"
    DESCRIPTION = "Test probe: reports DoSSR model loading and multi-GPU cloning as JSON."

    def probe(self, dossr_model, positive, log_path):
        report = {"control": _loading_report(dossr_model.control_patcher),
                  "encoders": _loading_report(dossr_model.encoder_patcher),
                  "multigpu": _multigpu_report(positive)}
        with open(log_path, "w") as f:
            json.dump(report, f)
        return ()


class DoSSRTestStall:
    """Holds the prompt for a while, with or without progress messages."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",),
            "seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0}),
            "progress_every": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 3600.0,
                                         "tooltip": "seconds between progress updates; 0: none"}),
            "nonce": ("STRING", {"default": "", "tooltip": "a new value defeats the cache"}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "stall"
    CATEGORY = "testing/dossr"
    DESCRIPTION = "Test probe: passes the image on after a delay, optionally reporting progress."

    @classmethod
    def IS_CHANGED(cls, nonce, **kwargs):
        return nonce

    def stall(self, image, seconds, progress_every, nonce):
        import comfy.model_management as mm
        import comfy.utils

        ticks = int(seconds / progress_every) if progress_every > 0 else 0
        bar = comfy.utils.ProgressBar(max(ticks, 1))
        start = time.monotonic()
        done = 0
        while time.monotonic() - start < seconds:
            mm.throw_exception_if_processing_interrupted()
            time.sleep(0.02)
            if ticks and done < ticks and time.monotonic() - start >= (done + 1) * progress_every:
                done += 1
                bar.update_absolute(done, ticks)
        return (image,)


NODE_CLASS_MAPPINGS = {"DoSSRTestCountUNet": DoSSRTestCountUNet,
                       "DoSSRTestProbeLoading": DoSSRTestProbeLoading,
                       "DoSSRTestStall": DoSSRTestStall}
NODE_DISPLAY_NAME_MAPPINGS = {"DoSSRTestCountUNet": "DoSSR test: count UNet calls",
                              "DoSSRTestProbeLoading": "DoSSR test: probe model loading",
                              "DoSSRTestStall": "DoSSR test: stall"}
