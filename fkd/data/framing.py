"""How a training set frames its faces in their 96-px crops, and the zoom and shift that bring a
face seen in another crop to that framing (what fkd's framer learns to predict from the pixels).

Three numbers say how a face sits in its crop: the mean x of its labelled points, the y of its eye
midpoint, and its size, hypot(eye distance, eye midpoint to mouth), the mouth being the bottom lip
where it is labelled, else the mouth corners' midpoint. The proxy's crops were cut by their own
labels, so there the three are exact (sd 0.000 px, 0.000 px and 0.5% per labelling pattern); a set
framed by a detector spreads around them. The rule keeps their medians per labelling pattern (the
mean x of 15 points is not the mean x of 5).

A correction (log zoom, dx, dy) is the crop change C(p) = zoom * (p - c) + c + (dx, dy), c = 47.5:
the face's points p in the crop it was seen in go to C(p) in the crop framed by the rule."""
import numpy as np

from fkd.core.keypoints import KEYPOINTS, SIZE, as_points

CENTRE = (SIZE - 1) / 2.0
LEFT_EYE, RIGHT_EYE, BOTTOM_LIP, MOUTH_LEFT, MOUTH_RIGHT = (KEYPOINTS.index(name) for name in (
    "left_eye_center", "right_eye_center", "mouth_center_bottom_lip", "mouth_left_corner", "mouth_right_corner"))


def framing_stats(points) -> np.ndarray:
    """One face's points [15,2] (NaN = not labelled) -> (mean x of the labelled points, eye midpoint y,
    size); NaN where the eyes or the mouth are not labelled."""
    points = np.asarray(points, np.float64)
    labelled = ~np.isnan(points).any(1)
    eyes = (points[LEFT_EYE] + points[RIGHT_EYE]) / 2
    mouth = points[BOTTOM_LIP] if labelled[BOTTOM_LIP] else (points[MOUTH_LEFT] + points[MOUTH_RIGHT]) / 2
    size = np.hypot(np.hypot(*(points[LEFT_EYE] - points[RIGHT_EYE])), np.hypot(*(mouth - eyes)))
    if not labelled.any():
        return np.full(3, np.nan)
    return np.array([points[labelled, 0].mean(), eyes[1], size])


def _pattern(points) -> tuple:
    return tuple(np.flatnonzero(~np.isnan(np.asarray(points)).any(1)).tolist())


def framing_rule(keypoints) -> dict:
    """Per labelling pattern (the labelled points' indices), the median framing stats of its rows
    [3] and their standard deviations [3]: {pattern: (median, sd)}."""
    by_pattern = {}
    for points in as_points(np.asarray(keypoints, np.float64)):
        stats = framing_stats(points)
        if not np.isnan(stats).any():
            by_pattern.setdefault(_pattern(points), []).append(stats)
    return {pattern: (np.median(rows, 0), np.std(rows, 0)) for pattern, rows in by_pattern.items()}


def rule_correction(points, rule) -> np.ndarray:
    """The correction (log zoom, dx, dy) that brings a face whose points [15,2] are where they are to
    the rule of its labelling pattern; NaN when the rule has no such pattern or the face no stats."""
    known = rule.get(_pattern(points))
    stats = framing_stats(points)
    if known is None or np.isnan(stats).any():
        return np.full(3, np.nan)
    (x, y, size), _ = known
    zoom = size / stats[2]
    return np.array([np.log(zoom), x - CENTRE - zoom * (stats[0] - CENTRE), y - CENTRE - zoom * (stats[1] - CENTRE)])


def correction_matrix(correction) -> np.ndarray:
    """The 2x3 crop -> crop matrix of a correction (log zoom, dx, dy)."""
    log_zoom, dx, dy = (float(v) for v in correction)
    zoom = np.exp(log_zoom)
    return np.array([[zoom, 0.0, CENTRE * (1 - zoom) + dx], [0.0, zoom, CENTRE * (1 - zoom) + dy]])
