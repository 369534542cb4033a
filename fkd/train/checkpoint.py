"""Checkpoints are data, not programs: every .pt file fkd writes (fold<k>.pt, resume-fold<k>.pt,
framer.pt) holds tensors, numbers, strings, lists and dicts only, and every load is a `weights_only`
load, so a file that needs anything else is refused, naming what it holds, before any of it runs.

Format 2 (since 2026-12) stores arrays as tensors. Earlier checkpoints held numpy arrays: they still
load, through an allow-list of numpy's array and scalar reconstruction by name (no object arrays).

A fold checkpoint carries the identity of its run: the digest of the trained settings, the data's
fingerprint, the folds (K, seed, the digest of the fold of every row) and its fold index, and every
reader checks it against the run folder and the data it is used with.
"""
import hashlib
import json
import pickle
import re

import numpy as np
import torch
from numpy._core import multiarray

from fkd.core.atomic import atomic_path
from fkd.core.config import RUN_INDEPENDENT_KEYS
from fkd.core.errors import FkdError

FORMAT = 2
ARRAY_KEYS = ("valid_index", "val_pred", "test_pred", "last_val_pred")  # numpy arrays in memory, tensors on disk
LEGACY_NUMPY = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
                *(type(np.dtype(code)) for code in "?bhilqBHILQefd")]
RETRAIN = "rerun `fkd cv` to train this fold again"


class RefusedCheckpoint(FkdError):
    """A file that would run code on load: refused, never moved aside and replaced."""


def as_data(value):
    """A copy of `value` that a weights_only load reads back: numpy arrays as tensors, numpy scalars as numbers."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: as_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(as_data(item) for item in value)
    return value


def save(checkpoint: dict, path) -> None:
    with atomic_path(path) as tmp:
        torch.save({**as_data(checkpoint), "format": FORMAT}, tmp)


def _refused_globals(path, error) -> list:
    """The globals a weights_only load refused (names only: nothing of them is run); [] when the
    failure was damage, not a refusal."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a zip checkpoint: the error message is all there is
        names = []
    allowed = {f"{g.__module__}.{g.__name__}" for g in LEGACY_NUMPY}
    return [n for n in names or re.findall(r"GLOBAL ([\w.]+)", str(error)) if n not in allowed]


def load_data(path, device="cpu", remedy=RETRAIN):
    """The value in a .pt file, loaded as data (weights_only); FkdError naming the file when it is
    missing, damaged, or holds anything that would run code on load."""
    try:
        with torch.serialization.safe_globals(LEGACY_NUMPY):
            return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise FkdError("no such checkpoint", path=path) from None
    except pickle.UnpicklingError as error:
        refused = _refused_globals(path, error)
        if refused:
            raise RefusedCheckpoint(f"refused: it holds {', '.join(refused[:3])}, which loading would run; fkd "
                                    "loads checkpoints as data only. Delete it, or get the run from someone you "
                                    "trust", path=path) from None
        raise FkdError(f"damaged checkpoint (UnpicklingError); {remedy}", path=path) from None
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError, EOFError, ... for a damaged file
        first_line = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
        raise FkdError(f"damaged checkpoint ({type(error).__name__}{': ' + first_line if first_line else ''}); "
                       f"{remedy}", path=path) from None


def load(path, device="cpu", remedy=RETRAIN) -> dict:
    """A fold checkpoint (or the framer's): load_data, which must be a dict with a state_dict;
    ARRAY_KEYS come back as numpy arrays."""
    checkpoint = load_data(path, device, remedy)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise FkdError(f"not a checkpoint of fkd (no state_dict); {remedy}", path=path)
    return {key: value.cpu().numpy() if key in ARRAY_KEYS and torch.is_tensor(value) else value
            for key, value in checkpoint.items()}


def trained_settings(config: dict) -> dict:
    """The settings that decide what a fold learns (not its name, description, device, ...)."""
    return {k: v for k, v in config.items() if k not in RUN_INDEPENDENT_KEYS and k != "name"}


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def settings_digest(config: dict) -> str:
    return _digest(json.dumps(trained_settings(config), sort_keys=True, default=str).encode())


def identity(config: dict, fingerprint: str, folds, fold: int) -> dict:
    """What a fold checkpoint belongs to: config, data, folds and its own index."""
    return {"settings": settings_digest(config), "data": fingerprint, "folds": int(config["folds"]),
            "fold_seed": int(config["fold_seed"]), "assignment": _digest(np.asarray(folds, np.int64).tobytes()),
            "fold": int(fold)}


def check_identity(path, checkpoint: dict, fold: int, config=None, fingerprint=None, folds=None) -> None:
    """FkdError unless the checkpoint is fold `fold` of a run of `config` on the data of `fingerprint`
    with these `folds` (None: not checked). A checkpoint of format 1 has no identity: its config and
    fold index are checked."""
    found = checkpoint.get("identity")
    if found is None:
        found = {"fold": checkpoint.get("fold")}
        if "config" in checkpoint:
            found["settings"] = settings_digest(checkpoint["config"])
    expected = {"fold": fold}
    if config is not None:
        expected.update(settings=settings_digest(config), folds=int(config["folds"]),
                        fold_seed=int(config["fold_seed"]))
    if fingerprint is not None:
        expected["data"] = fingerprint
    if folds is not None:
        expected["assignment"] = _digest(np.asarray(folds, np.int64).tobytes())
    meaning = {"fold": "its fold index", "settings": "the trained settings", "data": "the training data",
               "folds": "the number of folds", "fold_seed": "the fold seed", "assignment": "the rows in each fold"}
    differ = [meaning[key] for key, value in expected.items() if key in found and found[key] != value]
    if differ:
        raise FkdError(f"belongs to another run (it differs in {', '.join(differ)}): move it back to its own "
                       "run folder, or delete it and rerun `fkd cv`", path=path)
