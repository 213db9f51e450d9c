"""The packaging files agree with each other, and the console script works."""

import json
import re
import subprocess
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_in_step_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    version = tuple(int(v) for v in python.split("=")[1].split("."))
    minimum = tuple(int(v) for v in re.search(r">=\s*([\d.]+)", project["requires-python"]).group(1).split("."))
    assert version >= minimum
    assert "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    editable = next(line for line in pip if line.startswith("-e ."))
    extras = set(re.search(r"\[(.*)\]", editable).group(1).split(","))
    assert extras == set(project["optional-dependencies"])  # every extra, nothing unknown


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make reproduce" in readme
    assert re.search(r"^make test$", ci, re.M)


def test_console_script_profile_json():
    out = subprocess.run(
        [sys.executable, "-m", "actionlib", "profile", "--arch", "tsn", "action", "--backbone", "mobilenetv2",
         "--segments", "2", "--size", "64", "--repeats", "1", "--warmup", "0", "--json", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = json.loads(out.stdout)
    assert [r["arch"] for r in rows] == ["tsn", "action"]
    assert rows[1]["params"] > rows[0]["params"] and rows[1]["gmacs"] > rows[0]["gmacs"]
    assert rows[1]["temporal_modules"] == 10
    assert rows[0]["forward_ms"] > 0 and rows[0]["train_step_ms"] > 0


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "actionlib", "--help"], capture_output=True, text=True, check=True)
    assert "profile" in out.stdout
    out = subprocess.run([sys.executable, "-m", "actionlib", "profile", "--help"], capture_output=True, text=True, check=True)
    assert "--segments" in out.stdout and "GMACs" in out.stdout


def test_cli_rejects_unknown_backbone():
    out = subprocess.run([sys.executable, "-m", "actionlib", "profile", "--backbone", "vgg"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice: 'vgg'" in out.stderr
