"""Synthetic photos: 96x96 faces put on clutter through known face -> photo matrices, so that what
`fkd face` finds on them can be scored against where the faces really are. `scene` is a photo of
several faces (`make bench`'s face section, `fkd calibrate`'s landmark goal); `framing_photo` one
face for teaching the framer (fkd.photo.frame).
"""
import cv2
import numpy as np

from fkd.core.keypoints import CENTRE, SIZE


def clutter(rng, width: int, height: int, items=(8, 20)) -> np.ndarray:
    """A float32 grey background of smooth blotches with boxes, discs and lines of any grey (how many:
    uniform in the `items` range)."""
    coarse = rng.normal(0, 1, (height // 40 + 2, width // 40 + 2)).astype(np.float32)
    photo = rng.uniform(60, 190) + 45 * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(*items))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size, grey = int(rng.integers(10, 120)), float(rng.uniform(0, 255))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(photo, (x, y), (x + size, y + int(rng.integers(10, 120))), grey, -1)
        elif kind == 1:
            cv2.circle(photo, (x, y), size // 2, grey, -1)
        else:
            cv2.line(photo, (x, y), (int(rng.integers(0, width)), int(rng.integers(0, height))), grey,
                     int(rng.integers(1, 6)))
    return photo


def _feather(side: int, insets) -> np.ndarray:
    """A side x side mask: 1 inside the insets (left, right, top, bottom, pixels), blurred to 0 at
    the edge."""
    left, right, top, bottom = (int(v) for v in insets)
    mask = np.zeros((side, side), np.float32)
    mask[top:side - bottom, left:side - right] = 1
    return cv2.GaussianBlur(mask, (0, 0), 2)


def _patch(face, edges, pad: int = 16):
    """(the face padded by `pad` mirrored pixels a side, float32; its mask: 1 out to `edges` (left, right,
    top, bottom) pixels beyond the face's own edge, negative ones inside it, feathered to 0; the pad)."""
    padded = cv2.copyMakeBorder(np.asarray(face, np.uint8), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    return padded.astype(np.float32), _feather(SIZE + 2 * pad, pad - np.asarray(edges, float)), pad


def _paste(photo, face, matrix, edges) -> np.ndarray:
    """photo (float32) with the face put through its face -> photo matrix, its patch edged as `_patch`."""
    patch, mask, pad = _patch(face, edges)
    shifted = np.array(matrix, np.float64)
    shifted[:, 2] -= shifted[:, :2] @ (pad, pad)   # the face sits `pad` pixels into its patch
    size = photo.shape[1], photo.shape[0]
    alpha = cv2.warpAffine(mask, shifted, size, flags=cv2.INTER_LINEAR)
    return alpha * cv2.warpAffine(patch, shifted, size, flags=cv2.INTER_LINEAR) + (1 - alpha) * photo


def scene(faces, rng=None, width: int = 800, height: int = 600, scales=(1.5, 3.5), max_roll: float = 25.0):
    """A cluttered grayscale photo holding the given 96x96 faces, each enlarged by a random factor
    in `scales`, turned by up to `max_roll` degrees and put where it overlaps no other. Every pixel of
    the face is kept, as a photo has them: the face goes on mirrored 4-8 pixels a side beyond its own
    edge and is feathered into the clutter there (feathered inside its edge, faces cropped back by their
    true matrices cost fold 0's cpu model 1.043x its RMSE on the crops; with their own border, 1.006x).
    Returns (photo uint8 [height,width], one 2x3 face -> photo matrix a face; None for a face that found
    no room)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    photo = clutter(rng, width, height, (8, 20))
    turned = np.cos(np.radians(min(max_roll, 45))) + np.sin(np.radians(min(max_roll, 45)))
    placed, matrices = [], []
    for face in faces:
        matrix = None
        for _ in range(200):
            scale = rng.uniform(*scales)
            side, patch = SIZE * scale * turned, (SIZE + 2 * 12) * scale * turned  # the turned face's extent, its patch's
            if side > min(width, height):
                continue
            cx, cy = rng.uniform(side / 2, width - side / 2), rng.uniform(side / 2, height - side / 2)
            if any(max(abs(cx - x), abs(cy - y)) < (max(side + p, patch + s)) / 2 for x, y, s, p in placed):
                continue   # one's patch would cover the other's face
            matrix = cv2.getRotationMatrix2D((CENTRE, CENTRE), rng.uniform(-max_roll, max_roll), scale)
            matrix[:, 2] += (cx - CENTRE, cy - CENTRE)
            placed.append((cx, cy, side, patch))
            break
        if matrix is not None:
            photo = _paste(photo, face, matrix, rng.uniform(4, 8, 4))
        matrices.append(matrix)
    return np.clip(np.round(photo), 0, 255).astype(np.uint8), matrices


def framing_photo(face, rng, edge: float = 14.0):
    """One 96x96 face on clutter, enlarged 1.5-3.5x and turned by up to 25 degrees, for teaching a
    framer: the pasted patch's edge lies on each side at a random distance in [-edge, edge] pixels
    from the crop's (the face mirrored beyond it), so where the edge is says nothing about how the
    face is framed. Returns (photo uint8, the face -> photo matrix)."""
    scale = rng.uniform(1.5, 3.5)
    width = int((SIZE + 2 * edge) * scale * 1.5) + 8
    photo = clutter(rng, width, width, (2, 6))
    matrix = cv2.getRotationMatrix2D((CENTRE, CENTRE), rng.uniform(-25, 25), scale)
    matrix[:, 2] += (width - SIZE) / 2
    photo = _paste(photo, face, matrix, rng.uniform(-edge, edge, 4) - 3)
    return np.clip(np.round(photo), 0, 255).astype(np.uint8), matrix
