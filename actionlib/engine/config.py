"""The typed training configuration: one flat dataclass, loadable from YAML, overridable from the
command line (``--set key=value`` or the per-field options of ``actionlib train``).

Every field carries its help text; ``actionlib train --help`` is generated from them.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# fields that change how a run is executed or logged, not its result: left out of the run key
RUNTIME_FIELDS = frozenset({
    "output_root", "run_name", "workers", "prefetch_factor", "threads", "device", "progress",
    "checkpoint_every_steps", "log_every", "tensorboard", "use_cache", "dist_backend",
})  # fmt: skip

GROUPS = ("model", "data", "optimiser", "schedule", "system", "output")


def _f(default: Any, help: str, group: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, "group": group}, **kw)
    return field(default=default, metadata={"help": help, "group": group}, **kw)


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``get_recipe(name)`` gives ready-made ones."""

    # -- model
    arch: str = _f("action", "model family: tsn, tsm or action", "model")
    backbone: str = _f("resnet18", "2-D backbone: resnet18/34/50/101, mobilenetv2, bninception", "model")
    num_segments: int = _f(8, "frames per clip T (segments)", "model")
    paths: list[str] | None = _f(None, "ACTION only: subset of ste, ce, me (default: all three)", "model")
    shift_div: int = _f(8, "1/shift_div of the channels shift each way (TSM, ACTION)", "model")
    dropout: float = _f(0.5, "dropout before the classifier", "model")
    pretrained: str | None = _f(None, "backbone weights: none, 'imagenet' (torch cache) or a state-dict file", "model")
    stages: list[int] | None = _f(None, "insert temporal blocks only in these stages (1..4); default all", "model")
    every: int | None = _f(None, "insert at every n-th point of a stage; default every point", "model")
    frozen_bn: bool = _f(False, "keep BatchNorm layers in eval mode (running statistics) while training", "model")
    sync_bn: bool = _f(False, "convert BatchNorm to SyncBatchNorm under multi-GPU (CUDA only)", "model")
    # -- data
    dataset: str = _f("synthetic", "dataset reader (actionlib.data.build_dataset name)", "data")
    data_root: str | None = _f(None, "dataset folder (synthetic: none = $ACTIONLIB_DATA or ~/.cache/actionlib)", "data")
    train_split: str = _f("train", "split used for training", "data")
    val_split: str = _f("val", "split used for validation", "data")
    image_size: int = _f(112, "crop size fed to the network (height = width)", "data")
    data_options: dict[str, Any] = _f({}, "extra keyword arguments for build_dataset (YAML/JSON mapping)", "data")
    transform_options: dict[str, Any] = _f({}, "extra keyword arguments for build_transform (YAML/JSON mapping)", "data")
    num_classes: int | None = _f(None, "output classes; default: the training set's class count", "data")
    # -- optimiser
    optimizer: str = _f("sgd", "sgd or adamw", "optimiser")
    lr: float = _f(0.01, "learning rate for a global batch of lr_reference_batch clips", "optimiser")
    lr_reference_batch: int = _f(64, "batch the lr is given for; lr scales linearly with the global batch (0: no scaling)", "optimiser")
    momentum: float = _f(0.9, "SGD momentum (AdamW: beta1)", "optimiser")
    nesterov: bool = _f(False, "Nesterov momentum (SGD)", "optimiser")
    weight_decay: float = _f(5e-4, "weight decay (not applied to biases and BatchNorm)", "optimiser")
    fc_lr_mult: float = _f(5.0, "learning-rate multiplier of the classifier weight", "optimiser")
    fc_bias_lr_mult: float = _f(10.0, "learning-rate multiplier of the classifier bias", "optimiser")
    clip_grad_norm: float | None = _f(20.0, "clip the global gradient norm to this value (none: no clipping)", "optimiser")
    label_smoothing: float = _f(0.0, "label smoothing of the cross-entropy loss", "optimiser")
    # -- schedule
    epochs: int = _f(10, "training epochs", "schedule")
    batch_size: int = _f(16, "global batch (clips per step over all processes)", "schedule")
    schedule: str = _f("step", "lr schedule: step (x lr_gamma at lr_steps), cosine or constant", "schedule")
    lr_steps: list[int] = _f([], "epochs at which the step schedule multiplies the lr by lr_gamma", "schedule")
    lr_gamma: float = _f(0.1, "step-decay factor", "schedule")
    warmup_epochs: float = _f(0.0, "linear lr warm-up from 0, in epochs (fractions allowed)", "schedule")
    max_steps_per_epoch: int | None = _f(None, "stop each epoch after this many steps (none: the whole set)", "schedule")
    eval_every: int = _f(1, "validate every n epochs (and always after the last)", "schedule")
    # -- system
    seed: int = _f(0, "random seed (model init, sampling, augmentation, dropout)", "system")
    deterministic: bool = _f(False, "deterministic algorithms: reruns give identical numbers on one machine", "system")
    device: str = _f("auto", "auto (CUDA when available), cpu, cuda or cuda:N", "system")
    precision: str = _f("auto", "auto (CUDA: bf16 if supported else fp16; CPU: fp32), fp32, bf16 or fp16", "system")
    channels_last: bool = _f(True, "channels-last memory format on CUDA", "system")
    workers: int = _f(2, "data-loader worker processes per process", "system")
    prefetch_factor: int = _f(2, "batches prefetched per worker", "system")
    threads: int | None = _f(None, "torch CPU threads per process (none: torch's default)", "system")
    dist_backend: str = _f("auto", "torch.distributed backend under torchrun: auto (nccl on CUDA, else gloo), nccl, gloo", "system")
    # -- output
    output_root: str | None = _f(None, "runs folder (default: $ACTIONLIB_RUNS or ./runs)", "output")
    run_name: str | None = _f(None, "prefix of the run folder name (default: arch-backbone-dataset)", "output")
    checkpoint_every_steps: int = _f(0, "also write last.pt every n steps (0: at epoch ends only)", "output")
    log_every: int = _f(10, "steps between progress-bar / TensorBoard updates", "output")
    tensorboard: bool = _f(True, "write TensorBoard events when tensorboard is installed", "output")
    progress: bool = _f(True, "show tqdm progress bars", "output")
    use_cache: bool = _f(True, "return a finished run with the same key instead of training again", "output")

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict[str, Any]:
        """A plain dict of primitives (JSON/YAML/``torch.load(weights_only=True)`` safe)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{source}: unknown config keys {unknown}; allowed: {field_names()}")
        cfg = cls(**{k: coerce(k, v, source) for k, v in data.items()})
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file must hold a mapping of keys to values, got {type(data).__name__}")
        return cls.from_dict(data, str(path))

    def to_yaml(self, path: str | os.PathLike) -> None:
        with open(path, "w") as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with some fields changed (values are checked and coerced)."""
        return TrainConfig.from_dict({**self.to_dict(), **overrides}, "overrides")

    def validate(self) -> None:
        def allowed(name: str, options: tuple) -> None:
            if getattr(self, name) not in options:
                raise ValueError(f"config {name}={getattr(self, name)!r} is not allowed; allowed: {list(options)}")

        allowed("arch", ("tsn", "tsm", "action"))
        allowed("optimizer", ("sgd", "adamw"))
        allowed("schedule", ("step", "cosine", "constant"))
        allowed("precision", ("auto", "fp32", "bf16", "fp16"))
        allowed("dist_backend", ("auto", "nccl", "gloo"))
        for name in ("epochs", "batch_size", "num_segments", "image_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"config {name} must be >= 1, got {getattr(self, name)}")
        for name in ("workers", "checkpoint_every_steps", "lr_reference_batch"):
            if getattr(self, name) < 0:
                raise ValueError(f"config {name} must be >= 0, got {getattr(self, name)}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"config device={self.device!r} is not allowed; allowed: auto, cpu, cuda, cuda:N")

    def run_key(self, data_identity: str = "") -> str:
        """Hash of everything that determines the result: the config (not the runtime fields),
        the data identity, and the code that computes the numbers (:func:`code_identity`)."""
        result_fields = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}
        blob = json.dumps({"config": result_fields, "data": data_identity, "code": code_identity()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# the subpackages whose code decides a run's numbers: models and their ops, data, the training loop
_CODE_PACKAGES = ("ops", "models", "data", "engine")


def code_identity(root: str | os.PathLike | None = None) -> str:
    """Hash of the code that decides a trained run's numbers (``actionlib.ops``, ``.models``,
    ``.data``, ``.engine``), read as syntax trees without docstrings, so that editing prose or
    comments keeps the run cache while a change to what is computed retrains; C++ sources there
    (compiled kernels) count byte for byte. ``root``: the package folder (default: this
    installation of actionlib)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for sub in _CODE_PACKAGES:
        for path in sorted((root / sub).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                body = getattr(node, "body", None)
                if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                        and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                        and isinstance(body[0].value.value, str)):  # fmt: skip
                    node.body = body[1:] or [ast.Pass()]
            h.update(f"{sub}/{path.name}\n{ast.dump(tree)}\n".encode())
        for path in sorted((root / sub).glob("*.cpp")):
            h.update(f"{sub}/{path.name}\n".encode() + path.read_bytes())
    return h.hexdigest()[:16]


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def field_info() -> dict[str, tuple[Any, str, str]]:
    """name -> (type annotation, help, group)."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: (hints[f.name], f.metadata["help"], f.metadata["group"]) for f in dataclasses.fields(TrainConfig)}


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) of an annotation like ``int | None``."""
    args = typing.get_args(tp)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def coerce(name: str, value: Any, source: str = "config") -> Any:
    """Turn ``value`` (possibly a string from the command line) into the type of field ``name``."""
    info = field_info()
    if name not in info:
        raise ValueError(f"{source}: unknown config key {name!r}; allowed: {field_names()}")
    tp, optional = _base_type(info[name][0])
    if isinstance(value, str) and optional and value.lower() in ("none", "null", ""):
        return None
    if value is None:
        if optional:
            return None
        raise ValueError(f"{source}: {name} may not be empty")
    origin = typing.get_origin(tp) or tp
    try:
        if origin is bool:
            if isinstance(value, str):
                low = value.lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return low in ("1", "true", "yes", "on")
            return bool(value)
        if origin is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if origin is float:
            return float(value)
        if origin is str:
            return str(value)
        if origin is list:
            (item,) = typing.get_args(tp)
            if isinstance(value, str):
                value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.replace(",", " ").split() if v]
            if not isinstance(value, (list, tuple)):
                value = [value]
            return [item(v) for v in value]
        if origin is dict:
            if isinstance(value, str):
                value = yaml.safe_load(value) or {}
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {name}={value!r} is not a valid {tp}") from None
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=0.1", "lr_steps=[5,10]"]`` -> ``{"lr": 0.1, "lr_steps": [5, 10]}``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value; keys: {field_names()}")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        out[key] = coerce(key, value, f"override {item!r}")
    return out


def runs_root(cfg: TrainConfig) -> Path:
    return Path(cfg.output_root or os.environ.get("ACTIONLIB_RUNS") or "runs")
