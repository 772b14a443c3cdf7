"""Stand-in for ``torchvision.transforms`` (see the package docstring)."""

from .._stub import missing_attribute as _missing_attribute, unavailable as _unavailable
from . import functional  # noqa: F401  (spandrel LaMa/RestoreFormer import from it)
from .functional import InterpolationMode  # noqa: F401  (re-exported like the real package)

# comfy/ldm/ace/vae/music_dcae_pipeline.py builds these in MusicDCAE.__init__ (ACE audio only)
Compose = _unavailable("transforms.Compose")
Normalize = _unavailable("transforms.Normalize")

__getattr__ = _missing_attribute(__name__)
