"""``actionlib runs``: list the run folders; ``--prune`` deletes the stale ones (see ``actionlib.engine.runs``)."""

from __future__ import annotations

import argparse
import os
import sys

from .config import TrainConfig, runs_root

HELP = "list training runs (status, top-1, size, reusable by this code or stale); --prune deletes the stale ones"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "A run is stale when other code made it: run keys include the code identity, so after a "
        "change to the models, data or engine the run cache never returns or resumes it again. "
        "The notebooks' runs live in <checkout>/runs (or $ACTIONLIB_ROOT/runs)."
    )
    parser.add_argument("--root", default=argparse.SUPPRESS, help="runs folder (default: $ACTIONLIB_RUNS, else ./runs)")
    parser.add_argument("--prune", action="store_true", help="delete the stale run folders")
    parser.add_argument("--dry-run", action="store_true", help="with --prune: list what would be deleted, delete nothing")


def _fmt(v, spec: str = "") -> str:
    return "-" if v is None else format(v, spec)


def main(args: argparse.Namespace) -> int:
    from .runs import list_runs, prune_runs

    root = getattr(args, "root", None) or os.fspath(runs_root(TrainConfig()))
    if args.dry_run and not args.prune:
        print("actionlib runs: --dry-run goes with --prune", file=sys.stderr)
        return 2
    try:
        runs = prune_runs(root, dry_run=args.dry_run) if args.prune else list_runs(root)
    except FileNotFoundError as err:
        print(f"actionlib runs: {err}", file=sys.stderr)
        return 2
    rows = [("run", "status", "code", "arch", "backbone", "dataset", "top1", "MB")]
    for r in runs:
        code = "current" if r.current else ("stale" if r.code else "stale (no identity.json)")
        rows.append((r.name, r.status, code, _fmt(r.arch), _fmt(r.backbone), _fmt(r.dataset),
                     _fmt(r.best_top1, ".2f"), f"{r.size_mb:.0f}"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    total = sum(r.size_mb for r in runs)
    if args.prune:
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {len(runs)} stale run(s), {total:.0f} MB, under {root}")
    else:
        stale = [r for r in runs if not r.current]
        print(f"{len(runs)} run(s), {total:.0f} MB, under {root}; {len(stale)} stale "
              f"({sum(r.size_mb for r in stale):.0f} MB): 'actionlib runs --prune' deletes them")  # fmt: skip
    return 0

