"""How well CAMs localise the moving object: energy-in-mask and the pointing game.

For one frame with CAM ``m`` (H, W) >= 0 and ground-truth mask ``g`` (H, W) of the moving object:

- **energy-in-mask** = ``sum(m * g) / sum(m)``: the share of the CAM's mass on the object
  (a uniform map scores the mask's area share, reported as ``chance``);
- **pointing game** = 1 if the CAM's maximum (the first ``argmax`` in row-major order) lies
  inside the mask, else 0; optionally with a tolerance of ``tolerance`` pixels around the mask;
- **distractor energy** (when masks of the static distractors are given): the share of the CAM's
  mass on them.

A clip's score is the mean over its frames; a model's score is the mean over clips with a
percentile-bootstrap 95% interval (clips resampled with replacement).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

METRICS = ("energy", "pointing", "distractor_energy", "chance")
METRIC_LABELS = {
    "energy": "energy in mask",
    "pointing": "pointing game",
    "distractor_energy": "energy on distractors",
    "chance": "mask area (uniform CAM)",
}


def _check_pair(maps: np.ndarray, masks: np.ndarray, what: str = "masks") -> tuple[np.ndarray, np.ndarray]:
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks).astype(bool)
    if maps.ndim < 2:
        raise ValueError(f"maps must have shape (..., H, W), got {maps.shape}")
    if maps.shape != masks.shape:
        raise ValueError(
            f"maps {maps.shape} and {what} {masks.shape} differ in shape; resize the {what} to the "
            "CAM size (the network input) first"
        )
    if np.any(maps < 0):
        raise ValueError("CAM maps must be non-negative")
    return maps, masks


def energy_in_mask(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's mass inside its mask: ``(..., H, W) -> (...)``; NaN for an all-zero map."""
    maps, masks = _check_pair(maps, masks)
    total = maps.sum(axis=(-2, -1))
    inside = (maps * masks).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def _dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return masks
    from scipy.ndimage import binary_dilation

    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = (yy**2 + xx**2) <= radius**2
    structure = disk.reshape((1,) * (masks.ndim - 2) + disk.shape)
    return binary_dilation(masks, structure=structure)


def pointing_game(maps: np.ndarray, masks: np.ndarray, tolerance: int = 0) -> np.ndarray:
    """1.0 where the map's maximum (first ``argmax``) lies in the mask (dilated by ``tolerance``
    pixels), else 0.0: ``(..., H, W) -> (...)``; NaN for an all-zero map or an empty mask."""
    maps, masks = _check_pair(maps, masks)
    if not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative integer (pixels), got {tolerance!r}")
    h, w = maps.shape[-2:]
    flat = maps.reshape(-1, h * w)
    hit_mask = _dilate(masks, int(tolerance)).reshape(-1, h * w)
    top = flat.argmax(axis=1)
    hits = hit_mask[np.arange(flat.shape[0]), top].astype(np.float64)
    valid = (flat.max(axis=1) > 0) & masks.reshape(-1, h * w).any(axis=1)
    return np.where(valid, hits, np.nan).reshape(maps.shape[:-2])


def clip_scores(
    maps: np.ndarray,
    masks: np.ndarray,
    distractor_masks: np.ndarray | None = None,
    tolerance: int = 0,
) -> pd.DataFrame:
    """Per-clip scores of CAMs ``(N, T, H, W)`` against masks ``(N, T, H, W)`` (frame means).

    Columns: ``clip`` (0..N-1), ``energy``, ``pointing``, ``chance`` (mean mask area share) and,
    with ``distractor_masks``, ``distractor_energy``. Frames whose map is all zero or whose mask
    is empty are left out of the means.
    """
    maps = np.asarray(maps)
    if maps.ndim != 4:
        raise ValueError(f"maps must be (N, T, H, W), got shape {maps.shape}")
    maps, masks = _check_pair(maps, masks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # clips whose frames are all left out: NaN
        return _clip_scores(maps, masks, distractor_masks, tolerance)


def _clip_scores(maps, masks, distractor_masks, tolerance) -> pd.DataFrame:
    out = {
        "clip": np.arange(maps.shape[0]),
        "energy": np.nanmean(_keep(energy_in_mask(maps, masks), masks), axis=1),
        "pointing": np.nanmean(pointing_game(maps, masks, tolerance), axis=1),
        "chance": np.nanmean(_keep(masks.mean(axis=(-2, -1)), masks), axis=1),
    }
    if distractor_masks is not None:
        _, distractor_masks = _check_pair(maps, distractor_masks, "distractor masks")
        out["distractor_energy"] = np.nanmean(energy_in_mask(maps, distractor_masks), axis=1)
    return pd.DataFrame(out)


def _keep(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """NaN where the frame's mask is empty (the object is not visible)."""
    return np.where(masks.any(axis=(-2, -1)), values, np.nan)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` (NaNs dropped) and its percentile-bootstrap
    interval at ``level``. One value gives a zero-width interval; none gives NaNs."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(v.mean()), float(lo), float(hi)


def summarize(
    per_clip: pd.DataFrame,
    by: Sequence[str] = ("model", "method"),
    metrics: Sequence[str] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean and bootstrap interval of each metric per group: one row per (group, metric) with
    columns ``*by, metric, mean, ci_low, ci_high, n_clips``. Groups keep their first-seen order."""
    by = list(by)
    missing = [c for c in by if c not in per_clip.columns]
    if missing:
        raise ValueError(f"per-clip table has no column(s) {missing}; columns: {list(per_clip.columns)}")
    if metrics is None:
        metrics = [m for m in METRICS if m in per_clip.columns]
    rows = []
    for key, group in per_clip.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            mean, lo, hi = bootstrap_ci(group[metric].to_numpy(), n_boot, level, seed)
            rows.append({**dict(zip(by, key)), "metric": metric, "mean": mean, "ci_low": lo, "ci_high": hi,
                         "n_clips": int(group[metric].notna().sum())})  # fmt: skip
    return pd.DataFrame(rows)


def score_table(summary: pd.DataFrame, by: Sequence[str] = ("model", "method"), digits: int = 3) -> pd.DataFrame:
    """Wide, readable form of ``summarize``: one row per group, one ``mean [low, high]`` column
    per metric, plus ``n_clips``."""
    by = list(by)
    wide = summary.assign(
        value=[f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" for m, lo, hi in
               zip(summary["mean"], summary["ci_low"], summary["ci_high"])]  # fmt: skip
    )
    table = wide.pivot(index=by, columns="metric", values="value")
    order = [m for m in METRICS if m in table.columns] + [m for m in table.columns if m not in METRICS]
    table = table[order].rename(columns=METRIC_LABELS)
    n = summary.groupby(by, sort=False)["n_clips"].max()
    table["clips"] = n
    # keep the first-seen group order
    groups = list(dict.fromkeys(map(tuple, summary[by].itertuples(index=False, name=None))))
    table = table.reindex(pd.MultiIndex.from_tuples(groups, names=by) if len(by) > 1 else [g[0] for g in groups])
    table.columns.name = None
    return table.reset_index()


def plot_scores(
    summary: pd.DataFrame,
    metrics: Sequence[str] = ("energy", "pointing"),
    x: str = "method",
    hue: str = "model",
    row: str | None = "layer",
    chance: bool = True,
    title: str | None = None,
):
    """Bar plot of ``summarize`` output: one panel per metric (columns) and per value of ``row``
    (rows, when that column exists), bars = mean, error bars = the bootstrap interval of the
    table (not re-sampled). In energy panels the ``chance`` level (mask area share: what a uniform
    CAM scores) is a dashed line."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    metrics = [m for m in metrics if m in set(summary["metric"])]
    if not metrics:
        raise ValueError(f"none of the metrics are in the summary; it has {sorted(set(summary['metric']))}")
    rows = list(dict.fromkeys(summary[row])) if row and row in summary.columns else [None]
    fig, axes = plt.subplots(len(rows), len(metrics), figsize=(4.2 * len(metrics) + 1.2, 3.3 * len(rows) + 0.4),
                             squeeze=False)  # fmt: skip
    order = list(dict.fromkeys(summary[x]))
    hue_order = list(dict.fromkeys(summary[hue]))
    palette = dict(zip(hue_order, sns.color_palette("deep", len(hue_order))))
    for r, row_value in enumerate(rows):
        part = summary if row_value is None else summary[summary[row] == row_value]
        for c, metric in enumerate(metrics):
            ax = axes[r][c]
            data = part[part["metric"] == metric]
            sns.barplot(data=data, x=x, y="mean", hue=hue, order=order, hue_order=hue_order, ax=ax,
                        errorbar=None, palette=palette)  # fmt: skip
            for container, h in zip(ax.containers, hue_order):
                for bar, xv in zip(container, order):
                    sel = data[(data[hue] == h) & (data[x] == xv)]
                    if sel.empty or np.isnan(sel["mean"].iloc[0]):
                        continue
                    m, lo, hi = sel[["mean", "ci_low", "ci_high"]].iloc[0]
                    ax.errorbar(bar.get_x() + bar.get_width() / 2, m, yerr=[[m - lo], [hi - m]],
                                color="black", capsize=3, lw=1)  # fmt: skip
            if chance and metric == "energy" and "chance" in set(part["metric"]):
                level = part.loc[part["metric"] == "chance", "mean"].mean()
                ax.axhline(level, ls="--", color="grey", lw=1, label="uniform CAM")
            ax.set_ylim(0, 1)
            ax.set_xlabel("")
            ylabel = METRIC_LABELS.get(metric, metric)
            ax.set_ylabel(ylabel if row_value is None else f"{ylabel}\n({row_value})")
            ax.tick_params(axis="x", labelrotation=20)
            leg = ax.get_legend()
            if leg is not None:
                leg.remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", frameon=False)
    if title:
        fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    return fig


def tables_to_files(table: pd.DataFrame, stem: str | object) -> list[str]:
    """Write ``table`` as ``<stem>.csv`` and ``<stem>.md`` (GitHub markdown); returns the paths."""
    from pathlib import Path

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, md = stem.with_suffix(".csv"), stem.with_suffix(".md")
    table.to_csv(csv, index=False)
    md.write_text(table.to_markdown(index=False) + "\n")
    return [str(csv), str(md)]


__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "bootstrap_ci",
    "clip_scores",
    "energy_in_mask",
    "plot_scores",
    "pointing_game",
    "score_table",
    "summarize",
    "tables_to_files",
]
