"""DoSSR Model Loader: the DoSSR parts as host-managed models.

Weights come from ``models/dossr`` (registered with the host's folder registry,
so ``extra_model_paths.yaml`` entries named ``dossr`` work) or from
``models/checkpoints``, where users often keep the released ``.ckpt`` files.
"""

from __future__ import annotations

import copy
import logging
import os

import torch
from comfy_api.latest import io

import comfy.model_management as mm
import folder_paths

from ..dossr_core.checkpoint import CheckpointError, DoSSRConfig, load_dossr
from ..dossr_core.checkpoint import DoSSRModel as DoSSRNetworks
from .host_compat import new_patcher, schema
from .io_types import DoSSRModel
from .validation import HOST_CHECKS_COMBOS, check_choices
from .menu import CATEGORY, search_aliases

FOLDER = "dossr"
SEARCHED = (FOLDER, "checkpoints")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def register_folder() -> None:
    """Add ``models/dossr`` to the host's registry, listing checkpoint files only."""
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))
    paths, _ = folder_paths.folder_names_and_paths[FOLDER]
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(folder_paths.supported_pt_extensions))


def model_files() -> list[str]:
    """Files of ``models/dossr`` first, then those of ``models/checkpoints``."""
    names = []
    for folder in SEARCHED:
        names += [n for n in folder_paths.get_filename_list(folder) if n not in names]
    return names


def find_model_file(name: str) -> str | None:
    for folder in SEARCHED:
        path = folder_paths.get_full_path(folder, name)
        if path is not None:
            return path
    return None


RELEASE = "https://drive.google.com/drive/folders/1BTGRbAqXDSNWjyUnTLgDfmjd2xyu8GvP"


def missing_file_message(name: str) -> str:
    searched = [p for folder in SEARCHED for p in folder_paths.get_folder_paths(folder)]
    return (f"DoSSR model file '{name}' was not found. Searched: {', '.join(searched)}. Put "
            f"dossr_default.ckpt (or its converted .safetensors) into {searched[0]} and refresh "
            f"the editor (press R). To fetch and check it, run `python -m dossr_core.fetch default` "
            f"in the pack's folder; the authors' Google Drive folder is the only source "
            f"({RELEASE}), and any copy of the .ckpt works.")


class DoSSRModelHandle:
    """What a DOSSR_MODEL socket carries: the networks and their host ModelPatchers.

    The ControlNet's patcher is loaded and offloaded with the UNet by the host's
    samplers (through the control object's ``get_models``); the encoders'
    patcher is loaded by the LR Encode node.
    """

    def __init__(self, path: str, dtype: torch.dtype, loaded: DoSSRNetworks | None = None):
        """The networks of *path*, or the already *loaded* ones read from it."""
        self.path = path
        loaded = loaded or load_dossr(path, device=mm.unet_offload_device(), dtype=dtype)
        self.config: DoSSRConfig = loaded.config
        self.control_patcher = new_patcher(loaded.controlnet)
        encoders = torch.nn.ModuleDict({"hint_encoder": loaded.hint_encoder})
        if loaded.preprocessor is not None:
            encoders["preprocessor"] = loaded.preprocessor
        self.encoder_patcher = new_patcher(encoders)

    def for_device(self, load_device) -> "DoSSRModelHandle":
        """A copy whose ControlNet is its own network loaded on *load_device*, for the host's
        multi-GPU clones of a control object (the encoders run before sampling, on one
        device, and stay shared)."""
        clone = copy.copy(self)
        clone.control_patcher = new_patcher(copy.deepcopy(self.controlnet), load_device)
        return clone

    @property
    def controlnet(self):
        return self.control_patcher.model

    @property
    def hint_encoder(self):
        return self.encoder_patcher.model["hint_encoder"]

    @property
    def preprocessor(self):
        encoders = self.encoder_patcher.model
        return encoders["preprocessor"] if "preprocessor" in encoders else None

    @property
    def dtype(self) -> torch.dtype:
        return self.config.dtype


def auto_dtype() -> torch.dtype:
    """The precision the host would pick for a UNet on its device, restricted to float types."""
    dtype = mm.unet_dtype(supported_dtypes=[torch.float16, torch.bfloat16, torch.float32])
    return dtype if dtype in DTYPES.values() else torch.float32


def upscale_model_from(handle: DoSSRModelHandle):
    """The preprocessor as the host's UPSCALE_MODEL (a spandrel descriptor), or None."""
    if handle.preprocessor is None:
        return None
    try:
        from spandrel import ImageModelDescriptor, ModelLoader
    except ImportError:
        logging.warning("DoSSR: spandrel is not installed, so no UPSCALE_MODEL is offered")
        return None
    state = {k: v.float() for k, v in handle.preprocessor.state_dict().items()}
    descriptor = ModelLoader().load_from_state_dict(state)
    if not isinstance(descriptor, ImageModelDescriptor):
        return None
    # The host's Upscale Image (using Model) loads the model through ``.patcher`` on newer
    # hosts (its own loader attaches one); older hosts ignore the attribute.
    descriptor.patcher = new_patcher(descriptor.model)
    return descriptor.eval()


class DoSSRModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="DoSSRModelLoader",
            display_name="DoSSR Model Loader",
            category=CATEGORY,
            search_aliases=search_aliases("loader", "load model", "checkpoint"),
            description=("Loads the DoSSR upscaler (its ControlNet, hint encoder and RRDBNet image "
                         "restorer) from a DoSSR checkpoint file. The Stable Diffusion 2.1-base model "
                         "it works with comes from the usual Load Checkpoint node."),
            inputs=[
                io.Combo.Input("model_name", options=model_files(),
                               tooltip="The DoSSR file, from ComfyUI/models/dossr (or "
                                       "models/checkpoints). dossr_default for the usual 5-step "
                                       "upscale; dossr_onestep for the faster 1-step one (then set "
                                       "the sampler's steps to 1). Their converted .safetensors "
                                       "files work the same and load faster. Not listed? Put the "
                                       "file in models/dossr and refresh the editor."),
                io.Combo.Input("dtype", options=["auto", *DTYPES], default="auto",
                               tooltip="Number precision of the DoSSR networks. auto (recommended) "
                                       "uses what ComfyUI picks for your device: half precision "
                                       "(fp16/bf16) on most GPUs, fp32 on the CPU. Half precision "
                                       "needs half the memory; choose fp32 if the result comes out "
                                       "black or broken."),
            ],
            outputs=dossr_outputs(),
        )

    @classmethod
    def validate_inputs(cls, model_name, dtype):
        return check_file_and_dtype(model_name, dtype)

    @classmethod
    def execute(cls, model_name, dtype) -> io.NodeOutput:
        path, torch_dtype = file_and_dtype(model_name, dtype)
        try:
            handle = DoSSRModelHandle(path, torch_dtype)
        except CheckpointError as err:
            raise ValueError(f"DoSSR: {err}") from None
        return io.NodeOutput(handle, upscale_model_from(handle))


def dossr_outputs() -> list:
    """The DOSSR_MODEL and UPSCALE_MODEL outputs both DoSSR loaders give."""
    return [
        DoSSRModel.Output("dossr_model", display_name="dossr_model",
                          tooltip="The DoSSR upscaler: connect to DoSSR LR Encode and to "
                                  "DoSSR Sampler (or DoSSR Apply ControlNet)."),
        io.UpscaleModel.Output("upscale_model", display_name="upscale_model",
                               tooltip="DoSSR's x4 image restorer on its own, for ComfyUI's "
                                       "'Upscale Image (using Model)' node: a quick upscale "
                                       "without the diffusion steps."),
    ]


def file_and_dtype(name: str, dtype: str):
    """The path of model file *name* and the torch dtype *dtype* asks for; FileNotFoundError
    saying where the file should go."""
    path = find_model_file(name)
    if path is None:
        raise FileNotFoundError(missing_file_message(name))
    return path, auto_dtype() if dtype == "auto" else DTYPES[dtype]


def check_file_and_dtype(name: str, dtype: str):
    """Validation of a loader's file and dtype inputs: True or one message."""
    found = _validate_model_name(None, name)
    return check_choices(dtype=(dtype, ["auto", *DTYPES])) if found is True else found


def _validate_model_name(cls, model_name):
    """Where the host checks combos (dtype), the loader still checks the file itself: its
    message says where the file should go, which "value not in list" does not."""
    return True if find_model_file(model_name) is not None else missing_file_message(model_name)


if HOST_CHECKS_COMBOS:
    DoSSRModelLoader.validate_inputs = classmethod(_validate_model_name)
