"""Each network a DoSSR prompt runs, timed on its own: the floor a pipeline's time can reach.

Used by bench/e2e.py after its server has stopped, with the same model files, image size,
device and attention setting, in its own process (the host imported by
tests/hostlib/inprocess.py). Every network runs once to warm up, then ``runs`` times; the
medians are returned, in seconds:

    rrdbnet        RRDBNet x4 on the LR image (whole)
    vae_encoder    the host's VAE encode of the x4 image (whole)
    hint_encoder   DoSSR's hint encoder on the x4 image (whole)
    eval_b{N}      one model evaluation at batch N: DoSSR ControlNet, then the host's SD UNet
                   with its residuals (N = 2 is a cfg > 1 evaluation, cond and uncond)
    vae_decoder    the host's VAE decode of the latent

A prompt's floor is ``encode + sum over its UNet calls of eval_b{batch} + decode``
(``floor_seconds``): the text encodes are cached, so they are in neither.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from tests.hostlib.inprocess import import_host, import_pack

TEXT_TOKENS, CONTEXT_DIM = 77, 1024
ENCODE = ("rrdbnet", "vae_encoder", "hint_encoder")


def median_seconds(fn, runs: int) -> float:
    fn()                                                            # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_networks(comfy: Path, sd_path: Path, dossr_path: Path, lr: int, batches, runs: int,
                  host_args=("--cpu",), grad_mode=None) -> dict[str, float]:
    """Median seconds of each network at LR side ``lr`` (output ``4 lr``), see the module doc.

    They run under ``torch.inference_mode()``, as the host's executor runs a prompt
    (``grad_mode``: another context manager factory, e.g. ``torch.no_grad``, to compare).
    """
    mm = import_host(comfy, host_args)
    import comfy.sd
    import torch

    device = mm.get_torch_device()
    model, _, vae = comfy.sd.load_checkpoint_guess_config(str(sd_path), output_vae=True,
                                                           output_clip=False)[:3]
    handle = import_pack("nodes.model").DoSSRModelHandle(str(dossr_path), torch.float32)
    mm.load_models_gpu([model, handle.control_patcher, handle.encoder_patcher])
    unet, dtype = model.model.diffusion_model, model.model.get_dtype()
    gen = torch.Generator().manual_seed(0)
    lr_image = torch.rand(1, 3, lr, lr, generator=gen).to(device)
    image = torch.rand(1, 3, 4 * lr, 4 * lr, generator=gen)
    latent = torch.randn(1, 4, lr // 2, lr // 2, generator=gen)

    def evaluation(batch):
        x = torch.randn(batch, 4, lr // 2, lr // 2, generator=gen).to(device, dtype)
        hint = torch.randn(1, 4, lr // 2, lr // 2, generator=gen).to(device, dtype)
        context = torch.randn(batch, TEXT_TOKENS, CONTEXT_DIM, generator=gen).to(device, dtype)
        t = torch.full((batch,), 499.0, device=device)

        def run():
            residuals = handle.controlnet(x, hint, t, context)
            control = {"input": [], "middle": [residuals[-1]], "output": list(residuals[:-1])}
            unet(x, timesteps=t, context=context, control=control)
        return run

    calls = {
        "rrdbnet": lambda: handle.preprocessor(lr_image),
        "vae_encoder": lambda: vae.encode(image.movedim(1, -1)),
        "hint_encoder": lambda: handle.hint_encoder(image.to(device)),
        **{f"eval_b{b}": evaluation(b) for b in sorted(set(batches))},
        "vae_decoder": lambda: vae.decode(latent),
    }
    with (grad_mode or torch.inference_mode)():
        return {name: median_seconds(fn, runs) for name, fn in calls.items()}


def floor_seconds(nets: dict[str, float], call_batches) -> dict[str, float]:
    """A prompt's network floor per stage (encode, sampler, decode) and in all (``total``)."""
    floor = {"encode": sum(nets[n] for n in ENCODE),
             "sampler": sum(nets[f"eval_b{b}"] for b in call_batches),
             "decode": nets["vae_decoder"]}
    floor["total"] = sum(floor.values())
    return floor
