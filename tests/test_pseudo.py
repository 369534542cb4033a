import numpy as np
import pytest

from fkd.core.config import load_config
from fkd.core.errors import FkdError
from fkd.core.keypoints import complete_rows
from fkd.data.competition import load_training
from fkd.data.folds import load_folds
from fkd.train.cv import run_cv
from fkd.train.predict import load_run_fold, predict_images
from fkd.train.pseudo import fill_missing
from fkd.train.rundir import read_json, read_oof

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def teacher(competition, tmp_path_factory):
    config = load_config(REPO / "configs" / "tiny.yaml", name="teacher", epochs=1)
    return run_cv(competition, config, tmp_path_factory.mktemp("runs"))


def test_missing_labels_of_the_training_rows_come_from_the_folds_own_teacher(competition, teacher):
    images, truth = load_training(competition)
    folds = load_folds(competition, 2, 0)
    config = load_config(REPO / "configs" / "tiny.yaml", pseudo_labels=str(teacher))
    train_rows = np.flatnonzero(folds != 1)
    filled = fill_missing(truth, images, truth, train_rows, 1, config)

    present = ~np.isnan(truth)
    np.testing.assert_array_equal(filled[present], truth[present])      # real labels are kept
    assert np.isnan(truth[train_rows]).any() and not np.isnan(filled[train_rows]).any()
    valid_rows = np.flatnonzero(folds == 1)                             # fold 1's validation rows stay untouched
    np.testing.assert_array_equal(np.isnan(filled[valid_rows]), np.isnan(truth[valid_rows]))

    model, teacher_config = load_run_fold(teacher, 1)      # fold 1's teacher, not fold 0's
    partial = train_rows[~complete_rows(truth[train_rows])]
    expected = predict_images(model, images[partial], teacher_config, "cpu", subsets=np.zeros(len(partial), int))
    missing = np.isnan(truth[partial])
    np.testing.assert_allclose(filled[partial][missing], expected[missing], atol=1e-4)


def test_a_teacher_on_other_folds_is_refused(competition, teacher):
    images, truth = load_training(competition)
    config = load_config(REPO / "configs" / "tiny.yaml", pseudo_labels=str(teacher), fold_seed=1)
    with pytest.raises(FkdError, match="other folds"):
        fill_missing(truth, images, truth, np.arange(len(truth)), 0, config)
    with pytest.raises(FkdError, match="no checkpoint for fold 5"):
        fill_missing(truth, images, truth, np.arange(len(truth)), 5, {**config, "fold_seed": 0})


def test_cv_trains_on_the_teachers_labels(competition, teacher, tmp_path):
    # same seed, same folds: only the filled labels can make the student differ from a plain run
    plain = load_config(REPO / "configs" / "tiny.yaml", name="plain", epochs=1)
    student = {**plain, "name": "student", "pseudo_labels": str(teacher)}
    plain_oof = read_oof(run_cv(competition, plain, tmp_path))[1]
    student_dir = run_cv(competition, student, tmp_path)
    assert read_json(student_dir / "config.json")["pseudo_labels"] == str(teacher)
    assert np.isfinite(read_json(student_dir / "metrics.json")["rmse"])
    assert np.abs(read_oof(student_dir)[1] - plain_oof).max() > 1e-3
