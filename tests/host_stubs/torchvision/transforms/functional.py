"""Stand-in for ``torchvision.transforms.functional`` (see the package docstring)."""

import enum

from _dossr_stub import missing_attribute as _missing_attribute, unavailable as _unavailable


class InterpolationMode(enum.Enum):
    """Same members and values as torchvision's enum (spandrel LaMa imports it)."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


rotate = _unavailable("torchvision.transforms.functional.rotate")  # spandrel LaMa (forward only)
normalize = _unavailable("torchvision.transforms.functional.normalize")  # spandrel RestoreFormer (forward only)
resize = _unavailable("torchvision.transforms.functional.resize")  # comfy/ldm/cosmos (forward with padding_mask)

__getattr__ = _missing_attribute(__name__)
