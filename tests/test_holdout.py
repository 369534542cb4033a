"""`fkd holdout`: a fold kept out as a test set with answers, scored by `fkd check-submission --answers`."""
import numpy as np
import pandas as pd
import pytest

from fkd.cli import main
from fkd.core.keypoints import COLUMNS
from fkd.data.competition import load_lookup, load_test, load_training
from fkd.data.folds import load_folds
from fkd.data.holdout import write_holdout
from fkd.submit.check import score
from fkd.submit.submission import check_submission, submission_frame


@pytest.fixture(scope="module")
def holdout(competition, tmp_path_factory):
    return write_holdout(competition, tmp_path_factory.mktemp("h") / "holdout", folds=4, fold=1, seed=0)


def test_the_kept_out_fold_becomes_the_test_set_with_its_labels_as_answers(competition, holdout):
    images, keypoints = load_training(competition)
    held = np.flatnonzero(load_folds(competition, 4, 0) == 1)
    kept_images, kept_keypoints = load_training(holdout)
    assert len(kept_images) + len(held) == len(images)
    assert np.array_equal(kept_images, np.delete(images, held, axis=0))
    np.testing.assert_array_equal(kept_keypoints, np.delete(keypoints, held, axis=0))
    image_ids, test_images = load_test(holdout)
    assert np.array_equal(image_ids, np.arange(1, len(held) + 1))
    assert np.array_equal(test_images, images[held])

    lookup = load_lookup(holdout)
    answers = pd.read_csv(holdout / "answers.csv")
    asked = lookup.groupby("ImageId").size().to_numpy()
    assert np.array_equal(asked, (~np.isnan(keypoints[held])).sum(axis=1))
    column = lookup["FeatureName"].map(COLUMNS.index).to_numpy()
    np.testing.assert_allclose(answers["Location"], keypoints[held][lookup["ImageId"] - 1, column], atol=1e-4)
    assert (asked == 30).any() and (asked < 30).any()


def test_a_submission_is_scored_against_the_answers(competition, holdout, tmp_path, capsys):
    _, keypoints = load_training(competition)
    held = np.flatnonzero(load_folds(competition, 4, 0) == 1)
    lookup = load_lookup(holdout)
    truth = keypoints[held]
    off = np.nan_to_num(truth, nan=48.0) + np.where(np.arange(30) % 2 == 0, 1.5, 0.0)   # x off by 1.5 px
    path = tmp_path / "sub.csv"
    submission_frame(off, np.arange(1, len(held) + 1), lookup).to_csv(path, index=False)
    figures = score(check_submission(path, lookup), lookup, holdout / "answers.csv")
    labelled = ~np.isnan(truth)
    x_share = labelled[:, 0::2].sum() / labelled.sum()
    assert figures["all"] == pytest.approx(1.5 * np.sqrt(x_share), abs=1e-3)
    assert figures["asked 30"] == pytest.approx(1.5 * np.sqrt(0.5), abs=1e-3)

    assert main(["check-submission", str(path), "--lookup", str(holdout), "--answers", str(holdout / "answers.csv")]) == 0
    assert f"RMSE all {figures['all']:.4f}" in capsys.readouterr().out


def test_an_existing_folder_is_refused_and_kept(competition, holdout, capsys):
    before = sorted(p.name for p in holdout.iterdir())
    assert main(["holdout", "--data-dir", str(competition), "--out", str(holdout)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in holdout.iterdir()) == before
    assert not list(holdout.parent.glob(".holdout.partial-*"))
