import numpy as np

from fkd.data.competition import load_training
from fkd.data.duplicates import duplicate_groups
from fkd.data.folds import assign_folds, label_subset, load_folds, make_folds


def test_folds_keep_duplicates_together_and_mix_subsets(competition):
    images, keypoints = load_training(competition)
    groups = duplicate_groups(images)
    assert len(np.unique(groups)) < len(images), "the synthetic data should contain duplicate images"
    folds = make_folds(images, keypoints, k=5, seed=0)
    assert set(folds) == set(range(5))
    for group in np.unique(groups):
        assert len(set(folds[groups == group])) == 1
    subset = label_subset(keypoints)
    for fold in range(5):
        assert set(subset[folds == fold]) == {0, 1}
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 0.2 * len(images) / 5 + 2


def test_folds_are_deterministic_and_saved(competition):
    images, keypoints = load_training(competition)
    a = make_folds(images, keypoints, k=4, seed=1)
    assert np.array_equal(a, make_folds(images, keypoints, k=4, seed=1))
    assert not np.array_equal(a, make_folds(images, keypoints, k=4, seed=2))
    saved = load_folds(competition, k=4, seed=1)
    assert np.array_equal(saved, a)
    assert any(p.name == "folds-k4-seed1.json" for p in (competition / ".fkd-cache").iterdir())


def test_a_recropped_copy_joins_its_original_in_one_group(competition):
    images, _ = load_training(competition)
    copy = np.roll(images[5], 1, axis=1)  # the same photo, cropped one pixel apart
    copy[:, 0] = copy[:, 1]
    stacked = np.concatenate([images[:50], copy[None]])
    groups = duplicate_groups(stacked)
    assert groups[50] == groups[5]
    assert len(set(groups[:50])) == len({im.tobytes() for im in images[:50]})


# 8 complete rows (rows 0 and 1 the same image) and 16 partial rows (rows 8-10 the same image)
FIXED_SUBSETS = np.array([1] * 8 + [0] * 16)
FIXED_GROUPS = np.array([0, 0, 1, 2, 3, 4, 5, 6] + [7, 7, 7] + list(range(8, 21)))
# committed: any change of method (or a library under it) that moves a row fails here
FIXED_FOLDS_SEED0 = [1, 1, 0, 2, 0, 2, 1, 0, 0, 0, 0, 2, 1, 0, 1, 2, 1, 1, 2, 2, 0, 2, 2, 1]
FIXED_FOLDS_SEED1 = [1, 1, 2, 0, 0, 0, 1, 2, 0, 0, 0, 1, 2, 2, 1, 1, 2, 2, 0, 1, 2, 2, 1, 0]


def test_a_fixed_input_gives_the_committed_assignment():
    assert assign_folds(FIXED_SUBSETS, FIXED_GROUPS, 3, seed=0).tolist() == FIXED_FOLDS_SEED0
    assert assign_folds(FIXED_SUBSETS, FIXED_GROUPS, 3, seed=1).tolist() == FIXED_FOLDS_SEED1
    for folds in (np.array(FIXED_FOLDS_SEED0), np.array(FIXED_FOLDS_SEED1)):
        for group in np.unique(FIXED_GROUPS):
            assert len(set(folds[FIXED_GROUPS == group])) == 1
        for subset in (0, 1):
            counts = np.bincount(folds[FIXED_SUBSETS == subset], minlength=3)
            assert counts.max() - counts.min() <= 3 - subset  # the 3-row group is the only lump


def test_the_method_version_is_in_the_saved_fingerprint(competition, monkeypatch):
    import json

    from fkd.data import folds as folds_module
    from fkd.data.competition import cache_dir

    load_folds(competition, k=3, seed=5)
    path = cache_dir(competition) / "folds-k3-seed5.json"
    before = json.loads(path.read_text())
    assert before["method"] == folds_module.FOLD_METHOD
    monkeypatch.setattr(folds_module, "FOLD_METHOD", "another method")
    monkeypatch.setattr(folds_module, "make_folds", lambda *a, **k: np.zeros(len(before["folds"]), np.int64))
    assert (load_folds(competition, k=3, seed=5) == 0).all()  # remade, not read back
    assert json.loads(path.read_text())["fingerprint"] != before["fingerprint"]


def test_too_few_distinct_images_for_k_folds_is_one_clear_error():
    import pytest

    from fkd.core.errors import FkdError

    with pytest.raises(FkdError, match="2 distinct images cannot fill 3 folds"):
        assign_folds([1, 1, 0], [0, 0, 1], 3, seed=0)
