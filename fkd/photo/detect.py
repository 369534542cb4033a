"""The faces of a photo, each with the photo -> crop matrix that frames it like the training faces.

Detectors, best first: MTCNN from facenet-pytorch (five landmarks a face: the crop is the similarity
that puts them where the training faces have them), else OpenCV's Haar frontal-face cascade when the
installed OpenCV ships it, else scikit-image's LBP frontal-face cascade, which scikit-image ships. A
cascade's box becomes a square crop framed like Kaggle's faces:
    crop side = SIDE * box width, crop centre = box centre + (DX, DY) * box width.
How SIDE, DX, DY were chosen (eye centres and bottom lip against where Kaggle's training faces have
them: eyes near x=66 and x=30 at y=37, nose tip near (48, 62), bottom lip near (48, 80)):
- scikit-image's astronaut (eyes at about (202.5, 101) and (245.5, 102), bottom lip (222, 154)):
  SIDE 1.25 (Haar box 93 px), 1.23 (LBP box 94 px); Grace Hopper, matplotlib's sample photo (eyes
  (222, 195), (307, 193), bottom lip (268, 290)): 0.95 (Haar, 230 px), 1.13 (LBP, 195 px).
- 300 Kaggle-framed real faces of the proxy training set (300-W HELEN labels), enlarged 2x into a
  larger canvas and detected: SIDE 1.03 for both detectors, spread of the eyes about 1.5 px. The
  crop's own border may pull the box there, so this one counts as a hint only.
- DX is 0 and DY +0.01 in every case (within 0.02).
So one face's box alone misses Kaggle's scale by up to ~20 %: the refinement (fkd.photo.locate)
fixes the rest.

The detectors miss heads tilted much past 15 degrees (the cascades) or 20 (MTCNN), so copies of the
photo turned either way are searched too (find_faces says which, and how one face seen on several
copies becomes one face).
"""
import functools
import importlib.util
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from fkd.core.errors import FkdError
from fkd.core.keypoints import KEYPOINTS, SIZE, as_points
from fkd.data.shapes import similarity_matrix
from fkd.photo.geometry import Framing, apply, compose, crop, crop_matrix, invert, resize_matrix, to_gray, turned

# MTCNN's 5 landmarks in fkd's names, and where Kaggle's faces have the 4 of them a crop is framed by
LANDMARKS = ("left_eye_center", "right_eye_center", "nose_tip", "mouth_left_corner", "mouth_right_corner")
FRAMED_BY = ("left_eye_center", "right_eye_center", "mouth_left_corner", "mouth_right_corner")
KAGGLE_FRAMED_BY = np.array([(66.0, 37.0), (30.0, 37.0), (63.0, 76.0), (33.0, 76.0)])
MTCNN_MIN_PROBABILITY = 0.7  # MTCNN's faces below this are dropped; on a turned copy, a face below
MTCNN_SURE = 0.97            # this needs two eyes from the eye cascade (a cat's face on a turned copy: 0.94)
# a cascade's box -> crop, chosen from the measurements in the module docstring
FRAMING = {
    "haar": Framing(side=1.05, dx=0.0, dy=0.01),
    "lbp": Framing(side=1.10, dx=0.0, dy=0.01),
}

HAAR_FILE = "haarcascade_frontalface_default.xml"
EYE_FILE = "haarcascade_eye.xml"
DETECT_MAX_SIDE = 800   # photos are shrunk to this for detection only (speed); boxes mapped back. 10 real
# photos enlarged to 6 megapixels: 0.85-0.96 s a photo at 1,024 px, 0.58-0.70 s at 800, the same RMSE (1.08x the crops)
MIN_DETECTED_SIDE = 20   # px of the shrunk photo: smaller faces are not searched (MTCNN's own floor is 12)
ALWAYS_TURNS = (18, -18)  # degrees: turned copies a cascade searches on every photo (faces turned 5..30 degrees)
# and MTCNN, for the median of the copies' landmarks. On 40 real photos (make bench, no framer) copies
# turned by (9, 18, 27) either way: 1.043x the crops' RMSE in 1.63 s a photo; by 18 either way:
# 1.054x in 0.77 s (with the framer 1.024x and 1.023x); the photo alone: 1.120x in 0.22 s
MTCNN_TURNS = (18, -18)
TURNS = (35, -35, 50, -50, 65, -65)  # and these, in turn, when no face has been found by then


# ---------------------------------------------------------------- the detectors

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


def detection_scale(shape, min_size: int):
    """(the factor a photo of this shape is shrunk by for detection, the smallest face searched on
    the shrunk photo)."""
    factor = min(1.0, DETECT_MAX_SIDE / max(shape[:2]))
    return factor, max(MIN_DETECTED_SIDE, int(round(min_size * factor)))


def too_small(shape, min_size: int):
    """Why a photo of this shape holds no face the detectors search for (its shorter side, shrunk for
    detection, is below the smallest face searched), or None when it may hold one."""
    factor, smallest = detection_scale(shape, min_size)
    if min(shape[:2]) * factor >= smallest:
        return None
    height, width = shape[:2]
    return f"too small to hold a face: {width}x{height} px; faces are searched from {smallest / factor:.0f} px"


def shrunk_for_detection(gray, min_size: int):
    """(the photo shrunk to DETECT_MAX_SIDE at most, the factor, the smallest face searched on it)."""
    factor, smallest = detection_scale(gray.shape, min_size)
    small = gray if factor == 1.0 else cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return small, factor, smallest


def detect_landmarked(gray, min_size: int = 24):
    """MTCNN's faces in a grayscale photo: (boxes [K,4] x, y, w, h, landmarks [K,5,2] in LANDMARKS'
    order: the subject's left eye first, probabilities [K]), faces below MTCNN_MIN_PROBABILITY dropped."""
    gray = to_gray(gray)
    small, factor, small_min_size = shrunk_for_detection(gray, min_size)
    corners, probabilities, points = _mtcnn(small_min_size).detect(cv2.cvtColor(small, cv2.COLOR_GRAY2RGB),
                                                                   landmarks=True)
    if corners is None:
        return np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros(0)
    probabilities = np.asarray(probabilities, np.float64)
    keep = probabilities >= MTCNN_MIN_PROBABILITY
    # a box's corner is its first pixel and its side a count of pixels: both scale back by the factor;
    # a point is a pixel centre, which cv2.resize moves by half a pixel too (resize_matrix)
    corners = np.asarray(corners, np.float64)[keep] / factor
    # MTCNN names its points by image side (its "left eye" is the subject's right): swap to fkd's
    points = apply(invert(resize_matrix(factor)), np.asarray(points, np.float64)[keep][:, [1, 0, 2, 4, 3]])
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
    small, factor, small_min_size = shrunk_for_detection(gray, min_size)
    boxes = (_detect_haar if name == "haar" else _detect_lbp)(small, small_min_size) / factor
    return _drop_nested(boxes) if len(boxes) else boxes, name


# ---------------------------------------------------------------- the photo and its turned copies

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
    if too_small(gray.shape, min_size):
        return [], name  # searching it would fail: MTCNN has no scale to search, the shrunk photo no rows
    landmarked = name == "mtcnn"
    always = (MTCNN_TURNS if landmarked else ALWAYS_TURNS) if always is None else tuple(always)
    # the photo is shrunk once, before it is turned: turning a photo of several megapixels cost more
    # than detecting on it
    small, factor, small_min_size = shrunk_for_detection(gray, min_size)
    shrink = resize_matrix(factor)
    faces = []  # per face, its Detections on the copies, in search order
    for angle in (0,) + always + turns:
        if angle in turns and any(d.confirmed for detections in faces for d in detections):
            break
        copy, rotation = (small, None) if angle == 0 else turned(small, angle)
        to_copy = shrink if rotation is None else compose(rotation, shrink)   # photo -> copy
        back = invert(to_copy)
        if landmarked:
            found, points, sure = detect_landmarked(copy, small_min_size)
        else:
            found, name = detect_faces(copy, name, small_min_size)
        for k, (x, y, w, h) in enumerate(found):
            centre = apply(back, [x + (w - 1) / 2, y + (h - 1) / 2])
            w, h = w / factor, h / factor
            same = next((f for f in faces if np.hypot(*(centre - f[0].centre)) < 0.5 * max(w, f[0].width)), None)
            # a face confirmed already needs no eye search on this copy (copies come in order of turn)
            needed = same is None or not any(d.confirmed for d in same)
            confirmed = not angle or needed and (landmarked and sure[k] >= MTCNN_SURE
                                                 or eyes_available() and shows_two_eyes(copy, found[k]))
            framed_by = (apply(back, points[k]) if landmarked
                         else compose(crop_matrix(found[k], FRAMING[name]), to_copy))
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
    `goal`); a cascade's box is framed by FRAMING. Copies of the photo turned by each of `always`
    (default: MTCNN_TURNS for MTCNN, ALWAYS_TURNS for a cascade) are searched too, and when no face
    has been found by then, copies turned by each of `turns` in turn until one shows a face.
    Detections of one face on several copies are one face: MTCNN's landmarks are their median (on a
    turned head its landmarks lean towards upright, and the lean differs from copy to copy), a
    cascade's box the first one's. A face seen only on turned copies must be confirmed by two eyes
    from OpenCV's eye cascade (a turned copy's texture, or a cat, fools a face detector now and then;
    MTCNN_SURE of MTCNN's is enough); its crop stands the head up, and its box is drawn where its
    centre falls on the photo. A photo too small to hold a face (too_small) has none."""
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
