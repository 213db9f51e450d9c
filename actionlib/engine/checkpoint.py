"""Atomic, ``weights_only``-loadable checkpoints and the RNG states they carry.

A checkpoint is a dict of tensors and primitive containers only (the config as a plain dict), so
``torch.load(path, weights_only=True)`` loads it and no pickled code runs.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "actionlib-checkpoint-1"


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` onto the CPU; clear errors for wrong files."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report which file is bad
        raise ValueError(f"{path} is not a readable actionlib checkpoint: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not an actionlib checkpoint (no '{FORMAT}' marker)")
    return ckpt


def describe_model(cfg: dict[str, Any]) -> str:
    return f"{cfg.get('arch')}/{cfg.get('backbone')}, {cfg.get('num_classes')} classes, T={cfg.get('num_segments')}"


def load_model_weights(model: nn.Module, ckpt: dict[str, Any], source: str) -> None:
    """Load the checkpoint's model state; a mismatch names the differing keys and shapes."""
    from ..models import load_model_state

    try:
        load_model_state(model, ckpt["model"], source)
    except ValueError as e:
        raise ValueError(f"checkpoint {source} ({describe_model(ckpt.get('model_config', {}))}) does not fit "
                         f"this model: {e}") from None  # fmt: skip


# ---------------------------------------------------------------- RNG states
def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) RNG states as tensors / primitives."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    out = {
        "python": [version, list(state), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
