"""TSN / TSM / ACTION video models on 2-D backbones."""

from .backbones import BACKBONES, InsertionPoint, insertion_points
from .bninception import BNInception
from .video import ARCHS, VideoNet, build_model, load_model_state, to_channels_last

__all__ = [
    "ARCHS",
    "BACKBONES",
    "BNInception",
    "InsertionPoint",
    "VideoNet",
    "build_model",
    "insertion_points",
    "load_model_state",
    "to_channels_last",
]
