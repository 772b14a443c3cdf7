"""The two socket types DoSSR adds to the graph."""

from comfy_api.latest import io

DoSSRModel = io.Custom("DOSSR_MODEL")
"""The DoSSR ControlNet, hint encoder and preprocessor, managed by the host (see ``model.py``)."""

DoSSRHint = io.Custom("DOSSR_HINT")
"""The hint latent (B, 4, H/8, W/8), already in the model's scaled latent space."""
