"""The labels' mirror axis, estimated from the training data itself (`flip_axis: auto`).

A horizontal flip moves pixel x to 95 - x. Where labels sit on the pixels depends on the convention
their makers used: with pixel centres at integers a flipped label is 95 - x (the axis 47.5), with
1-based labels 97 - x (48.5), and a labelling tool may put its points a fraction of a pixel off
either. A wrong axis moves every flipped training face's points, and every flip-TTA view's, by twice
the error. So, per label subset: the mean face of its rows is symmetric about some pixel column c
(where it best matches its own mirror image), and its left/right pairs have their midline at m in
label coordinates; the labels sit m - c off the pixels, and the axis that mirrors them with the image
is 47.5 + (m - c). Both are means over the same faces, so how far each face sits from the middle
cancels out.
"""
import numpy as np
from scipy.ndimage import map_coordinates

from fkd.core.keypoints import FLIP_AXIS, FLIP_POINT_PERMUTATION, as_points, complete_rows

# candidate pixel axes of the mean face: every 0.1 px within 6 px of the middle, then every 0.01 px near the best
COARSE = FLIP_AXIS + np.arange(-60, 61) / 10
FINE = np.arange(-10, 11) / 100
COMPARED_COLUMNS = np.arange(20, 76)   # the face's middle: both sides stay inside the image for every candidate
COMPARED_ROWS = np.arange(8, 88)
MIN_ROWS = 20                          # fewer faces in a subset: it takes the other subset's axis


def image_axis(images) -> float:
    """The pixel column about which the mean of `images` [N,96,96] best matches its mirror image
    (least squares, cubic interpolation, to 0.01 px)."""
    mean = np.mean(images, axis=0, dtype=np.float64)
    inside = mean[np.ix_(COMPARED_ROWS, COMPARED_COLUMNS)]
    rows = np.broadcast_to(COMPARED_ROWS[:, None], inside.shape)

    def cost(axis):
        mirrored = map_coordinates(mean, [rows, np.broadcast_to(2 * axis - COMPARED_COLUMNS, inside.shape)], order=3)
        return ((inside - mirrored) ** 2).sum()

    best = min(COARSE, key=cost)
    return float(min(best + FINE, key=cost))


def label_midline(keypoints) -> float:
    """The mean midline of the labels' left/right pairs (and of the middle points, their own pairs)."""
    x = as_points(np.asarray(keypoints, np.float64))[..., 0]
    mirror = x[:, FLIP_POINT_PERMUTATION]
    both = ~np.isnan(x) & ~np.isnan(mirror)
    return float(((x + mirror) / 2)[both].mean())


def subset_axis(images, keypoints) -> float:
    return FLIP_AXIS + label_midline(keypoints) - image_axis(images)


def estimate_flip_axis(images, keypoints) -> list:
    """[the partial rows' axis, the complete rows' axis], as a config's flip_axis pair, to 0.01 px.
    A subset with fewer than MIN_ROWS rows takes the other's axis; with neither, 47.5."""
    complete = complete_rows(keypoints)
    partial = ~complete & ~np.isnan(keypoints).all(axis=1)
    axes = [subset_axis(images[rows], keypoints[rows]) if rows.sum() >= MIN_ROWS else None
            for rows in (partial, complete)]
    estimated = [axis for axis in axes if axis is not None] or [FLIP_AXIS]
    return [round(estimated[0] if axis is None else axis, 2) for axis in axes]
