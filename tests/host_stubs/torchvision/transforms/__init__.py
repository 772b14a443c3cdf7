"""Stand-in for ``torchvision.transforms`` (see the package docstring)."""

from _dossr_stub import missing_attribute as _missing_attribute, unavailable as _unavailable
from . import functional  # noqa: F401  (spandrel LaMa/RestoreFormer import from it)
from .functional import InterpolationMode  # noqa: F401  (re-exported like the real package)

# comfy/ldm/ace/vae/music_dcae_pipeline.py builds these in MusicDCAE.__init__ (ACE audio only)
Compose = _unavailable("torchvision.transforms.Compose")
Normalize = _unavailable("torchvision.transforms.Normalize")
# comfy_extras/nodes_rtdetr.py on newer hosts (RT-DETR detection)
ToPILImage = _unavailable("torchvision.transforms.ToPILImage")
ToTensor = _unavailable("torchvision.transforms.ToTensor")

__getattr__ = _missing_attribute(__name__)
