"""Import-only stand-in for ``torchvision``, used by the DoSSR extension's test runs.

PyPI torchvision does not import beside the CPU build of torch 2.13.0 ("operator
torchvision::nms does not exist"), yet the ComfyUI host imports it at start-up
(``comfy/ldm/cascade``, ``comfy/ldm/cosmos``, ``comfy/ldm/ace``) and spandrel imports
``torchvision.transforms.functional`` for its LaMa and RestoreFormer architectures.
None of the code paths the tests exercise (SD1/SD2 UNet, VAE, CLIP, ESRGAN/RRDBNet
upscalers) calls torchvision, so this package only provides the names touched at
import time plus the few the host names at call time; every function raises
``NotImplementedError`` when called. ``tests/hostlib/server.py`` puts it on
``PYTHONPATH`` only when no real torchvision can be imported.
"""

from _dossr_stub import missing_attribute as _missing_attribute

__version__ = "0.0.0+importstub"
IS_IMPORT_STUB = True

from . import transforms  # noqa: E402  (comfy/ldm/cosmos: ``from torchvision import transforms``)
from . import models  # noqa: E402  (comfy/ldm/cascade: ``torchvision.models.efficientnet_v2_s()``)
from . import ops  # noqa: E402  (newer hosts: ``from torchvision.ops import roi_align``)

__getattr__ = _missing_attribute(__name__)
