"""`fkd submit`: test predictions (the mean shape, or a blend of runs: fkd.submit.blend) -> a checked
submission file."""
import shutil
from pathlib import Path

import numpy as np

from fkd.core.atomic import atomic_path, check_destination, check_writable
from fkd.core.config import check_name
from fkd.core.errors import FkdError
from fkd.core.metrics import mean_shape, rmse
from fkd.data.competition import find_data_dir, load_lookup, load_test, load_training
from fkd.submit.submission import run_submission_name, sidecar_path, submission_frame, write_submission


def add_arguments(parser):
    parser.add_argument("--data-dir", help="competition folder (default: data/, then /kaggle/input)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", choices=["mean"], help="a baseline predictor instead of runs")
    source.add_argument("--runs", nargs="+", help="run folders to blend (weights fitted on OOF)")
    parser.add_argument("--name", help="submission name (default: the model or the runs)")
    parser.add_argument("--out-dir", default="submissions", help="where submissions are kept")
    parser.add_argument("--out", help="also copy the submission here (e.g. /kaggle/working/submission.csv); "
                        "an existing file is replaced only when it is a submission and --force is given")
    parser.add_argument("--force", action="store_true", help="let --out replace an existing submission file")
    parser.add_argument("--stack", action="store_true",
                        help="a linear stack over the runs (per coordinate, then per kind of face a ridge "
                             "correction over every value; fitted inside the folds for its OOF figure) instead "
                             "of one blend weight per run")
    parser.add_argument("--device", help="auto | cpu | cuda: where a run without stored test predictions is "
                        "re-predicted (default auto)")


def mean_predictions(data_dir):
    """The mean shape for every test image, and its CV-free training RMSE."""
    _, keypoints = load_training(data_dir)
    image_ids, _ = load_test(data_dir)
    shape = mean_shape(keypoints)
    return image_ids, np.tile(shape, (len(image_ids), 1)), {"train_rmse": rmse(shape[None], keypoints)}


def is_fkd_submission(path) -> bool:
    """Whether fkd submit wrote the file: a submission (its header RowId,Location) with fkd's sidecar
    beside it (SampleSubmission.csv and a holdout's answers.csv have the header, not the sidecar)."""
    with open(path, "rb") as stream:
        header = stream.readline().strip()
    return header == b"RowId,Location" and sidecar_path(path).is_file()


def run(args):
    if args.name is not None:
        check_name(args.name, "--name")
    elif args.runs:
        check_name(run_submission_name(args.runs), "the submission's name (the runs' names joined; pass --name)")
    check_writable(args.out_dir)
    if args.out:
        check_destination(args.out, args.force, "a submission fkd submit wrote (its .json beside it)",
                          is_fkd_submission)
        if not Path(args.out).exists() and sidecar_path(args.out).exists():
            raise FkdError("exists, and fkd submit writes its sidecar there: choose another --out",
                           path=sidecar_path(args.out))
    if args.model == "mean":
        data_dir = find_data_dir(args.data_dir)
        lookup = load_lookup(data_dir)
        image_ids, predictions, meta = mean_predictions(data_dir)
        frame = submission_frame(predictions, image_ids, lookup)
        path = write_submission(frame, args.name or "mean", args.out_dir, lookup=lookup,
                                meta={"runs": [], "model": "mean", **meta})
    else:
        # scipy and scikit-learn (the blend and the stack) take seconds to import: the mean needs neither
        from fkd.submit.blend import write_run_submission

        path = write_run_submission(args.data_dir, args.runs, args.name, args.out_dir, device=args.device,
                                    stacked=args.stack)
    print(f"wrote {path} ({sum(1 for _ in open(path)) - 1} rows)")
    if args.out:
        with atomic_path(args.out) as tmp:
            shutil.copyfile(path, tmp)
        with atomic_path(sidecar_path(args.out)) as tmp:  # what made it, and the mark --force looks for
            shutil.copyfile(sidecar_path(path), tmp)
        print(f"copied to {args.out}")
    return 0
