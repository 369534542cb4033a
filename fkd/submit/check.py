"""`fkd check-submission FILE --lookup IdLookupTable.csv [--answers answers.csv]`: validate any
submission file, and score it where the answers are known (a folder of `fkd holdout`)."""
import numpy as np
import pandas as pd

from fkd.core.errors import FkdError
from fkd.data.competition import load_lookup
from fkd.submit.submission import check_submission


def score(frame: pd.DataFrame, lookup: pd.DataFrame, answers_path) -> dict:
    """RMSE of a checked submission against answers.csv (RowId,Location): over every row, and over the
    images asked all 30 values and the images asked fewer apart."""
    answers = pd.read_csv(answers_path)
    if list(answers.columns) != ["RowId", "Location"] or not np.array_equal(answers["RowId"], lookup["RowId"]):
        raise FkdError("expected RowId,Location with the lookup's RowIds in order", path=answers_path)
    error = frame["Location"].astype(float).to_numpy() - answers["Location"].to_numpy(dtype=float)
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
