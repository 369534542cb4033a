"""The files of a run folder, runs/<name>/, and how to read them back.

config.json      resolved config            fold<k>.pt      the kept checkpoint of fold k
resume-fold<k>.pt  the state after fold k's last finished epoch, while it trains (a rerun resumes from it)
oof.csv          row, fold, 30 columns      test_pred.csv   ImageId, 30 columns (fold mean x test-time views)
metrics.json     RMSE overall/complete/partial/per keypoint, fold_seconds; written last: a run with it is finished
data.json        the training data it was trained on (rows, fingerprint): report and submit check it
manifest.json    the digest of every file above, written just before metrics.json: readers check that
                 the folder still holds the files its run wrote (a fold copied in from another run is refused)
.lock            held by the one `fkd cv` writing the run (fkd.core.lock); readers refuse a run being written
history.json     per-epoch records {fold, epoch, train_loss, grad_norm_median, grad_norm_max, val_loss, val_rmse,
                 lr, seconds, train_images_per_second}
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from fkd.core.atomic import atomic_path, write_text
from fkd.core.atomic import read_json as read_file_json
from fkd.core.errors import FkdError
from fkd.core.lock import check_not_being_written
from fkd.core.keypoints import COLUMNS
from fkd.core.metrics import mean_shape
from fkd.data.competition import training_fingerprint


def write_json(path, value) -> None:
    write_text(path, json.dumps(value, indent=1))


def read_json(path, kind=dict):
    """One of the run's JSON files (an object, or with kind=list a list)."""
    return read_file_json(path, missing="missing: is this a finished run?", kind=kind)


def read_run_config(run_dir) -> dict:
    """The run's config.json; {} for a folder that has none (a run from before it was written)."""
    path = Path(run_dir) / "config.json"
    return read_json(path) if path.is_file() else {}


def _read_table(path, key) -> pd.DataFrame:
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise FkdError(f"cannot read the table: {error}", path=path) from None
    missing = [c for c in [key, *COLUMNS] if c not in frame.columns]
    if missing:
        raise FkdError(f"lacks column(s) {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}",
                       path=path)
    return frame


def _write_table(path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")


def write_oof(run_dir, folds, predictions) -> None:
    """Out-of-fold predictions for every training row (row = index into the training arrays)."""
    frame = pd.DataFrame(np.asarray(predictions, dtype=np.float64), columns=COLUMNS)
    frame.insert(0, "fold", np.asarray(folds))
    frame.insert(0, "row", np.arange(len(frame)))
    _write_table(Path(run_dir) / "oof.csv", frame)


def read_oof_rows(run_dir):
    """(rows int [K], folds int [K] or None, predictions float32 [K,30]) as oof.csv lists them."""
    path = Path(run_dir) / "oof.csv"
    if not path.is_file():
        raise FkdError("missing: is this a finished run?", path=path)
    frame = _read_table(path, "row")
    folds = frame["fold"].to_numpy() if "fold" in frame.columns else None
    try:
        rows = frame["row"].to_numpy(dtype=np.int64)
    except (ValueError, TypeError):
        raise FkdError("column row holds a value that is no row number: truncated or edited; rerun `fkd cv` "
                       "on the run to write it again", path=path, column="row") from None
    check_oof_rows(run_dir, rows)
    return rows, folds, frame[COLUMNS].to_numpy(dtype=np.float32)


def read_oof(run_dir):
    """(folds [N], predictions float32 [N,30]) in training-row order."""
    rows, folds, predictions = read_oof_rows(run_dir)
    order = np.argsort(rows, kind="stable")
    return (folds[order] if folds is not None else None), predictions[order]


def write_test_predictions(run_dir, image_ids, predictions) -> None:
    frame = pd.DataFrame(np.asarray(predictions, dtype=np.float64), columns=COLUMNS)
    frame.insert(0, "ImageId", np.asarray(image_ids))
    _write_table(Path(run_dir) / "test_pred.csv", frame)


def read_test_predictions(run_dir):
    """(image_ids [M], predictions float32 [M,30]), or None when the run has none."""
    path = Path(run_dir) / "test_pred.csv"
    if not path.is_file():
        return None
    frame = _read_table(path, "ImageId")
    return frame["ImageId"].to_numpy(), frame[COLUMNS].to_numpy(dtype=np.float32)


def write_data_stamp(run_dir, images, keypoints) -> None:
    """data.json: the training data's rows and fingerprint, and its framing: the mean of the complete
    rows' keypoints (where the training faces have their points; `fkd face` crops faces to it)."""
    complete = keypoints[~np.isnan(keypoints).any(axis=1)]
    framing = mean_shape(complete if len(complete) else keypoints)
    write_json(Path(run_dir) / "data.json", {"training_rows": len(keypoints),
                                             "fingerprint": training_fingerprint(images, keypoints),
                                             "framing": [None if np.isnan(v) else round(float(v), 3) for v in framing]})


def read_framing(run_dir):
    """The run's framing [30] (NaN where the training rows label no value), or None for runs
    written before data.json had one."""
    path = Path(run_dir) / "data.json"
    framing = read_json(path).get("framing") if path.is_file() else None
    return None if framing is None else np.array([np.nan if v is None else v for v in framing], np.float64)


DETECTOR_FILE = "detector.json"
FRAMER_FILE = "framer.pt"  # fkd.train.framer's model: how far a photo's crop is from the training framing


def first_framer(run_dirs):
    """The framer.pt of the first of these runs that has one (`fkd calibrate`); None when none has."""
    return next((Path(r) / FRAMER_FILE for r in run_dirs if (Path(r) / FRAMER_FILE).is_file()), None)


def write_landmark_goal(run_dir, goal, faces: int, photos: int) -> None:
    """detector.json: where MTCNN puts its 5 landmarks (fkd's order, crop pixels) on the run's
    training faces, measured by `fkd calibrate` on `photos` of them (`faces` found)."""
    write_json(Path(run_dir) / DETECTOR_FILE, {"detector": "mtcnn", "landmarks": np.round(goal, 3).tolist(),
                                               "faces": int(faces), "photos": int(photos)})


def read_landmark_goal(run_dir):
    """The run's MTCNN landmark goal [5,2], or None for a run not calibrated."""
    path = Path(run_dir) / DETECTOR_FILE
    if not path.is_file():
        return None
    try:
        goal = np.array(read_json(path).get("landmarks"), np.float64)
    except (TypeError, ValueError):
        goal = np.zeros(0)
    if goal.shape != (5, 2) or not np.isfinite(goal).all():
        raise FkdError("landmarks must be 5 finite (x, y) pairs", path=path)
    return goal


def stamped_rows(path) -> int:
    """data.json's training row count; FkdError naming the file when it holds none."""
    rows = read_json(path).get("training_rows")
    if not isinstance(rows, int):
        raise FkdError("names no training rows: damaged, or not fkd's; rerun `fkd cv` on the run", path=path)
    return rows


def check_same_data(run_dir, images, keypoints) -> None:
    """FkdError unless the run was trained on this training data (data.json; older runs: oof.csv's rows)."""
    path = Path(run_dir) / "data.json"
    if path.is_file():
        stamp = read_json(path)
        if stamp.get("fingerprint") == training_fingerprint(images, keypoints):
            return
        rows = stamped_rows(path)
    elif (Path(run_dir) / "oof.csv").is_file():
        rows = len(read_oof_rows(run_dir)[0])
        if rows == len(keypoints):
            return
    else:
        return
    raise FkdError(f"was trained on other training data ({rows:,} rows, here {len(keypoints):,}"
                   f"{', other faces or labels' if rows == len(keypoints) else ''}): pass its competition "
                   "folder as --data-dir", path=run_dir)


def report_is_current(run_dir) -> bool:
    """Whether `fkd report` has drawn the run since its last fold was saved (report.md is its last file)."""
    report = Path(run_dir) / "report.md"
    folds = fold_files(run_dir)
    return report.is_file() and bool(folds) and report.stat().st_mtime >= max(p.stat().st_mtime for p in folds)


def resume_path(run_dir, fold: int) -> Path:
    """Fold k's resume state; not named fold<k>.pt, which means a finished fold."""
    return Path(run_dir) / f"resume-fold{fold}.pt"


def check_run_folders(run_dirs) -> None:
    """FkdError for the first path that is no folder (a run is a folder under runs/)."""
    for run_dir in run_dirs:
        if not Path(run_dir).is_dir():
            raise FkdError("no such run folder", path=run_dir)


MANIFEST_FILE = "manifest.json"
RESULT_FILES = ("config.json", "data.json", "oof.csv", "test_pred.csv", "history.json")
DROPPABLE_FILES = ("test_pred.csv",)  # without it, fkd submit predicts the test images with the folds


def file_digest(path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fold_files(run_dir) -> list:
    return sorted(Path(run_dir).glob("fold*.pt"))


def fold_index(path) -> int:
    """k of fold<k>.pt; FkdError for a file named so that is not one."""
    digits = Path(path).stem[len("fold"):]
    if not digits.isdigit():
        raise FkdError("is not a fold checkpoint's name (fold<k>.pt): move it out of the run folder", path=path)
    return int(digits)


def write_manifest(run_dir) -> None:
    """manifest.json: the digest of each fold checkpoint and result file the run holds now."""
    run_dir = Path(run_dir)
    files = [*fold_files(run_dir), *(run_dir / name for name in RESULT_FILES if (run_dir / name).is_file())]
    write_json(run_dir / MANIFEST_FILE, {path.name: file_digest(path) for path in files})


def check_manifest(run_dir) -> None:
    """FkdError unless every file the run's manifest lists is there unchanged, and no fold was added
    (a run written before manifests existed passes)."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST_FILE
    if not path.is_file():
        return
    listed = read_json(path)
    added = [p.name for p in fold_files(run_dir) if p.name not in listed]
    if added:
        raise FkdError(f"{added[0]} is not one of the run's folds ({', '.join(n for n in listed if n.startswith('fold'))}):"
                       " move it back to its own run folder", path=run_dir)
    for name, digest in listed.items():
        file = run_dir / name
        if not file.is_file() and name not in DROPPABLE_FILES:
            raise FkdError(f"{name} is missing from the finished run: rerun `fkd cv` on it", path=run_dir)
        if file.is_file() and file_digest(file) != digest:
            raise FkdError("changed since the run wrote it (another run's file, or damaged): put the run's own "
                           "file back, or delete it and rerun `fkd cv`", path=file)


def check_run_readable(run_dir) -> Path:
    """The run folder, once nobody is writing it and its files are the ones its run wrote (finished
    or not: `fkd face` may use the folds a run has); else an FkdError saying what to do."""
    run_dir = Path(run_dir)
    check_run_folders([run_dir])
    check_not_being_written(run_dir)
    check_manifest(run_dir)
    return run_dir


def check_finished_run(run_dir) -> Path:
    """check_run_readable, and the run is finished (metrics.json, written last)."""
    check_run_readable(run_dir)
    if not (Path(run_dir) / "metrics.json").is_file():
        raise FkdError("not a finished run (no metrics.json): run `fkd cv` on it to finish its folds", path=run_dir)
    return Path(run_dir)


def check_oof_rows(run_dir, rows) -> None:
    """FkdError unless oof.csv's rows are each training row once (data.json's count, when it has one)."""
    path = Path(run_dir) / "oof.csv"
    stamp = Path(run_dir) / "data.json"
    expected = stamped_rows(stamp) if stamp.is_file() else len(rows)
    if (len(rows) != expected or len(np.unique(rows)) != len(rows)
            or (len(rows) and (rows.min() < 0 or rows.max() >= expected))):
        raise FkdError(f"lists {len(rows):,} rows ({len(np.unique(rows)):,} distinct) for {expected:,} training rows: "
                       "truncated or edited; rerun `fkd cv` on the run to write it again", path=path)
