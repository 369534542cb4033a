import json

import numpy as np
import pytest

from fkd.core.errors import FkdError
from fkd.data.competition import cache_dir, load_training
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


# ---------------------------------------------------------------- the saved folds file is checked before use

FORGED_K, FORGED_SEED = 3, 11  # a (k, seed) no other test saves


def _saved_path(competition):
    return cache_dir(competition) / f"folds-k{FORGED_K}-seed{FORGED_SEED}.json"


def _forge(competition, change):
    """The saved file, made genuine first, then rewritten by `change` (a dict -> dict, or the bytes to write)."""
    truth = load_folds(competition, FORGED_K, FORGED_SEED)
    path = _saved_path(competition)
    if isinstance(change, bytes):
        path.write_bytes(change)
    else:
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return truth, path


def _with(**fields):
    return lambda saved: {**saved, **fields}


FORGERIES = {
    "damaged JSON": b'{"k": 3, "seed": 11, "folds": [0, 1,',
    "not UTF-8": b"\xff\xfe\x00 not text",
    "not a record": lambda saved: [saved],
    "a row short": lambda saved: {**saved, "folds": saved["folds"][:-1]},
    "a row too many": lambda saved: {**saved, "folds": saved["folds"] + [0]},
    "a fold past k": lambda saved: {**saved, "folds": [FORGED_K] + saved["folds"][1:]},
    "a negative fold": lambda saved: {**saved, "folds": [-1] + saved["folds"][1:]},
    "a fold that is no whole number": lambda saved: {**saved, "folds": [0.5] + saved["folds"][1:]},
    "a fold that is text": lambda saved: {**saved, "folds": ["1"] + saved["folds"][1:]},
    "a fold that is true": lambda saved: {**saved, "folds": [True] + saved["folds"][1:]},
    "folds that are no list": _with(folds={"0": 1}),
    "an empty fold": lambda saved: {**saved, "folds": [0] * len(saved["folds"])},
    "says 4 folds": _with(k=4),
    "says no k": lambda saved: {key: v for key, v in saved.items() if key != "k"},
    "says another seed": _with(seed=FORGED_SEED + 1),
}


@pytest.mark.parametrize("forgery", FORGERIES, ids=list(FORGERIES))
def test_a_damaged_or_forged_folds_file_is_assigned_again_with_a_one_line_note(competition, capsys, forgery):
    truth, path = _forge(competition, FORGERIES[forgery])
    capsys.readouterr()
    folds = load_folds(competition, FORGED_K, FORGED_SEED)  # no traceback, and not the forged folds
    assert np.array_equal(folds, truth)
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and path.name in err and "not used" in err, err
    saved = json.loads(path.read_text())  # written again, genuine: the next call reads it back in silence
    assert saved["folds"] == truth.tolist() and saved["k"] == FORGED_K
    assert np.array_equal(load_folds(competition, FORGED_K, FORGED_SEED), truth)
    assert capsys.readouterr().err == ""


def test_a_genuine_folds_file_is_read_back_not_assigned_again(competition, monkeypatch, capsys):
    from fkd.data import folds as folds_module

    truth = load_folds(competition, FORGED_K, FORGED_SEED)
    monkeypatch.setattr(folds_module, "make_folds", lambda *a, **k: pytest.fail("assigned again"))
    assert np.array_equal(load_folds(competition, FORGED_K, FORGED_SEED), truth)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("k", [0, 1, -2])
def test_fewer_than_two_folds_is_one_clear_error(competition, k):
    with pytest.raises(FkdError, match="folds must be at least 2") as raised:
        assign_folds([1, 1, 0], [0, 1, 2], k, seed=0)
    assert "\n" not in str(raised.value)
    with pytest.raises(FkdError, match="folds must be at least 2"):
        load_folds(competition, k, 0)
    assert not (cache_dir(competition) / f"folds-k{k}-seed0.json").exists()


def test_more_folds_than_rows_is_one_clear_error():
    with pytest.raises(FkdError, match="0 distinct images cannot fill 2 folds"):
        assign_folds([], [], 2, seed=0)
    with pytest.raises(FkdError, match="3 distinct images cannot fill 4 folds") as raised:
        assign_folds([1, 0, 1], [0, 1, 2], 4, seed=0)
    assert "\n" not in str(raised.value)
