"""`fkd calibrate --runs RUN... --data-dir DIR`: where MTCNN puts its 5 landmarks on the runs'
own training faces, so that `fkd face` frames a photo's face the way those faces were framed.

MTCNN's landmarks are not the labels: its eye centres, nose and mouth corners follow its own
definitions, and the training faces' crops follow theirs (on the proxy, MTCNN's mouth corners sit
about 3 px below the 300-W ones, which frames every photo's face 8% too small when MTCNN's points
are put where the labels are). So each of `photos` training faces is placed on a cluttered photo
as `make bench` places its faces (enlarged 1.5-3x, turned up to 25 degrees), found by the same
search `fkd face` runs, and MTCNN's landmarks are taken back into the face's 96x96 crop through
the placement; their median over the faces is the goal that `fkd face` then matches all five
landmarks to (runs/<name>/detector.json, carried into `fkd export`'s ONNX file).
"""
import time

import numpy as np

from fkd.core.errors import FkdError
from fkd.data.competition import find_data_dir, load_training
from fkd.data.synth import scene
from fkd.show.face import apply, face_landmarks, invert, mtcnn_available
from fkd.train.rundir import check_run_folders, write_landmark_goal

PHOTOS = 200
PLACED = dict(width=500, height=500, scales=(1.5, 3.0), max_roll=25.0)


def calibrate_landmarks(images, rng=None, photos: int = PHOTOS):
    """(goal [5,2]: the median of MTCNN's landmarks in crop pixels, over the faces it found; how many
    it found) for `photos` faces drawn from `images` [N,96,96], one per photo."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    found = []
    for row in rng.choice(len(images), min(photos, len(images)), replace=False):
        photo, (placed,) = scene(images[[row]], rng, **PLACED)
        in_crop = [apply(invert(placed), landmarks) for landmarks in face_landmarks(photo)]
        if in_crop:  # the face placed, not a face-like piece of clutter: the one nearest the crop's middle
            found.append(min(in_crop, key=lambda points: np.hypot(*(points.mean(0) - (47.5, 47.5)))))
    if not found:
        raise FkdError(f"MTCNN found none of the {photos} training faces placed on photos")
    return np.median(found, axis=0), len(found)


def add_arguments(parser):
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN_DIR", help="run folder(s) to calibrate")
    parser.add_argument("--data-dir", help="the competition folder the runs trained on (default: data/ or /kaggle/input)")
    parser.add_argument("--photos", type=int, default=PHOTOS, help=f"training faces placed on photos (default {PHOTOS})")
    parser.add_argument("--seed", type=int, default=0)


def run(args):
    if not mtcnn_available():
        raise FkdError("fkd calibrate measures MTCNN: pip install --no-deps -r requirements-nodeps.txt")
    if args.photos < 1:
        raise FkdError(f"--photos must be at least 1, got {args.photos}")
    check_run_folders(args.runs)
    images, _ = load_training(find_data_dir(args.data_dir))
    started = time.perf_counter()
    goal, faces = calibrate_landmarks(images, args.seed, args.photos)
    for run_dir in args.runs:
        write_landmark_goal(run_dir, goal, faces, args.photos)
    print(f"MTCNN found {faces} of {args.photos} training faces ({time.perf_counter() - started:.0f} s); "
          f"its landmarks in the crop: {np.round(goal, 2).tolist()} -> detector.json in {', '.join(args.runs)}")
    return 0
