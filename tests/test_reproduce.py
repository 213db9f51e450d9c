"""The notebook runner: parameters, results/ layout, failure reporting, README block."""

import argparse
import json

import nbformat
import pytest

from actionlib import reporting as rp
from actionlib import reproduce as rep


def _notebook(path, params: str, *cells: str):
    nb = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("suite")
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_ok.ipynb", 'profile = "smoke"\nresults_dir = None',
              "import pandas as pd\nfrom actionlib import reporting as rp",
              'rp.write_table(pd.DataFrame({"profile": [profile]}), "ok_table", results_dir, title="OK")')  # fmt: skip
    _notebook(nbs / "02_fails.ipynb", 'profile = "smoke"', "x = 1", "raise ValueError('broken on purpose')", "y = 2")
    _notebook(nbs / "03_after.ipynb", 'profile = "smoke"\nresults_dir = None',
              "import pandas as pd\nfrom actionlib import reporting as rp",
              'rp.write_table(pd.DataFrame({"a": [1]}), "main_comparison", results_dir, title="Headline")')  # fmt: skip
    readme = tmp_path / "README.md"
    readme.write_text(f"# Project\n\n{rp.README_START}\nold\n{rp.README_END}\n")
    return tmp_path


@pytest.fixture(scope="module")
def full_run(suite):
    return rep.reproduce(profile="quick", notebook_dir=suite / "notebooks", results_dir=suite / "results",
                         readme=suite / "README.md", progress=False)  # fmt: skip


def test_failing_notebook_does_not_stop_the_others(suite, full_run):
    results = full_run
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    failed = results[1]
    assert failed.error == "ValueError: broken on purpose"
    # numbered as in the executed copy (after papermill's injected-parameters cell)
    assert failed.cell.startswith("cell 3 ") and "raise ValueError" in failed.cell
    text = rep.summary(results)
    assert "FAILED: 02_fails" in text and "broken on purpose" in text

    res = suite / "results"
    assert (res / "notebooks" / "01_ok.ipynb").is_file() and (res / "notebooks" / "02_fails.ipynb").is_file()
    assert (res / "tables" / "ok_table.md").read_text().startswith("### OK")
    assert "quick" in (res / "tables" / "ok_table.csv").read_text()  # the profile was injected
    assert results[0].tables == ["ok_table.csv"]
    index = (res / "README.md").read_text()
    for needle in ("git commit", "torch", "profile", "seed", "hardware", "wall time", "**failed** at cell 3", "ok_table"):
        assert needle in index
    # headline table copied into the README's marked block
    assert "### Headline" in (suite / "README.md").read_text() and "old" not in (suite / "README.md").read_text()


def test_partial_run_keeps_the_other_notebooks_in_the_index(suite, full_run):
    rep.reproduce(profile="smoke", only=["01"], notebook_dir=suite / "notebooks", results_dir=suite / "results",
                  readme=None, progress=False)  # fmt: skip
    records = json.loads((suite / "results" / "notebooks" / "index.json").read_text())
    assert sorted(records) == ["01_ok", "02_fails", "03_after"]
    assert records["01_ok"]["profile"] == "smoke" and records["03_after"]["profile"] == "quick"


def test_main_exit_code_and_bad_selection(suite, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    rep.add_arguments(parser)
    args = parser.parse_args(["--profile", "smoke", "--notebook-dir", str(suite / "notebooks"), "--results-dir",
                              str(tmp_path / "results"), "--readme", "", "--no-progress", "--notebooks", "03"])  # fmt: skip
    assert rep.main(args) == 0
    args.notebooks = ["02"]
    assert rep.main(args) == 1
    assert "FAILED: 02_fails" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no notebook .* matches"):
        rep.find_notebooks(suite / "notebooks", ["99"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rep.find_notebooks(suite / "nowhere")


def test_store_outputs_in_place_without_injection(tmp_path):
    _notebook(tmp_path / "01_ok.ipynb", 'results_dir = None', "from actionlib import reporting as rp",
              'rp.write_table(__import__("pandas").DataFrame({"a": [1]}), "t", results_dir)')  # fmt: skip
    nb = tmp_path / "01_ok.ipynb"
    results = rep.store_outputs(tmp_path, ["01"], progress=False)
    assert results[0].status == "ok"
    book = nbformat.read(nb, as_version=4)
    assert book.cells[0].metadata["tags"] == ["parameters"]  # no injected-parameters cell
    assert len(book.cells) == 3 and "papermill" not in book.metadata
    assert not (tmp_path / "tables").exists()  # results_dir None: nothing written


def test_git_commit_ignores_the_suites_own_outputs(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    for name in ("results/table.csv", "README.md", "code.py"):
        (tmp_path / name).write_text("v1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert not rep.git_commit(tmp_path).endswith("(with uncommitted changes)")
    (tmp_path / "results/table.csv").write_text("v2\n")  # what a reproduce run writes
    (tmp_path / "README.md").write_text("v2\n")
    assert not rep.git_commit(tmp_path).endswith("(with uncommitted changes)")
    (tmp_path / "code.py").write_text("v2\n")  # a change to the code is flagged
    assert rep.git_commit(tmp_path).endswith("(with uncommitted changes)")
