"""Stand-in for ``torchvision.models.optical_flow`` (see the package docstring)."""

from _dossr_stub import missing_attribute as _missing_attribute, unavailable as _unavailable

raft_large = _unavailable("torchvision.models.optical_flow.raft_large")  # comfy_extras/nodes_void.py

__getattr__ = _missing_attribute(__name__)
