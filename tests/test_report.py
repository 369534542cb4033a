"""fkd report: the figures of a finished run, from a fake run folder in the training loop's layout."""
import json

import numpy as np
import pandas as pd
import pytest

from fkd.cli import main
from fkd.core.errors import FkdError
from fkd.core.keypoints import COLUMNS
from fkd.core.metrics import rmse_report
from fkd.data.synth import draw_faces
from fkd.show import report

BAD_ROW = 7


def make_run(run_dir, keypoints, test_ids=None, nested_history=False, folds=3, epochs=4):
    """A run folder as fkd.cv writes it: predictions = truth + noise, one row far off."""
    rng = np.random.default_rng(0)
    n = len(keypoints)
    fold_of_row = np.arange(n) % folds
    mean = np.nanmean(keypoints, axis=0)
    oof = np.where(np.isnan(keypoints), mean, keypoints) + rng.normal(0, 1.0, keypoints.shape)
    oof[BAD_ROW] += 15.0
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"name": run_dir.name, "model": "lenet"}))
    history = [[{"fold": f, "epoch": e + 1, "train_loss": 0.1 / (e + 1), "val_loss": 0.12 / (e + 1),
                 "val_rmse": 3.0 / (e + 1) + 0.1 * f, "lr": 1e-3, "seconds": 0.5} for e in range(epochs)]
               for f in range(folds)]
    history = history if nested_history else [r for fold in history for r in fold]
    (run_dir / "history.json").write_text(json.dumps(history))
    (run_dir / "metrics.json").write_text(json.dumps(rmse_report(oof, keypoints)))
    frame = pd.DataFrame(oof, columns=COLUMNS)
    frame.insert(0, "fold", fold_of_row)
    frame.insert(0, "row", np.arange(n))
    frame.to_csv(run_dir / "oof.csv", index=False)
    if test_ids is not None:
        test = pd.DataFrame(np.tile(mean, (len(test_ids), 1)), columns=COLUMNS)
        test.insert(0, "ImageId", test_ids)
        test.to_csv(run_dir / "test_pred.csv", index=False)
    return run_dir


@pytest.fixture(scope="module")
def training():
    images, keypoints = draw_faces(30, rng=1)
    keypoints[1::2, 4:20] = np.nan           # half the rows partial
    return images, keypoints


def test_write_run_report_draws_every_figure(training, tmp_path):
    images, keypoints = training
    run_dir = make_run(tmp_path / "run_a", keypoints, test_ids=np.arange(1, 7))
    written = report.write_run_report(run_dir, images, keypoints, test_images=images[:6])
    names = {p.name for p in written}
    assert names == {"curves.png", "per_keypoint.png", "worst_oof.png", "test_predictions.png", "report.md"}
    for name in names:
        assert (run_dir / name).stat().st_size > 1000 or name == "report.md"
    text = (run_dir / "report.md").read_text()
    worst_table = text.split("## Worst out-of-fold rows")[1]
    assert worst_table.splitlines()[4].startswith(f"| {BAD_ROW} |")    # the worst row comes first
    assert "fold 2: epoch 4" in text
    assert not list(run_dir.glob("*.tmp"))


def test_nested_history_and_no_images(training, tmp_path):
    _, keypoints = training
    run_dir = make_run(tmp_path / "run_b", keypoints, test_ids=np.arange(1, 4), nested_history=True)
    history = report.read_history(run_dir)
    assert sorted(history["fold"].unique()) == [0, 1, 2] and len(history) == 12
    written = report.write_run_report(run_dir)
    assert {p.name for p in written} == {"curves.png", "per_keypoint.png", "report.md"}
    assert "worst_oof.png skipped" in (run_dir / "report.md").read_text()


def test_test_images_given_by_id(training, tmp_path):
    images, keypoints = training
    run_dir = make_run(tmp_path / "run_c", keypoints, test_ids=np.array([5, 3]))
    ids = np.array([3, 4, 5])
    written = report.write_run_report(run_dir, images, keypoints, test_images=(ids, images[:3]))
    assert "test_predictions.png" in {p.name for p in written}
    with pytest.raises(FkdError, match="test set"):
        report._test_arrays(images[:5], np.array([5, 3]))
    with pytest.raises(FkdError, match="ImageId 9"):
        report._test_arrays((ids, images[:3]), np.array([9]))


def test_bad_run_folders_are_one_line_errors(training, tmp_path):
    images, keypoints = training
    with pytest.raises(FkdError, match="no such run folder"):
        report.write_run_report(tmp_path / "nothing")
    run_dir = make_run(tmp_path / "run_d", keypoints)
    with pytest.raises(FkdError, match="outside the 10 training rows"):
        report.write_run_report(run_dir, images[:10], keypoints[:10])
    (run_dir / "metrics.json").unlink()
    with pytest.raises(FkdError, match="metrics.json"):
        report.write_run_report(run_dir)


def test_report_command_reads_the_competition_folder(competition, tmp_path, capsys):
    from fkd.data.competition import load_test, load_training

    images, keypoints = load_training(competition)
    test_ids, _ = load_test(competition)
    run_dir = make_run(tmp_path / "runs" / "demo", keypoints, test_ids=test_ids)
    assert main(["report", str(run_dir), "--data-dir", str(competition)]) == 0
    assert all((run_dir / f).is_file() for f in ("curves.png", "per_keypoint.png", "worst_oof.png",
                                                 "test_predictions.png"))
    assert "worst_oof.png" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing"), "--data-dir", str(competition)]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_report_refuses_another_competitions_faces(competition, tmp_path, capsys):
    """Same row count, other faces: the run's stamp says so, and nothing of the run is redrawn."""
    from fkd.core.config import load_config
    from fkd.data.synth import write_competition
    from fkd.train.cv import run_cv

    run_dir = run_cv(competition, load_config(None, model="lenet", epochs=1, folds=2, name="stamped"), tmp_path)
    other = write_competition(tmp_path / "other", n_train=240, n_test=24, seed=7)
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("*.png")}
    assert main(["report", str(run_dir), "--data-dir", str(other)]) == 2
    err = capsys.readouterr().err
    assert "was trained on other training data (240 rows, here 240, other faces or labels)" in err
    assert str(run_dir) in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.glob("*.png")} == before
    assert main(["report", str(run_dir), "--data-dir", str(competition)]) == 0
    assert "OOF RMSE" in capsys.readouterr().out


def test_curves_show_the_learning_rate_of_each_epoch():
    from fkd.show.report import plot_curves

    history = pd.DataFrame([{"fold": 0, "epoch": e + 1, "train_loss": 0.1, "val_loss": 0.1, "val_rmse": 2.0,
                             "lr": 1e-3 * (e + 1)} for e in range(4)])
    fig = plot_curves(history, {"rmse": 2.0, "keep": "last"}, "lr")
    lr_axis = [ax for ax in fig.axes if ax.get_title() == "Learning rate"]
    assert len(lr_axis) == 1
    np.testing.assert_allclose(lr_axis[0].lines[0].get_ydata(), [1e-3, 2e-3, 3e-3, 4e-3])


def test_a_run_records_its_training_framing(tmp_path):
    from fkd.data.synth import draw_faces
    from fkd.train.rundir import read_framing, write_data_stamp

    images, keypoints = draw_faces(5, rng=0)
    partial = keypoints.copy()
    partial[:, 10:] = np.nan   # rows with missing values do not count: the face output is the complete kind
    write_data_stamp(tmp_path, np.concatenate([images, images]), np.concatenate([keypoints, partial + 50]))
    np.testing.assert_allclose(read_framing(tmp_path), keypoints.mean(axis=0), atol=1e-3)
    assert read_framing(tmp_path / "older-run") is None


@pytest.mark.parametrize("value", ["-5", "0", "many"])
def test_worst_must_be_one_or_more(value, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        main(["report", str(run_dir), "--worst", value])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --worst: must be" in err[0], err
