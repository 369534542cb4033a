"""RMSE as Kaggle scores it: over the values a row's labels (or a test image's lookup) ask for."""
import numpy as np

from fkd.core.keypoints import KEYPOINTS, complete_rows


def rmse(pred, truth) -> float:
    """Root mean squared error over the entries present (not NaN) in truth; pred broadcasts."""
    truth = np.asarray(truth, dtype=np.float64)
    pred = np.broadcast_to(np.asarray(pred, dtype=np.float64), truth.shape)
    present = ~np.isnan(truth)
    if not present.any():
        return float("nan")
    return float(np.sqrt(np.mean((pred[present] - truth[present]) ** 2)))


def rmse_report(pred, truth) -> dict:
    """Overall RMSE, on complete and on partial rows, and per keypoint (x and y together)."""
    pred, truth = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    complete = complete_rows(truth)
    return {
        "rmse": rmse(pred, truth),
        "rmse_complete": rmse(pred[complete], truth[complete]),
        "rmse_partial": rmse(pred[~complete], truth[~complete]),
        "per_keypoint": {name: rmse(pred[:, 2 * i:2 * i + 2], truth[:, 2 * i:2 * i + 2])
                         for i, name in enumerate(KEYPOINTS)},
        "n_rows": int(len(truth)),
        "n_complete": int(complete.sum()),
        "n_values": int((~np.isnan(truth)).sum()),
    }


def mean_shape(keypoints) -> np.ndarray:
    """Per-column mean over the values present: the baseline every model must beat."""
    return np.nanmean(np.asarray(keypoints, dtype=np.float64), axis=0).astype(np.float32)
