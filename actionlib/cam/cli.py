"""``actionlib cam``: the TSN / TSM / ACTION CAM figure of a clip, and optionally the localisation
scores on the synthetic validation clips.

    actionlib cam                                   # recipe 'quick' models, a synthetic
                                                    # "Rotate counter-clockwise" clip
    actionlib cam --checkpoint tsn=runs/a tsm=runs/b action=runs/c/best.pt --clip my_frames/
    actionlib cam --score --num-clips 50 --methods gradcam gradcam++ layercam
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

HELP = "class activation maps of TSN / TSM / ACTION: the comparison figure and localisation scores"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .core import METHODS

    g = parser.add_argument_group("models")
    g.add_argument("--checkpoint", nargs="+", metavar="NAME=PATH", default=None,
                   help="models as name=run folder or checkpoint file (rows in this order); default: "
                        "train TSN, TSM, ACTION with --recipe (or take them from the run cache)")  # fmt: skip
    g.add_argument("--recipe", default="quick", help="engine recipe used when no --checkpoint is given")
    g.add_argument("--archs", nargs="+", default=["tsn", "tsm", "action"], help="models trained with --recipe")
    g.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides (TrainConfig fields)")
    g = parser.add_argument_group("clip")
    g.add_argument("--clip", default=None,
                   help="a frames folder or video file; default: a synthetic validation clip")  # fmt: skip
    g.add_argument("--clip-id", default=None, help="id of the synthetic validation clip (default: the first of --class)")
    g.add_argument("--class", dest="cls", default="Rotate counter-clockwise",
                   help="class of the default synthetic clip")  # fmt: skip
    g = parser.add_argument_group("CAM")
    g.add_argument("--method", default="gradcam", help=f"CAM method of the figure, one of {', '.join(METHODS)}")
    g.add_argument("--target", default="pred",
                   help="class the maps explain: 'pred' (each model's prediction), 'label' or a class index")  # fmt: skip
    g.add_argument("--layer", default=None, help="target layer (dotted name); default: the backbone's last stage")
    g.add_argument("--out", default="results/figures/cam_comparison",
                   help="figure path without suffix (written as .png and .pdf)")  # fmt: skip
    g = parser.add_argument_group("scores")
    g.add_argument("--score", action="store_true", help="also score the maps against the ground-truth masks")
    g.add_argument("--num-clips", type=int, default=50, help="synthetic validation clips to score")
    g.add_argument("--methods", nargs="+", default=["gradcam", "gradcam++", "xgradcam", "layercam", "eigencam"],
                   help="CAM methods to score")  # fmt: skip
    g.add_argument("--table", default="results/tables/cam_scores",
                   help="score table path without suffix (.csv and .md; the bar plot goes to results/figures)")  # fmt: skip
    g.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the 95%% intervals")


def _parse_checkpoints(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--checkpoint {item!r} must look like name=path (e.g. tsn=runs/tsn-run)")
        name, path = item.split("=", 1)
        out[name.strip()] = path.strip()
    return out


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import experiment as X
    from .figure import save_figure
    from .score import plot_scores, score_table, summarize, tables_to_files

    if args.checkpoint:
        specs = _parse_checkpoints(args.checkpoint)
    else:
        from ..engine.config import parse_overrides

        overrides = parse_overrides(args.set)
        specs = X.recipe_configs(args.recipe, args.archs, **overrides)
    models = X.load_models(specs)
    first = next(iter(models.values()))
    classes = list(getattr(first.model, "classes", []) or [])

    if args.clip:
        batch = X.load_clip_file(args.clip, first.model.num_segments)
    else:
        ds = X.val_dataset(first.config)
        classes = classes or list(ds.classes)
        pos = X.pick_clips(ds, 1, [args.clip_id] if args.clip_id else None, None if args.clip_id else args.cls)
        batch = X.load_items(ds, pos, with_masks=False)
    target = args.target if args.target in ("pred", "label") else int(args.target)
    fig, results = X.clip_figure(models, batch, class_names=classes or None, method=args.method,
                                 target=target, target_layer=args.layer)  # fmt: skip
    paths = save_figure(fig, args.out)
    plt.close(fig)
    for name, res in results.items():
        k = int(res.predictions[0])
        label = classes[k] if k < len(classes) else k
        print(f"{name:>8}: predicts {label!s} (p = {res.probs[0, k]:.2f})")
    print("figure:", ", ".join(map(str, paths)))

    if args.score:
        ds = X.val_dataset(first.config)
        batch = X.load_items(ds, X.pick_clips(ds, args.num_clips))
        per_clip = X.score_models(models, batch, args.methods, layers=[args.layer])
        summary = summarize(per_clip, by=("model", "method", "layer"), n_boot=args.n_boot)
        table = score_table(summary, by=("model", "method", "layer"))
        files = tables_to_files(table, args.table)
        fig = plot_scores(summary, title=f"CAM localisation on {len(batch)} synthetic validation clips")
        plot_paths = save_figure(fig, Path(args.out).with_name(Path(args.table).name), formats=("png",))
        plt.close(fig)
        print(table.to_string(index=False))
        print("table:", ", ".join(files), "| plot:", ", ".join(map(str, plot_paths)))
    return 0
