"""The three DoSSR networks: latent-hint ControlNet, hint encoder and RRDBNet preprocessor."""

from .controlnet import LatentHintControlNet
from .hint_encoder import HintEncoder
from .rrdbnet import RRDBNet

__all__ = ["LatentHintControlNet", "HintEncoder", "RRDBNet"]
