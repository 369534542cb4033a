"""A local leaderboard: one fold of a folder's training rows kept out of everything, written as a
competition folder whose test set has answers.

The new folder holds the other rows' `training.csv` (their lines copied byte for byte), the kept-out
faces as `test.csv`, an `IdLookupTable.csv` asking each kept-out face the values its labels have (as
Kaggle's asks the partial faces only their labelled values), `SampleSubmission.csv`, and
`answers.csv` (RowId,Location: the labels). `fkd check-submission SUB --lookup DIR --answers
DIR/answers.csv` then scores a submission as Kaggle would. The kept-out fold is fkd's own fold
assignment (fkd.data.folds), so duplicate faces never sit on both sides.
"""
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from fkd.core.errors import FkdError
from fkd.core.keypoints import COLUMNS
from fkd.data.competition import find_data_dir, load_training, read_bytes, source_file
from fkd.data.folds import load_folds

ANSWERS = "answers.csv"


def training_lines(data_dir):
    """(header, [one line per training row]) of the folder's training.csv, as bytes."""
    path = source_file(data_dir, "training")
    header, *lines = read_bytes(path).replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n")
    return header, lines


def holdout_tables(keypoints, held_rows):
    """(IdLookupTable, answers) of the kept-out rows, numbered ImageId 1.. in their order."""
    image_index, column_index = np.nonzero(~np.isnan(keypoints[held_rows]))
    lookup = pd.DataFrame({"RowId": np.arange(1, len(image_index) + 1), "ImageId": image_index + 1,
                           "FeatureName": np.asarray(COLUMNS)[column_index], "Location": ""})
    answers = pd.DataFrame({"RowId": lookup["RowId"],
                            "Location": keypoints[held_rows][image_index, column_index]})
    return lookup, answers


def write_holdout(data_dir, out_dir, folds: int = 5, fold: int = 0, seed: int = 0) -> Path:
    """Write the folder (refused if `out_dir` exists); returns its path."""
    if folds < 2:
        raise FkdError(f"--folds {folds}: keeping a fold out needs at least 2 folds")
    if not 0 <= fold < folds:
        raise FkdError(f"--fold {fold} is not one of 0..{folds - 1}")
    data_dir, out_dir = find_data_dir(data_dir), Path(out_dir)
    if out_dir.exists():
        raise FkdError("already exists: choose a new folder (nothing was written)", path=out_dir)
    _, keypoints = load_training(data_dir)
    header, lines = training_lines(data_dir)
    if len(lines) != len(keypoints):
        raise FkdError(f"{len(lines)} lines but {len(keypoints)} rows: a quoted line break?", path=data_dir)
    assignment = load_folds(data_dir, folds, seed)
    held_rows, kept_rows = np.flatnonzero(assignment == fold), np.flatnonzero(assignment != fold)
    lookup, answers = holdout_tables(keypoints, held_rows)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    staging.mkdir(parents=True)
    try:
        (staging / "training.csv").write_bytes(b"\n".join([header, *(lines[r] for r in kept_rows)]) + b"\n")
        test = [b"ImageId,Image"] + [b"%d,%s" % (i + 1, lines[r].rsplit(b",", 1)[1])
                                     for i, r in enumerate(held_rows)]
        (staging / "test.csv").write_bytes(b"\n".join(test) + b"\n")
        lookup.to_csv(staging / "IdLookupTable.csv", index=False)
        lookup[["RowId"]].assign(Location=0).to_csv(staging / "SampleSubmission.csv", index=False)
        answers.to_csv(staging / ANSWERS, index=False)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{out_dir}: {len(kept_rows)} training rows, {len(held_rows)} kept-out test faces "
          f"(fold {fold} of {folds}, seed {seed}), {len(answers)} answers in {ANSWERS}")
    return out_dir


def add_arguments(parser):
    parser.add_argument("--data-dir", default=None, help="the competition folder to split (default: data/)")
    parser.add_argument("--out", required=True, help="the new folder (must not exist)")
    parser.add_argument("--folds", type=int, default=5, help="the split into folds (default 5: 20%% kept out)")
    parser.add_argument("--fold", type=int, default=0, help="the fold kept out (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="the folds' seed (default 0)")


def run(args):
    write_holdout(args.data_dir, args.out, folds=args.folds, fold=args.fold, seed=args.seed)
