"""fkd as a package: `pip install -e .` gives the `fkd` command, and README's Python lines run."""
import re
import shutil
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_gives_the_fkd_command():
    import importlib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    module, function = project["project"]["scripts"]["fkd"].split(":")
    assert callable(getattr(importlib.import_module(module), function))
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}


def test_the_readme_python_lines_run(competition, tmp_path, monkeypatch):
    """The README's five lines, in a folder with data/ and a quick configs/cpu.yaml."""
    code = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 5
    shutil.copytree(competition, tmp_path / "data", ignore=shutil.ignore_patterns(".fkd-cache"))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "cpu.yaml").write_text("model: lenet\nfolds: 2\nepochs: 1\nbatch_size: 32\n")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "cpu" / "metrics.json").is_file()
    assert len(list((tmp_path / "submissions").glob("*-my-first.csv"))) == 1
