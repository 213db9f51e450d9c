"""Evaluation of a trained model: single-clip centre crop or multi-clip x multi-crop (TSM
protocol: K evenly offset clips x C crops along the long side, logits averaged over the K*C
views), top-1 / top-5, per-class accuracy, confusion matrix (CSV + PNG) and predictions CSV."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from .checkpoint import load_checkpoint, load_model_weights
from .config import TrainConfig
from .loop import build_from_model_config, pick_device, topk_correct

log = logging.getLogger(__name__)


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The model of a run folder (its ``best.pt``) or of a checkpoint file, in eval mode, with its
    ``TrainConfig``. ``model.classes`` holds the class names."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    ckpt = load_checkpoint(path)
    cfg = TrainConfig.from_dict(ckpt["config"], f"config stored in {path}")
    model = build_from_model_config(ckpt["model_config"])
    load_model_weights(model, ckpt, str(path))
    model.classes = list(ckpt.get("classes") or [])
    return model.to(device).eval(), cfg


class MultiCrop:
    """uint8 ``(..., 3, H, W)`` -> float ``(C, ..., 3, size, size)``: short side to ``scale_size``,
    then ``C`` square crops of ``crop_size`` evenly spread along the long side (1: centre; 3: the
    TSM protocol's left / centre / right), each resized to ``size`` and normalised per backbone."""

    def __init__(self, size: int, backbone: str, scale_size: int | None, crops: int, crop_size: int | None = None,
                 whole_frame: bool = False):  # fmt: skip
        from ..data import build_transform

        if crops < 1:
            raise ValueError(f"num_crops must be >= 1, got {crops}")
        if whole_frame and crops != 1:
            raise ValueError(f"whole-frame testing (test_crop='resize') has one view per clip, got num_crops={crops}")
        self.size, self.scale_size, self.crops, self.whole_frame = size, scale_size, crops, whole_frame
        self.crop_size = crop_size or size
        self.norm = build_transform(False, size, backbone, scale_size=None, test_crop="resize")

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if self.whole_frame:  # e.g. EgoGesture: the whole frame resized to size x size
            return self.norm(clip)[None]
        lead, (h, w) = clip.shape[:-3], clip.shape[-2:]
        x = clip.reshape(-1, 3, h, w)
        if self.scale_size is not None and min(h, w) != self.scale_size:
            x = TF.resize(x, self.scale_size, antialias=True)
        h, w = x.shape[-2:]
        c = min(self.crop_size, h, w)
        long_side = max(h, w)
        if self.crops == 1:
            offsets = [int(round((long_side - c) / 2.0))]
        else:
            offsets = [int(round(i * (long_side - c) / (self.crops - 1))) for i in range(self.crops)]
        short_off = int(round((min(h, w) - c) / 2.0))
        views = []
        for off in offsets:
            top, left = (short_off, off) if w >= h else (off, short_off)
            crop = x[..., top : top + c, left : left + c].reshape(*lead, 3, c, c)
            views.append(self.norm(crop.contiguous()))
        return torch.stack(views)


def _resolve_model(model_or_checkpoint) -> tuple[nn.Module, TrainConfig | None]:
    if isinstance(model_or_checkpoint, nn.Module):
        return model_or_checkpoint, None
    return load_trained(model_or_checkpoint)


@torch.no_grad()
def evaluate(
    model_or_checkpoint: Any,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    split: str | None = None,
    num_clips: int = 1,
    num_crops: int = 1,
    image_size: int | None = None,
    scale_size: int | None = None,
    crop_size: int | None = None,
    batch_size: int = 8,
    workers: int = 0,
    device: str = "auto",
    out_dir: str | os.PathLike | None = None,
    data_options: dict[str, Any] | None = None,
    dataset_obj=None,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint (run folder, ``best.pt``/``last.pt`` path) or a model.

    Defaults come from the run's config: dataset, data folder, validation split, crop size; the
    test scale (short side) defaults to ``image_size * 256 / 224`` rounded (256 for 224).
    ``num_clips=K`` takes K evenly offset clips per video, ``num_crops=C`` C crops per clip
    (``crop_size`` default ``image_size``; the TSM 3-crop protocol uses ``crop_size=scale_size``).
    ``dataset_obj`` evaluates an already built dataset (raw uint8 clips, no transform).

    Returns a dict: top1, top5 (percent), loss, num_videos, num_clips, num_crops,
    per_class (list of {class, accuracy, count}), confusion (list of lists, rows = true class),
    classes, and with ``out_dir`` the files written (predictions.csv, confusion.csv,
    confusion.png, per_class.csv, metrics.json).
    """
    from .._progress import tqdm

    from ..data import build_dataset

    model, cfg = _resolve_model(model_or_checkpoint)
    classes = list(getattr(model, "classes", []) or [])
    if cfg is None and (dataset_obj is None and dataset is None):
        raise ValueError("evaluate(model) needs dataset=... (or dataset_obj=...) when no checkpoint is given")
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        dev = pick_device(TrainConfig(device=device))
        size = image_size or (cfg.image_size if cfg else 224)
        if scale_size is None:
            scale_size = (cfg.transform_options.get("scale_size") if cfg and "scale_size" in cfg.transform_options
                          else int(round(size * 256 / 224)))  # fmt: skip
        backbone = getattr(model, "backbone_name", None) or (cfg.backbone if cfg else "resnet50")
        whole = bool(cfg and cfg.transform_options.get("test_crop") == "resize" and num_crops == 1)
        transform = MultiCrop(size, backbone, scale_size, num_crops, crop_size, whole_frame=whole)
        if dataset_obj is None:
            opts = dict(cfg.data_options) if cfg else {}
            opts.update(data_options or {})
            opts["num_clips"] = num_clips
            ds = build_dataset(dataset or cfg.dataset, data_root if data_root is not None else (cfg.data_root if cfg else None),
                               split or (cfg.val_split if cfg else "val"), num_segments=model.num_segments,
                               transform=transform, **opts)  # fmt: skip
        else:
            ds = dataset_obj
            ds.transform, ds.num_clips = transform, num_clips
        classes = classes or list(ds.classes)
        k = len(classes)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
        model = model.to(dev).eval()
        conf = np.zeros((k, k), dtype=np.int64)
        rows, loss_sum, c1_sum, c5_sum, n = [], 0.0, 0, 0, 0
        ids = list(getattr(ds, "ids", []) or [])
        for x, y in tqdm(loader, desc=f"eval {num_clips}x{num_crops}", disable=not progress, dynamic_ncols=True):
            # x: (B, C, [K,] T, 3, S, S)
            b = x.shape[0]
            views = x.reshape(b, -1, *x.shape[-4:])  # (B, C*K, T, 3, S, S)
            v = views.shape[1]
            logits = model(views.flatten(0, 1).to(dev)).float().view(b, v, -1).mean(1).cpu()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            c1, c5 = topk_correct(logits, y)
            c1_sum, c5_sum = c1_sum + int(c1), c5_sum + int(c5)
            probs = logits.softmax(1)
            top = probs.topk(min(5, k), dim=1)
            for i in range(b):
                t, p = int(y[i]), int(top.indices[i, 0])
                conf[t, p] += 1
                rows.append({"index": n + i, "id": ids[n + i] if n + i < len(ids) else n + i, "label": t,
                             "label_name": classes[t], "pred": p, "pred_name": classes[p],
                             "correct": int(t == p), "confidence": float(top.values[i, 0]),
                             "top5": " ".join(str(int(j)) for j in top.indices[i])})  # fmt: skip
            n += b
    finally:
        torch.set_num_threads(saved_threads)
    counts = conf.sum(1)
    per_class = [{"class": classes[i], "accuracy": 100.0 * conf[i, i] / counts[i] if counts[i] else None,
                  "count": int(counts[i])} for i in range(k)]  # fmt: skip
    result: dict[str, Any] = {
        "top1": 100.0 * c1_sum / max(n, 1), "top5": 100.0 * c5_sum / max(n, 1), "loss": loss_sum / max(n, 1),
        "num_videos": n, "num_clips": num_clips, "num_crops": num_crops, "image_size": size,
        "scale_size": scale_size, "per_class": per_class, "confusion": conf.tolist(), "classes": classes,
    }  # fmt: skip
    if out_dir is not None:
        result["files"] = write_reports(Path(out_dir), result, rows)
    return result


def write_reports(out: Path, result: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str]:
    """predictions.csv, per_class.csv, confusion.csv, confusion.png (seaborn) and metrics.json."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    out.mkdir(parents=True, exist_ok=True)
    tag = f"{result['num_clips']}clip_{result['num_crops']}crop"
    files = {
        "predictions": out / f"predictions_{tag}.csv", "per_class": out / f"per_class_{tag}.csv",
        "confusion_csv": out / f"confusion_{tag}.csv", "confusion_png": out / f"confusion_{tag}.png",
        "metrics": out / f"metrics_{tag}.json",
    }  # fmt: skip
    classes = result["classes"]
    pd.DataFrame(rows).to_csv(files["predictions"], index=False)
    pd.DataFrame(result["per_class"]).to_csv(files["per_class"], index=False)
    conf = pd.DataFrame(result["confusion"], index=classes, columns=classes)
    conf.index.name = "true \\ predicted"
    conf.to_csv(files["confusion_csv"])
    k = len(classes)
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * k + 3), max(4, 0.45 * k + 2)))
    norm = conf.div(conf.sum(axis=1).replace(0, 1), axis=0)
    sns.heatmap(norm, ax=ax, cmap="Blues", vmin=0, vmax=1, annot=k <= 20, fmt=".2f", square=True,
                cbar_kws={"label": "fraction of the true class"}, xticklabels=k <= 60, yticklabels=k <= 60)  # fmt: skip
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"top-1 {result['top1']:.1f}% ({result['num_clips']} clip x {result['num_crops']} crop)")
    fig.tight_layout()
    fig.savefig(files["confusion_png"], dpi=110)
    plt.close(fig)
    with open(files["metrics"], "w") as f:
        json.dump({k: v for k, v in result.items() if k not in ("confusion",)}, f, indent=2)
    return {k: str(v) for k, v in files.items()}
