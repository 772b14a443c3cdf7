"""Stand-in for ``torchvision.models`` (see the package docstring)."""

from _dossr_stub import missing_attribute as _missing_attribute, unavailable as _unavailable

# comfy/ldm/cascade/stage_c_coder.py and comfy/ldm/cascade/controlnet.py (Stable Cascade only)
efficientnet_v2_s = _unavailable("torchvision.models.efficientnet_v2_s")

__getattr__ = _missing_attribute(__name__)
