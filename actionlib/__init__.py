"""actionlib: reproducibility and analysis suite for ACTION-Net (CVPR 2021).

    >>> import actionlib
    >>> model = actionlib.build_model("action", "resnet50", num_classes=174, num_segments=8)
"""

from .models import ARCHS, BACKBONES, VideoNet, build_model
from .profiling import profile_model

__version__ = "0.1.0"
__all__ = ["ARCHS", "BACKBONES", "VideoNet", "build_model", "profile_model", "__version__"]
