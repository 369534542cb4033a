import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_parse_bench_prints_both_figures(competition):
    result = subprocess.run([sys.executable, "-m", "fkd", "bench", "--data-dir", str(competition), "--only", "parse",
                             "--rows", "300"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    line = [l for l in result.stdout.splitlines() if l.startswith("parse")][0]
    assert "300 rows" in line and "fkd" in line and "notebook way" in line and "reload from .npy cache" in line
    line = [l for l in result.stdout.splitlines() if "fkd submit --model mean" in l][0]
    assert re.search(r"cold \(no .npy cache\) \d+\.\d\d s, \d+\.\dx faster than the notebook way.*; cached \d+\.\d\d s$",
                     line), line


def test_quick_bench_cv_runs_only_the_short_recipe(competition, monkeypatch, tmp_path):
    from fkd import bench
    from fkd.cli import main

    seen = []
    monkeypatch.setattr(bench, "bench_cv", lambda data_dir, specs, runs_dir: seen.append(list(specs)))
    assert main(["bench", "--data-dir", str(competition), "--only", "cv", "--quick"]) == 0
    assert main(["bench", "--data-dir", str(competition), "--only", "cv"]) == 0
    assert seen == [bench.QUICK_CV_CONFIGS, bench.FULL_CV_CONFIGS]


def test_the_face_section_prints_photos_against_crops_video_and_onnx(competition, tmp_path, capsys):
    from test_labelled import write_labelled_photos

    from fkd.cli import main
    from fkd.core.config import load_config
    from fkd.data.competition import load_training
    from fkd.train.cv import run_cv
    from fkd.train.checkpoint import load as load_checkpoint

    config = load_config(None, model="lenet", epochs=1, batch_size=32, folds=2, only_folds=[0], name="face-bench")
    run_dir = run_cv(competition, config, tmp_path)
    images, truth = load_training(competition)
    valid_index = load_checkpoint(run_dir / "fold0.pt")["valid_index"]
    photos, _ = write_labelled_photos(tmp_path / "photos", images, truth, [*valid_index[:3], np.setdiff1d(np.arange(len(images)), valid_index)[0]])
    assert main(["bench", "--data-dir", str(competition), "--only", "face", "--face-run", str(run_dir),
                 "--face-photos", "6", "--framer-epochs", "1", "--photos-dir", str(photos)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("face")]
    assert re.search(r"calibration: (MTCNN found \d+ of 6 training faces|MTCNN found none)", lines[0])
    calibrated = "MTCNN found none" not in lines[0]   # MTCNN takes few synthetic faces for faces
    assert len(lines) == 7 + 3 * calibrated
    if calibrated:
        assert re.search(r"framer: trained 1 epochs on \d+ misframed crops", lines[1])
        assert re.search(r"real photos, framed by MTCNN's landmarks alone \(no framer\): (\d+\.\d+|nan) px", lines[-5])
        assert re.search(r"real photos without fkd calibrate .*: found \d+\.\d%; (\d+\.\d+|nan) px", lines[-4])
    first = 2 + calibrated
    assert re.search(r"found \d+\.\d%; RMSE on the photos (\d+\.\d+|nan) px against", lines[first - 1])
    assert re.search(r"framer: (on the photos .* framed by MTCNN's landmarks alone|none)", lines[first])
    # the photos of fold 0's validation faces only: the fold's model never trained on them
    assert re.search(r"real photos: 3 photos \(0\.17 megapixels on average\) of fold 0's validation faces, .*: "
                     r"found \d+\.\d%; RMSE on the photos (\d+\.\d+|nan) px \(in each face's true crop\) against "
                     r"(\d+\.\d+|nan) on the same faces' crops .*; \d+\.\d\d s a photo", lines[first + 1])
    assert re.search(r"real photos enlarged 3.2x \(1\.8 megapixels on average, the first 3\): found \d+\.\d%; "
                     r"(\d+\.\d+|nan) px \((\d+\.\d+|nan)x the crops\); \d+\.\d\d s a photo", lines[-3])
    assert re.search(r"video: 60 frames of 640x480 with one face, \d+\.\d frames/s", lines[-2])
    assert re.search(r"onnx: .* max difference \d\.\de-\d\d px; per face \d+\.\d\d ms with onnxruntime", lines[-1])
    assert main(["bench", "--data-dir", str(competition), "--only", "face", "--face-run", str(tmp_path / "none")]) == 2


def test_the_throughput_section_prints_each_loop_against_the_plain_one(competition, monkeypatch, capsys):
    from fkd import bench
    from fkd.model.inputs import cpu_has_bf16

    monkeypatch.setattr(bench, "THROUGHPUT_ROWS", 128)
    bench.bench_throughput(competition, model_name="lenet", repeats=1)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("throughput")]
    assert "plain PyTorch DataLoader loop" in lines[-1]
    fkd_lines = lines[:-1]
    assert len(fkd_lines) == (3 if cpu_has_bf16() else 2)
    plain = float(re.search(r": (\d+) images/s", lines[-1]).group(1))
    for line in fkd_lines:
        rate = float(re.search(r": (\d+) images/s", line).group(1))
        ratio = float(re.search(r"\((\d+\.\d+)x the plain loop\)", line).group(1))
        assert "precision fp32" in line or "precision bf16" in line
        assert ratio == pytest.approx(rate / plain, rel=0.05)
