"""``actionlib train`` and ``actionlib eval``."""

from __future__ import annotations

import argparse
import typing

HELP_TRAIN = "train a model (recipes, YAML configs, overrides; resumable; torchrun for multi-GPU)"
HELP_EVAL = "evaluate a checkpoint: single-clip centre crop or multi-clip x multi-crop"

GROUP_TITLES = {
    "model": "model", "data": "data", "optimiser": "optimiser", "schedule": "schedule",
    "system": "devices, precision, reproducibility", "output": "output and logging",
}  # fmt: skip


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from .config import TrainConfig, _base_type, field_info
    from .recipes import recipe_names

    parser.description = (
        "Train TSN / TSM / ACTION. The config is built from (lowest precedence first) a --recipe "
        "or the built-in defaults, a --config YAML file, the per-field options below, then --set "
        "KEY=VALUE. A run whose key (hash of the config and data) already finished is returned "
        "from the run cache; an unfinished one resumes from its last.pt. Multi-GPU: "
        "torchrun --nproc_per_node N -m actionlib train ... (the batch is global)."
    )
    parser.epilog = "examples: actionlib train --recipe quick --arch tsm | actionlib train --recipe paper-ssv2 --data-root /data/ssv2 --batch-size 64"  # fmt: skip
    g = parser.add_argument_group("run")
    g.add_argument("--recipe", choices=recipe_names(), help="start from this named recipe (paper-*: spec section 5; quick / fast / smoke: synthetic benchmark on a CPU)")  # fmt: skip
    g.add_argument("--config", metavar="FILE", help="YAML file with config fields (applied over the recipe)")
    g.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="override any config field (repeatable), e.g. --set lr_steps=[5,10]")  # fmt: skip
    g.add_argument("--resume", nargs="?", const=True, default="auto", metavar="PATH",
                   help="continue a run: without PATH the run of this config (its last.pt must exist); with PATH "
                        "a checkpoint or run folder (its stored config is used). Default: unfinished runs of the "
                        "same config resume automatically")  # fmt: skip
    g.add_argument("--fresh", action="store_true", help="ignore the run cache and any last.pt: train from scratch")
    g.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    g.add_argument("--save-config", metavar="FILE", help="also write the resolved config to FILE (YAML)")
    defaults = TrainConfig()
    groups = {name: parser.add_argument_group(title) for name, title in GROUP_TITLES.items()}
    for name, (tp, help_text, group) in field_info().items():
        base, optional = _base_type(tp)
        origin = typing.get_origin(base) or base
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        text = f"{help_text} (default: {default})"
        kw: dict = {"dest": f"cfg_{name}", "default": argparse.SUPPRESS, "help": text}
        if origin is bool:
            groups[group].add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif origin is list:
            groups[group].add_argument(flag, nargs="+", metavar="V", **kw)
        elif origin is dict:
            groups[group].add_argument(flag, metavar="YAML", **kw)
        else:
            metavar = {int: "N", float: "X", str: "S"}.get(origin, "V")
            groups[group].add_argument(flag, metavar=metavar + ("|none" if optional else ""), **kw)


def resolve_train_config(args: argparse.Namespace):
    from .config import TrainConfig, coerce, parse_overrides
    from .recipes import get_recipe

    data = get_recipe(args.recipe).to_dict() if args.recipe else TrainConfig().to_dict()
    if args.config:
        data.update({k: v for k, v in TrainConfig.from_yaml(args.config).to_dict().items()
                     if k in _yaml_keys(args.config)})  # fmt: skip
    for key, value in vars(args).items():
        if key.startswith("cfg_"):
            name = key[4:]
            if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
                value = value[0]
            data[name] = coerce(name, value, f"--{name.replace('_', '-')}")
    data.update(parse_overrides(args.set))
    return TrainConfig.from_dict(data, "command line")


def _yaml_keys(path: str) -> set[str]:
    import yaml

    with open(path) as f:
        return set((yaml.safe_load(f) or {}).keys())


def train_main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .checkpoint import load_checkpoint
    from .config import TrainConfig
    from .loop import fit

    resume = args.resume
    if resume not in ("auto", True):  # a checkpoint path: its config, with runtime options of this call
        src = Path(resume)
        stored = load_checkpoint(src / "last.pt" if src.is_dir() else src)["config"]
        given = resolve_train_config(args).to_dict()
        from .config import RUNTIME_FIELDS

        cfg = TrainConfig.from_dict({**stored, **{k: given[k] for k in RUNTIME_FIELDS if k != "output_root"}})
    else:
        cfg = resolve_train_config(args)
    if args.fresh:
        cfg = cfg.replace(use_cache=False)
        resume = False
    if args.save_config:
        cfg.to_yaml(args.save_config)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    result = fit(cfg, resume=resume)
    keys = ("run_dir", "cached", "best_epoch", "best_top1", "best_top5", "final_top1", "final_top5", "wall_time_s", "checkpoint")
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    return 0


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="best.pt / last.pt, or a run folder (its best.pt)")
    parser.add_argument("--clips", type=int, default=1, help="clips per video, evenly offset in the segments (TSM protocol: 2)")
    parser.add_argument("--crops", type=int, default=1, help="crops per clip along the long side: 1 = centre, 3 = left/centre/right")
    parser.add_argument("--dataset", help="dataset reader (none: the run's)")
    parser.add_argument("--data-root", help="dataset folder (none: the run's)")
    parser.add_argument("--split", help="split to evaluate (none: the run's validation split)")
    parser.add_argument("--image-size", type=int, help="network input size (none: the run's image_size)")
    parser.add_argument("--scale-size", type=int, help="short side before cropping (none: the run's transform scale_size, else image_size * 256/224)")
    parser.add_argument("--crop-size", type=int, help="crop side before resizing to image-size (none: image-size; TSM full-resolution 3-crop: = scale-size)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, help="videos per batch")
    parser.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads (none: torch's default)")
    parser.add_argument("--out", metavar="DIR", help="folder for predictions / confusion / per-class files (none: <run folder>/eval)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def eval_main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .evaluate import evaluate

    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else (ckpt if ckpt.is_dir() else ckpt.parent) / "eval"
    result = evaluate(
        args.checkpoint, dataset=args.dataset, data_root=args.data_root, split=args.split,
        num_clips=args.clips, num_crops=args.crops, image_size=args.image_size,
        scale_size=args.scale_size, crop_size=args.crop_size, batch_size=args.batch_size,
        workers=args.workers, device=args.device, out_dir=out, progress=not args.no_progress,
        threads=args.threads,
    )  # fmt: skip
    print(json.dumps({k: result[k] for k in ("top1", "top5", "loss", "num_videos", "num_clips", "num_crops")}, indent=2))
    print("per-class accuracy:")
    for row in result["per_class"]:
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.1f}"
        print(f"  {row['class']:<32} {acc:>6}  (n={row['count']})")
    print("files:", json.dumps(result["files"], indent=2))
    return 0
