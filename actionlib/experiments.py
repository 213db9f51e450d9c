"""The experiments behind the notebooks: which models each one trains, under which profile.

A notebook asks for its plan, runs it and shows tables; everything else lives here::

    plan = experiments.plan("02_path_ablation", profile="quick", seed=0)
    runs = experiments.run_plan(plan)              # trains (or takes finished runs from the cache)
    table = experiments.results_table(plan, runs)  # accuracy + params / GMACs + references

Profiles:

- ``smoke``: seconds per model (recipe ``smoke``); every notebook runs in under a minute on
  2 CPU cores. Used by nbval in ``make test``. The numbers only show that the pipeline works.
- ``quick``: the synthetic benchmark on 2 CPU cores (recipes ``quick`` / ``fast`` with the
  per-notebook overrides of ``PROFILE_SETTINGS``); the whole suite in about 45 minutes.
- ``paper``: the real datasets with the authors' recipe (spec section 5, ``paper-<dataset>``),
  meant for GPUs. ``run_plan(plan, dry_run=True)`` resolves every configuration without training.

Every notebook shares configurations through this module, so a model trained by one notebook
(e.g. ACTION ResNet-18 in ``01_main_comparison``) is taken from the engine's run cache by the next
(the same model is the STE+CE+ME row of ``02_path_ablation``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

PROFILES = ("smoke", "quick", "paper")
PAPER_DATASETS = ("ssv2", "jester", "egogesture")

# Cost columns are measured at the paper's setting, whatever the training resolution.
COST_SIZE = 224
COST_CLASSES = 174
COST_NOTE = ("params / GMACs: one clip of 8 x 224 x 224 (T x 224 x 224 when segments is given) with a 174-way "
             "classifier, spec section 4's setting, whatever resolution / T the model was trained at")  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """One model of an experiment: a row of its table."""

    label: str
    arch: str
    backbone: str | None = None  # None: the plan's backbone
    paths: tuple[str, ...] | None = None  # ACTION only; None: all three
    stages: tuple[int, ...] | None = None  # None: all stages
    every: int | None = None  # None: every insertion point

    def model_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.paths is not None:
            kw["paths"] = list(self.paths)
        if self.stages is not None:
            kw["stages"] = list(self.stages)
        if self.every is not None:
            kw["every"] = self.every
        return kw


MAIN_VARIANTS = (Variant("TSN", "tsn"), Variant("TSM", "tsm"), Variant("ACTION", "action"))

ABLATION_VARIANTS = (
    Variant("TSN", "tsn"),
    Variant("TSM", "tsm"),
    Variant("STE", "action", paths=("ste",)),
    Variant("CE", "action", paths=("ce",)),
    Variant("ME", "action", paths=("me",)),
    Variant("STE+CE", "action", paths=("ste", "ce")),
    Variant("STE+ME", "action", paths=("ste", "me")),
    Variant("CE+ME", "action", paths=("ce", "me")),
    Variant("STE+CE+ME", "action"),
)

BACKBONE_LIST = ("resnet50", "mobilenetv2", "bninception")

INSERTION_VARIANTS = (
    Variant("TSN (none)", "tsn"),
    Variant("stages 1-4 (all)", "action"),
    Variant("stages 1-2", "action", stages=(1, 2)),
    Variant("stages 3-4", "action", stages=(3, 4)),
    Variant("stage 4", "action", stages=(4,)),
    Variant("every 2nd block", "action", every=2),
)


def backbone_variants(backbones: Sequence[str] = BACKBONE_LIST) -> tuple[Variant, ...]:
    return tuple(Variant(v.label, v.arch, backbone=b) for b in backbones for v in MAIN_VARIANTS)


# notebook -> its models
NOTEBOOK_VARIANTS: dict[str, tuple[Variant, ...]] = {
    "00_quickstart": (Variant("ACTION", "action"),),
    "01_main_comparison": MAIN_VARIANTS,
    "02_path_ablation": ABLATION_VARIANTS,
    "03_backbones": backbone_variants(),
    "06_insertion": INSERTION_VARIANTS,
}

# profile -> notebook -> (recipe, overrides); "*" applies to every notebook without its own entry.
# quick: 22 models (13 ResNet-18 ones shared between 01 / 02 / 06 through the run cache, 9 in 03) with
# the engine's "fast" recipe as it stands (its calibration is the engine's; the suite adds nothing).
_SMOKE = ("smoke", {
    "progress": False, "data_options": {"clips": 60}, "epochs": 1, "max_steps_per_epoch": 2,
    "batch_size": 2, "deterministic": True,
})  # fmt: skip
_QUICK = ("fast", {"progress": False})
PROFILE_SETTINGS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "smoke": {"*": _SMOKE},
    "quick": {"*": _QUICK},
    "paper": {"*": ("paper-{dataset}", {})},
}

# profile -> notebook -> how many seeds each model is trained with (default 1). On the synthetic
# benchmark one run of a model says little (seeds move ACTION's top-1 between ~25 and ~78), so
# the quick profile's two comparisons that carry the paper's claims train every model with three.
PROFILE_SEEDS: dict[str, dict[str, int]] = {
    "quick": {"01_main_comparison": 3, "02_path_ablation": 3},
}


@dataclass
class Plan:
    """What a notebook trains: its variants and one ``TrainConfig`` per variant."""

    notebook: str
    profile: str
    dataset: str
    recipe: str
    segments: int
    variants: list[Variant]
    configs: list[Any]  # TrainConfig, one per variant
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    cost_segments: int = 8  # T of the params / GMACs columns: the paper's 8 unless segments was given
    seeds: tuple[int, ...] = (0,)  # every model is trained once per seed (configs hold the first)

    def table(self) -> pd.DataFrame:
        """The resolved configurations, one row per model (what would be trained)."""
        rows = []
        for v, c in zip(self.variants, self.configs):
            rows.append({
                "model": v.label, "arch": c.arch, "backbone": c.backbone, "paths": _paths_str(v),
                "stages": _stages_str(v), "every": v.every or 1, "dataset": c.dataset,
                "segments": c.num_segments, "size": c.image_size, "epochs": c.epochs,
                "batch": c.batch_size, "lr": c.lr, "pretrained": c.pretrained or "none",
            })  # fmt: skip
        return pd.DataFrame(rows)


def _paths_str(v: Variant) -> str:
    if v.arch != "action":
        return ""
    return "+".join(v.paths or ("ste", "ce", "me"))


def _stages_str(v: Variant) -> str:
    if v.arch == "tsn":
        return ""
    if v.stages is None:
        return "1-4"
    s = sorted(v.stages)
    return f"{s[0]}-{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 1 else ",".join(map(str, s))


def project_root() -> Path:
    """Where ``runs/`` and ``data/`` live: ``$ACTIONLIB_ROOT``, else the checkout holding the package."""
    env = os.environ.get("ACTIONLIB_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {list(PROFILES)}")


def settings(notebook: str, profile: str) -> tuple[str, dict[str, Any]]:
    """(recipe name template, overrides) of ``notebook`` under ``profile``."""
    _check_profile(profile)
    table = PROFILE_SETTINGS[profile]
    recipe, overrides = table.get(notebook, table["*"])
    return recipe, dict(overrides)


def plan(
    notebook: str,
    profile: str = "smoke",
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    backbone: str | None = None,
    segments: int | None = None,
    seed: int = 0,
    n_seeds: int | None = None,
    variants: Sequence[Variant] | None = None,
    **overrides: Any,
) -> Plan:
    """Resolve the training configurations of ``notebook`` under ``profile`` (nothing is trained).

    Args:
        notebook: one of ``NOTEBOOK_VARIANTS`` (e.g. ``"02_path_ablation"``).
        profile: ``smoke``, ``quick`` or ``paper``.
        dataset: ``synthetic`` (smoke / quick default) or ``ssv2`` / ``jester`` / ``egogesture``
            (paper; default ``ssv2``).
        data_root: dataset folder; default the recipe's (relative paths are taken from the project
            root, so notebooks, nbval and ``actionlib reproduce`` share data and run cache).
        backbone: default the recipe's (``paper``: ResNet-50; ``smoke`` / ``quick``: ResNet-18).
        segments: frames per clip; default the recipe's (``paper``: 8).
        seed: training seed (the first one, with ``n_seeds``).
        n_seeds: train every model with seeds ``seed, seed + 1, ...``; ``results_table`` then
            reports means and spreads. Default: the profile's (``PROFILE_SEEDS``; else 1).
        variants: replace the notebook's models.
        **overrides: any further ``TrainConfig`` field.
    """
    from .engine.recipes import get_recipe

    if notebook not in NOTEBOOK_VARIANTS and variants is None:
        raise ValueError(f"unknown notebook {notebook!r}; allowed: {sorted(NOTEBOOK_VARIANTS)}")
    recipe_tpl, base = settings(notebook, profile)
    if profile == "paper":
        dataset = dataset or "ssv2"
        if dataset not in PAPER_DATASETS:
            raise ValueError(f"profile 'paper' trains on {list(PAPER_DATASETS)}, got dataset {dataset!r}")
    recipe = recipe_tpl.format(dataset=dataset)
    n_seeds = PROFILE_SEEDS.get(profile, {}).get(notebook, 1) if n_seeds is None else n_seeds
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive integer (or None: the profile's), got {n_seeds!r}")
    common = {**base, **overrides, "seed": seed}
    if dataset is not None and profile != "paper":
        common["dataset"] = dataset
    if data_root is not None:
        common["data_root"] = data_root
    if segments is not None:
        common["num_segments"] = int(segments)
    root = project_root()
    base_cfg = get_recipe(recipe)
    for key in ("data_options", "transform_options"):  # merged into the recipe's, not replacing them
        if key in common:
            common[key] = {**getattr(base_cfg, key), **common[key]}
    cfg0 = get_recipe(recipe, **common)
    if cfg0.data_root and not Path(cfg0.data_root).is_absolute():
        common["data_root"] = str(root / cfg0.data_root)
    if cfg0.output_root is None and not os.environ.get("ACTIONLIB_RUNS"):
        common["output_root"] = str(root / "runs")

    chosen = list(variants if variants is not None else NOTEBOOK_VARIANTS[notebook])
    configs = []
    for v in chosen:
        cfg = {**common, "arch": v.arch, **v.model_kwargs()}
        if v.backbone or backbone:
            cfg["backbone"] = v.backbone or backbone
        configs.append(get_recipe(recipe, **cfg))
    notes = [f"profile {profile}: recipe {recipe!r}" + (f" with {_fmt(base)}" if _fmt(base) != "-" else "")]
    if overrides:
        notes.append(f"notebook overrides: {_fmt(overrides)}")
    seeds = tuple(range(seed, seed + n_seeds))
    if n_seeds > 1:
        notes.append(f"seeds {', '.join(map(str, seeds))}: every model trained once per seed; top1 / top5 are the "
                     "means, top1_sd the standard deviation and top1_runs the top-1 of each seed")  # fmt: skip
    return Plan(notebook, profile, configs[0].dataset if configs else cfg0.dataset, recipe,
                configs[0].num_segments if configs else cfg0.num_segments, chosen, configs, seed, notes,
                cost_segments=int(segments) if segments is not None else 8, seeds=seeds)  # fmt: skip


def _fmt(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items() if k != "progress") or "-"


def run_plan(plan: Plan, *, dry_run: bool = False) -> pd.DataFrame:
    """Train every model of ``plan`` (finished runs come from the engine's cache).

    Returns one row per model and seed: ``model, arch, backbone, paths, stages, every, segments, seed,
    classes, top1, top5, best_epoch, wall_time_s, cached, run_dir``. With ``dry_run`` nothing is
    trained and the metrics are NaN (the configurations are still fully resolved, see ``Plan.table``).
    """
    rows = []
    for v, cfg0, seed in ((v, c, s) for v, c in zip(plan.variants, plan.configs) for s in plan.seeds):
        cfg = cfg0 if seed == cfg0.seed else cfg0.replace(seed=seed)
        row = {**_identity(v, cfg), "seed": seed}
        if dry_run:
            row.update(classes=math.nan, top1=math.nan, top5=math.nan, best_epoch=math.nan,
                       wall_time_s=math.nan, cached=False, run_dir="")  # fmt: skip
        else:
            from .engine import fit

            log.info("%s: training %s %s (%s, seed %d)", plan.notebook, v.label, cfg.backbone, plan.recipe, seed)
            t0 = time.perf_counter()
            res = fit(cfg)
            row.update(
                classes=len(res.get("classes") or []) or cfg.num_classes, top1=round(float(res["best_top1"]), 2), top5=round(float(res["best_top5"]), 2),
                best_epoch=res.get("best_epoch"), wall_time_s=round(time.perf_counter() - t0, 1),
                cached=bool(res.get("cached", False)), run_dir=str(res.get("run_dir", "")),
            )  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def _identity(v: Variant, cfg: Any) -> dict[str, Any]:
    return {
        "model": v.label, "arch": cfg.arch, "backbone": cfg.backbone, "paths": _paths_str(v),
        "stages": _stages_str(v), "every": v.every or 1, "segments": cfg.num_segments,
    }  # fmt: skip


def cost_table(
    variants: Sequence[Variant],
    *,
    backbone: str = "resnet50",
    segments: int = 8,
    size: int = COST_SIZE,
    num_classes: int = COST_CLASSES,
) -> pd.DataFrame:
    """Params (M), GMACs and number of temporal modules of each variant (no latency)."""
    rows = []
    for v in variants:
        b = v.backbone or backbone
        p = model_cost(v.arch, b, segments, size, num_classes, **v.model_kwargs())
        rows.append({"model": v.label, "arch": v.arch, "backbone": b, "paths": _paths_str(v),
                     "stages": _stages_str(v), "every": v.every or 1, "segments": segments, **p})  # fmt: skip
    return pd.DataFrame(rows)


def model_cost(arch: str, backbone: str, segments: int = 8, size: int = COST_SIZE, num_classes: int = COST_CLASSES,
               **model_kwargs: Any) -> dict[str, Any]:  # fmt: skip
    """``params_m``, ``gmacs`` (one clip) and ``modules`` (temporal blocks) of a model.

    Counted as ``profiling.profile_model`` counts them, on the ``meta`` device (shapes only: no
    weight initialisation, no arithmetic), which gives the same numbers about ten times faster.
    """
    import torch

    from .models import build_model
    from .profiling import count_macs, count_params

    with torch.device("meta"):
        model = build_model(arch, backbone, num_classes, segments, **model_kwargs)
    macs = count_macs(model, torch.empty(1, segments, 3, size, size, device="meta"))
    return {"params_m": round(count_params(model) / 1e6, 3), "gmacs": round(macs / 1e9, 3),
            "modules": len(model.temporal_modules())}  # fmt: skip


def results_table(plan: Plan, runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy of ``runs`` beside params / GMACs at the paper's setting, with references.

    Columns: ``model, backbone, top1, top1_ref, top1_diff, top5, params_m, params_m_ref,
    params_m_diff, gmacs, gmacs_ref, gmacs_diff`` (+ identity columns). References are blank where
    none may be quoted (``reporting.REFERENCE_TOP1``, ``reporting.REFERENCE_SIZES``). With several
    seeds per model (``plan.seeds``), one row per model: top1 / top5 are the means, followed by
    ``top1_sd``, ``top1_runs`` and ``seeds``.
    """
    from . import reporting

    runs, spread = _over_seeds(runs)
    costs = cost_table(plan.variants, backbone=plan.configs[0].backbone, segments=plan.cost_segments)
    merged = runs.merge(costs[["model", "backbone", "params_m", "gmacs", "modules"]], on=["model", "backbone"])
    merged = reporting.add_reference_top1(merged, plan.dataset)
    merged = reporting.add_reference_sizes(merged, segments=plan.cost_segments)
    cols = ["model", "arch", "backbone", "paths", "stages", "every", "classes", "top1", *spread, "top1_ref",
            "top1_diff", "top5", "params_m", "params_m_ref", "params_m_diff", "gmacs", "gmacs_ref", "gmacs_diff",
            "modules"]  # fmt: skip
    return merged[cols]


def _over_seeds(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per model from ``run_plan``'s rows: with several seeds, top1 / top5 become means
    (2 decimals) and ``top1_sd`` (sample standard deviation) and ``top1_runs`` (each seed's top-1,
    in seed order) are added; with one seed per model the rows are returned as they are."""
    if "seed" not in runs or runs.groupby(["model", "backbone"], sort=False).size().max() <= 1:
        return runs, []
    rows = []
    for _, part in runs.sort_values("seed", kind="stable").groupby(["model", "backbone"], sort=False):
        row = part.iloc[0].to_dict()
        top1 = part["top1"]
        row.update(top1=round(float(top1.mean()), 2), top5=round(float(part["top5"].mean()), 2),
                   top1_sd=round(float(top1.std(ddof=1)), 2), seeds=len(part),
                   top1_runs="" if top1.isna().all() else " / ".join(f"{v:g}" for v in top1))  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows), ["top1_sd", "top1_runs", "seeds"]


def check_accuracy(table: pd.DataFrame) -> None:
    """Bands every trained model must lie in: 0 <= top1 <= top5 <= 100 (``AssertionError`` otherwise).

    Rows without metrics (dry run) are skipped. Whether a model learned is not asserted: the
    ``claims_*`` tables report the paper's conclusions as holding or not.
    """
    t = table.dropna(subset=["top1"])
    bad = t[(t["top1"] < 0) | (t["top1"] > 100) | (t["top5"] < t["top1"] - 1e-6) | (t["top5"] > 100)]
    if not bad.empty:
        raise AssertionError(f"accuracies out of range:\n{bad[['model', 'top1', 'top5']].to_string()}")


def dataset_info(plan: Plan) -> dict[str, Any]:
    """Classes and split sizes of the plan's dataset (builds the synthetic set on first use)."""
    from .engine.data import build_datasets, class_names

    train, val = build_datasets(plan.configs[0])
    names = class_names(train)
    return {"dataset": plan.dataset, "classes": len(names), "train clips": len(train), "val clips": len(val)}


# --- paper claims (spec section 7) ---------------------------------------------------------------


def _per_seed(claims: pd.DataFrame, runs: pd.DataFrame | None, claim_fn, key: list[str]) -> pd.DataFrame:
    """Add ``holds per seed`` ("k of n") to ``claims`` (computed on the seeds' means) when ``runs``
    (``run_plan``'s rows) has several seeds: ``claim_fn`` applied to each seed's rows alone."""
    if runs is None or claims.empty or "seed" not in runs or runs["seed"].nunique() <= 1:
        return claims
    seeds = sorted(runs["seed"].unique())
    holds = [claim_fn(runs[runs["seed"] == s]).set_index(key)["holds"] for s in seeds]
    counts = [sum(h.get(k) == "yes" for h in holds) for k in claims.set_index(key).index]
    return claims.assign(**{"holds per seed": [f"{c} of {len(seeds)}" for c in counts]})


def claims_main(table: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Claim 1 per backbone: ACTION > TSM > TSN in top-1 (and the margins). With ``runs``
    (``run_plan``'s rows, several seeds): also in how many seeds it holds."""
    return _per_seed(_claims_main(table), runs, _claims_main, ["backbone"])


def _claims_main(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for b, part in table.groupby("backbone", sort=False):
        acc = part.set_index("arch")["top1"]
        if acc.isna().any() or not {"tsn", "tsm", "action"} <= set(acc.index):
            continue
        rows.append({
            "backbone": b, "claim": "ACTION > TSM > TSN (top-1)",
            "evidence": f"TSN {acc['tsn']:.1f}, TSM {acc['tsm']:.1f}, ACTION {acc['action']:.1f}",
            "ACTION - TSN": round(acc["action"] - acc["tsn"], 2), "ACTION - TSM": round(acc["action"] - acc["tsm"], 2),
            "holds": "yes" if acc["action"] > acc["tsm"] > acc["tsn"] else "no",
        })  # fmt: skip
    return pd.DataFrame(rows)


def claims_ablation(table: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Claim 2: each path alone beats TSN; all three together are best among the ACTION variants.
    With ``runs`` (``run_plan``'s rows, several seeds): also in how many seeds each holds."""
    return _per_seed(_claims_ablation(table), runs, _claims_ablation, ["claim"])


def _claims_ablation(table: pd.DataFrame) -> pd.DataFrame:
    acc = table.set_index("model")["top1"]
    if acc.isna().any():
        return pd.DataFrame()
    rows = []
    for p in ("STE", "CE", "ME"):
        rows.append({"claim": f"{p} alone > TSN", "evidence": f"{acc[p]:.1f} vs {acc['TSN']:.1f}",
                     "holds": "yes" if acc[p] > acc["TSN"] else "no"})  # fmt: skip
    action = [m for m in acc.index if m not in ("TSN", "TSM")]
    best = max(action, key=lambda m: acc[m])
    rows.append({"claim": "STE+CE+ME best of the path combinations",
                 "evidence": f"STE+CE+ME {acc['STE+CE+ME']:.1f}; best {best} {acc[best]:.1f}",
                 "holds": "yes" if acc["STE+CE+ME"] >= acc[best] else "no"})  # fmt: skip
    return pd.DataFrame(rows)


def claim_overhead(costs: pd.DataFrame, backbone: str = "resnet50") -> pd.DataFrame:
    """Claim 3: ACTION's extra GMACs over TSN on ``backbone`` (paper: about +5% on ResNet-50)."""
    part = costs[costs["backbone"] == backbone].set_index("arch")
    pct = 100 * (part.loc["action", "gmacs"] / part.loc["tsn", "gmacs"] - 1)
    return pd.DataFrame([{
        "claim": f"ACTION adds about 5% GMACs over TSN ({backbone})",
        "evidence": f"{part.loc['tsn', 'gmacs']:.3f} -> {part.loc['action', 'gmacs']:.3f} GMACs (+{pct:.2f}%)",
        "holds": "yes" if 3.0 <= pct <= 7.0 else "no",
    }])  # fmt: skip


# --- efficiency (04) -----------------------------------------------------------------------------

EFFICIENCY_SETTINGS = {
    # profile -> latency measurement: input size, timed repeats (median), warm-up runs, train step too?
    "smoke": {"size": 128, "repeats": 1, "warmup": 0, "train_step": False},
    "quick": {"size": COST_SIZE, "repeats": 3, "warmup": 1, "train_step": True},
    "paper": {"size": COST_SIZE, "repeats": 20, "warmup": 5, "train_step": True},
}


def efficiency_table(
    backbones: Sequence[str] = BACKBONE_LIST,
    archs: Sequence[str] = ("tsn", "tsm", "action"),
    *,
    segments: int = 8,
    size: int = COST_SIZE,
    num_classes: int = COST_CLASSES,
) -> pd.DataFrame:
    """Params / GMACs of every backbone x model beside spec section 4 with differences and overhead."""
    from . import reporting

    variants = [Variant(reporting.ARCH_NAMES[a], a, backbone=b) for b in backbones for a in archs]
    costs = cost_table(variants, segments=segments, size=size, num_classes=num_classes)
    costs = reporting.add_reference_sizes(costs, segments=segments, size=size, num_classes=num_classes)
    # the reference counted a 1000-way head: the same count with one (a linear layer costs in x out per frame)
    features = costs["backbone"].map(_feature_dim)
    costs["gmacs_1000fc"] = (costs["gmacs"] + (1000 - num_classes) * features * segments / 1e9).round(3)
    costs["gmacs_1000fc_diff"] = (costs["gmacs_1000fc"] - costs["gmacs_ref"]).round(3)
    costs = reporting.add_overhead(costs)
    cols = ["backbone", "arch", "params_m", "params_m_ref", "params_m_diff", "gmacs", "gmacs_ref", "gmacs_diff",
            "gmacs_diff_pct", "gmacs_1000fc", "gmacs_1000fc_diff", "params_m_overhead_pct", "gmacs_overhead_pct",
            "modules"]  # fmt: skip
    return costs[cols]


def _feature_dim(backbone: str) -> int:
    import torch

    from .models.backbones import create_backbone

    with torch.device("meta"):
        return create_backbone(backbone)[1]


def latency_table(
    backbones: Sequence[str] = BACKBONE_LIST,
    archs: Sequence[str] = ("tsn", "tsm", "action"),
    *,
    profile: str = "smoke",
    segments: int = 8,
    size: int | None = None,
    device: str = "cpu",
) -> pd.DataFrame:
    """Median forward (and, except under ``smoke``, train-step) latency of one clip, in ms.

    ``size`` defaults to the profile's (``EFFICIENCY_SETTINGS``: 128 under ``smoke``, else 224).
    """
    from .profiling import make_train_step, median_time
    from .models import build_model

    import torch

    _check_profile(profile)
    s = EFFICIENCY_SETTINGS[profile]
    size = size or s["size"]
    dev = torch.device(device)
    rows = []
    for b in backbones:
        for a in archs:
            torch.manual_seed(0)
            model = build_model(a, b, COST_CLASSES, segments).to(dev)
            x = torch.randn(1, segments, 3, size, size, device=dev)
            model.eval()
            with torch.no_grad():
                fwd = median_time(lambda: model(x), s["repeats"], s["warmup"], dev)
            row = {"backbone": b, "arch": a, "size": size, "device": str(dev), "threads": torch.get_num_threads(),
                   "forward_ms": round(fwd * 1e3, 1)}  # fmt: skip
            if s["train_step"]:
                model.train()
                y = torch.zeros(1, dtype=torch.long, device=dev)
                row["train_step_ms"] = round(
                    median_time(make_train_step(model, x, y), s["repeats"], s["warmup"], dev) * 1e3, 1
                )
            rows.append(row)
    out = pd.DataFrame(rows)
    for col in ("forward_ms", "train_step_ms"):
        if col in out:
            base = out[out["arch"] == "tsn"].set_index("backbone")[col]
            out[f"{col.removesuffix('_ms')}_overhead_pct"] = (100 * (out[col] / out["backbone"].map(base) - 1)).round(1)
    return out


def accuracy_vs_cost(results_dir: str | os.PathLike | None, names: Sequence[str] = ("main_comparison", "path_ablation",
                     "backbones", "insertion")) -> pd.DataFrame:  # fmt: skip
    """Rows (model, backbone, top1, gmacs, source table) of the accuracy tables written so far."""
    from . import reporting

    parts = []
    for name in names:
        t = reporting.read_table(name, results_dir)
        if t is not None and {"top1", "gmacs"} <= set(t.columns):
            t = t.dropna(subset=["top1", "gmacs"])
            parts.append(t.assign(table=name)[["table", "model", "backbone", "top1", "gmacs"]])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["table", "model", "backbone", "top1", "gmacs"])


# --- quickstart (00) -----------------------------------------------------------------------------


def validation_set(plan: Plan):
    """The validation dataset of the plan's first configuration (test transform)."""
    from .engine.data import build_datasets

    return build_datasets(plan.configs[0])[1]


def predict_clip(run_dir: str | os.PathLike, dataset, index: int, *, topk: int = 3) -> pd.DataFrame:
    """Top-``topk`` classes (with probabilities in %) the trained model of ``run_dir`` gives clip ``index``."""
    import torch

    from .engine import load_trained

    model, _ = load_trained(run_dir)
    clip, label = dataset[index]
    with torch.no_grad():
        probs = torch.softmax(model(clip.unsqueeze(0)), dim=1)[0]
    p, idx = probs.topk(min(topk, probs.numel()))
    p = [round(100 * float(x), 1) for x in p]
    names = list(getattr(dataset, "classes", [])) or [str(i) for i in range(probs.numel())]
    return pd.DataFrame({
        "rank": range(1, len(idx) + 1), "class": [names[i] for i in idx.tolist()],
        "probability_pct": p, "true class": [i == label for i in idx.tolist()],
    })  # fmt: skip
