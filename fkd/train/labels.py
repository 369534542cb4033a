"""The targets a fold trains on: NaN for missing values (masked), or the original project's
forward fill; optionally without the rows farthest from the mean shape; and the labels' mirror axis
when the config leaves it to the data (`flip_axis: auto`)."""
import numpy as np
import pandas as pd

from fkd.core.errors import FkdError
from fkd.data.mirror import estimate_flip_axis
from fkd.data.shapes import label_outliers


def resolve_flip_axis(config: dict, images, keypoints, log=print, rows=None) -> dict:
    """The config, its `flip_axis: auto` replaced by [partial rows, complete rows] estimated from these
    training faces (`rows` of them, default all; fkd.data.mirror); any other flip_axis as it is."""
    if config.get("flip_axis") != "auto":
        return config
    if rows is not None:
        images, keypoints = images[rows], keypoints[rows]
    axes = estimate_flip_axis(images, keypoints)
    log(f"flip_axis auto: {axes[0]} for the partial rows, {axes[1]} for the complete rows "
        f"(estimated from {len(images)} training faces)")
    return {**config, "flip_axis": axes}


def training_labels(keypoints: np.ndarray, config: dict) -> np.ndarray:
    """Targets as trained on: NaN for missing (masked), or the original project's forward fill;
    the rows `drop_label_outliers` names lose all their labels (validation still scores them)."""
    fraction = config["drop_label_outliers"]
    if not 0.0 <= fraction < 0.5:
        raise FkdError(f"drop_label_outliers {fraction}: a fraction of the rows in [0, 0.5)")
    if config["labels"] == "ffill":
        # the original project's fill: each missing value copies the row above (then below, at the top)
        labels = pd.DataFrame(keypoints).ffill().bfill().to_numpy(dtype=np.float32, copy=True)
    else:
        labels = keypoints.copy()
    if fraction > 0:
        dropped, _ = label_outliers(keypoints, top=int(round(fraction * len(keypoints))))
        labels[dropped] = np.nan
    return labels
