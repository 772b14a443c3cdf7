"""DoSSR Checkpoint Loader: one DoSSR release file is the whole model.

The authors' release files carry the untouched SD 2.1-base UNet, VAE and text
encoder beside the DoSSR parts. This node reads the file once and gives the
host's own MODEL, CLIP and VAE, built from those tensors by the host's checkpoint
function (as *Load Checkpoint* builds them, so LoRAs, attention options, precision
and offloading behave the same), plus DOSSR_MODEL and UPSCALE_MODEL.
"""

from __future__ import annotations

import comfy.model_management as mm
import comfy.sd
import folder_paths
from comfy_api.latest import io

from ..dossr_core.checkpoint import CheckpointError, dossr_from_tensors
from ..dossr_core.release import read_release
from .backbone import check_backbone
from .host_compat import schema
from .menu import CATEGORY, search_aliases
from .model import (DTYPES, DoSSRModelHandle, _validate_model_name, check_file_and_dtype,
                    dossr_outputs, file_and_dtype, model_files, upscale_model_from)
from .validation import HOST_CHECKS_COMBOS


def backbone_from_tensors(path: str, backbone: dict):
    """The host's (MODEL, CLIP, VAE) from a release file's LDM-named SD tensors."""
    out = comfy.sd.load_state_dict_guess_config(
        backbone, output_vae=True, output_clip=True,
        embedding_directory=folder_paths.get_folder_paths("embeddings"))
    if out is None:
        raise ValueError(f"DoSSR: the Stable Diffusion tensors in {path} are not a model the host "
                         f"recognises; the file is damaged or not a DoSSR release file")
    return out[:3]


def load_release(path: str, dtype):
    """(MODEL, CLIP, VAE, DoSSRModelHandle) from one read of *path*.

    The backbone is built first: the host copies its tensors into its own models, and
    their pages go back to the system before the DoSSR networks take theirs."""
    try:
        dossr, backbone = read_release(path)
    except CheckpointError as err:
        raise ValueError(f"DoSSR: {err}") from None
    model, clip, vae = backbone_from_tensors(path, backbone)
    del backbone
    try:
        loaded = dossr_from_tensors(path, dossr, device=mm.unet_offload_device(), dtype=dtype)
    except CheckpointError as err:
        raise ValueError(f"DoSSR: {err}") from None
    handle = DoSSRModelHandle(path, loaded.config.dtype, loaded=loaded)
    check_backbone(model, handle)
    return model, clip, vae, handle


class DoSSRCheckpointLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="DoSSRCheckpointLoader",
            display_name="DoSSR Checkpoint Loader (one file)",
            category=CATEGORY,
            search_aliases=search_aliases("loader", "load checkpoint", "checkpoint", "one file"),
            description=("Loads everything DoSSR needs from one DoSSR release file "
                         "(dossr_default.ckpt or dossr_onestep.ckpt): the Stable Diffusion 2.1-base "
                         "model, text encoder and VAE inside it, and the DoSSR parts. No separate "
                         "Stable Diffusion download is needed."),
            inputs=[
                io.Combo.Input("ckpt_name", options=model_files(),
                               tooltip="A full DoSSR release file from models/dossr (or "
                                       "models/checkpoints): dossr_default.ckpt for 5-step "
                                       "sampling, dossr_onestep.ckpt for one step, or a one-file "
                                       ".safetensors made from them by the converter. A small "
                                       "DoSSR-only file needs the two-file workflow instead."),
                io.Combo.Input("dtype", options=["auto", *DTYPES], default="auto",
                               tooltip="Precision of the DoSSR networks. auto follows the host's "
                                       "choice for the model on this device (fp32 on CPU). The "
                                       "Stable Diffusion parts follow the host's usual choice."),
            ],
            outputs=[
                io.Model.Output("model", display_name="MODEL",
                                tooltip="Stable Diffusion 2.1-base from the file: connect to the "
                                        "DoSSR Sampler (LoRAs and model patches work as usual)."),
                io.Clip.Output("clip", display_name="CLIP",
                               tooltip="The text encoder from the file, for the prompt nodes."),
                io.Vae.Output("vae", display_name="VAE",
                              tooltip="The VAE from the file, for DoSSR LR Encode and VAE Decode."),
                *dossr_outputs(),
            ],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name, dtype):
        return check_file_and_dtype(ckpt_name, dtype)

    @classmethod
    def execute(cls, ckpt_name, dtype) -> io.NodeOutput:
        model, clip, vae, handle = load_release(*file_and_dtype(ckpt_name, dtype))
        return io.NodeOutput(model, clip, vae, handle, upscale_model_from(handle))


def _validate_ckpt_name(cls, ckpt_name):
    """The file check of DoSSR Model Loader, for this node's input name."""
    return _validate_model_name(cls, ckpt_name)


if HOST_CHECKS_COMBOS:
    DoSSRCheckpointLoader.validate_inputs = classmethod(_validate_ckpt_name)
