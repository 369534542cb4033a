"""`fkd check-submission FILE --lookup IdLookupTable.csv [--answers answers.csv]`: validate any
submission file, and score it where the answers are known (a folder of `fkd holdout`)."""
from pathlib import Path

import numpy as np
import pandas as pd

from fkd.core.errors import FkdError, row_label
from fkd.core.keypoints import SIZE
from fkd.data.competition import LABEL_MARGIN, load_lookup, parse_number_table, read_bytes
from fkd.submit.submission import HEADER, check_submission


def read_answers(path, lookup: pd.DataFrame) -> np.ndarray:
    """answers.csv's Location of each lookup row: every RowId of the lookup in its order, every Location a
    finite number within the range training labels may take (fkd.data.competition.LABEL_MARGIN past
    the frame: labels touch the border)."""
    path = Path(path)
    if not path.is_file():
        raise FkdError("no such file", path=path)
    values = parse_number_table(read_bytes(path), HEADER, path)
    expected = lookup["RowId"].to_numpy()
    both = min(len(values), len(expected))
    wrong = np.flatnonzero(values[:both, 0] != expected[:both])
    if len(wrong):
        row = int(wrong[0])
        raise FkdError(f"RowId {values[row, 0]:g}, expected {expected[row]} (the lookup's RowIds in order)",
                       path=path, row=row_label(row), column="RowId")
    if len(values) > len(expected):
        raise FkdError(f"RowId {values[both, 0]:g} is past the lookup's {len(expected)} rows",
                       path=path, row=row_label(both), column="RowId")
    if len(values) < len(expected):
        raise FkdError(f"{len(values)} rows, but the lookup has {len(expected)}", path=path)
    outside = np.flatnonzero((values[:, 1] < -LABEL_MARGIN) | (values[:, 1] > SIZE - 1 + LABEL_MARGIN))
    if len(outside):
        row = int(outside[0])
        raise FkdError(f"{values[row, 1]:g} is outside the image (answers lie in [{-LABEL_MARGIN:g}, "
                       f"{SIZE - 1 + LABEL_MARGIN:g}] px)", path=path, row=row_label(row), column="Location")
    return values[:, 1]


def score(frame: pd.DataFrame, lookup: pd.DataFrame, answers_path) -> dict:
    """RMSE of a checked submission against answers.csv (RowId,Location): over every row, and over the
    images asked all 30 values and the images asked fewer apart."""
    error = frame["Location"].astype(float).to_numpy() - read_answers(answers_path, lookup)
    asked = lookup.groupby("ImageId")["RowId"].transform("size").to_numpy()
    parts = {"all": np.ones(len(error), bool), "asked 30": asked == 30, "asked fewer": asked < 30}
    return {name: float(np.sqrt(np.mean(error[rows] ** 2))) for name, rows in parts.items() if rows.any()}


def add_arguments(parser):
    parser.add_argument("file", help="submission csv (RowId,Location)")
    parser.add_argument("--lookup", required=True, help="IdLookupTable.csv (or the folder holding it)")
    parser.add_argument("--answers", default=None,
                        help="answers.csv (RowId,Location) of a folder made by `fkd holdout`: print the RMSE")


def run(args):
    lookup = load_lookup(args.lookup)
    frame = check_submission(args.file, lookup)
    print(f"{args.file}: ok ({len(lookup)} rows, {lookup['ImageId'].nunique()} images)")
    if args.answers:
        figures = score(frame, lookup, args.answers)
        print("RMSE " + ", ".join(f"{name} {value:.4f}" for name, value in figures.items()))
