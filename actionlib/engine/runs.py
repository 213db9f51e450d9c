"""The run folders under a runs root: what each holds, and which ones this code can still reuse.

A run's folder name ends in its run key, a hash that includes :func:`~actionlib.engine.config.code_identity`
(the code that computes a run's numbers). After any such change ``fit`` trains into new folders,
and the old ones are never returned from the run cache again: "stale". A ResNet-50 run keeps two
checkpoints (~200 MB each), so stale runs pile up with every upgrade.

    >>> from actionlib.engine.runs import list_runs, prune_runs
    >>> [(r.name, r.status, r.current) for r in list_runs("runs")]
    >>> prune_runs("runs", dry_run=True)      # the stale run folders, nothing deleted

``fit`` writes ``identity.json`` (run key, code identity, data identity) into each run folder
when it starts. Folders without it were made by an actionlib from before that file existed; their
keys hold an older code identity, so they count as stale too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from pathlib import Path

from .config import code_identity

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"
_RUN_NAME = re.compile(r".+-([0-9a-f]{12})$")  # <name>-<run key>


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One run folder. ``status``: "finished" (summary.json and best.pt), "unfinished" (last.pt:
    ``fit`` resumes it) or "empty" (crashed before its first checkpoint). ``current``: made by
    this code (its code identity matches), so the run cache can return or resume it."""

    path: Path
    name: str
    key: str
    status: str
    current: bool
    code: str | None  # the code identity it was made with (None: before identity.json)
    arch: str | None
    backbone: str | None
    dataset: str | None
    best_top1: float | None
    finished_at: str | None
    size_mb: float


def _read_json(path: Path) -> dict | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _size_mb(folder: Path) -> float:
    total = 0
    for top, _, files in os.walk(folder):  # symbolic links to folders are not followed
        for name in files:
            p = Path(top, name)
            if not p.is_symlink():
                total += p.stat().st_size
    return total / 2**20


def _config_fields(folder: Path, summary: dict | None) -> dict:
    if summary and isinstance(summary.get("config"), dict):
        return summary["config"]
    import yaml

    try:  # an unfinished run: its config.yaml (written when it started)
        with open(folder / "config.yaml") as f:
            cfg = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        log.debug("%s: config.yaml unreadable (%s)", folder, err)
        return {}
    return cfg if isinstance(cfg, dict) else {}


def run_info(folder: str | Path, code: str | None = None) -> RunInfo | None:
    """What ``folder`` holds, or ``None`` when it is not a run folder (a name ending in a 12-digit
    hex run key, with a config.yaml). ``code``: the code identity to compare with (default: this
    installation's)."""
    folder = Path(folder)
    m = _RUN_NAME.match(folder.name)
    if not (m and folder.is_dir() and not folder.is_symlink() and (folder / "config.yaml").is_file()):
        return None
    summary = _read_json(folder / "summary.json")
    if summary and summary.get("status") == "finished" and (folder / "best.pt").is_file():
        status = "finished"
    elif (folder / "last.pt").is_file():
        status = "unfinished"
    else:
        status = "empty"
    identity = _read_json(folder / IDENTITY_FILE) or {}
    made_with = identity.get("code_identity")
    cfg = _config_fields(folder, summary)
    return RunInfo(
        path=folder, name=folder.name, key=m.group(1), status=status,
        current=made_with is not None and made_with == (code or code_identity()), code=made_with,
        arch=cfg.get("arch"), backbone=cfg.get("backbone"), dataset=cfg.get("dataset"),
        best_top1=summary.get("best_top1") if status == "finished" else None,
        finished_at=summary.get("finished_at") if status == "finished" else None, size_mb=_size_mb(folder),
    )  # fmt: skip


def list_runs(root: str | Path) -> list[RunInfo]:
    """The run folders directly under ``root``, by name. Raises ``FileNotFoundError`` when ``root``
    is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs folder {str(root)!r} does not exist (or is not a folder)")
    code = code_identity()
    runs = (run_info(p, code) for p in sorted(root.iterdir()))
    return [r for r in runs if r is not None]


def prune_runs(root: str | Path, *, dry_run: bool = False) -> list[RunInfo]:
    """Delete the stale run folders under ``root`` (made by other code: the run cache can never
    return or resume them); returns them. ``dry_run``: delete nothing. Folders that are not run
    folders are never touched."""
    stale = [r for r in list_runs(root) if not r.current]
    if not dry_run:
        for r in stale:
            shutil.rmtree(r.path)
            log.debug("deleted %s (%.0f MB)", r.path, r.size_mb)
    return stale


def identity_text(key: str, data: str) -> str:
    """The ``identity.json`` that ``fit`` writes into a run folder it starts or resumes."""
    return json.dumps({"run_key": key, "code_identity": code_identity(), "data_identity": data}, indent=2)
