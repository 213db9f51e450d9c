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

from .core import (
    METHOD_LABELS,
    METHODS,
    VideoCAM,
    VideoCAMResult,
    canonical_method,
    compute_cam,
    default_target_layer,
    iter_methods,
    resolve_target_layers,
)

__all__ = [
    "METHODS",
    "METHOD_LABELS",
    "VideoCAM",
    "VideoCAMResult",
    "canonical_method",
    "compute_cam",
    "default_target_layer",
    "iter_methods",
    "resolve_target_layers",
]
