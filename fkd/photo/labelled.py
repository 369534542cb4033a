"""Real photos with a labelled face, as the yardstick of `fkd face`: a folder of photos and a
`labels.csv` (file, training_row, width, height, then Kaggle's 30 columns in the photo's pixels), each
photo the source of one row of a competition folder's training.csv (../shared/data/photos).

A face's true crop is the similarity that takes its labels in the photo onto its labels in the
training row's 96x96 crop; a located face is scored in that crop's pixels, so its RMSE compares with
the same model's on the crop itself.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from fkd.core.errors import FkdError
from fkd.core.keypoints import COLUMNS, as_points
from fkd.data.shapes import similarity_matrix
from fkd.photo.geometry import apply, crop_centre, crop_side, keypoints_to_photo

LABELS = "labels.csv"
HEADER = ["file", "training_row", "width", "height", *COLUMNS]


def read_labelled_photos(folder) -> pd.DataFrame:
    """labels.csv of the folder, one row a photo; its `path` column added."""
    folder = Path(folder)
    path = folder / LABELS
    if not path.is_file():
        raise FkdError("no such file", path=path)
    table = pd.read_csv(path)
    if list(table.columns) != HEADER:
        raise FkdError(f"expected the columns {', '.join(HEADER[:4])}, then Kaggle's 30", path=path, row="header")
    return table.assign(path=[str(folder / name) for name in table["file"]])


def true_crop_matrix(photo_keypoints, crop_keypoints) -> np.ndarray:
    """The photo -> crop similarity [2,3] that best takes a face's labels in the photo onto its labels
    in the crop (least squares over the points labelled in both)."""
    photo_points, crop_points = as_points(np.asarray(photo_keypoints)), as_points(np.asarray(crop_keypoints))
    both = ~np.isnan(photo_points).any(axis=1) & ~np.isnan(crop_points).any(axis=1)
    matrix = similarity_matrix(photo_points[both], crop_points[both]) if both.sum() >= 2 else None
    if matrix is None:
        raise FkdError("fewer than two points labelled in both the photo and the crop")
    return matrix


def matching_face(matrices, true_matrix, within: float):
    """Index of the located crop (photo -> crop matrices) whose centre is nearest the true crop's,
    if within `within` crop sides of it; else None."""
    if not len(matrices):
        return None
    distances = [np.hypot(*(crop_centre(m) - crop_centre(true_matrix))) for m in matrices]
    nearest = int(np.argmin(distances))
    return nearest if distances[nearest] <= within * crop_side(true_matrix) else None


def in_true_crop(keypoints, matrix, true_matrix) -> np.ndarray:
    """Keypoints [30] predicted in a located crop (`matrix`) -> the face's true crop's pixels [30]."""
    return apply(true_matrix, keypoints_to_photo(keypoints, matrix)).reshape(-1)
