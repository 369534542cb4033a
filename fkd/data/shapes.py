"""Shape alignment: the least-squares similarity (rotation, scale, shift) between point sets, the
mean shape by generalised Procrustes, and the rows whose labels sit farthest from it."""
import numpy as np
from skimage.transform import SimilarityTransform

from fkd.core.keypoints import KEYPOINTS, as_points


def similarity(src, dst):
    """Least-squares similarity transform (rotation, uniform scale, translation) src -> dst, or None.
    Written against both scikit-image APIs: from_estimate (0.26 and newer) and estimate (before)."""
    if hasattr(SimilarityTransform, "from_estimate"):                        # scikit-image >= 0.26
        transform = SimilarityTransform.from_estimate(src, dst)
        return transform if transform else None
    transform = SimilarityTransform()
    return transform if transform.estimate(src, dst) else None


def mean_shape_alignment(keypoints, iterations: int = 3, min_points: int = 3):
    """Generalised Procrustes on the points present.

    Returns (mean_shape (15,2), aligned (N,15,2) each row moved onto the mean by its own least-squares
    similarity, residuals (N,)). The residual is sqrt(sum of squared distances / (2n - 4)) in
    mean-shape pixels, n = points present: the similarity uses 4 of the 2n values, so dividing by
    2n - 4 makes rows with 4 points comparable with rows with 15. Rows with < min_points: NaN.
    """
    points = as_points(np.asarray(keypoints, dtype=np.float64))
    present = ~np.isnan(points).any(axis=2)
    usable = np.flatnonzero(present.sum(axis=1) >= min_points)
    reference = np.nanmean(points[usable], axis=0) if len(usable) else np.full((len(KEYPOINTS), 2), np.nan)
    mean = reference.copy()
    aligned = np.full_like(points, np.nan)
    for _ in range(iterations):
        aligned[:] = np.nan
        for i in usable:
            m = present[i] & ~np.isnan(mean).any(axis=1)
            if m.sum() < min_points:
                continue
            transform = similarity(points[i, m], mean[m])
            if transform is not None:
                aligned[i, m] = transform(points[i, m])
        new_mean = np.nanmean(aligned, axis=0)
        ok = ~np.isnan(new_mean).any(axis=1) & ~np.isnan(reference).any(axis=1)
        if ok.sum() < min_points:
            break
        # keep the mean in the reference frame (stops Procrustes from drifting in scale/rotation)
        transform = similarity(new_mean[ok], reference[ok])
        mean = transform(new_mean) if transform is not None else new_mean
    n = (~np.isnan(aligned).any(axis=2)).sum(axis=1)
    squared = np.nansum((aligned - mean) ** 2, axis=(1, 2))
    residuals = np.where(n >= min_points, np.sqrt(squared / np.maximum(2 * n - 4, 1)), np.nan)
    return mean.astype(np.float32), aligned.astype(np.float32), residuals.astype(np.float32)


def shape_residuals(keypoints, iterations: int = 3) -> np.ndarray:
    """Residual (px, mean-shape frame) of every row after similarity alignment; NaN if < 3 points."""
    return mean_shape_alignment(keypoints, iterations)[2]


def label_outliers(keypoints, top: int = 20):
    """Rows most likely mislabelled: (indices, residuals), largest residual first, `top` of them
    (all rows that can be judged when top is None). See `mean_shape_alignment` for the residual."""
    residuals = shape_residuals(keypoints)
    judged = np.flatnonzero(~np.isnan(residuals))
    order = judged[np.argsort(-residuals[judged], kind="stable")]
    if top is not None:
        order = order[:top]
    return order.astype(np.int64), residuals[order]


def mean_shape_in_row(mean, keypoints_row):
    """The mean shape (15,2) placed on one row by the similarity fitted on its points present (30)."""
    points = as_points(np.asarray(keypoints_row, dtype=np.float64))
    m = ~np.isnan(points).any(axis=1) & ~np.isnan(mean).any(axis=1)
    transform = similarity(np.asarray(mean, np.float64)[m], points[m]) if m.sum() >= 2 else None
    if transform is None:
        return np.full((len(KEYPOINTS), 2), np.nan, np.float32)
    return transform(np.asarray(mean, np.float64)).astype(np.float32)


def similarity_matrix(src, dst):
    """The 2x3 matrix of similarity(src, dst), or None."""
    transform = similarity(np.asarray(src, np.float64), np.asarray(dst, np.float64))
    return None if transform is None else np.asarray(transform.params[:2], dtype=np.float64)
