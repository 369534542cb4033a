"""The 96-px frame a face is cropped to, and the 2x3 affine matrices that take a photo into it.

Coordinates are pixel indices (pixel centre = integer) in both the photo and the crop, the
convention cv2.warpAffine uses, so crop = M @ [x, y, 1] and photo = M^-1 @ [u, v, 1] exactly. A
face's photo -> crop matrix is all there is to its crop: a detector's box or landmarks give one, a
correction or a turned copy composes onto it, and the predicted points go back through its inverse.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from fkd.core.keypoints import CENTRE, SIZE, as_points

CROP_CORNERS = np.array([[0.0, 0.0], [SIZE - 1.0, 0.0], [SIZE - 1.0, SIZE - 1.0], [0.0, SIZE - 1.0]])


def to_gray(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


@dataclass(frozen=True)
class Framing:
    """Where a detector's box puts the square crop (fkd.photo.detect.FRAMING)."""
    side: float  # crop side / box width
    dx: float    # crop centre - box centre, x, in box widths
    dy: float    # crop centre - box centre, y, in box widths


def crop_matrix(box, framing: Framing) -> np.ndarray:
    """2x3 float64 matrix taking photo pixel coordinates to 96x96 crop coordinates for a box
    (x, y, w, h): the square of side framing.side * w centred framing.(dx, dy) * w off the box
    centre, scaled to SIZE pixels."""
    x, y, w, h = (float(v) for v in box)
    side = framing.side * w
    cx = x + (w - 1) / 2 + framing.dx * w
    cy = y + (h - 1) / 2 + framing.dy * w
    s = SIZE / side
    return np.array([[s, 0.0, CENTRE - s * cx], [0.0, s, CENTRE - s * cy]], dtype=np.float64)


def correction_matrix(correction) -> np.ndarray:
    """The 2x3 crop -> crop matrix of a correction (log zoom, dx, dy; fkd.photo.frame):
    p -> zoom * (p - c) + c + (dx, dy), c the frame's centre."""
    log_zoom, dx, dy = (float(v) for v in correction)
    zoom = np.exp(log_zoom)
    return np.array([[zoom, 0.0, CENTRE * (1 - zoom) + dx], [0.0, zoom, CENTRE * (1 - zoom) + dy]])


def resize_matrix(factor: float) -> np.ndarray:
    """photo -> the photo resized by `factor` with cv2.resize (fx = fy = factor): pixel centres map
    as u = factor * (x + 0.5) - 0.5."""
    offset = (factor - 1) / 2
    return np.float64([[factor, 0, offset], [0, factor, offset]])


def invert(matrix) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def apply(matrix, points) -> np.ndarray:
    """Points (..., 2) through a 2x3 matrix (NaN stays NaN)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def compose(outer, inner) -> np.ndarray:
    """The 2x3 affine that applies `inner`, then `outer`."""
    outer, inner = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def crop(gray, matrix, size: int = SIZE) -> np.ndarray:
    """The size x size uint8 crop M(photo), bicubic, anti-aliased when it shrinks (a Gaussian blur of
    sigma (1/scale - 1)/4 first: half scikit-image's rule); outside the photo the border pixels repeat.
    On `make bench`'s photos (as they were made before their faces kept their own edge), faces cropped
    by their true matrices lost 1.044x of the crops' RMSE this way, 1.058x with bilinear and
    scikit-image's sigma: a crop that sharp is nearer the training faces."""
    gray = to_gray(gray)
    scale = float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))
    if scale < 1.0:
        sigma = (1.0 / scale - 1.0) / 4.0
        gray = cv2.GaussianBlur(gray, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(gray, np.asarray(matrix, dtype=np.float64), (size, size), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)


def keypoints_to_photo(keypoints, matrix) -> np.ndarray:
    """Crop keypoints (..., 30) -> photo coordinates (..., 15, 2) through the inverse of `matrix`."""
    return apply(invert(matrix), as_points(np.asarray(keypoints, dtype=np.float64)))


def crop_moved(old, new) -> float:
    """How far the crop moves from `old` to `new` (photo -> crop matrices): the largest shift of a
    corner of the old crop, in pixels of the new crop."""
    return float(np.abs(apply(new, apply(invert(old), CROP_CORNERS)) - CROP_CORNERS).max())


def crop_centre(matrix) -> np.ndarray:
    """The crop's centre in photo pixels."""
    return apply(invert(matrix), [CENTRE, CENTRE])


def crop_side(matrix) -> float:
    """The crop's side in photo pixels."""
    return SIZE / float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:2, :2]))))


def turned(gray, angle: float):
    """(the photo turned by `angle` degrees counter-clockwise on a canvas that holds all of it,
    the 2x3 matrix photo -> turned photo)."""
    height, width = gray.shape[:2]
    rotation = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
    cos, sin = abs(rotation[0, 0]), abs(rotation[0, 1])
    size = (int(np.ceil(width * cos + height * sin)), int(np.ceil(width * sin + height * cos)))
    rotation[:, 2] += ((size[0] - width) / 2, (size[1] - height) / 2)
    return cv2.warpAffine(gray, rotation, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), rotation
