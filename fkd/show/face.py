"""`fkd face PHOTO... --runs runs/A [--out DIR]`: find faces in any photo, predict their keypoints.

Per photo: faces are found offline with a cascade detector (OpenCV's Haar frontal-face cascade when
the installed OpenCV ships it, else scikit-image's LBP frontal-face cascade, which scikit-image
ships); each box becomes a square crop framed like Kaggle's faces, resampled to 96x96 grayscale by
one explicit 2x3 affine matrix M (photo -> crop); the runs predict the keypoints; M's inverse takes
them back to photo pixels exactly. Then the refinement (`settle`): the predicted eye centres, nose
tip and bottom lip define a similarity (scale, rotation, shift) that puts them where Kaggle's faces
have them, the face is cropped again with it (this also levels a tilted head) and predicted again,
until the crop moves less than half a pixel (at most REFINE_PASSES rounds). An MTCNN crop is not
refined on the points (they lean towards the training framing, and the refinement then drifts); it
is cropped again once by the run's framer when it has one (`fkd calibrate`, fkd.train.framer).
Writes `<stem>_keypoints.png` (photo, detector box in white, final crop square in yellow, points)
and `<stem>_keypoints.json` (per face: box, matrices, the 15 named points in photo pixels).

Framing. On Kaggle's training set the eye centres sit near x=66 (subject's left) and x=30
(subject's right) at y=37, the nose tip near (48, 62) and the bottom lip near (48, 80). The crop is
the detector's box moved and scaled:
    crop side = SIDE * box width, crop centre = box centre + (DX, DY) * box width.
How SIDE, DX, DY were chosen (eye centres and bottom lip vs the positions above):
- scikit-image's astronaut (eyes at about (202.5, 101) and (245.5, 102), bottom lip (222, 154)):
  SIDE 1.25 (Haar box 93 px), 1.23 (LBP box 94 px); Grace Hopper, matplotlib's sample photo (eyes
  (222, 195), (307, 193), bottom lip (268, 290)): 0.95 (Haar, 230 px), 1.13 (LBP, 195 px).
- 300 Kaggle-framed real faces of the proxy training set (300-W HELEN labels), enlarged 2x into a
  larger canvas and detected: SIDE 1.03 for both detectors, spread of the eyes about 1.5 px. The
  crop's own border may pull the box there, so this one counts as a hint only.
- DX is 0 and DY +0.01 in every case (within 0.02).
So one face's box alone misses Kaggle's scale by up to ~20 %: the refinement pass fixes the rest.

Coordinates are pixel indices (pixel centre = integer) in both the photo and the crop, the
convention cv2.warpAffine uses, so crop = M @ [x, y, 1] and photo = M^-1 @ [u, v, 1] exactly.
"""
import functools
import importlib.util
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from fkd.core.atomic import atomic_path, check_writable, write_text
from fkd.core.errors import FkdError
from fkd.core.keypoints import KEYPOINTS, SIZE, as_points
from fkd.data.framing import correction_matrix
from fkd.data.shapes import similarity_matrix
from fkd.model.onnxfile import OnnxKeypoints
from fkd.train.rundir import first_framer, read_framing, read_landmark_goal

# where Kaggle's training faces have their 4 core points (96 px crop): the refinement's target for
# runs that do not record their own framing
KAGGLE_CORE = {"left_eye_center": (66.0, 37.0), "right_eye_center": (30.0, 37.0),
               "nose_tip": (48.0, 62.0), "mouth_center_bottom_lip": (48.0, 80.0)}
CORE_INDEX = np.array([KEYPOINTS.index(name) for name in KAGGLE_CORE])
CORE_TARGET = np.array(list(KAGGLE_CORE.values()), dtype=np.float64)
# MTCNN's 5 landmarks in fkd's names, and where Kaggle's faces have the 4 of them a crop is framed by
LANDMARKS = ("left_eye_center", "right_eye_center", "nose_tip", "mouth_left_corner", "mouth_right_corner")
FRAMED_BY = ("left_eye_center", "right_eye_center", "mouth_left_corner", "mouth_right_corner")
KAGGLE_FRAMED_BY = np.array([(66.0, 37.0), (30.0, 37.0), (63.0, 76.0), (33.0, 76.0)])
MTCNN_MIN_PROBABILITY = 0.7  # MTCNN's faces below this are dropped; on a turned copy, a face below
MTCNN_SURE = 0.97            # this needs two eyes from the eye cascade (a cat's face on a turned copy: 0.94)


@dataclass(frozen=True)
class Framing:
    side: float  # crop side / box width
    dx: float    # crop centre - box centre, x, in box widths
    dy: float    # crop centre - box centre, y, in box widths


# chosen from the measurements in the module docstring
FRAMING = {
    "haar": Framing(side=1.05, dx=0.0, dy=0.01),
    "lbp": Framing(side=1.10, dx=0.0, dy=0.01),
}
REFINE_LIMITS = (0.6, 1.7, 40.0)  # a refinement is kept only if it rescales by 0.6..1.7 and turns by < 40 deg
REFINE_PASSES = 4   # photos: at most this many refinements a face ...
SETTLED_PX = 0.5    # ... and none once its crop moves less than this (in crop pixels)

HAAR_FILE = "haarcascade_frontalface_default.xml"
EYE_FILE = "haarcascade_eye.xml"
DETECT_MAX_SIDE = 1024  # photos are shrunk to this for detection only (speed); boxes scaled back
ALWAYS_TURNS = (18, -18)  # degrees: turned copies a cascade searches on every photo (faces turned 5..30 degrees)
MTCNN_TURNS = (9, -9, 18, -18, 27, -27)  # and MTCNN: more copies, for the median of their landmarks
TURNS = (35, -35, 50, -50, 65, -65)  # and these, in turn, when no face has been found by then
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


# ---------------------------------------------------------------- reading

def photo_paths(paths) -> list:
    """The photos named, a folder standing for the photos inside it (sorted by name)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
            if not inside:
                raise FkdError(f"holds no photos ({', '.join(PHOTO_SUFFIXES)})", path=path)
            found += inside
        else:
            found.append(path)
    return found


def read_photo(path) -> np.ndarray:
    """A photo as BGR uint8 (colour, grayscale, 16-bit or alpha all become 3 x 8 bits)."""
    path = Path(path)
    if not path.is_file():
        raise FkdError("no such file", path=path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
        image = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    except (OSError, cv2.error) as error:
        raise FkdError(f"cannot read the image: {error}", path=path) from None
    if image is None or image.size == 0:
        raise FkdError("cannot read the image: not a JPEG/PNG OpenCV can decode, or corrupt", path=path)
    return image


def to_gray(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


# ---------------------------------------------------------------- detection

def haar_available() -> bool:
    return hasattr(cv2, "CascadeClassifier") and _haar_path().is_file()


def _haar_path() -> Path:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "") or ""
    return Path(folder) / HAAR_FILE


def mtcnn_available() -> bool:
    """facenet-pytorch's MTCNN (MIT; its weights ship inside the wheel) is installed."""
    return importlib.util.find_spec("facenet_pytorch") is not None


def available_detectors() -> list:
    """The detectors here, best first: MTCNN (torch; 5 landmarks frame the crop), Haar, LBP."""
    return (["mtcnn"] if mtcnn_available() else []) + (["haar"] if haar_available() else []) + ["lbp"]


@functools.cache
def _mtcnn(min_size: int):
    from facenet_pytorch import MTCNN  # torch: only for the detector that needs it

    return MTCNN(keep_all=True, device="cpu", min_face_size=min_size, post_process=False)


def detect_landmarked(gray, min_size: int = 24):
    """MTCNN's faces in a grayscale photo: (boxes [K,4] x, y, w, h, landmarks [K,5,2] in LANDMARKS'
    order: the subject's left eye first, probabilities [K]), faces below MTCNN_MIN_PROBABILITY dropped."""
    gray = to_gray(gray)
    factor = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
    small = gray if factor == 1.0 else cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    corners, probabilities, points = _mtcnn(max(12, int(round(min_size * factor)))).detect(
        cv2.cvtColor(small, cv2.COLOR_GRAY2RGB), landmarks=True)
    if corners is None:
        return np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros(0)
    probabilities = np.asarray(probabilities, np.float64)
    keep = probabilities >= MTCNN_MIN_PROBABILITY
    corners = np.asarray(corners, np.float64)[keep] / factor
    # MTCNN names its points by image side (its "left eye" is the subject's right): swap to fkd's
    points = np.asarray(points, np.float64)[keep][:, [1, 0, 2, 4, 3]] / factor
    boxes = np.hstack([corners[:, :2], corners[:, 2:] - corners[:, :2]])
    order = np.argsort(boxes[:, 0], kind="stable")
    return boxes[order], points[order], probabilities[keep][order]


def landmark_matrix(landmarks, framing=None, goal=None) -> np.ndarray:
    """The photo -> crop matrix that puts a face's eye centres and mouth corners (MTCNN's landmarks,
    photo pixels) where the training faces have them (the run's framing; else Kaggle's). With a
    `goal` [5,2] (where MTCNN puts its 5 landmarks on the run's own training faces, `fkd calibrate`)
    all five are matched to it instead: MTCNN's points are not the labels' (on the proxy its mouth
    corners sit 3 px below the 300-W ones), and the goal carries that difference."""
    if goal is not None:
        return similarity_matrix(np.asarray(landmarks, np.float64), np.asarray(goal, np.float64))
    points = np.asarray(landmarks, np.float64)[[LANDMARKS.index(name) for name in FRAMED_BY]]
    goal = KAGGLE_FRAMED_BY
    if framing is not None:
        wanted = as_points(np.asarray(framing, np.float64))[[KEYPOINTS.index(name) for name in FRAMED_BY]]
        goal = wanted if not np.isnan(wanted).any() else goal
    return similarity_matrix(points, goal)


def eyes_available() -> bool:
    return hasattr(cv2, "CascadeClassifier") and _haar_path().with_name(EYE_FILE).is_file()


def shows_two_eyes(gray, box) -> bool:
    """OpenCV's eye cascade finds two eyes or more in the top of the box (photos of faces: always;
    the textures that fool a face cascade on turned copies, in our tries: never)."""
    x, y, w, h = (int(round(v)) for v in box)
    top = cv2.equalizeHist(gray)[max(0, y):max(0, y) + h * 5 // 8, max(0, x):max(0, x) + w]  # as the face cascade saw it
    if top.size == 0:
        return False
    side = max(8, w // 10)
    cascade = cv2.CascadeClassifier(str(_haar_path().with_name(EYE_FILE)))
    return len(cascade.detectMultiScale(top, scaleFactor=1.1, minNeighbors=3, minSize=(side, side))) >= 2


def _detect_haar(gray, min_size):
    cascade = cv2.CascadeClassifier(str(_haar_path()))
    boxes = cascade.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5,
                                     minSize=(min_size, min_size))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _detect_lbp(gray, min_size):
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    cascade = Cascade(lbp_frontal_face_cascade_filename())
    # step_ratio 1.5 with 6 neighbours: 4x faster than the exhaustive search, and on the photos we
    # tried (astronaut, Grace Hopper, cameraman, coffee, cat) it found each face once and nothing else
    found = cascade.detect_multi_scale(img=gray, scale_factor=1.1, step_ratio=1.5,
                                       min_size=(min_size, min_size), max_size=gray.shape[:2],
                                       min_neighbor_number=6)
    return np.array([[d["c"], d["r"], d["width"], d["height"]] for d in found], dtype=np.float64).reshape(-1, 4)


def _drop_nested(boxes, overlap=0.5):
    """Keep the larger of two boxes when more than `overlap` of the smaller lies inside it."""
    order = np.argsort(-boxes[:, 2] * boxes[:, 3])
    kept = []
    for i in order:
        x, y, w, h = boxes[i]
        inside = False
        for j in kept:
            X, Y, W, H = boxes[j]
            iw = max(0.0, min(x + w, X + W) - max(x, X))
            ih = max(0.0, min(y + h, Y + H) - max(y, Y))
            if iw * ih > overlap * w * h:
                inside = True
                break
        if not inside:
            kept.append(i)
    kept = boxes[sorted(kept, key=lambda k: (boxes[k, 0], boxes[k, 1]))]
    return kept


def detect_faces(gray, detector: str = "auto", min_size: int = 24):
    """Faces in a grayscale uint8 photo: (boxes float [K,4] as x, y, w, h in photo pixels, sorted left
    to right, detector name). detector: 'auto' (the first of available_detectors), 'mtcnn', 'haar' or 'lbp'."""
    gray = to_gray(gray)
    name = detector if detector != "auto" else available_detectors()[0]
    if name == "haar" and not haar_available():
        raise FkdError(f"this OpenCV ({cv2.__version__}) has no Haar cascade; use --detector lbp")
    if name == "mtcnn" and mtcnn_available():
        return _drop_nested(detect_landmarked(gray, min_size)[0]), name
    if name not in FRAMING:
        raise FkdError(f"unknown detector {name!r}: choose from {', '.join(available_detectors())}")
    factor = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
    small = gray if factor == 1.0 else cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    min_small = max(12, int(round(min_size * factor)))
    boxes = (_detect_haar if name == "haar" else _detect_lbp)(small, min_small)
    if factor != 1.0:
        boxes = boxes / factor
    return _drop_nested(boxes) if len(boxes) else boxes, name


# ---------------------------------------------------------------- the crop as an explicit affine

def crop_matrix(box, framing: Framing) -> np.ndarray:
    """2x3 float64 matrix taking photo pixel coordinates to 96x96 crop coordinates for a box
    (x, y, w, h): the square of side framing.side * w centred framing.(dx, dy) * w off the box
    centre, scaled to SIZE pixels."""
    x, y, w, h = (float(v) for v in box)
    side = framing.side * w
    cx = x + (w - 1) / 2 + framing.dx * w
    cy = y + (h - 1) / 2 + framing.dy * w
    s = SIZE / side
    c = (SIZE - 1) / 2
    return np.array([[s, 0.0, c - s * cx], [0.0, s, c - s * cy]], dtype=np.float64)


def invert(matrix) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def apply(matrix, points) -> np.ndarray:
    """Points (..., 2) through a 2x3 matrix (NaN stays NaN)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


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


def refined_matrix(matrix, keypoints, target=None):
    """The photo -> crop matrix that puts this face's predicted points (crop coordinates under
    `matrix`) where the training faces have them: `target` [30], the run's framing (the mean of its
    complete training rows), fitted on every point; without one, Kaggle's 4 core points. None when
    the fit is implausible."""
    points = as_points(np.asarray(keypoints, dtype=np.float64))
    if target is None:
        points, goal = points[CORE_INDEX], CORE_TARGET
    else:
        goal = as_points(np.asarray(target, dtype=np.float64))
        present = ~(np.isnan(points).any(1) | np.isnan(goal).any(1))
        points, goal = points[present], goal[present]
    if len(points) < 2 or np.isnan(points).any():
        return None
    refined = similarity_matrix(apply(invert(matrix), points), goal)
    if refined is None:
        return None
    ratio = np.sqrt(abs(np.linalg.det(refined[:, :2])) / abs(np.linalg.det(np.asarray(matrix)[:, :2])))
    turn = (_angle(refined) - _angle(matrix) + 180) % 360 - 180
    low, high, max_turn = REFINE_LIMITS
    return refined if low <= ratio <= high and abs(turn) <= max_turn else None


def _angle(matrix) -> float:
    return float(np.degrees(np.arctan2(matrix[1][0], matrix[0][0])))


CROP_CORNERS = np.array([[0.0, 0.0], [SIZE - 1.0, 0.0], [SIZE - 1.0, SIZE - 1.0], [0.0, SIZE - 1.0]])


def crop_moved(old, new) -> float:
    """How far the crop moves from `old` to `new` (photo -> crop matrices): the largest shift of a
    corner of the old crop, in pixels of the new crop."""
    return float(np.abs(apply(new, apply(invert(old), CROP_CORNERS)) - CROP_CORNERS).max())


def settle(grays, matrices, predictions, predict, passes: int = REFINE_PASSES, target=None):
    """Refine each face's crop until it stops moving: up to `passes` rounds of (the similarity that
    puts its predicted core points where Kaggle's faces have them, a new crop, a new prediction),
    a face leaving the round once its crop moves less than SETTLED_PX. grays[k] is face k's photo;
    target: the framing refined_matrix aligns to.
    Returns (matrices, crops, predictions, rounds each face was refined)."""
    matrices = np.array(matrices, dtype=np.float64).reshape(-1, 2, 3)
    predictions = np.array(predictions, dtype=np.float32).reshape(len(matrices), -1)
    crops = np.array([crop(g, m) for g, m in zip(grays, matrices)], dtype=np.uint8).reshape(-1, SIZE, SIZE)
    rounds = np.zeros(len(matrices), int)
    moving = range(len(matrices))
    for _ in range(passes):
        moved = []
        for k in moving:
            better = refined_matrix(matrices[k], predictions[k], target)
            if better is None or crop_moved(matrices[k], better) < SETTLED_PX:
                continue  # implausible (the face keeps its crop), or settled
            matrices[k], crops[k] = better, crop(grays[k], better)
            rounds[k] += 1
            moved.append(k)
        if not moved:
            break
        predictions[moved] = np.asarray(predict(crops[moved]), dtype=np.float32).reshape(len(moved), -1)
        moving = moved
    return matrices, crops, predictions, rounds


def reframe(gray, matrices, crops, framer):
    """(matrices, crops): each face's crop (crops[k] = crop(gray, matrices[k])) moved by the correction
    its framer reads from it (fkd.train.framer), so the face is framed as the training faces are.
    (Moving by 0.5-0.85 of it did no better on `make bench`'s photos, and a second pass gained 0.2%.)"""
    matrices = np.asarray(matrices, np.float64).reshape(-1, 2, 3)
    corrections = framer(np.asarray(crops, np.uint8).reshape(-1, SIZE, SIZE))
    matrices = np.array([compose(correction_matrix(c), m) for c, m in zip(corrections, matrices)]).reshape(-1, 2, 3)
    return matrices, np.array([crop(gray, m) for m in matrices], np.uint8).reshape(-1, SIZE, SIZE)


def compose(outer, inner) -> np.ndarray:
    """The 2x3 affine that applies `inner`, then `outer`."""
    outer, inner = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def turned(gray, angle: float):
    """(the photo turned by `angle` degrees counter-clockwise on a canvas that holds all of it,
    the 2x3 matrix photo -> turned photo)."""
    height, width = gray.shape[:2]
    rotation = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
    cos, sin = abs(rotation[0, 0]), abs(rotation[0, 1])
    size = (int(np.ceil(width * cos + height * sin)), int(np.ceil(width * sin + height * cos)))
    rotation[:, 2] += ((size[0] - width) / 2, (size[1] - height) / 2)
    return cv2.warpAffine(gray, rotation, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), rotation


class Detection(NamedTuple):
    """One detector hit on one copy of a photo, in the photo's coordinates."""
    angle: float          # the copy's turn, degrees (0: the photo itself)
    centre: np.ndarray    # box centre
    width: float
    height: float
    confirmed: bool       # on the photo itself, or sure enough / two eyes on a turned copy (asked
                          # only while its face has no confirmed detection yet)
    framed_by: np.ndarray  # MTCNN: its 5 landmarks [5,2]; a cascade: its photo -> crop matrix


def _search(gray, name, min_size, turns, always):
    """find_faces' search of the photo and its turned copies: (per face, its Detections in search
    order; the detector's name)."""
    landmarked = name == "mtcnn"
    always = (MTCNN_TURNS if landmarked else ALWAYS_TURNS) if always is None else tuple(always)
    faces = []  # per face, its Detections on the copies, in search order
    for angle in (0,) + always + turns:
        if angle in turns and any(d.confirmed for detections in faces for d in detections):
            break
        copy, rotation = (gray, None) if angle == 0 else turned(gray, angle)
        back = None if rotation is None else invert(rotation)
        if landmarked:
            found, points, sure = detect_landmarked(copy, min_size)
        else:
            found, name = detect_faces(copy, name, min_size)
        for k, (x, y, w, h) in enumerate(found):
            centre = np.array([x + (w - 1) / 2, y + (h - 1) / 2])
            centre = centre if back is None else apply(back, centre)
            same = next((f for f in faces if np.hypot(*(centre - f[0].centre)) < 0.5 * max(w, f[0].width)), None)
            # a face confirmed already needs no eye search on this copy (copies come in order of turn)
            needed = same is None or not any(d.confirmed for d in same)
            confirmed = not angle or needed and (landmarked and sure[k] >= MTCNN_SURE
                                                 or eyes_available() and shows_two_eyes(copy, found[k]))
            if landmarked:
                framed_by = points[k] if back is None else apply(back, points[k])
            else:
                framed_by = crop_matrix(found[k], FRAMING[name])
                framed_by = framed_by if back is None else compose(framed_by, rotation)
            detection = Detection(angle, centre, w, h, confirmed, framed_by)
            if same is None:
                faces.append([detection])
            else:
                same.append(detection)
    return faces, name


def _median_landmarks(detections) -> np.ndarray:
    """One face's MTCNN landmarks [5,2]: the median over the copies that saw it."""
    return np.median([d.framed_by for d in detections], axis=0)


def find_faces(photo_bgr, detector="auto", min_size=24, turns=TURNS, always=None, framing=None, goal=None):
    """(boxes [K,4], matrices [K,2,3] photo -> crop, crops uint8 [K,96,96], detector name).

    MTCNN frames each crop by its landmarks (landmark_matrix, to the run's `framing` or its landmark
    `goal`); a cascade's box is framed by FRAMING. The detectors miss heads tilted much past 15
    degrees (the cascades) or 20 (MTCNN), so copies of the photo turned by each of `always` (default: MTCNN_TURNS for
    MTCNN, ALWAYS_TURNS for a cascade) are searched too, and when no face has been found by then,
    copies turned by each of `turns` in turn until one shows a face. Detections of one face on
    several copies are one face: MTCNN's landmarks are their median (on a turned head its landmarks
    lean towards upright, and the lean differs from copy to copy), a cascade's box the first one's.
    A face seen only on turned copies must be confirmed by two eyes from OpenCV's eye cascade (a
    turned copy's texture, or a cat, fools a face detector now and then; MTCNN_SURE of MTCNN's is
    enough); its crop stands the head up, and its box is drawn where its centre falls on the photo."""
    gray = to_gray(photo_bgr)
    name = detector if detector != "auto" else available_detectors()[0]
    landmarked = name == "mtcnn"
    faces, name = _search(gray, name, min_size, turns, always)
    boxes, matrices, used = [], [], []
    for detections in faces:
        if not any(d.confirmed for d in detections):
            continue
        first = detections[0]
        (cx, cy), w, h = first.centre, first.width, first.height
        matrix = landmark_matrix(_median_landmarks(detections), framing, goal) if landmarked else first.framed_by
        if matrix is None:
            continue
        boxes.append(np.array([cx - (w - 1) / 2, cy - (h - 1) / 2, w, h]))
        matrices.append(matrix)
        if all(d.angle for d in detections):
            used.append(min((d.angle for d in detections if d.confirmed), key=abs))
    if used:
        name = f"{name}, also on the photo turned {', '.join(f'{a:+g}' for a in sorted(set(used)))} degrees"
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    matrices = np.array(matrices).reshape(-1, 2, 3)
    crops = np.array([crop(gray, m) for m in matrices], dtype=np.uint8).reshape(-1, SIZE, SIZE)
    return boxes, matrices, crops, name


def face_landmarks(photo_bgr, min_size=24) -> list:
    """MTCNN's landmarks [5,2] of each face of a photo that find_faces keeps, in photo pixels: the
    median over the copies that saw it, as find_faces frames it (what `fkd calibrate` measures)."""
    faces, _ = _search(to_gray(photo_bgr), "mtcnn", min_size, TURNS, None)
    return [_median_landmarks(detections) for detections in faces if any(d.confirmed for d in detections)]


BGR = {"left": (180, 119, 31), "right": (14, 127, 255), "centre": (44, 160, 44)}


def draw_on_photo(photo_bgr, faces_points, boxes, matrices=(), labels=None) -> np.ndarray:
    """A copy of the photo with each detector box (white; None draws none), crop square (yellow, from
    the photo -> crop matrix), label (default: the face's number) and 15 points coloured by side;
    the colour key in a band below."""
    from fkd.show.plots import SIDES

    canvas = np.array(photo_bgr, copy=True)
    height, width = canvas.shape[:2]
    thick = max(1, round(max(height, width) / 500))
    labels = range(len(faces_points)) if labels is None else labels
    for k, (box, points, label) in enumerate(zip(boxes, faces_points, labels)):
        corners = None
        if k < len(matrices):
            corners = apply(invert(matrices[k]), [[-0.5, -0.5], [SIZE - 0.5, -0.5], [SIZE - 0.5, SIZE - 0.5],
                                                   [-0.5, SIZE - 0.5]])
            cv2.polylines(canvas, [np.round(corners * 16).astype(np.int32)], True, (0, 220, 255), thick,
                          cv2.LINE_AA, shift=4)
        if box is not None:
            x, y, w, h = (int(round(v)) for v in box)
            cv2.rectangle(canvas, (x, y), (x + w, y + h), (255, 255, 255), thick, cv2.LINE_AA)
        else:
            x, y = (int(round(v)) for v in corners.min(axis=0))
            w = int(round(np.ptp(corners[:, 0]) / 1.1))
        cv2.putText(canvas, str(label), (x + 2 * thick, y + 12 * thick), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick,
                    (255, 255, 255), thick, cv2.LINE_AA)
        radius = max(2, int(round(w / 45)))
        for (px, py), s in zip(points, SIDES):
            if np.isnan(px) or np.isnan(py):
                continue
            centre = (int(round(px * 16)), int(round(py * 16)))  # 4 fractional bits: sub-pixel accurate
            cv2.circle(canvas, centre, radius * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
            cv2.circle(canvas, centre, max(1, radius - 1) * 16, BGR[s], -1, cv2.LINE_AA, shift=4)
    return np.vstack([canvas, legend_strip(width, height)])


def legend_strip(width: int, height: int) -> np.ndarray:
    """The colour key as a black band to go below the photo: it never covers a face."""
    legend = [("subject's left", BGR["left"]), ("subject's right", BGR["right"]), ("midline", BGR["centre"])]
    scale = max(0.4, min(max(height, width) / 1000, width / 560))
    weight = max(1, int(round(scale * 1.5)))
    strip = np.zeros((int(round(34 * scale)), width, 3), np.uint8)
    x = int(6 * scale)
    for text, colour in legend:
        cv2.putText(strip, text, (x, int(round(24 * scale))), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, colour,
                    weight, cv2.LINE_AA)
        x += cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, weight)[0][0] + int(20 * scale)
    return strip


def write_png(path, image) -> Path:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise FkdError("could not encode the PNG", path=path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return Path(path)


def face_record(box, matrix, keypoints, refined: bool) -> dict:
    points = keypoints_to_photo(keypoints, matrix)
    crop_points = as_points(np.asarray(keypoints, np.float64))
    return {"box": [round(float(v), 1) for v in box], "refined": bool(refined),
            "photo_to_crop": np.round(matrix, 6).tolist(),
            "crop_to_photo": np.round(invert(matrix), 6).tolist(),
            "keypoints": {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in zip(KEYPOINTS, points)},
            "keypoints_crop": {n: [round(float(x), 2), round(float(y), 2)]
                               for n, (x, y) in zip(KEYPOINTS, crop_points)}}


def to_json(record) -> str:
    """Indented JSON with every list of numbers on one line (points, boxes, matrix rows)."""
    text = json.dumps(record, indent=1)
    return re.sub(r"\[[-+0-9.eE,\s]*\]", lambda m: json.dumps(json.loads(m.group(0))), text) + "\n"


def _stems(paths):
    seen, stems = {}, []
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


class Predictor:
    """uint8 crops [N,96,96] -> complete-kind keypoints [N,30] px, from run folders (torch) or from an
    ONNX file of `fkd export` (onnxruntime alone: torch is never imported); it counts the faces it
    predicted and the seconds that took."""

    def __init__(self, run_dirs=(), model=None, flip_tta=True, device=None):
        self.run_dirs, self.flip_tta, self.device = [str(r) for r in run_dirs], flip_tta, device
        self.onnx = OnnxKeypoints(model) if model else None
        self.engine = "onnxruntime" if self.onnx else "torch"
        self.runs = None  # loaded at the first face: a photo without faces never imports torch
        # where the training faces have their points: the crops are framed to match
        framings = ([self.onnx.framing] if self.onnx else [read_framing(r) for r in self.run_dirs])
        self.framing = next((f for f in framings if f is not None), None)
        # and where MTCNN puts its landmarks on those faces (`fkd calibrate`), when measured
        goals = [self.onnx.landmark_goal] if self.onnx else [read_landmark_goal(r) for r in self.run_dirs]
        self.landmark_goal = next((g for g in goals if g is not None), None)
        # and the framer that reads how far a crop is from that framing (`fkd calibrate`), when trained
        if self.onnx:
            self.framer = self.onnx.corrections if self.onnx.has_framer else None
        else:
            framer = first_framer(self.run_dirs)
            self.framer = None if framer is None else _RunFramer(framer)
        self.faces, self.seconds = 0, 0.0

    def __call__(self, crops):
        if self.onnx is None and self.runs is None:
            from fkd.train.predict import RunsPredictor  # torch, only once a face needs a model

            self.runs = RunsPredictor(self.run_dirs, flip_tta=None if self.flip_tta else False, device=self.device)
        start = time.perf_counter()
        # the complete-row output on purpose (subsets None): a photo's face gets all 15 points
        predictions = self.onnx.predict(crops) if self.onnx else self.runs(crops)
        self.seconds += time.perf_counter() - start
        self.faces += len(crops)
        return predictions

    def latency(self) -> str:
        if not self.faces:
            return f"no face predicted ({self.engine})"
        return (f"{self.faces} face crops predicted in {self.seconds:.2f} s: {1000 * self.seconds / self.faces:.1f} ms "
                f"a face ({self.engine})")


class _RunFramer:
    """A run's framer.pt, loaded at the first face (it needs torch)."""

    def __init__(self, path):
        self.path, self.framer = Path(path), None

    def __call__(self, crops):
        if self.framer is None:
            from fkd.train.framer import Framer  # torch, only once a face needs it

            self.framer = Framer.load(self.path)
        return self.framer(crops)


@dataclass
class Located:
    """The faces of one photo: detector boxes [K,4], photo -> crop matrices [K,2,3], crops
    [K,96,96], keypoints in crop pixels [K,30], how many refinements each took, the detector, and
    the matrices as the detector framed them (before the framer or the refinement)."""
    boxes: np.ndarray
    matrices: np.ndarray
    crops: np.ndarray
    predictions: np.ndarray
    rounds: np.ndarray
    detector: str
    detected: np.ndarray


def locate(photo_bgr, predict, detector="auto", min_size=24, refine=True) -> Located:
    """Find the faces of a photo, predict their keypoints and (refine) frame each crop better: an
    MTCNN crop by the predictor's framer when it has one, a cascade's by settling on its points."""
    framing = getattr(predict, "framing", None)
    framer = getattr(predict, "framer", None)
    boxes, matrices, crops, name = find_faces(photo_bgr, detector, min_size, framing=framing,
                                              goal=getattr(predict, "landmark_goal", None))
    detected = matrices
    rounds = np.zeros(len(crops), int)
    landmarked = name.startswith("mtcnn")
    if len(crops) and refine and landmarked and framer is not None:
        matrices, crops = reframe(to_gray(photo_bgr), matrices, crops, framer)
        rounds[:] = 1
    predictions = np.zeros((len(crops), 2 * len(KEYPOINTS)), np.float32)
    if len(crops):
        predictions = np.asarray(predict(crops), dtype=np.float32).reshape(len(crops), -1)
        # MTCNN's landmarks frame a crop closer to the training faces' than the refinement does
        # (`make bench`'s face section measured both): its faces are not refined on their points
        if refine and not landmarked:
            gray = to_gray(photo_bgr)
            matrices, crops, predictions, rounds = settle([gray] * len(crops), matrices, predictions, predict,
                                                          target=framing)
    return Located(np.asarray(boxes).reshape(-1, 4), matrices, crops, predictions, rounds, name, detected)


def process_photos(paths, run_dirs, out_dir, detector="auto", min_size=24, flip_tta=True,
                   refine=True, save_crops=False, predict=None, device=None, model=None) -> list:
    """Detect, predict (and refine), write PNG + JSON per photo; return the JSON records.
    `predict` (uint8 [N,96,96] -> [N,30] px) defaults to a Predictor of the runs or of the ONNX model."""
    predict = predict or Predictor(run_dirs, model, flip_tta, device)
    paths = photo_paths(paths)
    photos = [read_photo(p) for p in paths]  # every file is checked before any work
    out = check_writable(out_dir)            # and the place the results go
    records = []
    for path, stem, photo in zip(paths, _stems(paths), photos):
        found = locate(photo, predict, detector, min_size, refine)
        ks = range(len(found.boxes))
        name = found.detector
        record = {"photo": str(path), "width": int(photo.shape[1]), "height": int(photo.shape[0]),
                  "detector": name, **({"model": str(model)} if model else {"runs": [str(r) for r in run_dirs]}),
                  "faces": [face_record(found.boxes[k], found.matrices[k], found.predictions[k], found.rounds[k] > 0)
                            for k in ks]}
        write_text(out / f"{stem}_keypoints.json", to_json(record))
        if len(ks):
            for k in ks:
                if save_crops:
                    write_png(out / f"{stem}_face{k}.png", _crop_with_points(found.crops[k], found.predictions[k]))
            drawn = draw_on_photo(photo, [keypoints_to_photo(found.predictions[k], found.matrices[k]) for k in ks],
                                  found.boxes, found.matrices)
            write_png(out / f"{stem}_keypoints.png", drawn)
            print(f"{path}: {len(ks)} face{'s' if len(ks) > 1 else ''} ({name}) -> {out / (stem + '_keypoints.png')}")
        else:
            print(f"{path}: no face found ({name} detector); wrote {out / (stem + '_keypoints.json')} with no faces")
        records.append(record)
    return records


def _crop_with_points(face, keypoints, zoom=4):
    big = cv2.resize(cv2.cvtColor(face, cv2.COLOR_GRAY2BGR), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    from fkd.show.plots import SIDES

    for (x, y), s in zip(as_points(np.asarray(keypoints, np.float64)), SIDES):
        centre = (int(round(((x + 0.5) * zoom - 0.5) * 16)), int(round(((y + 0.5) * zoom - 0.5) * 16)))
        cv2.circle(big, centre, 4 * 16, BGR[s], -1, cv2.LINE_AA, shift=4)
    return big
