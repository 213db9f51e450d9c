"""Run the notebook suite with papermill into results/: ``actionlib reproduce --profile quick``.

Every notebook of ``notebooks/`` runs in name order with the parameters ``profile``, ``seed``,
``results_dir`` (and ``dataset`` / ``data_root`` / ``-p NAME VALUE`` when given). The executed
copies go to ``results/notebooks/``; the notebooks themselves write ``results/tables/*.csv|md``
and ``results/figures/*.png``. Afterwards ``results/README.md`` indexes everything with the
provenance of the run (git commit, package versions, profile, seed, hardware, wall time per
notebook), and the README's block between ``<!-- results:start -->`` and ``<!-- results:end -->``
gets the headline tables. A failing notebook does not stop the others; the summary names it and
its failing cell, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

HELP = "run the notebook suite with papermill into results/ (tables, figures, README index)"

# tables copied into the README's marked block, in this order (those that exist)
HEADLINE_TABLES = ("main_comparison", "efficiency")
PACKAGES = ("actionlib", "torch", "torchvision", "numpy", "pandas", "matplotlib", "seaborn", "papermill", "nbval")


@dataclass
class NotebookResult:
    name: str
    status: str  # "ok" or "failed"
    wall_s: float
    output: Path
    error: str = ""
    cell: str = ""  # the failing cell: index, execution count and first line
    tables: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


def find_notebooks(notebook_dir: str | os.PathLike, only: Sequence[str] = ()) -> list[Path]:
    """The ``*.ipynb`` of ``notebook_dir`` in name order; ``only`` keeps names starting with one of them."""
    d = Path(notebook_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"notebook folder {d} does not exist")
    found = sorted(p for p in d.glob("*.ipynb") if not p.name.startswith("."))
    if only:
        chosen = [p for p in found if any(p.stem == o or p.stem.startswith(o) for o in only)]
        missing = [o for o in only if not any(p.stem == o or p.stem.startswith(o) for p in found)]
        if missing:
            raise ValueError(f"no notebook in {d} matches {missing}; have {[p.stem for p in found]}")
        found = chosen
    if not found:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {d}")
    return found


def kernel_name() -> str:
    """The project's kernel ``actionlib`` when installed, else ``python3`` run by this interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("actionlib")
        if spec.argv and Path(spec.argv[0]).exists():
            return "actionlib"
    except NoSuchKernel:
        pass
    # the generic python3 spec starts "python": make it this environment's
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    return "python3"


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(error line, failing cell) from a papermill execution error (or any exception)."""
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = str(getattr(exc, "evalue", exc)).strip().splitlines()
    error = f"{ename}: {evalue[-1] if evalue else ''}".strip()
    index = getattr(exc, "cell_index", None)
    if index is None:
        return error, ""
    source = (getattr(exc, "source", "") or "").strip().splitlines()
    first = source[0] if source else ""
    return error, f"cell {index} (execution count {getattr(exc, 'exec_count', '?')}): {first}"


def run_notebook(path: Path, out_dir: Path, parameters: dict, *, kernel: str, cwd: Path, timeout: int | None,
                 progress: bool = True, always: Sequence[str] = ()) -> NotebookResult:  # fmt: skip
    """Execute one notebook with papermill; never raises for a failing cell.

    Only the ``parameters`` the notebook declares are passed, and those named in ``always``.
    """
    import papermill as pm

    out = out_dir / path.name
    t0 = time.perf_counter()
    try:
        declared = pm.inspect_notebook(str(path))
        parameters = {k: v for k, v in parameters.items() if k in declared or k in always}
        pm.execute_notebook(
            str(path), str(out), parameters=parameters, kernel_name=kernel, cwd=str(cwd),
            progress_bar=progress, execution_timeout=timeout, log_output=False,
        )  # fmt: skip
    except Exception as exc:  # a failing notebook must not stop the others
        error, cell = describe_failure(exc)
        return NotebookResult(path.stem, "failed", time.perf_counter() - t0, out, error, cell)
    return NotebookResult(path.stem, "ok", time.perf_counter() - t0, out)


def git_commit(repo: Path) -> str:
    """HEAD, flagged when tracked files differ from it; the suite's own outputs (``results/``,
    the README's results block) do not count, so a rerun from a clean checkout reads clean."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results", ":(exclude)README.md"],
                               cwd=repo, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return sha + (" (with uncommitted changes)" if dirty else "")


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = "not installed"
    return out


def hardware() -> dict[str, str]:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    return info


def _list_outputs(results_dir: Path, since: float) -> tuple[list[str], list[str]]:
    def fresh(sub: str, pattern: str) -> list[str]:
        d = results_dir / sub
        return sorted(p.name for p in d.glob(pattern) if p.stat().st_mtime >= since) if d.is_dir() else []

    return fresh("tables", "*.csv"), fresh("figures", "*.png")


def _merge_records(results_dir: Path, results: list[NotebookResult], provenance: dict) -> list[dict]:
    """Per-notebook records of this run merged into ``notebooks/index.json`` (a partial run keeps the others)."""
    path = results_dir / "notebooks" / "index.json"
    records = json.loads(path.read_text()) if path.is_file() else {}
    for r in results:
        records[r.name] = {
            "status": r.status, "wall_s": round(r.wall_s, 1), "error": r.error, "cell": r.cell,
            "output": r.output.name, "tables": r.tables, "figures": r.figures, "profile": provenance["profile"],
            "seed": provenance["seed"], "commit": provenance["git commit"][:12], "date": provenance["date"],
        }  # fmt: skip
    path.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    return [{"name": k, **v} for k, v in sorted(records.items())]


def write_index(results_dir: Path, results: list[NotebookResult], provenance: dict) -> Path:
    """``results/README.md``: provenance, one line per notebook, every table (inlined) and figure."""
    records = _merge_records(results_dir, results, provenance)
    lines = ["# Results", "", "Written by `actionlib reproduce` (do not edit by hand).", "",
             "## Provenance of the latest run", ""]  # fmt: skip
    lines += [f"- **{k}**: {v}" for k, v in provenance.items() if not isinstance(v, dict)]
    for k, v in provenance.items():
        if isinstance(v, dict):
            lines.append(f"- **{k}**: " + ", ".join(f"{a} {b}" for a, b in v.items()))
    lines += ["", "## Notebooks", "",
              "| notebook | profile | status | wall time (s) | commit | date | tables | figures |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in records:
        status = r["status"] if r["status"] == "ok" else f"**failed** at {r['cell'] or '?'}: {r['error']}"
        lines.append(
            f"| [{r['name']}](notebooks/{r['output']}) | {r['profile']} | {status} | {r['wall_s']:.1f} | {r['commit']} "
            f"| {r['date']} | {', '.join(t[:-4] for t in r['tables'])} | {', '.join(f[:-4] for f in r['figures'])} |"
        )
    tables = sorted((results_dir / "tables").glob("*.md")) if (results_dir / "tables").is_dir() else []
    if tables:
        lines += ["", "## Tables", ""]
        for t in tables:
            lines += [f"#### `{t.stem}` ([csv](tables/{t.stem}.csv))", "", t.read_text().strip(), ""]
    figures = sorted((results_dir / "figures").glob("*.png")) if (results_dir / "figures").is_dir() else []
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{f.stem}](figures/{f.name})" for f in figures]
    path = results_dir / "README.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def headline(results_dir: Path, provenance: dict, names: Sequence[str] = HEADLINE_TABLES) -> str:
    """The README block: the headline tables as written by the notebooks, with where they came from."""
    parts = []
    for n in names:
        md = results_dir / "tables" / f"{n}.md"
        if md.is_file():
            parts.append(md.read_text().strip())
    rel = "results/README.md"
    parts.append(f"_Copied by `actionlib reproduce --profile {provenance['profile']}` from `results/tables/` "
                 f"(commit {provenance['git commit'][:12]}, {provenance['date']}); all tables and figures: [{rel}]({rel})._")  # fmt: skip
    return "\n\n".join(parts)


def reproduce(
    *,
    profile: str = "quick",
    notebook_dir: str | os.PathLike = "notebooks",
    results_dir: str | os.PathLike = "results",
    only: Sequence[str] = (),
    seed: int = 0,
    parameters: dict | None = None,
    timeout: int | None = None,
    readme: str | os.PathLike | None = "README.md",
    progress: bool = True,
) -> list[NotebookResult]:
    """Run the suite; return one ``NotebookResult`` per notebook (see the module docstring)."""
    from . import reporting
    from .experiments import PROFILES, project_root

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {list(PROFILES)}")
    notebooks = find_notebooks(notebook_dir, only)
    results_dir = Path(results_dir).resolve()
    out_dir = results_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    kernel = kernel_name()
    params = {"profile": profile, "seed": seed, "results_dir": str(results_dir), **(parameters or {})}
    started = _dt.datetime.now(_dt.timezone.utc)
    commit = git_commit(project_root())  # before the notebooks write anything
    results = []
    for i, nb in enumerate(notebooks, 1):
        log.info("[%d/%d] %s (profile %s)", i, len(notebooks), nb.stem, profile)
        since = time.time() - 1
        r = run_notebook(nb, out_dir, params, kernel=kernel, cwd=Path(notebook_dir).resolve(), timeout=timeout,
                         progress=progress, always=list(parameters or {}))  # fmt: skip
        r.tables, r.figures = _list_outputs(results_dir, since)
        log.info("[%d/%d] %s %s in %.1f s%s", i, len(notebooks), nb.stem, r.status, r.wall_s,
                 f" at {r.cell}: {r.error}" if r.status != "ok" else "")  # fmt: skip
        results.append(r)
    provenance = {
        "profile": profile,
        "seed": seed,
        "parameters": json.dumps({k: v for k, v in params.items() if k not in ("profile", "seed", "results_dir")}),
        "git commit": commit,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "total wall time (s)": f"{sum(r.wall_s for r in results):.1f}",
        "packages": package_versions(),
        "hardware": hardware(),
    }
    write_index(results_dir, results, provenance)
    if readme is not None and Path(readme).is_file():
        reporting.update_readme_block(readme, headline(results_dir, provenance))
    return results


def store_outputs(notebook_dir: str | os.PathLike = "notebooks", only: Sequence[str] = (), *,
                  timeout: int | None = None, progress: bool = True) -> list[NotebookResult]:  # fmt: skip
    """Execute the notebooks in place with their stored (smoke) parameters: the outputs nbval compares.

    Nothing is injected, so each notebook keeps its own parameters cell; papermill's execution
    metadata is stripped afterwards so that re-storing changes only real outputs.
    """
    import nbformat

    kernel = kernel_name()
    results = []
    for nb in find_notebooks(notebook_dir, only):
        log.info("storing smoke outputs of %s", nb.name)
        r = run_notebook(nb, nb.parent, {}, kernel=kernel, cwd=nb.parent.resolve(), timeout=timeout, progress=progress)
        book = nbformat.read(nb, as_version=4)
        book.metadata.pop("papermill", None)
        for cell in book.cells:
            cell.metadata.pop("papermill", None)
            cell.metadata.pop("execution", None)
        nbformat.write(book, nb)
        results.append(r)
    return results


def summary(results: list[NotebookResult]) -> str:
    lines = [f"{'notebook':<22} {'status':<7} {'wall s':>8}  tables / failing cell"]
    for r in results:
        what = ", ".join(t[:-4] for t in r.tables) if r.status == "ok" else f"{r.cell}: {r.error}"
        lines.append(f"{r.name:<22} {r.status:<7} {r.wall_s:>8.1f}  {what}")
    failed = [r.name for r in results if r.status != "ok"]
    lines.append(f"total {sum(r.wall_s for r in results):.1f} s; "
                 + (f"FAILED: {', '.join(failed)}" if failed else "all notebooks ran"))  # fmt: skip
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "paper"),
                        help="smoke: seconds per notebook; quick: synthetic benchmark on CPU (~75 min of notebooks on 2 cores); "
                             "paper: real datasets, spec section 5 recipes (GPUs)")  # fmt: skip
    parser.add_argument("--notebooks", nargs="+", default=[], metavar="NAME",
                        help="run only these notebooks (name or prefix, e.g. 01 04_efficiency)")
    parser.add_argument("--notebook-dir", default="notebooks", help="folder of the notebooks")
    parser.add_argument("--results-dir", default="results", help="where executed notebooks, tables and figures go")
    parser.add_argument("--seed", type=int, default=0, help="training seed passed to every notebook")
    parser.add_argument("--dataset", help="dataset parameter (paper: ssv2, jester or egogesture)")
    parser.add_argument("--data-root", help="dataset folder parameter")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="extra notebook parameter (VALUE parsed as JSON when possible)")
    parser.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds (default: none)")
    parser.add_argument("--readme", default="README.md",
                        help="README whose <!-- results:start/end --> block gets the headline tables ('' : none)")
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    parser.add_argument("--store", action="store_true",
                        help="instead: execute the notebooks in place with their own (smoke) parameters, storing "
                             "the outputs that nbval compares (nothing is written to results/)")  # fmt: skip


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(args: argparse.Namespace) -> int:
    params = {name: _value(value) for name, value in args.parameter}
    if args.dataset:
        params["dataset"] = args.dataset
    if args.data_root:
        params["data_root"] = str(Path(args.data_root).resolve())
    t0 = time.perf_counter()
    if args.store:
        results = store_outputs(args.notebook_dir, args.notebooks, timeout=args.timeout, progress=not args.no_progress)
        print(summary(results))
        return 1 if any(r.status != "ok" for r in results) else 0
    results = reproduce(
        profile=args.profile, notebook_dir=args.notebook_dir, results_dir=args.results_dir, only=args.notebooks,
        seed=args.seed, parameters=params, timeout=args.timeout, readme=args.readme or None,
        progress=not args.no_progress,
    )  # fmt: skip
    print(summary(results))
    print(f"results in {Path(args.results_dir).resolve()} ({time.perf_counter() - t0:.0f} s)")
    return 1 if any(r.status != "ok" for r in results) else 0
