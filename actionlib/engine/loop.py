"""``fit(config)``: the training loop shared by CPU, one GPU and ``torchrun`` multi-GPU runs.

A run lives in ``<runs>/<name>-<key>/`` where ``key`` hashes the resolved config (runtime-only
fields left out) and the data identity. The folder holds ``last.pt`` (each epoch and every
``checkpoint_every_steps``), ``best.pt`` (best validation top-1), ``metrics.csv`` (one row per
epoch), ``config.yaml``, ``identity.json`` (run key, code and data identity: see
``actionlib.engine.runs``), TensorBoard events under ``tb/`` and, once finished, ``summary.json``.
Asking ``fit`` for a finished run returns its summary without training (``cached=True``); an
unfinished run with a ``last.pt`` resumes from it (``resume="auto"``). Accuracies are percent.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as D
from .checkpoint import FORMAT, load_checkpoint, load_model_weights, rng_state, save_atomic, set_rng_state
from .config import TrainConfig, runs_root
from .data import build_datasets, class_names, data_identity, make_loader
from .runs import IDENTITY_FILE, identity_text

log = logging.getLogger(__name__)

METRIC_COLUMNS = (
    "epoch", "lr", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5",
    "epoch_time_s", "wall_time_s",
)  # fmt: skip


# ------------------------------------------------------------------ config / device helpers
def as_config(config: Any) -> TrainConfig:
    """A ``TrainConfig`` from a config, a dict, a recipe name or a YAML file path."""
    if isinstance(config, TrainConfig):
        config.validate()
        return config
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        from .recipes import RECIPES, get_recipe

        if str(config) in RECIPES:
            return get_recipe(str(config))
        return TrainConfig.from_yaml(config)
    raise ValueError(f"config must be a TrainConfig, dict, recipe name or YAML path, got {type(config).__name__}")


def pick_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        kind = cfg.device
    if kind.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"config device={cfg.device!r} but CUDA is not available; use device=cpu or auto")
    if kind == "cuda":
        kind = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return torch.device(kind)


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: fp32)."""
    p = cfg.precision
    if p == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]


@contextlib.contextmanager
def _global_settings(cfg: TrainConfig, device: torch.device):
    """Threads and determinism for the run; the caller's settings are restored afterwards."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)  # fmt: skip
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[3], saved[4]


def set_bn_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def model_config(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    return {"arch": cfg.arch, "backbone": cfg.backbone, "num_classes": num_classes,
            "num_segments": cfg.num_segments, "paths": cfg.paths, "shift_div": cfg.shift_div,
            "dropout": cfg.dropout, "stages": cfg.stages, "every": cfg.every}  # fmt: skip


def build_from_model_config(mc: dict[str, Any], pretrained: str | None = None) -> nn.Module:
    from ..models import build_model

    return build_model(mc["arch"], mc["backbone"], int(mc["num_classes"]), int(mc["num_segments"]),
                       paths=mc.get("paths"), shift_div=mc.get("shift_div", 8),
                       dropout=mc.get("dropout", 0.5), pretrained=pretrained,
                       stages=mc.get("stages"), every=mc.get("every"))  # fmt: skip


def param_groups(model: nn.Module, cfg: TrainConfig, lr: float) -> list[dict[str, Any]]:
    """Spec section 5: no weight decay on biases and BatchNorm; classifier weight x fc_lr_mult,
    classifier bias x fc_bias_lr_mult."""
    fc = model.fc
    fc_ids = {id(fc.weight), id(fc.bias)}
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad and id(p) not in fc_ids:
            (no_decay if p.ndim <= 1 else decay).append(p)
    wd = cfg.weight_decay
    groups = [
        {"params": decay, "lr": lr, "weight_decay": wd, "lr_mult": 1.0, "name": "weights"},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0, "lr_mult": 1.0, "name": "bn_and_biases"},
        {"params": [fc.weight], "lr": lr * cfg.fc_lr_mult, "weight_decay": wd, "lr_mult": cfg.fc_lr_mult, "name": "fc_weight"},
        {"params": [fc.bias], "lr": lr * cfg.fc_bias_lr_mult, "weight_decay": 0.0, "lr_mult": cfg.fc_bias_lr_mult, "name": "fc_bias"},
    ]  # fmt: skip
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg, lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.momentum, 0.999))


def lr_factor_fn(cfg: TrainConfig, steps_per_epoch: int):
    """step -> lr multiplier (warm-up, then step / cosine / constant), applied per step."""
    total = cfg.epochs * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "step":
            epoch = step // steps_per_epoch
            return cfg.lr_gamma ** sum(epoch >= s for s in cfg.lr_steps)
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
        return 1.0

    return factor


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> list[torch.Tensor]:
    kmax = min(max(ks), logits.shape[1])
    pred = logits.topk(kmax, dim=1).indices
    hit = pred.eq(target[:, None])
    return [hit[:, : min(k, kmax)].any(dim=1).sum() for k in ks]


def prepare_input(x: torch.Tensor, device: torch.device, channels_last: bool, normalize=None) -> torch.Tensor:
    """A batch of clips on ``device``: uint8 batches are normalised there by ``normalize``
    (``ClipNormalize``), float ones are taken as they are."""
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8 and normalize is not None:
        x = normalize(x)
    if not x.is_floating_point():
        raise ValueError(f"clips must be float tensors after the transform, got {x.dtype}; "
                         "pass a transform (actionlib.data.build_transform)")  # fmt: skip
    if channels_last and x.dim() == 5:
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)  # (N*T, 3, H, W)
    return x


@torch.no_grad()
def run_validation(model: nn.Module, loader, device: torch.device, dtype: torch.dtype | None,
                   channels_last: bool, info: D.DistInfo, progress: bool = False,
                   normalize=None) -> dict[str, float]:  # fmt: skip
    from .._progress import tqdm

    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, count
    for x, y in tqdm(loader, desc="val", leave=False, disable=not progress, dynamic_ncols=True):
        x, y = prepare_input(x, device, channels_last, normalize), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        logits = logits.float()
        c1, c5 = topk_correct(logits, y)
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(), c1.double(),
                             c5.double(), torch.tensor(float(len(y)), device=device, dtype=torch.float64)])  # fmt: skip
    sums = D.all_reduce_sum(sums, info).tolist()
    n = max(sums[3], 1.0)
    return {"loss": sums[0] / n, "top1": 100.0 * sums[1] / n, "top5": 100.0 * sums[2] / n, "count": int(sums[3])}


# ------------------------------------------------------------------ run folder helpers
def find_run_dir(root: Path, key: str) -> Path | None:
    if root.is_dir():
        for p in sorted(root.glob(f"*-{key}")):
            if p.is_dir():
                return p
    return None


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_metrics_csv(path: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(METRIC_COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in METRIC_COLUMNS})
    _write_text_atomic(path, buf.getvalue())


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    import numpy
    import torchvision

    from .. import __version__

    return {"actionlib": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "cuda": str(torch.version.cuda), "platform": platform.platform()}  # fmt: skip


def result_from_summary(run_dir: Path, summary: dict[str, Any], cached: bool) -> dict[str, Any]:
    return {
        "run_dir": str(run_dir), "run_key": summary["run_key"], "checkpoint": str(run_dir / "best.pt"),
        "last_checkpoint": str(run_dir / "last.pt"), "best_epoch": summary["best_epoch"],
        "best_top1": summary["best_top1"], "best_top5": summary["best_top5"],
        "final_top1": summary["final_top1"], "final_top5": summary["final_top5"],
        "wall_time_s": summary["wall_time_s"], "metrics": summary["history"],
        "config": summary["config"], "classes": summary.get("classes"), "cached": cached,
    }  # fmt: skip


def cached_result(run_dir: Path | None) -> dict[str, Any] | None:
    """The result of a finished run in ``run_dir`` (None when it has not finished)."""
    if run_dir is None:
        return None
    path = run_dir / "summary.json"
    if not path.is_file() or not (run_dir / "best.pt").is_file():
        return None
    with open(path) as f:
        summary = json.load(f)
    if summary.get("status") != "finished":
        return None
    return result_from_summary(run_dir, summary, cached=True)


def _tensorboard_writer(run_dir: Path, cfg: TrainConfig, purge_step: int | None):
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.debug("tensorboard is not installed: no event files")
        return None
    return SummaryWriter(str(run_dir / "tb"), purge_step=purge_step)


# ------------------------------------------------------------------ fit
def fit(config: Any, *, resume: bool | str | os.PathLike = "auto", train_dataset=None, val_dataset=None) -> dict[str, Any]:
    """Train (or fetch from the run cache) the run described by ``config``.

    Args:
        config: a ``TrainConfig``, a dict of its fields, a recipe name or a YAML file.
        resume: ``"auto"`` (continue an unfinished run of the same key from its ``last.pt``),
            ``False`` (start over), ``True`` (like auto, but the run must have a ``last.pt``), or
            the path of a checkpoint / run folder to continue from.
        train_dataset, val_dataset: datasets to use instead of ``build_dataset`` (items
            ``(clip float (T,3,H,W), label)``, a ``classes`` attribute).

    Returns:
        dict with run_dir, run_key, checkpoint (best.pt), last_checkpoint, best_epoch, best_top1,
        best_top5, final_top1, final_top5 (percent), wall_time_s, metrics (per-epoch rows),
        config, classes and cached (True when the finished run was found and not retrained).
    """
    cfg = as_config(config)
    device = pick_device(cfg)
    info = D.setup(device.type, cfg.dist_backend)
    try:
        with _global_settings(cfg, device):
            return _fit(cfg, device, info, resume, train_dataset, val_dataset)
    finally:
        D.teardown(info)


def _fit(cfg: TrainConfig, device: torch.device, info: D.DistInfo, resume, train_ds, val_ds) -> dict[str, Any]:
    from .._progress import tqdm

    t_start = time.perf_counter()
    if (train_ds is None) != (val_ds is None):
        raise ValueError("pass both train_dataset and val_dataset, or neither")
    if train_ds is None:
        train_ds, val_ds = build_datasets(cfg, uint8=True)  # normalised per batch on the device
    classes = class_names(train_ds)
    num_classes = cfg.num_classes or len(classes)
    data_id = data_identity(cfg, train_ds, val_ds)
    key = cfg.run_key(data_id)
    root = runs_root(cfg)
    run_dir = find_run_dir(root, key) or root / f"{cfg.run_name or f'{cfg.arch}-{cfg.backbone}-{cfg.dataset}'}-{key}"

    # ---- run cache / resume source
    ckpt, ckpt_path = None, None
    if isinstance(resume, (str, os.PathLike)) and str(resume) != "auto":
        src = Path(resume)
        ckpt_path = src / "last.pt" if src.is_dir() else src
        ckpt = load_checkpoint(ckpt_path)
        run_dir = ckpt_path.resolve().parent  # continue where that run lives
    else:
        if cfg.use_cache:
            done = cached_result(run_dir)
            if done is not None:
                log.info("run %s already finished: returning its results (cached)", run_dir)
                return done
        if resume and (run_dir / "last.pt").is_file():
            ckpt_path = run_dir / "last.pt"
            ckpt = load_checkpoint(ckpt_path)
        elif resume is True:
            raise FileNotFoundError(f"resume: no checkpoint to resume from: {run_dir / 'last.pt'} does not exist")
    if ckpt is not None and ckpt.get("world_size", 1) != info.world_size:
        log.warning("resuming a %d-process run with %d processes: sampler position and RNG states are approximate",
                    ckpt.get("world_size", 1), info.world_size)  # fmt: skip

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.to_yaml(run_dir / "config.yaml")
        _write_text_atomic(run_dir / IDENTITY_FILE, identity_text(key, data_id))  # for `actionlib runs`
    D.barrier(info)

    # ---- model, optimiser, schedule
    torch.manual_seed(cfg.seed)
    mc = model_config(cfg, num_classes)
    model = build_from_model_config(mc, pretrained=None if ckpt is not None else cfg.pretrained)
    if ckpt is not None:
        load_model_weights(model, ckpt, str(ckpt_path))
    if cfg.sync_bn and info.enabled:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            log.warning("sync_bn needs CUDA; keeping per-process BatchNorm on %s", device)
    channels_last = cfg.channels_last and device.type == "cuda"
    from ..data import ClipNormalize

    normalize = ClipNormalize(cfg.backbone)  # for uint8 batches (see build_datasets(uint8=True))
    model.to(device)
    if channels_last:
        from ..models import to_channels_last

        to_channels_last(model)  # not model.to(memory_format=...): ACTION's STE weight is 5-D
    net = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)  # fmt: skip

    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size={cfg.batch_size} (global) is not divisible by the {info.world_size} processes")
    local_batch = cfg.batch_size // info.world_size
    lr = cfg.lr * (cfg.batch_size / cfg.lr_reference_batch if cfg.lr_reference_batch else 1.0)
    optimizer = build_optimizer(model, cfg, lr)
    dtype = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    pin = device.type == "cuda"
    train_loader, train_sampler = make_loader(train_ds, cfg, info, train=True, batch_size=local_batch, pin_memory=pin)
    val_loader, _ = make_loader(val_ds, cfg, info, train=False, batch_size=local_batch, pin_memory=pin)
    full_steps = len(train_sampler) // local_batch
    if full_steps == 0:
        raise ValueError(f"the training set ({len(train_ds)} clips) is smaller than one batch of {cfg.batch_size}")
    steps_per_epoch = min(full_steps, cfg.max_steps_per_epoch or full_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(cfg, steps_per_epoch))

    # ---- state
    start_epoch, start_batch, global_step, elapsed = 0, 0, 0, 0.0
    history: list[dict[str, Any]] = []
    best = {"top1": -1.0, "top5": 0.0, "epoch": 0}
    meters = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top1, top5, count
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, start_batch = int(ckpt["epoch"]), int(ckpt["batch_in_epoch"])
        global_step, elapsed = int(ckpt["global_step"]), float(ckpt["elapsed_s"])
        history, best = list(ckpt["history"]), dict(ckpt["best"])
        if info.is_main:  # the reduced sums of the epoch so far live on rank 0
            meters = torch.tensor(ckpt["meters"], dtype=torch.float64, device=device)
        rngs = ckpt["rng"]
        if len(rngs) == info.world_size:
            set_rng_state(rngs[info.rank])
        else:
            torch.manual_seed(cfg.seed + 1000 * start_epoch + info.rank)
        log.info("resuming %s at epoch %d, batch %d (step %d)", run_dir, start_epoch + 1, start_batch, global_step)
    else:
        torch.manual_seed(cfg.seed + 1 + info.rank)  # dropout etc.: distinct per rank

    writer = _tensorboard_writer(run_dir, cfg, global_step or None) if info.is_main else None
    if info.is_main:
        write_metrics_csv(run_dir / "metrics.csv", history)

    def make_checkpoint(epoch: int, batch_in_epoch: int, meters_now: torch.Tensor, now_elapsed: float) -> dict[str, Any]:
        reduced = D.all_reduce_sum(meters_now, info).tolist()
        rngs = D.all_gather_object(rng_state(), info)
        return {
            "format": FORMAT, "config": cfg.to_dict(), "model_config": mc, "classes": classes,
            "run_key": key, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch, "batch_in_epoch": batch_in_epoch,
            "global_step": global_step, "world_size": info.world_size, "meters": reduced,
            "history": history, "best": best, "elapsed_s": now_elapsed, "rng": rngs,
        }  # fmt: skip

    def save_last(epoch: int, batch_in_epoch: int, meters_now: torch.Tensor) -> None:
        state = make_checkpoint(epoch, batch_in_epoch, meters_now, elapsed + time.perf_counter() - t_start)
        if info.is_main:
            save_atomic(state, run_dir / "last.pt")

    log.info("training %s on %s (%d process(es), %s), %d steps/epoch of %d clips, lr %.4g -> %s",
             f"{cfg.arch}/{cfg.backbone}", device, info.world_size, dtype or "fp32", steps_per_epoch,
             cfg.batch_size, lr, run_dir)  # fmt: skip

    state = None
    for epoch in range(start_epoch, cfg.epochs):
        t_epoch = time.perf_counter()
        skip = start_batch if epoch == start_epoch else 0
        if epoch != start_epoch:
            meters = torch.zeros(4, dtype=torch.float64, device=device)
        train_sampler.set_epoch(epoch, skip=skip * local_batch)
        net.train()
        if cfg.frozen_bn:
            set_bn_eval(net)
        bar = tqdm(total=steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and info.is_main), dynamic_ncols=True)  # fmt: skip
        t_window, n_window = time.perf_counter(), 0
        batch = skip
        for x, y in train_loader:
            if batch >= steps_per_epoch:
                break
            x, y = prepare_input(x, device, channels_last, normalize), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = net(x)
            logits = logits.float()
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.clip_grad_norm:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            global_step += 1
            batch += 1
            with torch.no_grad():
                c1, c5 = topk_correct(logits.detach(), y)
                meters += torch.stack([loss.detach().double() * len(y), c1.double(), c5.double(),
                                       torch.tensor(float(len(y)), dtype=torch.float64, device=device)])  # fmt: skip
            n_window += len(y) * info.world_size
            bar.update(1)
            if batch % cfg.log_every == 0 or batch == steps_per_epoch:
                m = meters.tolist()
                rate = n_window / max(time.perf_counter() - t_window, 1e-9)
                bar.set_postfix(loss=f"{m[0] / max(m[3], 1):.3f}", acc=f"{100 * m[1] / max(m[3], 1):.1f}",
                                clips_s=f"{rate:.1f}")  # fmt: skip
                if writer is not None:
                    writer.add_scalar("train/loss_step", loss.item(), global_step)
                    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], global_step)
                    writer.add_scalar("train/clips_per_s", rate, global_step)
                t_window, n_window = time.perf_counter(), 0
            if cfg.checkpoint_every_steps and global_step % cfg.checkpoint_every_steps == 0 and batch < steps_per_epoch:
                save_last(epoch, batch, meters)
        bar.close()
        start_batch = 0

        tr = D.all_reduce_sum(meters, info).tolist()
        n = max(tr[3], 1.0)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                               "train_loss": tr[0] / n, "train_top1": 100 * tr[1] / n, "train_top5": 100 * tr[2] / n}  # fmt: skip
        is_best = False
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            # the unwrapped model: shards may differ in length, DDP's forward would wait for peers
            val = run_validation(model, val_loader, device, dtype, channels_last, info, cfg.progress and info.is_main,
                                 normalize)  # fmt: skip
            row.update(val_loss=val["loss"], val_top1=val["top1"], val_top5=val["top5"])
            is_best = val["top1"] > best["top1"]
            if is_best:
                best = {"top1": val["top1"], "top5": val["top5"], "epoch": epoch + 1}
        row["epoch_time_s"] = time.perf_counter() - t_epoch
        row["wall_time_s"] = elapsed + time.perf_counter() - t_start
        history.append(row)
        log.info("epoch %d/%d: train loss %.4f top1 %.2f | val loss %s top1 %s top5 %s | %.1fs",
                 epoch + 1, cfg.epochs, row["train_loss"], row["train_top1"],
                 *(f"{row[k]:.4f}" if row.get(k) is not None else "-" for k in ("val_loss", "val_top1", "val_top5")),
                 row["epoch_time_s"])  # fmt: skip
        zero = torch.zeros(4, dtype=torch.float64, device=device)
        state = make_checkpoint(epoch + 1, 0, zero, row["wall_time_s"])
        if info.is_main:
            if is_best:
                best_state = {k: state[k] for k in ("format", "config", "model_config", "classes", "run_key", "model")}
                save_atomic({**best_state, "epoch": epoch + 1, "metrics": row}, run_dir / "best.pt")
            save_atomic(state, run_dir / "last.pt")
            write_metrics_csv(run_dir / "metrics.csv", history)
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch" and v is not None:
                        writer.add_scalar(f"epoch/{k}", v, epoch + 1)
                writer.flush()

    wall = elapsed + time.perf_counter() - t_start
    if state is None:  # nothing left to train (resumed from the end of the last epoch)
        state = make_checkpoint(cfg.epochs, 0, torch.zeros(4, dtype=torch.float64, device=device), wall)
    last_val = next((r for r in reversed(history) if r.get("val_top1") is not None), {})
    summary = {
        "status": "finished", "run_key": key, "config": cfg.to_dict(), "model_config": mc,
        "classes": classes, "best_epoch": best["epoch"], "best_top1": best["top1"], "best_top5": best["top5"],
        "final_top1": last_val.get("val_top1"), "final_top5": last_val.get("val_top5"),
        "final_val_loss": last_val.get("val_loss"), "history": history, "wall_time_s": wall,
        "world_size": info.world_size, "device": str(device), "precision": str(dtype or "fp32"),
        "versions": versions(), "git_commit": git_commit(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip
    if info.is_main:
        if not (run_dir / "best.pt").is_file():  # no validation improved (e.g. NaN): keep the last model
            save_atomic({**{k: state[k] for k in ("format", "config", "model_config", "classes", "run_key", "model")},
                         "epoch": cfg.epochs, "metrics": history[-1] if history else {}}, run_dir / "best.pt")  # fmt: skip
        _write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
        if writer is not None:
            writer.close()
    D.barrier(info)
    return result_from_summary(run_dir, summary, cached=False)
