"""Pseudo-labels: the keypoints a training row lacks, filled with a teacher run's predictions.

Fold k's student learns from the teacher's fold-k model, which never saw fold k's validation rows,
so the student's validation score stays out-of-fold. The teacher must share the student's folds.
"""
from pathlib import Path

import numpy as np

from fkd.core.errors import FkdError
from fkd.core.keypoints import complete_rows
from fkd.data.competition import training_fingerprint
from fkd.train.predict import load_run_fold, predict_images


def fill_missing(labels: np.ndarray, images: np.ndarray, truth: np.ndarray, rows: np.ndarray, fold: int,
                 config: dict, device="cpu") -> np.ndarray:
    """A copy of labels [N,30] whose missing values in `rows` are the prediction of the teacher
    run config["pseudo_labels"] for fold `fold` (each row predicted with its own subset's output)."""
    path = Path(config["pseudo_labels"]) / f"fold{fold}.pt"
    if not path.is_file():
        raise FkdError(f"the teacher run has no checkpoint for fold {fold}", path=path)
    model, teacher = load_run_fold(config["pseudo_labels"], fold, device, fingerprint=training_fingerprint(images, truth))
    if (teacher["folds"], teacher["fold_seed"]) != (config["folds"], config["fold_seed"]):
        raise FkdError(f"the teacher was trained on other folds ({teacher['folds']} folds, fold_seed "
                       f"{teacher['fold_seed']}; this run: {config['folds']}, {config['fold_seed']}): "
                       "its predictions would leak validation rows", path=path)
    rows = np.asarray(rows)[np.isnan(labels[rows]).any(axis=1)]
    filled = labels.copy()
    if len(rows):
        predicted = predict_images(model, images[rows], teacher, device, flip_tta=teacher["flip_tta"],
                                   subsets=complete_rows(truth[rows]).astype(np.int64))
        block = filled[rows]
        missing = np.isnan(block)
        block[missing] = predicted[missing]
        filled[rows] = block
    return filled
