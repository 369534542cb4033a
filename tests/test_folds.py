import numpy as np

from fkd.data import load_training
from fkd.duplicates import duplicate_groups
from fkd.folds import label_subset, load_folds, make_folds


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
