"""fkd eda: the numbers (duplicates, label outliers, pairwise correlation, heatmaps) and the command."""
import re

import numpy as np
import pandas as pd
import pytest

from fkd.cli import main
from fkd.core.keypoints import CORE_COLUMN_INDEX, KEYPOINTS, as_points
from fkd.data import duplicates, shapes
from fkd.data.synth import draw_faces
from fkd.show import eda

FIGURES = ["missing.png", "correlation.png", "samples.png", "heatmaps.png", "keypoint_clouds.png",
           "duplicates.png", "label_outliers.png"]


@pytest.fixture(scope="module")
def faces():
    """60 synthetic faces: 2/3 partial (4 core points), two identical-image pairs (rows 0/10 with
    labels 3 px apart, 1/11 with the same labels), a near-identical pair (2/12: brighter copy), and a
    mislabelled row 5 (left eye 18 px off)."""
    images, keypoints = draw_faces(60, rng=0)
    partial = np.arange(60) % 3 != 0
    keep = np.zeros(30, bool)
    keep[CORE_COLUMN_INDEX] = True
    keypoints[np.ix_(partial, ~keep)] = np.nan
    images[10], keypoints[10] = images[0], keypoints[0] + 3.0
    images[11], keypoints[11] = images[1], keypoints[1]
    images[12] = np.clip(images[2].astype(int) + 6, 0, 255).astype(np.uint8)
    keypoints[5, 0] += 18.0
    return images, keypoints


def test_find_duplicates_and_whether_labels_agree(faces):
    images, keypoints = faces
    groups = duplicates.find_duplicates(images)
    assert [g.tolist() for g in groups] == [[0, 10], [1, 11]]
    agreement = eda.duplicate_agreement(groups, keypoints)
    assert [a["agree"] for a in agreement] == [False, True]
    assert agreement[0]["max_diff"] == pytest.approx(3.0, abs=1e-4)
    assert len(duplicates.image_hashes(images)) == len(images)


def test_near_duplicates_find_a_reprocessed_copy(faces):
    images, _ = faces
    pairs = {(i, j) for i, j, _ in duplicates.near_duplicates(images)}
    assert {(0, 10), (1, 11), (2, 12)} <= pairs
    assert len(pairs) <= 4


def test_label_outliers_rank_the_mislabelled_row_first(faces):
    _, keypoints = faces
    indices, residuals = shapes.label_outliers(keypoints, top=5)
    assert indices[0] == 5
    assert len(indices) == 5 and np.all(np.diff(residuals) <= 0)
    everything, all_residuals = shapes.label_outliers(keypoints, top=None)
    assert sorted(everything.tolist()) == list(range(60))
    assert all_residuals[0] > 2 * np.median(all_residuals)


def test_residual_ignores_pose_and_skips_rows_with_too_few_points(faces):
    _, keypoints = faces
    rows = keypoints[[0, 3, 6, 9]].copy()
    points = as_points(rows[0]).astype(np.float64)
    angle = np.radians(20)
    rotation = 1.3 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = ((points - 48) @ rotation.T + [40, 55]).reshape(-1)
    sparse = np.full(30, np.nan, np.float32)
    sparse[:4] = rows[0, :4]                                   # 2 points: cannot be judged
    residuals = shapes.shape_residuals(np.vstack([rows, moved, sparse]))
    assert residuals[4] == pytest.approx(residuals[0], rel=0.05, abs=0.05)
    assert np.isnan(residuals[5])


def test_correlation_is_pairwise_on_the_values_present():
    rng = np.random.default_rng(0)
    keypoints = np.full((50, 30), np.nan, np.float32)
    keypoints[:, 0] = rng.normal(size=50)
    keypoints[:, 2] = 2 * keypoints[:, 0] + 1
    keypoints[25:, 2] = np.nan                                 # half the rows lack column 2
    keypoints[:, 4] = rng.normal(size=50)
    corr = eda.coordinate_correlation(keypoints)
    assert corr.iloc[0, 2] == pytest.approx(1.0)               # filling the gaps would lower it
    expected = pd.DataFrame(keypoints.astype(np.float64)).corr(min_periods=10)
    np.testing.assert_allclose(corr.to_numpy(), expected.to_numpy(), equal_nan=True)
    assert np.isnan(corr.iloc[0, 6])                           # never present: NaN, not 0


def test_gaussian_heatmaps():
    keypoints = np.full((2, 30), np.nan, np.float32)
    keypoints[0, :2] = (30, 40)
    keypoints[1, 20:22] = (47.5, 60.25)
    maps = eda.gaussian_heatmaps(keypoints, sigma=2.0)
    assert maps.shape == (2, 15, 96, 96) and maps.dtype == np.float32
    assert maps[0, 0, 40, 30] == pytest.approx(1.0)
    assert np.unravel_index(maps[0, 0].argmax(), (96, 96)) == (40, 30)
    assert maps[0, 0].sum() == pytest.approx(2 * np.pi * 4, rel=1e-3)
    assert maps[0, 1:].max() == 0 and maps[1, 0].max() == 0     # missing -> all zeros
    assert maps[1, KEYPOINTS.index("nose_tip"), 60, 47] == pytest.approx(np.exp(-(0.25 + 0.0625) / 8), rel=1e-5)


def test_run_eda_writes_the_figures_and_summary(faces, tmp_path):
    images, keypoints = faces
    summary = eda.run_eda(images, keypoints, tmp_path, sigma=2.5, samples=8, top=6)
    for name in FIGURES + ["summary.md", "summary.json"]:
        assert (tmp_path / name).stat().st_size > 0, name
    assert summary["rows"] == 60 and summary["complete_rows"] == 21 and summary["partial_rows"] == 39
    assert summary["duplicate_groups"] == 2 and summary["duplicate_groups_disagreeing"] == 1
    assert summary["top_outliers"][0]["row"] == 5
    text = (tmp_path / "summary.md").read_text()
    assert "21 complete" in text and "| 5 |" in text and "label_outliers.png" in text
    assert not list(tmp_path.glob("*.tmp"))


def test_eda_command_on_a_competition_folder(competition, tmp_path, capsys):
    out = tmp_path / "eda"
    assert main(["eda", "--data-dir", str(competition), "--out", str(out), "--sigma", "3"]) == 0
    assert all((out / name).is_file() for name in FIGURES)
    printed = capsys.readouterr().out
    assert "240 rows" in printed
    match = re.search(r"(\d+) groups of identical images, (\d+) near-identical pairs", printed)
    assert match, printed
    summary = (out / "summary.md").read_text()
    assert f"- {match.group(1)} groups of identical images" in summary       # both counts, as the summary says
    assert f"- {match.group(2)} near-identical pairs" in summary


@pytest.mark.parametrize("option, value, says", [
    ("--sigma", "0", "must be a finite number above 0, not 0"),     # was a ZeroDivisionError
    ("--sigma", "-2", "must be a finite number above 0, not -2"),
    ("--sigma", "nan", "must be a finite number above 0, not nan"),
    ("--sigma", "inf", "must be a finite number above 0, not inf"),
    ("--sigma", "wide", "must be a number, not 'wide'"),
    ("--samples", "-3", "must be at least 1, not -3"),
    ("--samples", "0", "must be at least 1, not 0"),
    ("--top", "-1", "must be at least 1, not -1"),
    ("--seed", "-1", "must be at least 0, not -1"),                 # was a ValueError from numpy
    ("--seed", "1.5", "must be a whole number, not '1.5'"),
])
def test_eda_options_out_of_range_are_usage_errors(option, value, says, tmp_path, capsys):
    out = tmp_path / "eda"
    with pytest.raises(SystemExit) as stop:
        main(["eda", "--data-dir", str(tmp_path), "--out", str(out), option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {option}: {says}" in err[0], err
    assert not out.exists()
