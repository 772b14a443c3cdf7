"""ComfyUI nodes for DoSSR: thin wrappers that hand the work to ``dossr_core``."""

from comfy_api.latest import ComfyExtension, io


class DoSSRExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return []


async def comfy_entrypoint() -> DoSSRExtension:
    return DoSSRExtension()
