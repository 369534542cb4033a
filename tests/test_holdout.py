"""`fkd holdout`: a fold kept out as a test set with answers, scored by `fkd check-submission --answers`."""
import re

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


@pytest.mark.parametrize("options, match", [
    (["--folds", "1"], r"--folds 1: keeping a fold out needs at least 2 folds"),
    (["--folds", "0"], r"--folds 0: keeping a fold out needs at least 2 folds"),
    (["--folds", "-3"], r"--folds -3: keeping a fold out needs at least 2 folds"),
    (["--folds", "4", "--fold", "4"], r"--fold 4 is not one of 0..3"),
    (["--fold", "-1"], r"--fold -1 is not one of 0..4"),
])
def test_fewer_than_two_folds_or_a_fold_outside_them_is_refused(options, match, competition, tmp_path, capsys):
    out = tmp_path / "holdout"
    assert main(["holdout", "--data-dir", str(competition), "--out", str(out), *options]) == 2
    told = capsys.readouterr().err.strip().splitlines()
    assert len(told) == 1 and re.search(match, told[0])
    assert not out.exists() and not list(tmp_path.glob(".holdout.partial-*"))


def _check_with_answers(holdout, tmp_path, capsys, rows):
    """`fkd check-submission` of a valid submission against an answers.csv of `rows`: status, stderr lines, stdout."""
    answers = tmp_path / "answers.csv"
    answers.write_text("\n".join(rows) + "\n")
    submission = tmp_path / "sub.csv"
    submission.write_bytes((holdout / "SampleSubmission.csv").read_bytes())
    status = main(["check-submission", str(submission), "--lookup", str(holdout), "--answers", str(answers)])
    captured = capsys.readouterr()
    return status, captured.err.strip().splitlines(), captured.out


@pytest.mark.parametrize("location, match", [
    ("nan", r"'nan' is not a finite number"),
    ("", r"empty"),
    ("abc", r"'abc' is not a finite number"),
    ("-inf", r"'-inf' is not a finite number"),
])
def test_an_answer_that_is_no_finite_number_is_one_line_naming_it(location, match, holdout, tmp_path, capsys):
    rows = (holdout / "answers.csv").read_text().splitlines()
    rows[3] = rows[3].split(",")[0] + "," + location
    status, told, out = _check_with_answers(holdout, tmp_path, capsys, rows)
    assert status == 2 and len(told) == 1 and "RMSE" not in out
    where = re.escape(f"{tmp_path / 'answers.csv'}, row 3 (line 4), column Location: ")
    assert re.search(where + match + "$", told[0]), told


@pytest.mark.parametrize("change, match", [
    (lambda rows: rows[:3] + rows[4:], r"row 3 \(line 4\), column RowId: RowId 4, expected 3"),
    (lambda rows: rows[:-1], r"answers.csv: \d+ rows, but the lookup has \d+$"),
    (lambda rows: rows + ["999999,1.0"], r"row \d+ \(line \d+\), column RowId: RowId 999999 is past the lookup's"),
    (lambda rows: ["RowId,Value"] + rows[1:], r"row header: bad header: missing Location; unexpected Value"),
])
def test_answers_that_do_not_follow_the_lookup_are_one_line_naming_them(change, match, holdout, tmp_path, capsys):
    rows = (holdout / "answers.csv").read_text().splitlines()
    status, told, out = _check_with_answers(holdout, tmp_path, capsys, change(rows))
    assert status == 2 and len(told) == 1 and "RMSE" not in out
    assert f"{tmp_path / 'answers.csv'}" in told[0] and re.search(match, told[0]), told
