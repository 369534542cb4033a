"""Test-time views: every zoom and shift is mapped back onto the same keypoints."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from fkd.core.config import DEFAULTS
from fkd.model.nets import to_normalised
from fkd.train.predict import predict_images, transform, tta_views


class Centroid(nn.Module):
    """Stand-in model: every keypoint at the intensity-weighted centre of the image (an equivariant
    'model', so any wrong mapping back of a view shows up as an error)."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        weights = x[:, 0] / x[:, 0].sum((1, 2), keepdim=True)
        grid = torch.arange(96, dtype=x.dtype)
        cx = (weights.sum(1) * grid).sum(1)
        cy = (weights.sum(2) * grid).sum(1)
        return to_normalised(torch.stack([cx, cy], 1).repeat(1, 15))


def dot_images(points):
    yy, xx = np.mgrid[0:96, 0:96]
    return np.stack([np.clip(255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0), 0, 255).astype(np.uint8)
                     for x, y in points])


def test_transform_moves_a_dot_where_its_formula_says():
    image = torch.from_numpy(dot_images([(30.0, 60.0)])).float()[:, None]
    moved = transform(image, 1.1, 2.0, -3.0)
    y, x = np.unravel_index(moved[0, 0].argmax().item(), (96, 96))
    assert (x, y) == (round(47.5 + 1.1 * (30 - 47.5) + 2), round(47.5 + 1.1 * (60 - 47.5) - 3))


@pytest.mark.parametrize("views", [{}, {"tta_scales": [0.95, 1.0, 1.05]}, {"tta_shift": 1.0},
                                   {"tta_scales": [0.9, 1.1], "tta_shift": 2.0}])
def test_every_view_is_mapped_back(views):
    points = [(30.0, 60.0), (50.5, 40.0), (65.0, 35.5)]
    config = {**DEFAULTS, **views, "flip_axis": 47.5}
    pred = predict_images(Centroid(), dot_images(points), config, device="cpu", flip_tta=True)
    assert np.abs(pred - np.repeat(np.array(points), 15, axis=0).reshape(3, 30)).max() < 0.05


def test_views_are_scales_times_shifts():
    assert tta_views(DEFAULTS) == [(1.0, 0.0, 0.0)]
    views = tta_views({"tta_scales": [0.95, 1.05], "tta_shift": 1.0})
    assert len(views) == 10 and (1.05, 0.0, -1.0) in views


def test_re_prediction_takes_each_images_kind_and_the_runs_own_views(competition, tmp_path):
    """`fkd submit` re-predicts a run without stored test predictions exactly as cv predicted them:
    each test image with its kind's output (SubsetOffset) and the run's own flip and zoom settings."""
    from fkd.core.config import load_config
    from fkd.data.competition import load_lookup, load_test, load_training, lookup_kinds
    from fkd.train.cv import run_cv
    from fkd.train.predict import predict_runs
    from fkd.train.rundir import read_test_predictions

    config = load_config(None, model="lenet", subset_heads=True, epochs=2, batch_size=32, folds=2,
                         flip_tta=False, tta_scales=[0.9, 1.0], name="kinds")
    run_dir = run_cv(competition, config, tmp_path)
    ids, stored = read_test_predictions(run_dir)
    image_ids, test_images = load_test(competition)
    assert list(ids) == list(image_ids)
    _, truth = load_training(competition)
    kinds = lookup_kinds(load_lookup(competition), image_ids, truth)
    assert 0 < kinds.sum() < len(kinds)
    again = predict_runs([run_dir], test_images, subsets=kinds, device="cpu")
    np.testing.assert_allclose(again, stored, atol=1e-4)
    complete_output = predict_runs([run_dir], test_images, device="cpu")  # what `fkd face` asks for
    assert np.abs(complete_output[kinds == 0] - stored[kinds == 0]).max() > 1e-3
    np.testing.assert_allclose(complete_output[kinds == 1], stored[kinds == 1], atol=1e-4)
    flipped = predict_runs([run_dir], test_images, subsets=kinds, flip_tta=True, device="cpu")
    np.testing.assert_allclose(flipped, stored, atol=1e-4)  # True keeps the run's own setting (no flip)
    # the submit path itself, once the stored predictions are gone
    from fkd.submit.blend import run_predictions

    (run_dir / "test_pred.csv").unlink()
    _, blended, _ = run_predictions(competition, [run_dir])
    np.testing.assert_allclose(blended, stored, atol=1e-4)


def test_prediction_shows_a_progress_bar_over_its_batches(monkeypatch):
    import fkd.train.predict as predict_module

    bars = []

    def spy(iterable, **kwargs):
        bars.append(kwargs)
        return iterable

    monkeypatch.setattr(predict_module, "tqdm", spy)
    config = {**DEFAULTS, "eval_batch_size": 4, "tta_scales": [0.95, 1.0], "flip_axis": 47.5}
    predict_images(Centroid(), dot_images([(40, 50)] * 10), config, "cpu")
    assert len(bars) == 1 and bars[0]["desc"] == "predict 10 faces x 4 views" and bars[0]["disable"] is None
