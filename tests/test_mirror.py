"""flip_axis: auto, the labels' mirror axis estimated per label subset from the training faces, on
synthetic folders whose axis is known."""
import json

import numpy as np
import pytest

from fkd.core.config import DEFAULTS, load_config
from fkd.core.errors import FkdError
from fkd.core.keypoints import complete_rows
from fkd.data.mirror import estimate_flip_axis
from fkd.data.synth import draw_faces, make_competition
from fkd.model.inputs import flip_axis
from fkd.train.labels import resolve_flip_axis


@pytest.fixture(scope="module")
def faces():
    return draw_faces(300, rng=3)   # labels on integer pixel centres: their axis is 47.5


@pytest.mark.parametrize("offset", [0.0, 1.0, -0.5])
def test_the_axis_of_faces_labelled_with_a_known_convention(faces, offset):
    images, keypoints = faces
    moved = keypoints.copy()
    moved[:, 0::2] += offset             # 1.0: 1-based labels (axis 48.5); -0.5: pixel corners (47.0)
    axes = estimate_flip_axis(images, moved)
    assert axes == pytest.approx([47.5 + offset] * 2, abs=0.1)


def test_two_subsets_labelled_with_different_conventions_get_one_axis_each():
    competition = make_competition(600, 10, 1)
    keypoints = competition.train_keypoints.copy()
    partial = ~complete_rows(keypoints)
    assert partial.sum() > 100 and (~partial).sum() > 100
    keypoints[partial, 0::2] += 1.0      # the partial rows 1-based, the complete rows on pixel centres
    partial_axis, complete_axis = estimate_flip_axis(competition.train_images, keypoints)
    assert partial_axis == pytest.approx(48.5, abs=0.15) and complete_axis == pytest.approx(47.5, abs=0.15)


def test_a_subset_too_small_takes_the_others_axis(faces):
    images, keypoints = faces
    keypoints = keypoints.copy()
    keypoints[:5, 20:] = np.nan          # five partial rows: too few to estimate from
    partial_axis, complete_axis = estimate_flip_axis(images, keypoints)
    assert partial_axis == complete_axis == pytest.approx(47.5, abs=0.1)


def test_auto_is_the_default_resolved_and_printed_once_and_refused_unresolved(faces):
    images, keypoints = faces
    assert DEFAULTS["flip_axis"] == "auto" and load_config(None)["flip_axis"] == "auto"
    lines = []
    config = resolve_flip_axis(load_config(None), images, keypoints + np.tile([1.0, 0.0], 15), log=lines.append)
    assert config["flip_axis"] == pytest.approx([48.5, 48.5], abs=0.1)
    assert len(lines) == 1 and "flip_axis auto: 48.5" in lines[0] and "300 training faces" in lines[0]
    assert resolve_flip_axis(load_config(None, flip_axis=47.0), images, keypoints)["flip_axis"] == 47.0
    with pytest.raises(FkdError, match="flip_axis auto .* never resolved"):
        flip_axis(load_config(None), None, 1, "cpu")


def test_cv_keeps_the_estimated_axis_in_the_run(tmp_path):
    from fkd.data.synth import write_competition
    from fkd.train.cv import run_cv
    from fkd.train.checkpoint import load as load_checkpoint

    data = write_competition(tmp_path / "data", n_train=160, n_test=4, seed=2)
    config = load_config(None, model="lenet", epochs=1, batch_size=32, folds=2, only_folds=[0], name="auto",
                         augment={"flip": 0.5})
    run_dir = run_cv(data, config, tmp_path / "runs")
    saved = json.loads((run_dir / "config.json").read_text())["flip_axis"]
    assert saved == pytest.approx([47.5, 47.5], abs=0.3)   # 160 faces: a rougher estimate
    assert load_checkpoint(run_dir / "fold0.pt")["config"]["flip_axis"] == saved
    run_cv(data, config, tmp_path / "runs")   # a rerun estimates the same axis: the same run, not another
