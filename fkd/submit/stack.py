"""Stacking: the members' out-of-fold predictions -> each of the 30 output values, in two stages.

1. Per coordinate: a linear model over the members' predictions of that value (non-negative weights
   and a free intercept, by scipy's bounded least squares).
2. Per kind of row (complete, partial: each kind is its own output and its own framing) and per
   coordinate: a ridge regression of what stage 1 leaves over every value every member predicts
   (scikit-learn's RidgeCV, its penalty chosen by leave-one-out). The 30 values of a face are tied
   together by its shape and by how the faces were cropped, and the second stage corrects a point by
   where the others are (the second-best public solution stacked with an elastic net over its
   members' predictions).

The stack's own out-of-fold predictions are fitted inside folds of its own (`stacking_folds`): each
fold's rows are predicted by a stack fitted on the other rows only, so no row's label reaches its
stacked prediction. Those folds are drawn across the runs' folds, not along them: a test face is
predicted by fold models whose out-of-fold predictions the stack was fitted on, and the stack learns
each fold model's own quirks. Split along the runs' folds, each fold would be scored by a stack that
never saw its model, which tells what the stack does to a new model, not to a new face: on a fold of
proxy v3 kept out of everything (`fkd holdout`, the CPU recipe, 3 folds of 12 epochs) that figure was
0.974x the blend's where the kept-out faces got 0.939x; the stack's own folds gave 0.947x
(docs/results.md). The test predictions use a stack fitted on every row.
"""
from typing import NamedTuple

import numpy as np
from scipy.optimize import lsq_linear
from sklearn.linear_model import RidgeCV

from fkd.core.errors import FkdError
from fkd.core.keypoints import complete_rows
from fkd.data.folds import make_folds

RIDGE_ALPHAS = np.logspace(0, 5, 11)
STACKING_FOLDS, STACKING_SEED = 5, 1
MIN_CORRECTION_ROWS = 20   # a kind with fewer labelled rows of a value keeps stage 1's prediction of it


class Stack(NamedTuple):
    coefficients: np.ndarray   # [30, members + 1]: stage 1's member weights, then the intercept
    corrections: dict          # kind -> [30] fitted RidgeCV (None: no correction) of stage 1's residual


def _members(predictions) -> np.ndarray:
    return np.stack([np.asarray(p, np.float64) for p in predictions], axis=-1)   # [N,30,M]


def fit_coordinates(members, truth, rows) -> np.ndarray:
    """Stage 1's coefficients [30, M + 1], fitted on `rows` where each value is labelled."""
    n_members = members.shape[-1]
    bounds = (np.r_[np.zeros(n_members), -np.inf], np.full(n_members + 1, np.inf))
    coefficients = np.zeros((truth.shape[1], n_members + 1))
    for column in range(truth.shape[1]):
        labelled = rows[~np.isnan(truth[rows, column])]
        if len(labelled) <= n_members + 1:
            raise FkdError(f"too few labelled rows ({len(labelled)}) to stack column {column}")
        design = np.hstack([members[labelled, column], np.ones((len(labelled), 1))])
        coefficients[column] = lsq_linear(design, truth[labelled, column], bounds=bounds).x
    return coefficients


def _per_coordinate(coefficients, members) -> np.ndarray:
    return np.einsum("ncm,cm->nc", members, coefficients[:, :-1]) + coefficients[:, -1]


def fit_stack(oof_predictions, truth, rows=None, kinds=None, second_stage: bool = True) -> Stack:
    """The stack fitted on `rows` (default all) of the members' OOF predictions; kinds [N] of the
    rows (default: 1 for a complete row, 0 for a partial one, as fkd.data.competition.lookup_kinds
    numbers test images); without `second_stage`, stage 1 alone."""
    members = _members(oof_predictions)
    truth = np.asarray(truth, np.float64)
    rows = np.arange(len(truth)) if rows is None else np.asarray(rows)
    kinds = complete_rows(truth).astype(np.int64) if kinds is None else np.asarray(kinds)
    coefficients = fit_coordinates(members, truth, rows)
    residual = truth - _per_coordinate(coefficients, members)
    features = members.reshape(len(members), -1)
    corrections = {}
    for kind in np.unique(kinds[rows]) if second_stage else ():
        of_kind = rows[kinds[rows] == kind]
        models = []
        for column in range(truth.shape[1]):
            labelled = of_kind[~np.isnan(truth[of_kind, column])]
            models.append(RidgeCV(alphas=RIDGE_ALPHAS).fit(features[labelled], residual[labelled, column])
                          if len(labelled) >= MIN_CORRECTION_ROWS else None)
        corrections[int(kind)] = models
    return Stack(coefficients, corrections)


def apply_stack(fitted: Stack, predictions, kinds) -> np.ndarray:
    """The stacked prediction [N,30] of the members' predictions (a list of [N,30]) of images of
    `kinds` [N]."""
    members = _members(predictions)
    out = _per_coordinate(fitted.coefficients, members)
    features = members.reshape(len(members), -1)
    kinds = np.asarray(kinds)
    for kind, models in fitted.corrections.items():
        of_kind = kinds == kind
        if of_kind.any():
            for column, model in enumerate(models):
                if model is not None:
                    out[of_kind, column] += model.predict(features[of_kind])
    return out.astype(np.float32)


def stacking_folds(images, truth) -> np.ndarray:
    """The stack's own folds over the training rows (fkd's folds with their own seed: stratified by
    kind, duplicates together), independent of the runs' folds."""
    return make_folds(images, truth, k=STACKING_FOLDS, seed=STACKING_SEED)


def stacked_oof(oof_predictions, truth, folds, second_stage: bool = True) -> np.ndarray:
    """The stack's out-of-fold predictions: each fold's rows from a stack fitted on the other folds."""
    folds = np.asarray(folds)
    kinds = complete_rows(np.asarray(truth)).astype(np.int64)
    out = np.full(np.shape(truth), np.nan, np.float32)
    for fold in np.unique(folds):
        inside = folds == fold
        fitted = fit_stack(oof_predictions, truth, rows=np.flatnonzero(~inside), kinds=kinds, second_stage=second_stage)
        out[inside] = apply_stack(fitted, [np.asarray(p)[inside] for p in oof_predictions], kinds[inside])
    return out


def describe(fitted: Stack) -> dict:
    """What a submission's sidecar keeps of a stack: stage 1's coefficients and stage 2's penalties."""
    return {"stack": np.round(fitted.coefficients, 6).tolist(),
            "stack_ridge_alphas": {str(kind): [None if m is None else float(m.alpha_) for m in models]
                                   for kind, models in fitted.corrections.items()}}
