"""Stand-in for ``torchvision.ops`` (see the package docstring)."""

from _dossr_stub import missing_attribute as _missing_attribute, unavailable as _unavailable

# Newer hosts, at start-up: comfy/ldm/sam3/detector.py (SAM 3) and
# comfy/background_removal/birefnet.py (BiRefNet)
roi_align = _unavailable("torchvision.ops.roi_align")
deform_conv2d = _unavailable("torchvision.ops.deform_conv2d")

__getattr__ = _missing_attribute(__name__)
