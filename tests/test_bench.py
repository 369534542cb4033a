import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_parse_bench_prints_both_figures(competition):
    result = subprocess.run([sys.executable, "-m", "fkd", "bench", "--data-dir", str(competition), "--only", "parse",
                             "--rows", "300"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    line = [l for l in result.stdout.splitlines() if l.startswith("parse")][0]
    assert "300 rows" in line and "fkd" in line and "notebook way" in line and "reload from .npy cache" in line


def test_quick_bench_cv_runs_only_the_short_recipe(competition, monkeypatch, tmp_path):
    from fkd import bench
    from fkd.cli import main

    seen = []
    monkeypatch.setattr(bench, "bench_cv", lambda data_dir, specs, runs_dir: seen.append(list(specs)))
    assert main(["bench", "--data-dir", str(competition), "--only", "cv", "--quick"]) == 0
    assert main(["bench", "--data-dir", str(competition), "--only", "cv"]) == 0
    assert seen == [bench.QUICK_CV_CONFIGS, bench.FULL_CV_CONFIGS]
