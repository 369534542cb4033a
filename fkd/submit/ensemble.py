"""Blend runs by weights fitted on their out-of-fold predictions.

Weights: non-negative least squares over every labelled training value (the values Kaggle would
score), normalised to sum to 1 — a convex blend, so it cannot extrapolate beyond its members.
"""
import numpy as np
from scipy.optimize import nnls

from fkd.core.metrics import rmse


def fit_weights(oof_predictions, truth) -> np.ndarray:
    """One weight per run (non-negative, summing to 1) minimising the blended OOF squared error."""
    truth = np.asarray(truth, dtype=np.float64)
    present = ~np.isnan(truth)
    if len(oof_predictions) == 1:
        return np.ones(1)
    design = np.stack([np.asarray(p, dtype=np.float64)[present] for p in oof_predictions], axis=1)
    weights, _ = nnls(design, truth[present])
    if weights.sum() <= 0:
        return np.full(len(oof_predictions), 1.0 / len(oof_predictions))
    return weights / weights.sum()


def blend(predictions, weights) -> np.ndarray:
    return np.tensordot(np.asarray(weights), np.stack(predictions), axes=1).astype(np.float32)


def blend_report(oof_predictions, truth, weights) -> dict:
    """Each run's OOF RMSE and the blend's."""
    return {
        "members": [rmse(p, truth) for p in oof_predictions],
        "weights": [float(w) for w in weights],
        "blend": rmse(blend(oof_predictions, weights), truth),
    }
