"""The paper's CAM figure: rows = models (TSN, TSM, ACTION), columns = the T frames of a clip,
heat maps overlaid on the frames (``pytorch_grad_cam.utils.image.show_cam_on_image``), each row
labelled with the model's predicted class and its probability."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .core import METHOD_LABELS, VideoCAM, VideoCAMResult

log = logging.getLogger(__name__)

MODEL_LABELS = {"tsn": "TSN", "tsm": "TSM", "action": "ACTION"}


def to_display(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Frames ``(T, 3, H, W)`` or ``(T, H, W, 3)``, uint8 or float in [0, 1] -> float32
    ``(T, H, W, 3)`` RGB in [0, 1] (what ``show_cam_on_image`` takes)."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"frames must be (T, 3, H, W) or (T, H, W, 3), got shape {frames.shape}")
    if frames.shape[-1] != 3 and frames.shape[1] == 3:
        frames = frames.transpose(0, 2, 3, 1)
    if frames.shape[-1] != 3:
        raise ValueError(f"frames must have 3 colour channels, got shape {frames.shape}")
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    frames = frames.astype(np.float32)
    if frames.min() < 0 or frames.max() > 1:
        raise ValueError(
            "float frames must be in [0, 1] (display frames, not the normalised network input); "
            f"got values in [{frames.min():.3g}, {frames.max():.3g}]"
        )
    return frames


def overlay(frames: np.ndarray, maps: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """Heat maps ``(T, H, W)`` on frames (see ``to_display``) -> uint8 ``(T, H, W, 3)`` RGB."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    frames = to_display(frames)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != frames.shape[:3]:
        raise ValueError(f"maps {maps.shape} do not match frames {frames.shape[:3]} (T, H, W)")
    return np.stack([show_cam_on_image(f, m, use_rgb=True, image_weight=image_weight) for f, m in zip(frames, maps)])


def cam_grid(
    frames: np.ndarray | torch.Tensor,
    rows: Sequence[tuple[str, np.ndarray]],
    *,
    frame_labels: Sequence[str] | None = None,
    title: str | None = None,
    image_weight: float = 0.5,
    cell: float = 1.5,
    show_frames: bool = True,
):
    """A figure with the clip's frames on top (``show_frames``) and one row of overlays per
    ``(label, maps (T, H, W))`` entry of ``rows``. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    frames = to_display(frames)
    t = frames.shape[0]
    if not rows:
        raise ValueError("rows is empty: give at least one (label, maps) pair")
    images = [(("input", None), frames)] if show_frames else []
    images += [((label, maps), overlay(frames, maps, image_weight)) for label, maps in rows]
    n = len(images)
    fig, axes = plt.subplots(n, t, figsize=(cell * t + 1.6, cell * n + (0.4 if title else 0.1)), squeeze=False)
    for r, ((label, _), imgs) in enumerate(images):
        for c in range(t):
            ax = axes[r][c]
            ax.imshow(imgs[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if r == 0 and frame_labels is not None:
                ax.set_title(frame_labels[c], fontsize=8)
        axes[r][0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center", labelpad=4)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.16, right=0.99, bottom=0.01, top=0.92 if title else 0.97, wspace=0.03, hspace=0.06)
    return fig


def row_label(name: str, result: VideoCAMResult, index: int = 0, class_names: Sequence[str] | None = None) -> str:
    """``"ACTION\\npred: rotate ccw (0.93)"``, plus the explained class when it is not the
    prediction."""

    def cname(k: int) -> str:
        return class_names[k] if class_names is not None and 0 <= k < len(class_names) else f"class {k}"

    pred = int(result.predictions[index])
    label = f"{MODEL_LABELS.get(name, name)}\npred: {cname(pred)}\n(p = {result.probs[index, pred]:.2f})"
    target = int(result.targets[index])
    if target != pred:
        label += f"\nCAM of: {cname(target) if target >= 0 else 'custom target'}"
    return label


def compare_models(
    models: Mapping[str, nn.Module],
    clip: torch.Tensor | Mapping[str, torch.Tensor],
    frames: np.ndarray | torch.Tensor,
    *,
    class_names: Sequence[str] | None = None,
    method: str = "gradcam",
    target: object = None,
    target_layer: object = None,
    title: str | None = None,
    frame_labels: Sequence[str] | None = None,
    image_weight: float = 0.5,
):
    """CAMs of one clip under several models, as the paper's figure.

    Args:
        models: ``{"tsn": model, "tsm": model, "action": model}`` (any names; rows in this order).
        clip: the network input ``(T, 3, H, W)`` (normalised as the models expect), or one per
            model ``{name: clip}`` (models with other input normalisation, e.g. BN-Inception).
        frames: the same frames for display (``(T, 3, H, W)`` / ``(T, H, W, 3)``, uint8 or [0, 1]),
            at the input's size (e.g. the clip transform with ``normalize=False``).
        class_names: names for the row labels.
        method: CAM method (``actionlib.cam.METHODS``).
        target: ``None`` (each model explains its own prediction) or a class index for all rows.
        target_layer: as in ``VideoCAM`` (``None``: each model's backbone output).

    Returns:
        ``(figure, {name: VideoCAMResult})``.
    """
    if not models:
        raise ValueError("models is empty: give at least one {name: model}")
    clips = dict(clip) if isinstance(clip, Mapping) else {name: clip for name in models}
    results: dict[str, VideoCAMResult] = {}
    rows = []
    for name, model in models.items():
        if name not in clips:
            raise ValueError(f"no clip given for model {name!r}; clips for {list(clips)}")
        x = clips[name]
        if x.dim() != 4:
            raise ValueError(f"clip must be one clip (T, 3, H, W), got shape {tuple(x.shape)}")
        res = VideoCAM(model, method, target_layer)(x[None], target)
        results[name] = res
        rows.append((row_label(name, res, 0, class_names), res.maps[0]))
    if title is None:
        title = f"{METHOD_LABELS.get(res.method, res.method)} at {', '.join(res.layers)}"
    fig = cam_grid(frames, rows, frame_labels=frame_labels, title=title, image_weight=image_weight)
    return fig, results


def save_figure(fig, path: str | os.PathLike, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``<path without suffix>.<fmt>`` for each format; returns the paths."""
    from ..reporting import write_figure

    return write_figure(fig, path, formats, dpi=dpi)


__all__ = ["MODEL_LABELS", "cam_grid", "compare_models", "overlay", "row_label", "save_figure", "to_display"]
