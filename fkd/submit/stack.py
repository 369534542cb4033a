"""Stacking per coordinate: for each of the 30 output values, a linear model over the members'
predictions of that value (non-negative weights and a free intercept, by scipy's bounded least
squares), fitted on the members' out-of-fold predictions.

The stack's own out-of-fold predictions are fitted inside the folds: fold k's rows are predicted by
models fitted on the other folds' rows only, so the stack's OOF RMSE is as honest as its members'.
The test predictions use models fitted on every row.
"""
import numpy as np
from scipy.optimize import lsq_linear

from fkd.core.errors import FkdError


def fit_stack(oof_predictions, truth, rows=None) -> np.ndarray:
    """Coefficients [30, members + 1] (the members' weights, then the intercept), fitted on `rows`
    (default all) where each value is labelled."""
    members = np.stack([np.asarray(p, np.float64) for p in oof_predictions], axis=-1)  # [N,30,M]
    truth = np.asarray(truth, np.float64)
    rows = np.arange(len(truth)) if rows is None else np.asarray(rows)
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


def apply_stack(coefficients, predictions) -> np.ndarray:
    """The stacked prediction [N,30] of the members' predictions (a list of [N,30])."""
    members = np.stack([np.asarray(p, np.float64) for p in predictions], axis=-1)
    return (np.einsum("ncm,cm->nc", members, coefficients[:, :-1]) + coefficients[:, -1]).astype(np.float32)


def stacked_oof(oof_predictions, truth, folds) -> np.ndarray:
    """The stack's out-of-fold predictions: each fold's rows from a stack fitted on the other folds."""
    folds = np.asarray(folds)
    out = np.full(np.shape(truth), np.nan, np.float32)
    for fold in np.unique(folds):
        inside = folds == fold
        coefficients = fit_stack(oof_predictions, truth, rows=np.flatnonzero(~inside))
        out[inside] = apply_stack(coefficients, [np.asarray(p)[inside] for p in oof_predictions])
    return out
