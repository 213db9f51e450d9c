"""`actionlib runs`: run folders listed with status and code identity; --prune deletes only stale ones."""

import json
import shutil

import pytest

from actionlib import cli
from actionlib.engine import fit
from actionlib.engine.runs import IDENTITY_FILE, list_runs, prune_runs, run_info
from engine_helpers import tiny_config, tiny_data


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """A runs folder with one current finished run, a copy made by other code, a copy from before
    identity.json, an unfinished copy, and a folder that is not a run."""
    root = tmp_path_factory.mktemp("runs")
    train, val = tiny_data()
    current = fit(tiny_config(root, epochs=1), train_dataset=train, val_dataset=val)["run_dir"]
    run = root / current.rsplit("/", 1)[-1]
    stale = root / "tsm-resnet18-tiny-aaaaaaaaaaaa"
    shutil.copytree(run, stale)
    ident = json.loads((stale / IDENTITY_FILE).read_text())
    (stale / IDENTITY_FILE).write_text(json.dumps({**ident, "code_identity": "0" * 16}))
    old = root / "tsm-resnet18-tiny-bbbbbbbbbbbb"
    shutil.copytree(run, old)
    (old / IDENTITY_FILE).unlink()
    unfinished = root / "tsm-resnet18-tiny-cccccccccccc"
    shutil.copytree(run, unfinished)
    for name in ("summary.json", "best.pt"):
        (unfinished / name).unlink()
    (root / "notes").mkdir()
    (root / "notes" / "config.yaml").write_text("not a run\n")
    (root / "data-123456789abc").mkdir()  # a run-like name without config.yaml
    return root, run


def test_fit_records_identity_and_list_reports_runs(runs_root):
    root, run = runs_root
    ident = json.loads((run / IDENTITY_FILE).read_text())
    assert ident["run_key"] == run.name[-12:] and len(ident["code_identity"]) == 16 and ident["data_identity"]
    runs = {r.name: r for r in list_runs(root)}
    assert set(runs) == {run.name, "tsm-resnet18-tiny-aaaaaaaaaaaa", "tsm-resnet18-tiny-bbbbbbbbbbbb",
                         "tsm-resnet18-tiny-cccccccccccc"}  # fmt: skip
    cur = runs[run.name]
    assert cur.current and cur.status == "finished" and cur.arch == "tsm" and cur.backbone == "resnet18"
    assert cur.dataset == "tiny" and 0 <= cur.best_top1 <= 100 and cur.size_mb > 0 and cur.key == run.name[-12:]
    assert not runs["tsm-resnet18-tiny-aaaaaaaaaaaa"].current
    assert runs["tsm-resnet18-tiny-bbbbbbbbbbbb"].code is None and not runs["tsm-resnet18-tiny-bbbbbbbbbbbb"].current
    unfinished = runs["tsm-resnet18-tiny-cccccccccccc"]
    assert unfinished.status == "unfinished" and unfinished.current and unfinished.best_top1 is None
    assert run_info(root / "notes") is None and run_info(root / "data-123456789abc") is None


def test_cli_lists_and_prunes_only_stale_runs(runs_root, capsys, tmp_path):
    src, run = runs_root
    root = tmp_path / "runs"
    shutil.copytree(src, root)
    assert cli.main(["runs", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert run.name in out and "stale (no identity.json)" in out and "4 run(s)" in out and "2 stale" in out

    assert cli.main(["runs", "--root", str(root), "--prune", "--dry-run"]) == 0
    assert "would delete 2 stale run(s)" in capsys.readouterr().out
    assert len(list(root.iterdir())) == 6  # nothing deleted

    gone = {r.name for r in prune_runs(root)}
    assert gone == {"tsm-resnet18-tiny-aaaaaaaaaaaa", "tsm-resnet18-tiny-bbbbbbbbbbbb"}
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [run.name, "tsm-resnet18-tiny-cccccccccccc", "notes", "data-123456789abc"]
    )
    assert cli.main(["runs", "--root", str(root), "--prune"]) == 0  # nothing stale left
    assert "deleted 0 stale run(s)" in capsys.readouterr().out


def test_cached_run_still_returned_after_listing(runs_root):
    root, run = runs_root
    train, val = tiny_data()
    again = fit(tiny_config(root, epochs=1), train_dataset=train, val_dataset=val)
    assert again["cached"] is True and again["run_dir"].endswith(run.name)


def test_cli_errors(tmp_path, capsys):
    assert cli.main(["runs", "--root", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    assert cli.main(["runs", "--root", str(tmp_path), "--dry-run"]) == 2
    assert "--dry-run goes with --prune" in capsys.readouterr().err


def test_unreadable_files_do_not_stop_the_listing(runs_root, tmp_path):
    src, run = runs_root
    broken = tmp_path / "tsm-resnet18-tiny-dddddddddddd"
    broken.mkdir()
    (broken / "config.yaml").write_text("arch: [unclosed\n")
    (broken / "summary.json").write_text("{not json")
    (broken / IDENTITY_FILE).write_text("[]")
    (tmp_path / "link-eeeeeeeeeeee").symlink_to(src / run.name)  # a link to a run is not a run folder
    runs = list_runs(tmp_path)
    assert [r.name for r in runs] == [broken.name]
    r = runs[0]
    assert r.status == "empty" and r.arch is None and r.code is None and not r.current
