"""Stacking: per coordinate it uses each member where it is good, per kind of face it corrects a value by
the others, its OOF is fitted inside folds of its own and tells what it does to kept-out faces, and `fkd submit --stack` writes a checked submission."""
import json
import re

import numpy as np
import pytest

from fkd.core.errors import FkdError
from fkd.core.metrics import rmse
from fkd.submit import ensemble, stack


def members_good_at_different_coordinates(n=600, seed=0):
    """truth [n,30] (some values missing), member A sharp on x and noisy on y, member B the reverse."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(20, 76, (n, 30))
    truth[rng.random((n, 30)) < 0.2] = np.nan
    sharp, noisy = rng.normal(0, 0.5, (n, 30)), rng.normal(0, 3.0, (n, 30))
    is_x = np.arange(30) % 2 == 0
    a = truth + np.where(is_x, sharp, noisy)
    b = truth + np.where(is_x, noisy, sharp) + 1.0   # and biased: the intercept takes it
    folds = np.arange(n) % 5
    return np.nan_to_num(a, nan=48.0), np.nan_to_num(b, nan=48.0), truth, folds


def test_the_stack_takes_each_member_where_it_is_good():
    a, b, truth, folds = members_good_at_different_coordinates()
    blend = rmse(ensemble.blend([a, b], ensemble.fit_weights([a, b], truth)), truth)
    stacked = rmse(stack.stacked_oof([a, b], truth, folds), truth)
    assert stacked < 0.5 * blend
    coefficients = stack.fit_stack([a, b], truth).coefficients
    assert (coefficients[0::2, 0] > 0.9).all() and (coefficients[1::2, 1] > 0.9).all()
    np.testing.assert_allclose(coefficients[1::2, 2], -1.0, atol=0.3)   # B's bias, where B is used
    assert (coefficients[:, :2] >= 0).all()


def a_member_whose_error_another_value_tells(n=800, seed=1):
    """truth [n,30] (a quarter of the rows partial: only columns 0-9 labelled) and one member whose
    error in column 0 is 0.5 x (its column 2 - 48) on the complete rows and -0.5 x that on the partial
    ones: only a stack that looks at column 2, separately per kind, can remove it."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(30, 66, (n, 30))
    partial = np.arange(n) % 4 == 0
    truth[np.ix_(partial, np.arange(10, 30))] = np.nan
    member = np.nan_to_num(truth, nan=48.0) + rng.normal(0, 0.2, (n, 30))
    member[:, 0] += np.where(partial, -0.5, 0.5) * (member[:, 2] - 48.0)
    return member, truth, partial, np.arange(n) % 5


def test_the_second_stage_corrects_a_value_by_the_others_per_kind_of_face():
    member, truth, partial, folds = a_member_whose_error_another_value_tells()
    error = lambda p, rows: np.sqrt(np.nanmean((p[rows, 0] - truth[rows, 0]) ** 2))
    stacked = stack.stacked_oof([member], truth, folds)
    for rows in (partial, ~partial):
        assert error(member, rows) > 3.0
        assert error(stacked, rows) < 0.4   # the member's own noise is 0.2
    first_stage = stack.stacked_oof([member], truth, folds, second_stage=False)
    assert error(first_stage, partial) > 1.0 and error(first_stage, ~partial) > 1.0   # stage 1 alone: cannot
    pooled = stack.fit_stack([member], truth, kinds=np.zeros(len(truth), int))   # one kind: cannot
    assert error(stack.apply_stack(pooled, [member], np.zeros(len(truth), int)), partial) > 1.0
    fitted = stack.fit_stack([member], truth)
    assert set(fitted.corrections) == {0, 1}
    assert fitted.corrections[0][20] is None    # the partial rows label no column 20: stage 1 alone
    swapped = stack.apply_stack(fitted, [member], partial.astype(int))   # each row as the other kind (1: complete)
    assert error(swapped, partial) > 1.0


def test_the_stacks_oof_never_sees_the_fold_it_predicts():
    a, b, truth, folds = members_good_at_different_coordinates()
    first = stack.stacked_oof([a, b], truth, folds)
    changed = truth.copy()
    changed[folds == 0] += 25.0   # fold 0's labels: nothing fold 0's stacked OOF may depend on
    second = stack.stacked_oof([a, b], changed, folds)
    np.testing.assert_array_equal(first[folds == 0], second[folds == 0])
    assert np.abs(first[folds == 1] - second[folds == 1]).max() > 1e-3


def fold_models_with_quirks(n=900, held=300, k=3, seed=2):
    """Training truth [n,30] with each row's OOF prediction from the fold model that did not train on
    it, and `held` kept-out faces with every fold model's prediction of them. Fold model f is
    48 + scale_f x (truth - 48) + offset_f + noise: each model has its own quirk, which a stack fitted
    on that model's OOF predictions learns."""
    rng = np.random.default_rng(seed)
    truth, held_truth = rng.uniform(30, 66, (n, 30)), rng.uniform(30, 66, (held, 30))
    folds = np.arange(n) % k
    scales, offsets = rng.uniform(0.8, 1.2, (k, 30)), rng.normal(0, 1.0, (k, 30))
    model = lambda f, t: 48 + scales[f] * (t - 48) + offsets[f] + rng.normal(0, 1.0, t.shape)
    oof = np.empty_like(truth)
    for f in range(k):
        oof[folds == f] = model(f, truth[folds == f])
    held_predictions = np.stack([model(f, held_truth) for f in range(k)])
    return oof, truth, folds, held_predictions, held_truth


def test_the_stacks_oof_tells_what_it_does_to_faces_it_never_saw():
    oof, truth, folds, held_predictions, held_truth = fold_models_with_quirks()
    fitted, kinds = stack.fit_stack([oof], truth), np.ones(len(held_truth), int)
    # the stack's gain on kept-out faces, model by model (the OOF figure has one model's prediction a row)
    held_ratio = np.mean([rmse(stack.apply_stack(fitted, [p], kinds), held_truth) / rmse(p, held_truth)
                          for p in held_predictions])
    blend = rmse(oof, truth)
    images = np.random.default_rng(0).integers(0, 256, (len(truth), 96, 96), dtype=np.uint8)
    own_folds = stack.stacking_folds(images, truth)
    assert {(f, g) for f, g in zip(folds, own_folds)} == {(f, g) for f in range(3) for g in range(5)}
    reported = rmse(stack.stacked_oof([oof], truth, own_folds), truth) / blend
    along_the_runs_folds = rmse(stack.stacked_oof([oof], truth, folds), truth) / blend
    assert held_ratio < 0.95
    assert abs(reported - held_ratio) < 0.05
    assert along_the_runs_folds > held_ratio + 0.15   # a stack that never saw the fold's model


def test_too_few_labelled_rows_is_one_clear_error():
    a, b, truth, _ = members_good_at_different_coordinates(n=40)
    truth[:, 7] = np.nan
    with pytest.raises(FkdError, match="column 7"):
        stack.fit_stack([a, b], truth)


def test_submit_with_stack_writes_a_checked_submission(competition, tmp_path, capsys):
    from fkd.cli import main
    from fkd.core.config import load_config
    from fkd.train.cv import run_cv

    runs = [run_cv(competition, load_config(None, model=model, epochs=1, batch_size=32, folds=2, name=model), tmp_path)
            for model in ("lenet", "seedcnn")]
    out = tmp_path / "submissions"
    assert main(["submit", "--data-dir", str(competition), "--runs", *map(str, runs), "--stack",
                 "--name", "stacked", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"stack: OOF RMSE \d+\.\d{4} \(fitted inside its own 5 folds; stage 1 alone \d+\.\d{4}; "
                     r"the blend.s \d+\.\d{4}\)", printed), printed
    (written,) = out.glob("*-stacked.csv")
    meta = json.loads(written.with_name(written.name + ".json").read_text())
    assert meta["stage_1_oof_rmse"] > 0
    assert np.shape(meta["stack"]) == (30, 3)
    assert set(meta["stack_ridge_alphas"]) <= {"0", "1"} and meta["stack_ridge_alphas"]
    assert main(["check-submission", str(written), "--lookup", str(competition / "IdLookupTable.csv")]) == 0
