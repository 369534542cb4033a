"""A reference for fkd.model.augment's batch path: the same settings applied one face at a time with
albumentations 2.0.8 (which has no left/right label swap: the flip and its swap are done here).
The tests check that both paths move faces and keypoints alike; fkd itself trains on the batch path."""
import os

import numpy as np

from fkd.core.config import augment_settings as parse_config
from fkd.core.errors import FkdError
from fkd.core.keypoints import FLIP_AXIS, N_COLUMNS, N_POINTS, SIZE, flip_keypoints
from fkd.model.augment import BLUR_SIGMA, CENTRE, KEEP_RANGE, _has_affine, _is_geometric


class KeypointAugmenter:
    """`aug(image uint8 [96,96], keypoints [30]) -> (image uint8 [96,96], keypoints float32 [30])`.

    seed=None draws fresh entropy, and again in each forked DataLoader worker (otherwise workers
    would share one random stream). With a seed, call `set_seed(seed + worker_id)` in the
    worker_init_fn to keep workers apart and runs reproducible.
    """

    def __init__(self, config=None, seed=None, flip_axis: float = FLIP_AXIS):
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its import would ask PyPI for a newer version
        import albumentations as A
        import cv2

        self.settings = s = parse_config(config)
        self.flip_axis = flip_axis
        transforms = []
        if _has_affine(s):
            transforms.append(A.Affine(
                scale=(1 - s["scale"], 1 + s["scale"]), keep_ratio=True,
                translate_percent={"x": (-s["shift"], s["shift"]), "y": (-s["shift"], s["shift"])},
                rotate=(-s["rotate"], s["rotate"]),
                interpolation=cv2.INTER_LINEAR, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0,
            ))
        if s["brightness"] or s["contrast"]:
            transforms.append(A.RandomBrightnessContrast(
                brightness_limit=(-s["brightness"], s["brightness"]),
                contrast_limit=(-s["contrast"], s["contrast"]), brightness_by_max=True, p=1.0,
            ))
        if s["blur"]:
            transforms.append(A.GaussianBlur(blur_limit=0, sigma_limit=BLUR_SIGMA, p=s["blur"]))
        if s["noise"]:
            transforms.append(A.GaussNoise(std_range=(0.0, s["noise"]), mean_range=(0.0, 0.0), p=1.0))
        # remove_invisible=False: albumentations keeps all 15 points, in order, wherever they land
        self._moves_points = _has_affine(s)
        keypoint_params = A.KeypointParams(format="xy", remove_invisible=False) if self._moves_points else None
        self._compose = A.Compose(transforms, keypoint_params=keypoint_params, seed=seed) if transforms else None
        self.set_seed(seed)

    def set_seed(self, seed=None) -> None:
        self._seeded = seed is not None
        self._pid = os.getpid()
        self._rng = np.random.default_rng(seed)
        if self._compose is not None:
            self._compose.set_random_seed(seed)

    def __call__(self, image, keypoints):
        if not self._seeded and os.getpid() != self._pid:
            self.set_seed(None)  # forked worker: fresh entropy
        image = np.asarray(image)
        if image.shape != (SIZE, SIZE) or image.dtype != np.uint8:
            raise FkdError(f"augment expects a uint8 [{SIZE},{SIZE}] image, got {image.dtype} {image.shape}")
        keypoints = np.asarray(keypoints, dtype=np.float32)
        if keypoints.shape != (N_COLUMNS,):
            raise FkdError(f"augment expects keypoints [{N_COLUMNS}], got {keypoints.shape}")
        s = self.settings

        if s["flip"] and self._rng.random() < s["flip"]:
            image = image[:, ::-1]
            keypoints = flip_keypoints(keypoints, self.flip_axis)

        points = keypoints.reshape(N_POINTS, 2).copy()
        missing = np.isnan(points).any(axis=1)
        if self._moves_points:
            # albumentations can't take NaN: a placeholder goes through, NaN is put back below
            out = self._compose(image=np.ascontiguousarray(image), keypoints=np.where(missing[:, None], CENTRE, points))
            image = out["image"]
            points = np.asarray(out["keypoints"], dtype=np.float32)[:, :2].copy()
        elif self._compose is not None:
            image = self._compose(image=np.ascontiguousarray(image))["image"]
        points[missing] = np.nan
        if _is_geometric(s):
            with np.errstate(invalid="ignore"):
                outside = ((points < KEEP_RANGE[0]) | (points > KEEP_RANGE[1])).any(axis=1)
            points[outside] = np.nan
        return np.ascontiguousarray(image, dtype=np.uint8), points.reshape(N_COLUMNS)
