"""K-fold assignment: stratified by label subset, grouped so duplicate images never sit in two folds.

Written by hand, on purpose: scikit-learn's StratifiedGroupKFold gives other folds from one release
to the next (1.6.1 on Kaggle's image and 1.9.1 here move most rows), and runs trained on Kaggle and
here must share folds to be blended, pseudo-labelled or compared. The assignment is a function of the
data and the seed alone: groups are ordered by a BLAKE2b hash of (seed, group), never by a random
generator whose stream a library may change.

Computed once per (k, seed) and saved next to the data cache, so every run uses the same folds. A saved
file is used only while its fingerprint names the training data and the method, and its folds are k
whole numbers 0..k-1, one per row, every fold used; any other file (damaged, cut short, or written by
hand) is set aside with a one-line note and the folds are assigned again, as the parse cache does.
"""
import hashlib
import json
import operator
import sys

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


def check_fold_count(k) -> int:
    """k as an int, once it is a whole number of at least 2 folds; else an FkdError."""
    try:
        k = operator.index(k)
    except TypeError:
        raise FkdError(f"folds must be a whole number of at least 2 (got {k!r})") from None
    if k < 2:
        raise FkdError(f"folds must be at least 2 (got {k}): one fold leaves no rows to train on")
    return k


def assign_folds(subsets, groups, k: int, seed: int) -> np.ndarray:
    """Fold 0..k-1 of each row, every group in one fold, each subset spread evenly over the folds.

    A group belongs to the subset most of its rows have (ties: complete). Within each subset the groups
    go largest first (ties in the seed's hash order) to the fold holding the fewest rows of that subset
    so far, then the fewest rows in all, then the lowest index."""
    k = check_fold_count(k)
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


def _fingerprint(images, keypoints) -> str:
    return hashlib.blake2b(f"{FOLD_METHOD} {training_fingerprint(images, keypoints)}".encode(),
                           digest_size=8).hexdigest()


def _read_saved(path, fingerprint: str, k: int, seed: int, rows: int):
    """The saved folds, or why they cannot be used: no file, other data or method, or a file that is
    damaged or does not hold k folds of these rows (a saved file may come from anyone: it is checked)."""
    if not path.is_file():
        return None, None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:  # ValueError: bad JSON or bad UTF-8
        return None, f"the file is damaged ({type(error).__name__})"
    if not isinstance(saved, dict):
        return None, "the file holds no folds record"
    if saved.get("fingerprint") != fingerprint:
        return None, "they were made for other training data or by another method"
    if type(saved.get("k")) is not int or saved["k"] != k or saved.get("seed") != seed:
        return None, f"the file does not say {k} folds with seed {seed}"
    values = saved.get("folds")
    if not isinstance(values, list) or len(values) != rows:
        return None, f"the file does not hold one fold per training row ({rows})"
    if not all(type(v) is int and 0 <= v < k for v in values):
        return None, f"the file holds a fold that is not one of 0..{k - 1}"
    folds = np.array(values, dtype=np.int64)
    if len(np.unique(folds)) != k:  # assign_folds fills every fold
        return None, f"the file leaves a fold of 0..{k - 1} empty"
    return folds, None


def load_folds(data_dir, k: int = 5, seed: int = 0) -> np.ndarray:
    """The saved folds for (k, seed), made on first use; remade if the training file or the method changed,
    or the saved file is damaged or holds anything but k folds of these rows (with a one-line note)."""
    k = check_fold_count(k)
    images, keypoints = load_training(data_dir)
    path = cache_dir(data_dir) / f"folds-k{k}-seed{seed}.json"
    fingerprint = _fingerprint(images, keypoints)
    folds, problem = _read_saved(path, fingerprint, k, seed, len(images))
    if folds is not None:
        return folds
    if problem:
        sys.stderr.write(f"fkd: {path.parent}: saved folds {path.name} not used: {problem}; assigning them again\n")
    folds = make_folds(images, keypoints, k, seed)
    write_text(path, json.dumps({"k": k, "seed": seed, "method": FOLD_METHOD, "fingerprint": fingerprint,
                                 "folds": folds.tolist()}))
    return folds
