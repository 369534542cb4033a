"""The competition's 15 keypoints: names, column order, left/right flip pairs, label subsets.

"left" is the subject's left (image right). Coordinates are pixel indices: pixel centre = integer,
so a horizontal flip maps x to (SIZE - 1) - x: the mirror axis is x = 47.5. Labels made with
another convention (1-based, or pixel corners) have their axis elsewhere: configs set `flip_axis`.
"""
import numpy as np

SIZE = 96
CENTRE = (SIZE - 1) / 2  # 47.5: the middle of a face's 96-px frame (pixel centre = integer)

KEYPOINTS = [
    "left_eye_center", "right_eye_center",
    "left_eye_inner_corner", "left_eye_outer_corner",
    "right_eye_inner_corner", "right_eye_outer_corner",
    "left_eyebrow_inner_end", "left_eyebrow_outer_end",
    "right_eyebrow_inner_end", "right_eyebrow_outer_end",
    "nose_tip",
    "mouth_left_corner", "mouth_right_corner",
    "mouth_center_top_lip", "mouth_center_bottom_lip",
]
COLUMNS = [f"{name}_{axis}" for name in KEYPOINTS for axis in ("x", "y")]
N_POINTS = len(KEYPOINTS)
N_COLUMNS = len(COLUMNS)

# The 4 points every Kaggle training row carries; the test lookup asks these 8 values for most images.
CORE_KEYPOINTS = ["left_eye_center", "right_eye_center", "nose_tip", "mouth_center_bottom_lip"]
CORE_COLUMNS = [f"{name}_{axis}" for name in CORE_KEYPOINTS for axis in ("x", "y")]
CORE_COLUMN_INDEX = np.array([COLUMNS.index(c) for c in CORE_COLUMNS])


def _mirror_name(name: str) -> str:
    # the word sits anywhere in the name ("mouth_left_corner"), so swap whole words
    words = name.split("_")
    swapped = {"left": "right", "right": "left"}
    return "_".join(swapped.get(w, w) for w in words)


# FLIP_POINT_PERMUTATION[i] = index of the keypoint that point i becomes after a horizontal flip
FLIP_POINT_PERMUTATION = np.array([KEYPOINTS.index(_mirror_name(n)) for n in KEYPOINTS])
FLIP_COLUMN_PERMUTATION = np.array(
    [2 * p + axis for p in FLIP_POINT_PERMUTATION for axis in (0, 1)]
)


FLIP_AXIS = CENTRE  # labels whose pixel centres are integers mirror about the frame's middle


def side(name: str) -> str:
    """'left', 'right' or 'centre' (subject's side) of a keypoint name."""
    words = name.split("_")
    return "left" if "left" in words else "right" if "right" in words else "centre"


SIDES = np.array([side(n) for n in KEYPOINTS])  # each keypoint's side, for colouring it


def flip_keypoints(keypoints, axis: float = FLIP_AXIS):
    """Keypoints (..., 30) of an image flipped left-right: x -> 2 * axis - x, left and right swapped.

    Takes a numpy array (returns float32) or a torch tensor (returns a tensor of its dtype)."""
    if not hasattr(keypoints, "clone"):
        keypoints = np.asarray(keypoints, dtype=np.float32)
    flipped = keypoints[..., FLIP_COLUMN_PERMUTATION]  # advanced indexing: a copy
    flipped[..., 0::2] = 2 * axis - flipped[..., 0::2]
    return flipped


def as_points(keypoints: np.ndarray) -> np.ndarray:
    """(..., 30) columns -> (..., 15, 2) points."""
    return np.asarray(keypoints).reshape(*np.shape(keypoints)[:-1], N_POINTS, 2)


def complete_rows(keypoints: np.ndarray) -> np.ndarray:
    """Boolean mask of rows whose 30 values are all present."""
    return ~np.isnan(keypoints).any(axis=1)


def partial_columns(keypoints: np.ndarray) -> np.ndarray:
    """Boolean [30]: the columns the partial (incomplete) rows label, those present in at least half of
    them: Kaggle's 8 core values, the proxy's 10. All False when every row is complete."""
    partial = keypoints[~complete_rows(keypoints)]
    if len(partial) == 0:
        return np.zeros(N_COLUMNS, dtype=bool)
    return (~np.isnan(partial)).mean(axis=0) >= 0.5
