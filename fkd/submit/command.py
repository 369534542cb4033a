"""`fkd submit`: test predictions (the mean shape, or a blend of runs) -> a checked submission file."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from fkd.core.atomic import atomic_path
from fkd.core.errors import FkdError
from fkd.core.metrics import mean_shape, rmse
from fkd.data.competition import (
    find_data_dir,
    load_lookup,
    load_test,
    load_training,
    lookup_kinds,
)
from fkd.submit import ensemble, stack
from fkd.submit.submission import submission_frame, write_submission
from fkd.train import rundir


def add_arguments(parser):
    parser.add_argument("--data-dir", help="competition folder (default: data/, then /kaggle/input)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", choices=["mean"], help="a baseline predictor instead of runs")
    source.add_argument("--runs", nargs="+", help="run folders to blend (weights fitted on OOF)")
    parser.add_argument("--name", help="submission name (default: the model or the runs)")
    parser.add_argument("--out-dir", default="submissions", help="where submissions are kept")
    parser.add_argument("--out", help="also copy the submission here (e.g. /kaggle/working/submission.csv)")
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


def run_oofs(run_dirs, images, truth):
    """(folds [N], [each run's OOF predictions [N,30]]) of runs trained on this training data (others
    are refused); folds None when the runs' folds differ."""
    oofs, all_folds = [], []
    for run_dir in run_dirs:
        rundir.check_same_data(run_dir, images, truth)
        folds, oof = rundir.read_oof(run_dir)
        if oof.shape != truth.shape:
            raise FkdError(f"oof.csv has {len(oof)} rows but the training data has {len(truth)}: "
                           "was this run trained on another folder?", path=run_dir)
        oofs.append(oof)
        all_folds.append(folds)
    same = all(f is not None and np.array_equal(f, all_folds[0]) for f in all_folds)
    return (all_folds[0] if same else None), oofs


def fitted_weights(run_dirs, images, truth):
    """(weights, report): one blend weight per run, fitted on the runs' OOF predictions of this
    training data (refused when a run was trained on other faces); the report has each run's OOF RMSE."""
    _, oofs = run_oofs(run_dirs, images, truth)
    return oof_weights(run_dirs, oofs, truth)


def oof_weights(run_dirs, oofs, truth):
    """(weights, report) of fitted_weights, from the runs' OOF predictions already read."""
    weights = ensemble.fit_weights(oofs, truth)
    report = ensemble.blend_report(oofs, truth, weights)
    for run_dir, member, weight in zip(run_dirs, report["members"], report["weights"]):
        print(f"  {run_dir}: OOF RMSE {member:.4f}, weight {weight:.3f}")
    print(f"  blend: OOF RMSE {report['blend']:.4f}")
    return weights, report


def run_predictions(data_dir, run_dirs, device=None, stacked=False):
    """Blend of the runs' test predictions with weights fitted on their OOF predictions; `stacked`:
    a stack instead (fkd.submit.stack), its OOF RMSE fitted inside the folds."""
    images, truth = load_training(data_dir)
    image_ids, test_images = load_test(data_dir)
    folds, oofs = run_oofs(run_dirs, images, truth)
    weights, report = oof_weights(run_dirs, oofs, truth)
    kinds = lookup_kinds(load_lookup(data_dir), image_ids, truth)
    tests = []
    for run_dir in run_dirs:
        stored = rundir.read_test_predictions(run_dir)
        if stored is not None and set(stored[0]) == set(image_ids):
            test = pd.DataFrame(stored[1], index=stored[0]).loc[image_ids].to_numpy(dtype=np.float32)
        else:
            from fkd.train.predict import (
                predict_runs,  # torch only when a run must be re-predicted
            )
            print(f"  {run_dir}: no stored predictions for these test images: predicting them")
            test = predict_runs([run_dir], test_images, subsets=kinds, device=device)
        tests.append(test)
    if not stacked:
        return image_ids, ensemble.blend(tests, weights), {"oof_rmse": report["blend"], **report}
    if folds is None:
        raise FkdError("--stack needs runs on the same folds (their oof.csv fold columns differ)")
    oof_rmse = rmse(stack.stacked_oof(oofs, truth, folds), truth)
    fitted = stack.fit_stack(oofs, truth)
    print(f"  stack: OOF RMSE {oof_rmse:.4f} (fitted inside the folds; the blend's {report['blend']:.4f})")
    return image_ids, stack.apply_stack(fitted, tests, kinds), {"oof_rmse": oof_rmse, **report, **stack.describe(fitted)}


def write_run_submission(data_dir, run_dirs, name=None, out_dir="submissions", device=None, stacked=False) -> Path:
    """Blend (or stack) finished runs and write the checked submission file; returns its path."""
    data_dir = find_data_dir(data_dir)
    lookup = load_lookup(data_dir)
    image_ids, predictions, meta = run_predictions(data_dir, run_dirs, device=device, stacked=stacked)
    name = name or "+".join(str(r).rstrip("/").split("/")[-1] for r in run_dirs)
    frame = submission_frame(predictions, image_ids, lookup)
    return write_submission(frame, name, out_dir, lookup=lookup, meta={"runs": [str(r) for r in run_dirs], **meta})


def run(args):
    if args.model == "mean":
        data_dir = find_data_dir(args.data_dir)
        lookup = load_lookup(data_dir)
        image_ids, predictions, meta = mean_predictions(data_dir)
        frame = submission_frame(predictions, image_ids, lookup)
        path = write_submission(frame, args.name or "mean", args.out_dir, lookup=lookup,
                                meta={"runs": [], "model": "mean", **meta})
    else:
        path = write_run_submission(args.data_dir, args.runs, args.name, args.out_dir, device=args.device,
                                    stacked=args.stack)
    print(f"wrote {path} ({sum(1 for _ in open(path)) - 1} rows)")
    if args.out:
        with atomic_path(args.out) as tmp:
            shutil.copyfile(path, tmp)
        print(f"copied to {args.out}")
    return 0
