"""`fkd calibrate --runs RUN... --data-dir DIR`: teach `fkd face` to frame a photo's face the way the
runs' own training faces were framed, in two steps, both measured on those faces placed on photos.

1. The detector's goal. MTCNN's landmarks are not the labels: its eye centres, nose and mouth corners
   follow its own definitions, and the training faces' crops follow theirs (on the proxy, MTCNN's
   mouth corners sit about 3 px below the 300-W ones, which frames every photo's face 8% too small
   when MTCNN's points are put where the labels are). So each of `photos` training faces is placed
   on a cluttered photo as `make bench` places its faces (enlarged 1.5-3x, turned up to 25 degrees),
   found by the same search `fkd face` runs, and MTCNN's landmarks are taken back into the face's
   96x96 crop through the placement; their median over the faces is the goal that `fkd face` then
   matches all five landmarks to (runs/<name>/detector.json, carried into `fkd export`'s ONNX file).
2. The framer (fkd.train.framer, runs/<name>/framer.pt). The median leaves each face's own framing
   error (on the proxy about 1.3 px, 1.6 px and 6% sd in x, y and size). Each training face is put
   on clutter (fkd.photo.scenes.framing_photo) and cropped off its true crop by a random zoom, shift
   and turn, of about the size of MTCNN's errors; the framer learns from those crops the correction
   back to the training set's framing rule (below), and `fkd face` crops again by it.

The framing rule. Three numbers say how a face sits in its crop: the mean x of its labelled points,
the y of its eye midpoint, and its size, hypot(eye distance, eye midpoint to mouth), the mouth being
the bottom lip where it is labelled, else the mouth corners' midpoint. The proxy's crops were cut by
their own labels, so there the three are exact (sd 0.000 px, 0.000 px and 0.5% per labelling
pattern); a set framed by a detector spreads around them. The rule keeps their medians per labelling
pattern (the mean x of 15 points is not the mean x of 5). A correction (log zoom, dx, dy) is the
crop change C(p) = zoom * (p - c) + c + (dx, dy), c = 47.5 (fkd.photo.geometry.correction_matrix):
the face's points p in the crop it was seen in go to C(p) in the crop framed by the rule.
"""
import contextlib
import json
import time
from pathlib import Path

import cv2
import numpy as np

from fkd.core.errors import FkdError
from fkd.core.keypoints import CENTRE, FLIP_AXIS, KEYPOINTS, as_points, complete_rows, flip_keypoints
from fkd.core.lock import writer_lock
from fkd.data.competition import find_data_dir, load_training
from fkd.photo.detect import face_landmarks, mtcnn_available
from fkd.photo.geometry import apply, compose, crop, invert
from fkd.photo.scenes import framing_photo, scene
from fkd.train.framer import train_framer
from fkd.train.rundir import (
    FRAMER_FILE,
    check_run_readable,
    check_same_data,
    read_run_config,
    write_landmark_goal,
)

PHOTOS = 200
PLACED = dict(width=500, height=500, scales=(1.5, 3.0), max_roll=25.0)
# the framer's crops: off the true crop by up to these (uniform), a little wider than MTCNN's median
# crop is off on the proxy (sd 1.3 px in x, 1.6 px in y, 6% in size; its turn levels the head)
MISFRAMED = {"shift_x": 5.0, "shift_y": 3.5, "log_zoom": 0.1, "turn": 30.0}
VARIANTS, EPOCHS = 6, 20
LEFT_EYE, RIGHT_EYE, BOTTOM_LIP, MOUTH_LEFT, MOUTH_RIGHT = (KEYPOINTS.index(name) for name in (
    "left_eye_center", "right_eye_center", "mouth_center_bottom_lip", "mouth_left_corner", "mouth_right_corner"))


# ---------------------------------------------------------------- the detector's goal

def calibrate_landmarks(images, rng=None, photos: int = PHOTOS):
    """(goal [5,2]: the median of MTCNN's landmarks in crop pixels, over the faces it found; how many
    it found) for `photos` faces drawn from `images` [N,96,96], one per photo."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    found = []
    for row in rng.choice(len(images), min(photos, len(images)), replace=False):
        photo, (placed,) = scene(images[[row]], rng, **PLACED)
        in_crop = [apply(invert(placed), landmarks) for landmarks in face_landmarks(photo)]
        if in_crop:  # the face placed, not a face-like piece of clutter: the one nearest the crop's middle
            found.append(min(in_crop, key=lambda points: np.hypot(*(points.mean(0) - (CENTRE, CENTRE)))))
    if not found:
        raise FkdError(f"MTCNN found none of the {photos} training faces placed on photos")
    return np.median(found, axis=0), len(found)


# ---------------------------------------------------------------- the framing rule

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


# ---------------------------------------------------------------- the framer

def row_axes(keypoints, flip_axis) -> np.ndarray:
    """Each row's labels' mirror axis: the config's one number, or [partial rows, complete rows]."""
    axis = flip_axis if isinstance(flip_axis, (list, tuple)) else (flip_axis, flip_axis)
    return np.where(complete_rows(np.asarray(keypoints)), float(axis[1]), float(axis[0]))


def misframing(rng) -> np.ndarray:
    """A random crop -> crop similarity about the crop's centre, of MISFRAMED's sizes."""
    matrix = cv2.getRotationMatrix2D((CENTRE, CENTRE), rng.uniform(-MISFRAMED["turn"], MISFRAMED["turn"]),
                                     float(np.exp(rng.uniform(-MISFRAMED["log_zoom"], MISFRAMED["log_zoom"]))))
    matrix[:, 2] += (rng.uniform(-MISFRAMED["shift_x"], MISFRAMED["shift_x"]),
                     rng.uniform(-MISFRAMED["shift_y"], MISFRAMED["shift_y"]))
    return matrix


def framer_examples(images, keypoints, rule, axes, rng, variants: int = VARIANTS):
    """(crops uint8 [M,96,96], corrections [M,3]): `variants` crops of each face that has framing
    stats, half of them of its mirror image, each put on clutter and cropped off its true crop by a
    random misframing, with the correction that frames it by `rule` again."""
    crops, corrections = [], []
    for face, labels, axis in zip(images, keypoints, axes):
        if np.isnan(framing_stats(as_points(labels))).any():
            continue
        for _ in range(variants):
            seen, points = face, as_points(labels)
            if rng.uniform() < 0.5:
                seen, points = np.ascontiguousarray(face[:, ::-1]), as_points(flip_keypoints(labels, axis))
            photo, placed = framing_photo(seen, rng)
            off = misframing(rng)
            correction = rule_correction(apply(off, points), rule)
            if np.isnan(correction).any():
                continue  # a mirrored labelling the rule has no row of (a one-sided pattern)
            crops.append(crop(photo, compose(off, invert(placed))))
            corrections.append(correction)
    return np.array(crops, np.uint8).reshape(-1, 96, 96), np.array(corrections, np.float32).reshape(-1, 3)


def calibrate_framer(images, keypoints, flip_axis, rng=None, variants: int = VARIANTS, epochs: int = EPOCHS,
                     log=print):
    """A Framer trained on the training faces `images`/`keypoints` (labels' mirror axis `flip_axis`)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    rule = framing_rule(keypoints)
    if not rule:
        raise FkdError("no training face labels both eyes and the mouth: the framer has nothing to learn")
    axes = row_axes(keypoints, flip_axis)
    started = time.perf_counter()
    crops, corrections = framer_examples(images, keypoints, rule, axes, rng, variants)
    log(f"framer: {len(crops)} misframed crops of {len(crops) // variants} training faces "
        f"({time.perf_counter() - started:.0f} s)")
    stats = np.array([framing_stats(points) for points in as_points(np.asarray(keypoints, np.float64))])
    framed = ~np.isnan(stats).any(1)
    return train_framer(crops, corrections, np.median(stats[framed, 0]), float(np.mean(axes[framed])),
                        epochs, seed=int(rng.integers(2**31)), log=log)


# ---------------------------------------------------------------- fkd calibrate

def add_arguments(parser):
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN_DIR", help="run folder(s) to calibrate")
    parser.add_argument("--data-dir", help="the competition folder the runs trained on (default: data/ or /kaggle/input)")
    parser.add_argument("--photos", type=int, default=PHOTOS, help=f"training faces placed on photos (default {PHOTOS})")
    parser.add_argument("--framer-epochs", type=int, default=EPOCHS,
                        help=f"epochs of the framer's training (default {EPOCHS}; 0: no framer)")
    parser.add_argument("--framer-variants", type=int, default=VARIANTS,
                        help=f"misframed crops of each training face (default {VARIANTS})")
    parser.add_argument("--seed", type=int, default=0)


def run(args):
    if not mtcnn_available():
        raise FkdError("fkd calibrate measures MTCNN: pip install --no-deps -r requirements-nodeps.txt")
    if args.photos < 1:
        raise FkdError(f"--photos must be at least 1, got {args.photos}")
    for run_dir in args.runs:
        check_run_readable(run_dir)
    if args.framer_epochs < 0 or args.framer_variants < 1:
        raise FkdError("--framer-epochs must be at least 0 and --framer-variants at least 1")
    with contextlib.ExitStack() as locks:  # it writes into each run: as their one writer, checked writable first
        for run_dir in args.runs:
            locks.enter_context(writer_lock(run_dir))
        _calibrate(args)
    return 0


def _calibrate(args) -> None:
    # a run's config.json names its (resolved) axis; 47.5 for a folder whose config does not
    axes = [read_run_config(run_dir).get("flip_axis", FLIP_AXIS) for run_dir in args.runs]
    images, keypoints = load_training(find_data_dir(args.data_dir))
    for run_dir in args.runs:  # never a calibration on another folder's faces over the run's own
        check_same_data(run_dir, images, keypoints)
    started = time.perf_counter()
    goal, faces = calibrate_landmarks(images, args.seed, args.photos)
    for run_dir in args.runs:
        write_landmark_goal(run_dir, goal, faces, args.photos)
    print(f"MTCNN found {faces} of {args.photos} training faces ({time.perf_counter() - started:.0f} s); "
          f"its landmarks in the crop: {np.round(goal, 2).tolist()} -> detector.json in {', '.join(args.runs)}")
    if args.framer_epochs:
        framers = {}
        for run_dir, axis in zip(args.runs, axes):  # runs whose labels mirror alike share one framer
            key = json.dumps(axis)
            if key not in framers:
                framers[key] = calibrate_framer(images, keypoints, axis, args.seed + 1, args.framer_variants,
                                                args.framer_epochs)
            framers[key].save(Path(run_dir) / FRAMER_FILE)
        print(f"framer trained ({time.perf_counter() - started:.0f} s in all) -> {FRAMER_FILE} in "
              f"{', '.join(args.runs)}")

