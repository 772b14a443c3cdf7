"""API-format prompts that run the DoSSR nodes on the fake models (shared by the host tests).

Node ids are readable names (the server accepts any string id), so ``node_errors`` and
``execution_error`` can be checked against them:

``load``     LoadImage of the LR image (``image``: a name in the server's input dir)
``lr``       the LR IMAGE actually fed on: ``load`` or a batch node built on it
``ckpt``     CheckpointLoaderSimple (SD2 backbone, its CLIP and VAE)
``count``    DoSSRTestCountUNet (only with ``count_log``)
``pos`` ``neg``  CLIPTextEncode
``dossr``    DoSSRModelLoader
``encode``   DoSSRLREncode (outputs: 0 latent, 1 reference, 2 hint)
``sampler``  DoSSRSampler, or with ``composed=True``: ``apply`` (DoSSRApplyControlNet),
             ``guider`` (CFGGuider), ``noise`` (RandomNoise), ``select`` (DoSSRSamplerSelect),
             ``sigmas`` (DoSSRSigmas) and ``sampler`` (SamplerCustomAdvanced)
``decode``   VAEDecode, ``fix`` DoSSRColorFix, ``save`` SaveImage, ``save_latent`` SaveLatent
"""

from __future__ import annotations

from tests.host.conftest import DOSSR_MINI, SD2_MINI

PAPER_PROMPT = "clean, high-resolution, 8k"
SAMPLER = "sampler"   # the id of the node that samples, in both graph shapes


def dossr_prompt(image: str, *, scale: float = 4.0, preprocess: str = "rrdbnet", seed: int = 0,
                 steps: int = 5, order: str = "3", mode: str = "sde", cfg: float = 1.0,
                 strength: float = 1.0, color_fix: str = "wavelet", composed: bool = False,
                 repeat: int = 1, count_log=None, prefix: str = "dossr_test",
                 save_latent: bool = False, ckpt: str = SD2_MINI, dossr: str = DOSSR_MINI,
                 dtype: str = "auto") -> dict:
    """LoadImage -> [RepeatImageBatch] -> DoSSRLREncode -> DoSSR sampling -> VAEDecode ->
    DoSSRColorFix -> SaveImage (and SaveLatent of the sampled latent if *save_latent*)."""
    model = ["ckpt", 0]
    prompt = {
        "load": {"class_type": "LoadImage", "inputs": {"image": image}},
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": PAPER_PROMPT, "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
        "dossr": {"class_type": "DoSSRModelLoader", "inputs": {"model_name": dossr, "dtype": dtype}},
    }
    lr = ["load", 0]
    if repeat != 1:
        prompt["lr"] = {"class_type": "RepeatImageBatch", "inputs": {"image": lr, "amount": repeat}}
        lr = ["lr", 0]
    if count_log is not None:
        prompt["count"] = {"class_type": "DoSSRTestCountUNet",
                           "inputs": {"model": model, "log_path": str(count_log)}}
        model = ["count", 0]
    prompt["encode"] = {"class_type": "DoSSRLREncode", "inputs": {
        "image": lr, "dossr_model": ["dossr", 0], "vae": ["ckpt", 2], "scale": scale,
        "preprocess": preprocess}}
    if composed:
        prompt.update({
            "apply": {"class_type": "DoSSRApplyControlNet", "inputs": {
                "positive": ["pos", 0], "negative": ["neg", 0], "dossr_model": ["dossr", 0],
                "hint": ["encode", 2], "strength": strength, "start_percent": 0.0,
                "end_percent": 1.0}},
            "guider": {"class_type": "CFGGuider", "inputs": {
                "model": model, "positive": ["apply", 0], "negative": ["apply", 1], "cfg": cfg}},
            "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
            "select": {"class_type": "DoSSRSamplerSelect", "inputs": {"order": order, "mode": mode}},
            "sigmas": {"class_type": "DoSSRSigmas", "inputs": {"model": model, "steps": steps}},
            SAMPLER: {"class_type": "SamplerCustomAdvanced", "inputs": {
                "noise": ["noise", 0], "guider": ["guider", 0], "sampler": ["select", 0],
                "sigmas": ["sigmas", 0], "latent_image": ["encode", 0]}},
        })
    else:
        prompt[SAMPLER] = {"class_type": "DoSSRSampler", "inputs": {
            "model": model, "dossr_model": ["dossr", 0], "positive": ["pos", 0],
            "negative": ["neg", 0], "latent": ["encode", 0], "hint": ["encode", 2], "seed": seed,
            "steps": steps, "order": order, "mode": mode, "cfg": cfg,
            "control_strength": strength}}
    prompt["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": [SAMPLER, 0], "vae": ["ckpt", 2]}}
    prompt["fix"] = {"class_type": "DoSSRColorFix", "inputs": {
        "image": ["decode", 0], "reference": ["encode", 1], "mode": color_fix}}
    prompt["save"] = {"class_type": "SaveImage", "inputs": {"images": ["fix", 0], "filename_prefix": prefix}}
    if save_latent:
        prompt["save_latent"] = {"class_type": "SaveLatent", "inputs": {
            "samples": [SAMPLER, 0], "filename_prefix": f"latents/{prefix}"}}
    return prompt


def upscale_with_loader_prompt(image: str, prefix: str, dossr: str = DOSSR_MINI) -> dict:
    """DoSSRModelLoader's UPSCALE_MODEL -> core ImageUpscaleWithModel -> SaveImage."""
    return {
        "load": {"class_type": "LoadImage", "inputs": {"image": image}},
        "dossr": {"class_type": "DoSSRModelLoader", "inputs": {"model_name": dossr, "dtype": "auto"}},
        "up": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["dossr", 1],
                                                                 "image": ["load", 0]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["up", 0], "filename_prefix": prefix}},
    }


def one_file(prompt: dict, release: str) -> dict:
    """*prompt* with its CheckpointLoaderSimple + DoSSRModelLoader pair replaced by one
    DoSSRCheckpointLoader reading *release* (same node id ``ckpt``; DOSSR_MODEL at output 3)."""
    out = {}
    for node_id, node in prompt.items():
        if node["class_type"] == "DoSSRModelLoader":
            continue
        node = {"class_type": node["class_type"], "inputs": dict(node["inputs"])}
        for name, value in node["inputs"].items():
            if isinstance(value, list) and value and prompt.get(value[0], {}).get("class_type") == "DoSSRModelLoader":
                node["inputs"][name] = ["ckpt", 3 + value[1]]
        out[node_id] = node
    dtype = prompt.get("dossr", {}).get("inputs", {}).get("dtype", "auto")
    out["ckpt"] = {"class_type": "DoSSRCheckpointLoader", "inputs": {"ckpt_name": release, "dtype": dtype}}
    return out
