"""Class activation maps of TSN / TSM / ACTION video models (``pytorch-grad-cam`` underneath).

    >>> from actionlib.cam import compute_cam
    >>> res = compute_cam(model, clips, method="gradcam")   # clips (N, T, 3, H, W)
    >>> res.maps.shape                                      # (N, T, H, W), each frame in [0, 1]

- ``core``: ``VideoCAM`` / ``compute_cam`` (methods ``METHODS``; clip-level targets, per-frame maps).
- ``figure``: ``cam_grid`` (rows = models, columns = frames, overlays) and ``compare_models``.
- ``score``: energy-in-mask and pointing game against ground-truth masks, bootstrap intervals,
  table and bar plot.
- ``cli``: the ``actionlib cam`` command.
"""

from . import core
from .core import *  # noqa: F403  (the names in core.__all__)

__all__ = list(core.__all__)
