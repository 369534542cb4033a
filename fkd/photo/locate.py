"""A photo in, its faces out: each face's crop, framed as the training faces are, and its 15 points.

Per photo: the faces are found (fkd.photo.detect), each as one explicit 2x3 affine matrix M (photo
-> 96x96 crop); the runs (or their ONNX file) predict the keypoints on the crops, and M's inverse
takes them back to photo pixels exactly. Then each crop is framed better. An MTCNN crop is cropped
again once by the run's framer when it has one (`fkd calibrate`, fkd.photo.frame). A cascade's crop
is refined on its points (`settle`): the predicted points define a similarity (scale, rotation,
shift) that puts them where the training faces have them, the face is cropped again with it (this
also levels a tilted head) and predicted again, until the crop moves less than half a pixel (at most
REFINE_PASSES rounds). MTCNN's crops are not refined so: their points lean towards the training
framing, and the refinement then drifts.
"""
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fkd.core.errors import FkdError
from fkd.core.keypoints import KEYPOINTS, SIZE, as_points
from fkd.data.shapes import similarity_matrix
from fkd.model.onnxfile import OnnxKeypoints
from fkd.photo.detect import find_faces
from fkd.photo.geometry import apply, compose, correction_matrix, crop, crop_moved, invert, to_gray
from fkd.train.rundir import first_framer, read_framing, read_landmark_goal

# where Kaggle's training faces have their 4 core points (96 px crop): the refinement's target for
# runs that do not record their own framing
KAGGLE_CORE = {"left_eye_center": (66.0, 37.0), "right_eye_center": (30.0, 37.0),
               "nose_tip": (48.0, 62.0), "mouth_center_bottom_lip": (48.0, 80.0)}
CORE_INDEX = np.array([KEYPOINTS.index(name) for name in KAGGLE_CORE])
CORE_TARGET = np.array(list(KAGGLE_CORE.values()), dtype=np.float64)
REFINE_LIMITS = (0.6, 1.7, 40.0)  # a refinement is kept only if it rescales by 0.6..1.7 and turns by < 40 deg
REFINE_PASSES = 4   # photos: at most this many refinements a face ...
SETTLED_PX = 0.5    # ... and none once its crop moves less than this (in crop pixels)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


# ---------------------------------------------------------------- a photo in

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


# ---------------------------------------------------------------- the model: runs or their ONNX file

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


# ---------------------------------------------------------------- framing a crop better

def reframe(gray, matrices, crops, framer):
    """(matrices, crops): each face's crop (crops[k] = crop(gray, matrices[k])) moved by the correction
    its framer reads from it (fkd.photo.frame), so the face is framed as the training faces are.
    (Moving by 0.5-0.85 of it did no better on `make bench`'s photos, and a second pass gained 0.2%.)"""
    matrices = np.asarray(matrices, np.float64).reshape(-1, 2, 3)
    corrections = framer(np.asarray(crops, np.uint8).reshape(-1, SIZE, SIZE))
    matrices = np.array([compose(correction_matrix(c), m) for c, m in zip(corrections, matrices)]).reshape(-1, 2, 3)
    return matrices, np.array([crop(gray, m) for m in matrices], np.uint8).reshape(-1, SIZE, SIZE)


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


# ---------------------------------------------------------------- faces out

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
