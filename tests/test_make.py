"""The Makefile passes fkd only what the user set, and a missing required variable is one clear line."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def make_n(*args, env=None):
    return subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, env=env)


def test_cv_passes_only_what_was_set():
    dry = make_n("cv").stdout
    assert "fkd cv" in dry and "--folds" not in dry and "--data-dir" not in dry  # the config's folds, data search
    dry = make_n("cv", "FOLDS=3", "DATA=somewhere", "DEVICE=cpu").stdout
    assert "--folds 3" in dry and "--data-dir somewhere" in dry and "--device cpu" in dry


def test_report_and_eda_leave_the_data_search_to_fkd():
    assert "--data-dir" not in make_n("report", "RUNS=runs/a").stdout
    assert "--data-dir" not in make_n("eda").stdout


def fkd_line(dry: str, command: str) -> str:
    """The line of a dry run that runs `fkd COMMAND` (make may add lines of its own around it)."""
    [line] = [line for line in dry.splitlines() if f"-m fkd {command}" in line]
    return line


def test_kernel_ships_the_config_asked_for():
    assert "--config" not in fkd_line(make_n("kernel").stdout, "kernel")  # fkd kernel's default: the measured pair
    assert "--config configs/cpu.yaml" in make_n("kernel", "CONFIG=configs/cpu.yaml").stdout
    assert "--config configs/a.yaml --config configs/b.yaml --stack" in make_n(
        "kernel", "CONFIGS=configs/a.yaml configs/b.yaml", "STACK=1").stdout


def test_tune_passes_only_what_was_set():
    plain = make_n("tune", "CONFIG=configs/a.yaml", "SPACE=configs/spaces/a.yaml").stdout.replace("\\\n", " ")
    assert "--config configs/a.yaml --space configs/spaces/a.yaml" in plain
    assert not [option for option in ("--trials", "--on-folds", "--storage", "--study", "--timeout", "--data-dir")
                if option in plain]
    full = make_n("tune", "CONFIG=configs/a.yaml", "SPACE=configs/spaces/a.yaml", "TRIALS=8", "FOLDS=0,1",
                  "STORAGE=sqlite:///studies/a.db", "STUDY=a2", "TIMEOUT=90", "DATA=elsewhere").stdout
    assert all(option in " ".join(full.split()) for option in (
        "--trials 8", "--on-folds 0,1", "--storage sqlite:///studies/a.db", "--study a2", "--timeout 90",
        "--data-dir elsewhere"))


@pytest.mark.parametrize("target, message", [
    ("submit", "RUNS is not set: make submit RUNS="),
    ("report", "RUNS is not set: make report RUNS="),
    ("lb", "FILE is not set: make lb FILE="),
    ("face", "PHOTOS is not set"),
    ("video", "VIDEO is not set"),
    ("export", "RUNS is not set: make export RUNS="),
    ("tune", "SPACE is not set: make tune"),
])
def test_a_missing_variable_is_one_line(target, message):
    result = make_n(target)
    assert result.returncode != 0 and message in result.stderr
    assert "usage:" not in result.stderr


def test_submit_lists_only_finished_runs(tmp_path):
    """A copy of the Makefile beside one finished run (metrics.json) and one unfinished run."""
    import os
    import shutil
    import time

    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / "requirements.txt").write_text("")
    (tmp_path / "requirements-nodeps.txt").write_text("")
    (tmp_path / ".venv").mkdir()
    time.sleep(0.01)
    (tmp_path / ".venv" / ".installed").write_text("")
    for name in ("finished", "unfinished"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    (tmp_path / "runs" / "finished" / "metrics.json").write_text("{}")
    result = subprocess.run(["make", "-n", "submit"], cwd=tmp_path, capture_output=True, text=True,
                            env=dict(os.environ))
    assert "finished runs here: runs/finished)" in result.stderr, result.stderr
    assert "runs/unfinished" not in result.stderr


def test_device_reaches_submit_and_face():
    assert "--device cpu" in make_n("submit", "RUNS=runs/a", "DEVICE=cpu").stdout
    assert "--device cpu" in make_n("face", "PHOTOS=a.jpg", "RUNS=runs/a", "DEVICE=cpu").stdout


def test_bench_refuses_an_unknown_section():
    result = subprocess.run([sys.executable, "-m", "fkd", "bench", "--only", "nonsense"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown section 'nonsense'; the sections are parse, throughput, cv" in result.stderr


def test_bench_is_quick_unless_full():
    assert "--quick" in make_n("bench").stdout
    assert "--quick" not in make_n("bench", "FULL=1").stdout


def test_face_video_and_export_take_the_onnx_file():
    assert "--model m.onnx" in make_n("face", "PHOTOS=a.jpg", "MODEL=m.onnx").stdout
    assert "face clip.mp4 --model m.onnx" in make_n("video", "VIDEO=clip.mp4", "MODEL=m.onnx").stdout
    assert "export --runs runs/a --out m.onnx" in make_n("export", "RUNS=runs/a", "MODEL=m.onnx").stdout
