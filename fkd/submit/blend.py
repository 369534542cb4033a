"""Blending finished runs: their OOF predictions give each run a weight (or fit a stack,
fkd.submit.stack), their test predictions are blended with it into a checked submission file."""
from pathlib import Path

import numpy as np
import pandas as pd

from fkd.core.errors import FkdError
from fkd.core.metrics import rmse
from fkd.data.competition import (
    find_data_dir,
    load_lookup,
    load_test,
    load_training,
    lookup_kinds,
)
from fkd.submit import ensemble, stack
from fkd.submit.submission import run_submission_name, submission_frame, write_submission
from fkd.train import rundir


def run_oofs(run_dirs, images, truth) -> list:
    """Each run's OOF predictions [N,30] of this training data (runs trained on other faces, unfinished
    runs, runs being written and runs whose files are not the ones they wrote are refused)."""
    oofs = []
    for run_dir in run_dirs:
        rundir.check_finished_run(run_dir)
        rundir.check_same_data(run_dir, images, truth)
        _, oof = rundir.read_oof(run_dir)
        if oof.shape != truth.shape:
            raise FkdError(f"oof.csv has {len(oof)} rows but the training data has {len(truth)}: "
                           "was this run trained on another folder?", path=run_dir)
        oofs.append(oof)
    return oofs


def fitted_weights(run_dirs, images, truth):
    """(weights, report): one blend weight per run, fitted on the runs' OOF predictions of this
    training data (refused when a run was trained on other faces); the report has each run's OOF RMSE."""
    oofs = run_oofs(run_dirs, images, truth)
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
    a stack instead (fkd.submit.stack), its OOF RMSE fitted inside the stack's own folds."""
    images, truth = load_training(data_dir)
    image_ids, test_images = load_test(data_dir)
    oofs = run_oofs(run_dirs, images, truth)
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
    own_folds = stack.stacking_folds(images, truth)
    first_stage_rmse = rmse(stack.stacked_oof(oofs, truth, own_folds, second_stage=False), truth)
    oof_rmse = rmse(stack.stacked_oof(oofs, truth, own_folds), truth)
    fitted = stack.fit_stack(oofs, truth)
    print(f"  stack: OOF RMSE {oof_rmse:.4f} (fitted inside its own {stack.STACKING_FOLDS} folds; stage 1 "
          f"alone {first_stage_rmse:.4f}; the blend's {report['blend']:.4f})")
    return image_ids, stack.apply_stack(fitted, tests, kinds), {"oof_rmse": oof_rmse, "stage_1_oof_rmse": first_stage_rmse,
                                                                **report, **stack.describe(fitted)}


def write_run_submission(data_dir, run_dirs, name=None, out_dir="submissions", device=None, stacked=False) -> Path:
    """Blend (or stack) finished runs and write the checked submission file; returns its path."""
    data_dir = find_data_dir(data_dir)
    lookup = load_lookup(data_dir)
    image_ids, predictions, meta = run_predictions(data_dir, run_dirs, device=device, stacked=stacked)
    name = name or run_submission_name(run_dirs)
    frame = submission_frame(predictions, image_ids, lookup)
    return write_submission(frame, name, out_dir, lookup=lookup, meta={"runs": [str(r) for r in run_dirs], **meta})
