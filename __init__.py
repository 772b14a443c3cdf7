"""DoSSR for ComfyUI: diffusion super-resolution that starts from the low-resolution image.

Inside ComfyUI this registers the nodes through the host's schema API
(``comfy_entrypoint``). Imported anywhere else (the tests, a plain Python
session) it defines nothing, so ``dossr_core`` stays usable on its own.
"""

import importlib.util

if importlib.util.find_spec("comfy_api") is not None:
    from .nodes import comfy_entrypoint  # noqa: F401  (the host looks this name up)
