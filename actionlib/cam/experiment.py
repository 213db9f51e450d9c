"""The CAM experiment: TSN / TSM / ACTION trained (or loaded) through the engine, clips of the
synthetic validation set with their ground-truth masks, the comparison figure and the scores.

Used by ``actionlib cam`` and ``notebooks/05_cam.ipynb``; each step is a function so that the
notebook stays a sequence of one-liners.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .core import VideoCAM, iter_methods
from .score import clip_scores

log = logging.getLogger(__name__)

ARCH_ORDER = ("tsn", "tsm", "action")

# defaults of the 05_cam notebook per profile. The last stage of ResNet-18 is 1x1 at the smoke
# profile's 32 px and 2x2 at quick's 48 px, so earlier stages are scored too (None: last stage).
CAM_PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"num_clips": 6, "methods": ("gradcam", "eigencam"), "layers": ("backbone.layer2",),
              "figure_layer": "backbone.layer2", "n_boot": 200},
    "quick": {"num_clips": 100, "methods": ("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam"),
              "layers": (None, "backbone.layer3", "backbone.layer2"), "figure_layer": "backbone.layer3",
              "n_boot": 2000},
    "paper": {"num_clips": 200, "methods": ("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam"),
              "layers": (None,), "figure_layer": None, "n_boot": 2000},
}  # fmt: skip
DEFAULT_CLASS = "Rotate counter-clockwise"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


# --- models ---------------------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A model with the training config it came from (``config`` None for a bare model)."""

    name: str
    model: nn.Module
    config: Any = None
    run_dir: str | None = None
    best_top1: float | None = None


def recipe_configs(recipe: str, archs: Sequence[str] = ARCH_ORDER, **overrides: Any) -> dict[str, Any]:
    """``{arch: engine.get_recipe(recipe, arch=arch, **overrides)}``."""
    from ..engine import get_recipe

    return {arch: get_recipe(recipe, arch=arch, **overrides) for arch in archs}


def load_models(specs: Mapping[str, Any]) -> dict[str, TrainedModel]:
    """Models by name from, per entry, a run folder or checkpoint path (``engine.load_trained``),
    a training config (``TrainConfig`` or dict: trained with ``engine.fit``, whose run cache
    returns a finished run with the same config instead of training again), or an ``nn.Module``.
    """
    out: dict[str, TrainedModel] = {}
    for name, spec in specs.items():
        if isinstance(spec, nn.Module):
            out[name] = TrainedModel(name, spec)
            continue
        from .. import engine

        if isinstance(spec, (str, os.PathLike)):
            if not Path(spec).exists():
                raise FileNotFoundError(f"checkpoint or run folder for {name!r} not found: {spec}")
            model, cfg = engine.load_trained(spec)
            out[name] = TrainedModel(name, model, cfg, str(spec))
        else:
            result = engine.fit(spec)
            model, cfg = engine.load_trained(result["run_dir"])
            out[name] = TrainedModel(name, model, cfg, str(result["run_dir"]), result.get("best_top1"))
        out[name].model.eval()
    return out


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


# --- data -----------------------------------------------------------------------------------------


def val_dataset(cfg: Any, split: str | None = None):
    """The validation dataset of a training config, with the test transform the engine uses."""
    from .. import data

    transform = eval_transform(cfg)
    return data.build_dataset(
        _cfg_get(cfg, "dataset"), _cfg_get(cfg, "data_root"), split or _cfg_get(cfg, "val_split", "val"),
        num_segments=_cfg_get(cfg, "num_segments"), transform=transform, **(_cfg_get(cfg, "data_options") or {}),
    )  # fmt: skip


def display_transform(transform: Callable) -> Callable:
    """The same clip transform without normalisation (uint8 frames at the network's input size)."""
    if not hasattr(transform, "normalize"):
        raise ValueError(
            f"cannot derive display frames from transform {transform!r}: expected an "
            "actionlib.data.build_transform(...) transform"
        )
    t = copy.copy(transform)
    t.normalize = False
    return t


def class_index(classes: Sequence[str], wanted: int | str) -> int:
    """Index of a class given by index or name (case and spacing ignored)."""
    if isinstance(wanted, (int, np.integer)):
        if not 0 <= int(wanted) < len(classes):
            raise ValueError(f"class index {int(wanted)} out of range; the dataset has {len(classes)} classes")
        return int(wanted)

    def norm(s: str) -> str:
        return "".join(str(s).lower().replace("-", " ").split())

    hits = [i for i, c in enumerate(classes) if norm(c) == norm(wanted)]
    if not hits:
        raise ValueError(f"unknown class {wanted!r}; classes: {list(classes)}")
    return hits[0]


def pick_clips(ds, num_clips: int | None = None, clip_ids: Sequence[int | str] | None = None,
               label: int | str | None = None) -> list[int]:  # fmt: skip
    """Dataset positions: ``clip_ids`` (dataset ids such as "1801", or positions as ints) if
    given, else the first ``num_clips`` (all when None) clips, only of class ``label`` if given."""
    if clip_ids:
        ids = {str(v): i for i, v in enumerate(ds.ids)}
        out = []
        for c in clip_ids:
            if isinstance(c, str):
                if c not in ids:
                    raise ValueError(f"clip id {c!r} is not in the {ds.split} split (ids like {ds.ids[:3]})")
                out.append(ids[c])
            else:
                if not 0 <= int(c) < len(ds):
                    raise ValueError(f"clip position {c} out of range; the {ds.split} split has {len(ds)} clips")
                out.append(int(c))
        return out
    positions = range(len(ds))
    if label is not None:
        k = class_index(ds.classes, label)
        positions = [i for i in positions if ds.labels[i] == k]
        if not positions:
            raise ValueError(f"no clip of class {ds.classes[k]!r} in the {ds.split} split")
    positions = list(positions)
    return positions if num_clips is None else positions[: int(num_clips)]


def eval_transform(cfg: Any) -> Callable:
    """The validation transform of a training config (as ``engine`` builds it)."""
    from .. import data

    if cfg is None:
        raise ValueError("a model without a training config needs an explicit transform")
    return data.build_transform(False, _cfg_get(cfg, "image_size"), _cfg_get(cfg, "backbone"),
                                **(_cfg_get(cfg, "transform_options") or {}))  # fmt: skip


@dataclass
class ClipBatch:
    """Raw clips (as decoded: uint8 ``(T, 3, H, W)`` each) with their ground-truth masks (bool
    ``(T, H, W)`` each, or None), labels (-1: unknown), ids and frame indices. ``inputs``,
    ``display`` and ``masks_at`` apply a clip transform to all of them."""

    frames: list[torch.Tensor]
    masks: list[torch.Tensor] | None
    labels: np.ndarray
    ids: list[str]
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    def inputs(self, transform: Callable) -> torch.Tensor:
        """Network input float ``(N, T, 3, S, S)``."""
        return torch.stack([transform(f) for f in self.frames])

    def display(self, transform: Callable) -> torch.Tensor:
        """The same frames at the input geometry, not normalised: uint8 ``(N, T, 3, S, S)``."""
        show = display_transform(transform)
        return torch.stack([show(f) for f in self.frames])

    def masks_at(self, transform: Callable) -> np.ndarray:
        """Masks at the input geometry: bool ``(N, T, S, S)``."""
        if self.masks is None:
            raise ValueError("these clips have no ground-truth masks")
        show = display_transform(transform)
        return np.stack([show(f, masks=m)[1].numpy() for f, m in zip(self.frames, self.masks)])


def load_items(ds, positions: Iterable[int], with_masks: bool = True) -> ClipBatch:
    """Raw frames (and masks) of dataset items at ``positions``, sampled as the split samples."""
    frames, masks, labels, ids, indices = [], [], [], [], []
    for i in positions:
        item = ds.get(int(i), with_masks=with_masks)
        frames.append(item["frames"])
        if with_masks:
            masks.append(item["masks"])
        labels.append(item["label"])
        ids.append(str(item["id"]))
        indices.append(np.asarray(item["indices"]))
    if not frames:
        raise ValueError("no clips to load")
    return ClipBatch(frames, masks if with_masks else None, np.asarray(labels, dtype=np.int64), ids, np.stack(indices))


def load_clip_file(path: str | os.PathLike, num_segments: int) -> ClipBatch:
    """One clip from a frames folder (images in name order) or a video file, sampled as for
    validation (middle frame of each of ``num_segments`` segments), without masks."""
    from ..data import sample_indices
    from ..data.io import read_frames, read_video

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"frames folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        idx = sample_indices(len(files), num_segments)
        raw = read_frames([files[i] for i in idx])
    elif path.is_file():
        video = read_video(path)
        idx = sample_indices(len(video), num_segments)
        raw = video[torch.from_numpy(idx)]
    else:
        raise FileNotFoundError(f"clip {path} not found (expected a frames folder or a video file)")
    return ClipBatch([raw], None, np.array([-1]), [path.name], idx[None])


def transforms_for(models: Mapping[str, TrainedModel], transform: Callable | None = None) -> dict[str, Callable]:
    """Each model's validation transform (``transform`` for all if given). All must share the
    geometry (input size, resize, crop) so that one row of frames fits every row of maps."""
    out = {name: transform or eval_transform(m.config) for name, m in models.items()}
    geometry = {name: (t.size, t.scale_size, t.test_crop) if hasattr(t, "size") else None for name, t in out.items()}
    if len(set(geometry.values())) > 1:
        raise ValueError(f"the models see clips at different geometries {geometry}; compare models trained "
                         "at the same image_size / transform_options")  # fmt: skip
    return out


def figure_positions(ds, clip_ids: Sequence[int | str] | None = None, label: int | str | None = DEFAULT_CLASS) -> list[int]:
    """The clip(s) of the figure: ``clip_ids`` if given, else the first clip of class ``label``,
    else (no such class in the dataset, e.g. a real dataset) the first clip."""
    if clip_ids:
        return pick_clips(ds, clip_ids=clip_ids)
    if label is not None:
        try:
            return pick_clips(ds, 1, label=label)
        except ValueError as e:
            log.warning("%s; the figure shows the first validation clip instead", e)
    return pick_clips(ds, 1)


def models_table(models: Mapping[str, TrainedModel]) -> pd.DataFrame:
    """One row per model: name, arch, backbone, input size, segments, best top-1, run folder's name."""
    rows = []
    for name, m in models.items():
        rows.append({
            "model": name, "arch": getattr(m.model, "arch", ""), "backbone": getattr(m.model, "backbone_name", ""),
            "image_size": _cfg_get(m.config, "image_size"), "segments": m.model.num_segments,
            "top1": None if m.best_top1 is None else round(float(m.best_top1), 2),
            "run": Path(m.run_dir).name if m.run_dir else "",
        })  # fmt: skip
    return pd.DataFrame(rows)


def write_figure(fig, name: str, results_dir: str | os.PathLike | None, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``<results_dir>/figures/<name>.png`` and ``.pdf``; nothing when
    ``results_dir`` is None (notebooks under nbval)."""
    from .figure import save_figure

    if results_dir is None:
        return []
    return save_figure(fig, Path(results_dir) / "figures" / name, formats)


def attention_ranking(summary: pd.DataFrame, metric: str = "energy", by: Sequence[str] = ("method", "layer")) -> pd.DataFrame:
    """Which model's maps score highest on ``metric``, per ``by`` group: the best model, its
    mean and interval, the runner-up, and whether the two intervals are apart (``clear``)."""
    by = [c for c in by if c in summary.columns]
    rows = []
    data = summary[summary["metric"] == metric]
    for key, part in data.groupby(by, sort=False):
        part = part.sort_values("mean", ascending=False)
        best = part.iloc[0]
        second = part.iloc[1] if len(part) > 1 else None
        key = key if isinstance(key, tuple) else (key,)
        rows.append({
            **dict(zip(by, key)), "metric": metric, "best": best["model"],
            "best_mean": round(best["mean"], 3), "best_ci": f"[{best['ci_low']:.3f}, {best['ci_high']:.3f}]",
            "runner_up": "" if second is None else second["model"],
            "runner_up_mean": float("nan") if second is None else round(second["mean"], 3),
            "clear": bool(second is not None and best["ci_low"] > second["ci_high"]),
        })  # fmt: skip
    return pd.DataFrame(rows)


# --- scores ---------------------------------------------------------------------------------------


def score_models(
    models: Mapping[str, TrainedModel],
    batch: ClipBatch,
    methods: Iterable[str] | str = ("gradcam",),
    *,
    target: str | int = "label",
    layers: Sequence[Any] = (None,),
    tolerance: int = 0,
    batch_size: int = 8,
    transform: Callable | None = None,
) -> pd.DataFrame:
    """Per-clip localisation scores of every model x method x layer on ``batch`` (which needs
    masks).

    ``target``: ``"label"`` (explain the ground-truth class, default), ``"pred"`` (each model's
    own prediction) or a class index. ``layers``: target layers scored one by one (``None``: the
    backbone's last stage; a dotted name such as ``"backbone.layer3"``). Each model sees the clips
    through its own validation transform (``transform`` for all if given). Columns: ``model,
    method, layer, clip, energy, pointing, chance, id, label, pred, correct``.
    """
    transforms = transforms_for(models, transform)
    masks = batch.masks_at(next(iter(transforms.values())))
    if target == "label":
        if (batch.labels < 0).any():
            raise ValueError("target='label' needs labelled clips")
        targets: Any = [int(v) for v in batch.labels]
    elif target == "pred":
        targets = None
    else:
        targets = int(target)
    frames = []
    for name, entry in models.items():
        clips = batch.inputs(transforms[name])
        for layer in layers:
            for method in iter_methods(methods):
                res = VideoCAM(entry.model, method, layer, batch_size=batch_size)(clips, targets)
                df = clip_scores(res.maps, masks, tolerance=tolerance)
                df.insert(0, "model", name)
                df.insert(1, "method", method)
                df.insert(2, "layer", ",".join(res.layers))
                df["id"] = batch.ids
                df["label"] = batch.labels
                df["pred"] = res.predictions
                df["correct"] = res.predictions == batch.labels
                frames.append(df)
                log.info("%s %s %s: energy %.3f, pointing %.3f over %d clips", name, method, res.layers[0],
                         df["energy"].mean(), df["pointing"].mean(), len(df))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def clip_figure(
    models: Mapping[str, TrainedModel],
    batch: ClipBatch,
    index: int = 0,
    *,
    class_names: Sequence[str] | None = None,
    method: str = "gradcam",
    target: str | int = "pred",
    target_layer: Any = None,
    transform: Callable | None = None,
    title: str | None = None,
):
    """The comparison figure for clip ``index`` of ``batch``: rows = models, columns = frames.
    ``target``: ``"pred"`` (each model explains its own prediction), ``"label"`` or a class index.
    Returns ``(figure, {name: VideoCAMResult})``."""
    from .core import METHOD_LABELS
    from .figure import compare_models

    transforms = transforms_for(models, transform)
    one = ClipBatch([batch.frames[index]], None, batch.labels[index : index + 1], [batch.ids[index]],
                    batch.indices[index : index + 1])  # fmt: skip
    if target == "label":
        if one.labels[0] < 0:
            raise ValueError("target='label' needs a labelled clip")
        tgt: Any = int(one.labels[0])
    elif target == "pred":
        tgt = None
    else:
        tgt = int(target)
    frames = one.display(next(iter(transforms.values())))[0]
    clips = {name: one.inputs(transforms[name])[0] for name in models}
    if title is None:
        true = (f"true class: {class_names[one.labels[0]]}" if class_names is not None and one.labels[0] >= 0
                else "")  # fmt: skip
        title = f"{METHOD_LABELS.get(method, method)}, clip {one.ids[0]}" + (f" ({true})" if true else "")
    frame_labels = [f"frame {int(i)}" for i in one.indices[0]]
    fig, results = compare_models(
        {name: m.model for name, m in models.items()}, clips, frames, class_names=class_names,
        method=method, target=tgt, target_layer=target_layer, title=title, frame_labels=frame_labels,
    )  # fmt: skip
    return fig, results


__all__ = [
    "ARCH_ORDER",
    "CAM_PROFILES",
    "ClipBatch",
    "DEFAULT_CLASS",
    "TrainedModel",
    "attention_ranking",
    "class_index",
    "figure_positions",
    "models_table",
    "write_figure",
    "clip_figure",
    "display_transform",
    "eval_transform",
    "load_clip_file",
    "load_items",
    "load_models",
    "pick_clips",
    "recipe_configs",
    "score_models",
    "transforms_for",
    "val_dataset",
]
