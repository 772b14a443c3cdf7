"""ComfyUI nodes for DoSSR: thin wrappers that hand the work to ``dossr_core`` and the host."""

from comfy_api.latest import ComfyExtension, io

from .checkpoint_loader import DoSSRCheckpointLoader
from .colorfix import DoSSRColorFix
from .control import DoSSRApplyControlNet
from .decode import DoSSRVAEDecode
from .encode import DoSSRLREncode
from .model import DoSSRModelLoader, register_folder
from .sampler import DoSSRSampler, DoSSRSamplerSelect, DoSSRSigmas
from .templates import install_template_filter
from .tiling import DoSSRTiledDiffusion

NODES = [DoSSRCheckpointLoader, DoSSRModelLoader, DoSSRLREncode, DoSSRSampler, DoSSRApplyControlNet,
         DoSSRSigmas, DoSSRSamplerSelect, DoSSRColorFix, DoSSRTiledDiffusion, DoSSRVAEDecode]


class DoSSRExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> DoSSRExtension:
    register_folder()
    install_template_filter()
    return DoSSRExtension()
