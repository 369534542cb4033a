"""K-fold assignment: stratified by label subset, grouped so duplicate images never sit in two folds.

Computed once per (k, seed) and saved next to the data cache, so every run uses the same folds.
"""
import hashlib
import json

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from fkd.atomic import write_text
from fkd.data import cache_dir, load_training
from fkd.duplicates import duplicate_groups
from fkd.errors import FkdError
from fkd.keypoints import complete_rows

FOLD_METHOD = "stratified-subset/grouped-near-duplicates"  # a new method invalidates saved folds


def label_subset(keypoints) -> np.ndarray:
    """1 for complete rows (all 30 values), 0 for partial rows."""
    return complete_rows(keypoints).astype(np.int64)


def make_folds(images, keypoints, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index 0..k-1 of each row."""
    subset = label_subset(keypoints)
    groups = duplicate_groups(images)
    if len(np.unique(groups)) < k:
        raise FkdError(f"{len(np.unique(groups))} distinct images cannot fill {k} folds")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.empty(len(images), dtype=np.int64)
    for fold, (_, valid) in enumerate(splitter.split(images.reshape(len(images), -1)[:, :1], subset, groups)):
        folds[valid] = fold
    return folds


def load_folds(data_dir, k: int = 5, seed: int = 0) -> np.ndarray:
    """The saved folds for (k, seed), made on first use; remade if the training file changed."""
    images, keypoints = load_training(data_dir)
    path = cache_dir(data_dir) / f"folds-k{k}-seed{seed}.json"
    fingerprint = hashlib.blake2b(FOLD_METHOD.encode() + images.tobytes()
                                  + np.nan_to_num(keypoints, nan=-1).tobytes(), digest_size=8).hexdigest()
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved["fingerprint"] == fingerprint:
            return np.array(saved["folds"], dtype=np.int64)
    folds = make_folds(images, keypoints, k, seed)
    write_text(path, json.dumps({"k": k, "seed": seed, "fingerprint": fingerprint, "folds": folds.tolist()}))
    return folds
