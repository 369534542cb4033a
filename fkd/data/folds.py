"""K-fold assignment: stratified by label subset, grouped so duplicate images never sit in two folds.

Written by hand, on purpose: scikit-learn's StratifiedGroupKFold gives other folds from one release
to the next (1.6.1 on Kaggle's image and 1.9.1 here move most rows), and runs trained on Kaggle and
here must share folds to be blended, pseudo-labelled or compared. The assignment is a function of the
data and the seed alone: groups are ordered by a BLAKE2b hash of (seed, group), never by a random
generator whose stream a library may change.

Computed once per (k, seed) and saved next to the data cache, so every run uses the same folds.
"""
import hashlib
import json

import numpy as np

from fkd.core.atomic import write_text
from fkd.core.errors import FkdError
from fkd.core.keypoints import complete_rows
from fkd.data.competition import cache_dir, load_training, training_fingerprint
from fkd.data.duplicates import duplicate_groups

# a new method invalidates saved folds: the version is part of every saved fold file's fingerprint
FOLD_METHOD = "fkd-folds-v2: hash-ordered greedy, stratified by subset, grouped by near-duplicates"


def label_subset(keypoints) -> np.ndarray:
    """1 for complete rows (all 30 values), 0 for partial rows."""
    return complete_rows(keypoints).astype(np.int64)


def _group_order_key(seed: int, first_row: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{first_row}".encode(), digest_size=8).digest()


def assign_folds(subsets, groups, k: int, seed: int) -> np.ndarray:
    """Fold 0..k-1 of each row, every group in one fold, each subset spread evenly over the folds.

    A group belongs to the subset most of its rows have (ties: complete). Within each subset the groups
    go largest first (ties in the seed's hash order) to the fold holding the fewest rows of that subset
    so far, then the fewest rows in all, then the lowest index."""
    subsets, groups = np.asarray(subsets, dtype=np.int64), np.asarray(groups, dtype=np.int64)
    ids, first_row, inverse = np.unique(groups, return_index=True, return_inverse=True)
    if len(ids) < k:
        raise FkdError(f"{len(ids)} distinct images cannot fill {k} folds")
    size = np.bincount(inverse)
    group_subset = (2 * np.bincount(inverse, weights=subsets) >= size).astype(np.int64)
    per_subset = np.zeros((2, k), dtype=np.int64)
    total = np.zeros(k, dtype=np.int64)
    group_fold = np.empty(len(ids), dtype=np.int64)
    order = sorted(range(len(ids)), key=lambda g: (-size[g], _group_order_key(seed, int(first_row[g]))))
    for g in order:
        s = group_subset[g]
        fold = min(range(k), key=lambda f: (per_subset[s, f], total[f], f))
        group_fold[g] = fold
        per_subset[s, fold] += size[g]
        total[fold] += size[g]
    return group_fold[inverse]


def make_folds(images, keypoints, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index 0..k-1 of each row."""
    return assign_folds(label_subset(keypoints), duplicate_groups(images), k, seed)


def load_folds(data_dir, k: int = 5, seed: int = 0) -> np.ndarray:
    """The saved folds for (k, seed), made on first use; remade if the training file or the method changed."""
    images, keypoints = load_training(data_dir)
    path = cache_dir(data_dir) / f"folds-k{k}-seed{seed}.json"
    fingerprint = hashlib.blake2b(f"{FOLD_METHOD} {training_fingerprint(images, keypoints)}".encode(),
                                  digest_size=8).hexdigest()
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved["fingerprint"] == fingerprint:
            return np.array(saved["folds"], dtype=np.int64)
    folds = make_folds(images, keypoints, k, seed)
    write_text(path, json.dumps({"k": k, "seed": seed, "method": FOLD_METHOD, "fingerprint": fingerprint,
                                 "folds": folds.tolist()}))
    return folds
