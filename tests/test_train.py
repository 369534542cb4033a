import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from fkd.core.config import DEFAULTS, load_config
from fkd.core.errors import FkdError
from fkd.core.keypoints import complete_rows, flip_keypoints
from fkd.core.metrics import rmse
from fkd.data.competition import load_training
from fkd.data.synth import draw_faces
from fkd.model.inputs import cpu_has_bf16, make_model
from fkd.train.cv import run_cv
from fkd.train.labels import training_labels
from fkd.train.loop import (
    make_ema,
    make_optimizer,
    make_schedule,
    masked_loss,
    train_epoch,
)
from fkd.train.predict import predict_images
from fkd.train.checkpoint import load as load_checkpoint
from fkd.train.rundir import read_json, read_oof, read_test_predictions, report_is_current

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_missing_keypoints_carry_no_gradient():
    pred = torch.zeros(2, 30, requires_grad=True)
    target = torch.full((2, 30), 0.5)
    target[0, :10] = float("nan")
    for kind in ("mse", "l1", "smooth_l1", "wing"):
        pred.grad = None
        masked_loss(pred, target, kind).backward()
        assert (pred.grad[0, :10] == 0).all(), kind
        assert (pred.grad[0, 10:] != 0).all() and (pred.grad[1] != 0).all(), kind
    assert masked_loss(pred, torch.full((2, 30), float("nan")), "mse").item() == 0.0


def test_forward_fill_only_in_the_seed_recipe():
    keypoints = np.array([[1.0, 2.0], [np.nan, 3.0], [4.0, np.nan]], dtype=np.float32)
    masked = training_labels(keypoints, dict(DEFAULTS))
    assert np.isnan(masked).sum() == 2
    filled = training_labels(keypoints, {**DEFAULTS, "labels": "ffill"})
    assert filled.tolist() == [[1.0, 2.0], [1.0, 3.0], [4.0, 3.0]]


def test_drop_label_outliers_unlabels_the_rows_farthest_from_the_mean_shape():
    _, keypoints = draw_faces(40, rng=1)
    keypoints[7, 0] += 20.0                                    # left eye centre 20 px off
    keypoints[23, 13] -= 15.0                                  # an eyebrow 15 px too high
    labels = training_labels(keypoints, {**DEFAULTS, "drop_label_outliers": 0.05})
    dropped = np.flatnonzero(np.isnan(labels).all(axis=1))
    assert dropped.tolist() == [7, 23]
    kept = np.setdiff1d(np.arange(40), dropped)
    np.testing.assert_array_equal(labels[kept], keypoints[kept])
    assert not np.isnan(keypoints[[7, 23]]).any()              # the caller's labels are untouched
    keypoints[3, 20:22] = np.nan                               # forward fill, then drop: still no labels
    filled = training_labels(keypoints, {**DEFAULTS, "labels": "ffill", "drop_label_outliers": 0.05})
    assert np.isnan(filled[[7, 23]]).all() and not np.isnan(np.delete(filled, [7, 23], axis=0)).any()
    with pytest.raises(FkdError, match="drop_label_outliers 0.5"):
        training_labels(keypoints, {**DEFAULTS, "drop_label_outliers": 0.5})


def test_config_merges_over_defaults_and_rejects_typos(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("model: lenet\nepochs: 3\naugment: {flip: 0.5}\n")
    config = load_config(path, folds=4)
    assert config["name"] == "x" and config["model"] == "lenet" and config["epochs"] == 3
    assert config["folds"] == 4 and config["augment"] == {"flip": 0.5} and config["lr"] == DEFAULTS["lr"]
    path.write_text("model: lenet\nepoch: 3\n")
    with pytest.raises(FkdError, match=r"x.yaml: unknown key 'epoch'"):
        load_config(path)
    path.write_text("model: [lenet\n")
    with pytest.raises(FkdError, match=r"x.yaml: not valid YAML"):
        load_config(path)


def test_flip_tta_maps_predictions_back():
    class Mirror(torch.nn.Module):
        """Predicts where the image's single bright pixel is, as the left eye centre."""
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            flat = x.flatten(1).argmax(1)
            out = torch.zeros(len(x), 30)
            out[:, 0], out[:, 1] = (flat % 96).float(), (flat // 96).float()
            out[:, 2], out[:, 3] = out[:, 0], out[:, 1]
            return (out - 48) / 48

    images = np.zeros((1, 96, 96), np.uint8)
    images[0, 40, 70] = 255
    integer_centres = {**DEFAULTS, "flip_axis": 47.5}
    plain = predict_images(Mirror(), images, integer_centres, "cpu", flip_tta=False)
    tta = predict_images(Mirror(), images, integer_centres, "cpu", flip_tta=True)
    assert plain[0, :4].tolist() == [70, 40, 70, 40]
    np.testing.assert_allclose(tta[0, :4], plain[0, :4])
    twice = flip_keypoints(flip_keypoints(torch.arange(30.0)[None]))
    assert torch.equal(twice, torch.arange(30.0)[None])
    # labels whose mirror axis sits at 48.5 (1-based): TTA maps the mirrored prediction with that axis
    shifted = predict_images(Mirror(), images, {**DEFAULTS, "flip_axis": 48.5}, "cpu", flip_tta=True)
    assert shifted[0, 0] == pytest.approx(71) and shifted[0, 1] == pytest.approx(40)  # (70 + 97 - 25) / 2
    # one axis per label subset: the image's subset picks it
    per_subset = {**DEFAULTS, "flip_axis": [48.5, 47.5]}
    assert predict_images(Mirror(), images, per_subset, "cpu", subsets=np.array([0]))[0, 0] == pytest.approx(71)
    assert predict_images(Mirror(), images, per_subset, "cpu", subsets=np.array([1]))[0, 0] == pytest.approx(70)


def _quick_config(**overrides):
    return load_config(REPO / "configs" / "tiny.yaml", **overrides)


@pytest.fixture(scope="module")
def larger_competition(tmp_path_factory):
    from fkd.data.synth import write_competition

    return write_competition(tmp_path_factory.mktemp("larger"), n_train=600, n_test=24, seed=1)


def test_cv_learns_the_synthetic_faces_and_writes_the_run(larger_competition, tmp_path):
    # a small CNN at 48 px, a few epochs, in float32 on every CPU: it must clearly beat the mean shape
    # (the faces are learnable). Seeds 0-2 land at 0.438-0.445x the mean shape (about 30 s each here).
    config = _quick_config(model="convnet", model_options={"widths": [16, 32, 64], "downsample": 2,
                                                           "hidden": 256, "dropout": 0.0},
                           epochs=12, batch_size=16, lr=0.003, name="learn", augment={"flip": 0.5},
                           tta_scales=[0.95, 1.0, 1.05], precision="fp32")
    run_dir = run_cv(larger_competition, config, tmp_path)
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["rmse"] < 0.6 * metrics["mean_shape_rmse"], metrics
    for name in ("config.json", "fold0.pt", "fold1.pt", "oof.csv", "test_pred.csv", "history.json"):
        assert (run_dir / name).is_file(), name
    folds, oof = read_oof(run_dir)
    assert oof.shape == (600, 30) and not np.isnan(oof).any() and set(folds) == {0, 1}
    ids, test = read_test_predictions(run_dir)
    assert len(ids) == 24 and test.shape == (24, 30)
    history = read_json(run_dir / "history.json", kind=list)
    assert len(history) == 24 and {"fold", "epoch", "train_loss", "val_rmse"} <= set(history[0])
    assert set(metrics["per_keypoint"]) and metrics["rmse_partial"] > 0
    # the kept epoch's OOF is predicted with every test-time view (epochs were scored on the plain view)
    checkpoint = load_checkpoint(run_dir / "fold0.pt")
    model = make_model(checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    images, truth = load_training(larger_competition)
    valid = checkpoint["valid_index"]
    subsets = complete_rows(truth[valid]).astype(np.int64)
    trained = checkpoint["config"]   # flip_axis: auto resolved to the axes the fold trained with
    assert trained["flip_axis"] == pytest.approx([47.5, 47.5], abs=0.3)
    with_views = predict_images(model, images[valid], trained, "cpu", subsets=subsets)
    np.testing.assert_allclose(checkpoint["val_pred"], with_views, atol=1e-4)
    plain = predict_images(model, images[valid], {**trained, "tta_scales": [1.0]}, "cpu", subsets=subsets)
    assert np.abs(plain - with_views).max() > 1e-3


def test_rerun_skips_finished_folds_and_refuses_another_config(competition, tmp_path):
    config = _quick_config(name="resume", epochs=1)
    run_cv(competition, {**config, "only_folds": [0]}, tmp_path)
    run_dir = tmp_path / "resume"
    assert (run_dir / "fold0.pt").is_file() and not (run_dir / "fold1.pt").exists()
    assert not (run_dir / "metrics.json").exists()
    stamp = (run_dir / "fold0.pt").stat().st_mtime_ns
    run_cv(competition, config, tmp_path)
    assert (run_dir / "fold0.pt").stat().st_mtime_ns == stamp
    assert (run_dir / "metrics.json").is_file()
    with pytest.raises(FkdError, match=r"another config \(differs in epochs\)"):
        run_cv(competition, {**config, "epochs": 2}, tmp_path)


def test_a_truncated_checkpoint_is_named_and_its_fold_trained_again(competition, tmp_path):
    config = _quick_config(name="truncated", epochs=1)
    run_dir = run_cv(competition, config, tmp_path)
    path = run_dir / "fold0.pt"
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(FkdError, match=r"fold0.pt: damaged checkpoint .*rerun `fkd cv`"):
        load_checkpoint(path)
    messages = []
    from fkd.train import cv

    original_log = cv.log
    cv.log = messages.append
    try:
        run_cv(competition, config, tmp_path)
    finally:
        cv.log = original_log
    assert any("fold 0: " in m and "damaged checkpoint" in m and "training the fold again" in m for m in messages)
    assert load_checkpoint(path)["fold"] == 0 and (run_dir / "fold0.pt.damaged").is_file()
    assert any("fold 1: done already" in m for m in messages)


def test_a_failed_first_try_leaves_no_run_that_blocks_the_corrected_one(competition, tmp_path):
    config = _quick_config(name="retry", epochs=1)
    run_dir = tmp_path / "retry"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({**config, "lr": 0.5}))  # what a crashed first try leaves
    run_cv(competition, config, tmp_path)
    assert json.loads((run_dir / "config.json").read_text())["lr"] == config["lr"]
    assert (run_dir / "metrics.json").is_file()


def _ctrl_c_as_in_a_terminal():
    """A child inherits an ignored SIGINT (and Python then leaves it ignored): start it as a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_then_rerun_finishes_without_redoing_folds(competition, tmp_path):
    from fkd.cli import main

    config = tmp_path / "slow.yaml"
    # 10 short epochs (0.3-1.2 s each): a wide window to interrupt fold 1 in, and a short test
    config.write_text("model: lenet\nfolds: 2\nepochs: 10\nbatch_size: 16\n")
    arguments = ["cv", "--data-dir", str(competition), "--config", str(config), "--runs-dir", str(tmp_path / "runs")]
    assert main(arguments + ["--only-fold", "0"]) == 0  # fold 0 done (in this process: only the setup)
    command = [sys.executable, "-m", "fkd", *arguments]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_ctrl_c_as_in_a_terminal)
    # interrupt while fold 1 trains (after its second of 10 epochs: the state after its first is saved
    # by then; seconds before the fold would finish): nothing of fold 1 may look finished, and the
    # message says that a rerun resumes
    deadline = time.time() + 120
    line = ""
    while "fold 1 epoch 2/10" not in line and time.time() < deadline:
        line = process.stdout.readline()
    assert process.poll() is None, f"fold 1 finished before it could be interrupted (last line: {line!r})"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted; run the same command again to resume" in err
    run_dir = tmp_path / "runs" / "slow"
    assert (run_dir / "resume-fold1.pt").is_file()
    stamp = (run_dir / "fold0.pt").stat().st_mtime_ns
    assert not (run_dir / "fold1.pt").exists() and not (run_dir / "metrics.json").exists()
    assert not list(run_dir.glob("*.tmp")) and [p.name for p in run_dir.glob(".*")] == [".lock"]
    assert (run_dir / ".lock").read_text() == ""  # released: the interrupted writer holds nothing
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "fold 0: done already" in result.stdout
    assert (run_dir / "fold0.pt").stat().st_mtime_ns == stamp
    assert (run_dir / "metrics.json").is_file() and (run_dir / "fold1.pt").is_file()


def test_submit_blends_runs_by_oof(competition, tmp_path):
    first = run_cv(competition, _quick_config(name="a", epochs=1), tmp_path / "runs")
    second = run_cv(competition, _quick_config(name="b", epochs=2, seed=1, subset_heads=True, flip_axis=[48.5, 47.5]),
                    tmp_path / "runs")
    result = subprocess.run([sys.executable, "-m", "fkd", "submit", "--data-dir", str(competition),
                             "--runs", str(first), str(second), "--out-dir", str(tmp_path / "subs")],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    [path] = (tmp_path / "subs").glob("*-a+b.csv")
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    assert meta["runs"] == [str(first), str(second)]
    assert abs(sum(meta["weights"]) - 1) < 1e-9 and min(meta["weights"]) >= 0
    assert meta["blend"] <= min(meta["members"]) + 1e-6
    assert "blend: OOF RMSE" in result.stdout


class ZeroModel(torch.nn.Module):
    """Outputs 0 for every face: all a SubsetOffset around it outputs is its offsets."""

    def forward(self, x):
        return torch.zeros(len(x), 30)


def fit_offsets(model, target):
    """Train a SubsetOffset over a zero model on 4 rows of subset 0 and 4 of subset 1; its outputs
    [subset 0, subset 1] in pixels."""
    from fkd.model.nets import to_pixels

    subset = torch.tensor([0] * 4 + [1] * 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        loss = masked_loss(model(torch.zeros(8, 1, 96, 96), subset), target, "mse")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return to_pixels(model(torch.zeros(2, 1, 96, 96), torch.tensor([0, 1]))).detach().numpy()


def test_subset_offsets_learn_each_subsets_definition_and_stay_mirror_symmetric():
    from fkd.core.keypoints import COLUMNS, FLIP_COLUMN_PERMUTATION
    from fkd.model.nets import SubsetOffset

    model = SubsetOffset(ZeroModel())
    nose_y = COLUMNS.index("nose_tip_y")
    eye_x = COLUMNS.index("left_eye_center_x")
    target = torch.zeros(8, 30)
    target[:4, nose_y] = 6 / 48      # subset 0 labels the nose 6 px lower
    target[4:, eye_x] = 3 / 48       # subset 1 labels the left eye 3 px further right
    out = fit_offsets(model, target)
    assert out[0, nose_y] == pytest.approx(54, abs=0.1) and out[1, nose_y] == pytest.approx(48, abs=0.1)
    # the mirror constraint halves a one-sided shift and gives the other eye its mirror image
    assert out[1, eye_x] == pytest.approx(49.5, abs=0.1)
    assert out[1, COLUMNS.index("right_eye_center_x")] == pytest.approx(46.5, abs=0.1)
    # a mirrored face gets the mirrored offset: swap left/right, negate x shifts
    offsets = model.symmetric_offset().detach().numpy()
    mirrored = offsets[:, FLIP_COLUMN_PERMUTATION].copy()
    mirrored[:, 0::2] *= -1
    np.testing.assert_allclose(mirrored, offsets, atol=1e-6)


def test_a_subsets_output_for_a_point_it_never_labels_is_the_complete_rows_output():
    """The partial rows label no bottom lip: their output of it follows the complete rows, not a stuck offset."""
    from fkd.core.keypoints import COLUMNS
    from fkd.model.nets import SubsetOffset

    lip_y, nose_y = COLUMNS.index("mouth_center_bottom_lip_y"), COLUMNS.index("nose_tip_y")
    partial = np.zeros(30, dtype=bool)
    partial[[nose_y - 1, nose_y]] = True                 # the partial rows label the nose tip only
    model = SubsetOffset(ZeroModel())
    model.set_labelled_columns(partial)
    target = torch.full((8, 30), float("nan"))
    target[4:] = 0.0
    target[4:, lip_y] = 6 / 48                           # the complete rows' lip sits 6 px lower
    target[:4, nose_y] = -2 / 48                         # the partial rows' nose tip 2 px higher
    out = fit_offsets(model, target)
    assert out[1, lip_y] == pytest.approx(54, abs=0.1)
    assert out[0, lip_y] == pytest.approx(out[1, lip_y], abs=1e-5)   # never labelled: the complete output
    assert out[0, nose_y] == pytest.approx(46, abs=0.1) and out[1, nose_y] == pytest.approx(48, abs=0.1)
    # the mask travels with the weights
    loaded = SubsetOffset(ZeroModel())
    loaded.load_state_dict(model.state_dict())
    assert torch.equal(loaded.labelled[0], torch.as_tensor(partial))


def test_training_sets_the_partial_rows_columns_from_the_data(competition):
    from fkd.core.keypoints import partial_columns
    from fkd.data.folds import load_folds
    from fkd.train.labels import training_labels
    from fkd.train.loop import train_fold

    images, truth = load_training(competition)
    config = load_config(None, model="lenet", subset_heads=True, epochs=1, batch_size=64)
    checkpoint = train_fold(0, images, training_labels(truth, config), truth, load_folds(competition, 2, 0), config,
                            log=lambda m: None)
    labelled = checkpoint["state_dict"]["labelled"].numpy()
    assert 0 < partial_columns(truth).sum() < 30
    assert np.array_equal(labelled[0], partial_columns(truth)) and labelled[1].all()


def test_lookup_kinds_follow_what_the_lookup_asks(competition):
    import pandas as pd

    from fkd.data.competition import load_lookup, lookup_kinds

    lookup = load_lookup(competition)
    _, truth = load_training(competition)
    ids = np.sort(lookup["ImageId"].unique())
    kinds = lookup_kinds(lookup, ids, truth)
    asked = lookup.groupby("ImageId").size().reindex(ids).to_numpy()
    assert set(asked) == {8, 30}
    assert np.array_equal(kinds == 1, asked == 30)
    assert lookup_kinds(pd.DataFrame({"ImageId": [], "FeatureName": []}), np.array([5]), truth)[0] == 1


def test_ema_is_a_running_mean_until_it_reaches_its_decay():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = make_ema(model, {"ema": 0.9})
    seen = []
    for step, value in enumerate([1.0, 2.0, 6.0, 3.0], start=1):
        model.weight.data.fill_(value)
        seen.append(value)
        ema.update(model, step=step)
        assert ema.module.weight.item() == pytest.approx(np.mean(seen))
    model.weight.data.fill_(0.0)
    ema.update(model, step=100)  # past the warm-up: decay 0.9
    assert ema.module.weight.item() == pytest.approx(0.9 * np.mean(seen))
    assert make_ema(model, {"ema": 0.0}) is None


def test_grad_clip_caps_each_step_and_the_epoch_reports_gradient_norms():
    images = torch.randint(0, 256, (64, 96, 96), dtype=torch.uint8)
    labels = torch.rand(64, 30) * 96

    def one_epoch(grad_clip):
        torch.manual_seed(0)
        config = _quick_config(device="cpu", grad_clip=grad_clip, augment={}, flip_axis=47.5)
        model = make_model(config)
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = make_optimizer(model, config)
        trained = train_epoch(model, optimizer, make_schedule(optimizer, config, 2), images, labels, config,
                              torch.Generator().manual_seed(0))
        moved = sum((p.detach() - b).abs().sum().item() for p, b in zip(model.parameters(), before))
        return trained, moved

    free, moved_free = one_epoch(None)
    clipped, moved_clipped = one_epoch(1e-9)
    assert 0 < free["grad_norm_median"] <= free["grad_norm_max"]
    # the norms are reported as measured before clipping (clipped, they would be 1e-9)
    assert clipped["grad_norm_max"] > 1e-3
    # Adam divides by the gradient's scale, so a 1e-9 clip shows as steps far below the eps of 1e-8
    assert moved_clipped < 0.05 * moved_free


@pytest.mark.parametrize("capability, precision, expected", [
    ((7, 5), "auto", torch.float16),   # T4: no bf16 convolutions in cuDNN below sm_80
    ((7, 0), "auto", torch.float16),   # V100
    ((8, 0), "auto", torch.bfloat16),  # A100
    ((9, 0), "auto", torch.bfloat16),  # H100
    ((7, 5), "bf16", torch.bfloat16),  # asked for: given
    ((9, 0), "fp16", torch.float16),
    ((9, 0), "fp32", None),
])
def test_precision_follows_the_compute_capability(capability, precision, expected, monkeypatch):
    from fkd.model.inputs import describe_device, pick_precision

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    cuda = torch.device("cuda")
    assert pick_precision(precision, cuda) == expected
    if precision in ("fp16", "fp32"):   # a CPU's bf16 and auto: test_bf16_on_a_cpu_needs_its_instructions
        assert pick_precision(precision, torch.device("cpu")) is None
    described = describe_device(cuda, precision)
    assert described.startswith(f"Tesla T4 (sm_{capability[0]}{capability[1]}), precision ")
    assert described.endswith({torch.float16: "fp16 + GradScaler", torch.bfloat16: "bf16", None: "fp32"}[expected])


def test_bf16_on_a_cpu_needs_its_instructions(monkeypatch):
    from fkd.model import inputs

    cpu = torch.device("cpu")
    monkeypatch.setattr(inputs, "cpu_has_bf16", lambda: True)
    assert inputs.pick_precision("bf16", cpu) == torch.bfloat16
    assert inputs.describe_device(cpu, "bf16").endswith("precision bf16")
    assert inputs.pick_precision("auto", cpu) == torch.bfloat16 and inputs.pick_precision("fp16", cpu) is None
    assert inputs.describe_device(cpu, "auto").endswith("precision bf16")
    monkeypatch.setattr(inputs, "cpu_has_bf16", lambda: False)
    assert inputs.pick_precision("auto", cpu) is None
    assert inputs.describe_device(cpu, "auto").endswith("precision fp32")
    with pytest.raises(FkdError, match="no bf16 instructions"):
        inputs.pick_precision("bf16", cpu)


def test_fkd_cpu_bf16_0_makes_auto_train_in_float32(monkeypatch):
    from fkd.model import inputs

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.delenv(inputs.CPU_BF16_VARIABLE, raising=False)
    assert inputs.cpu_has_bf16() and inputs.pick_precision("auto", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setenv(inputs.CPU_BF16_VARIABLE, "0")
    assert not inputs.cpu_has_bf16() and inputs.pick_precision("auto", torch.device("cpu")) is None
    assert inputs.describe_device(torch.device("cpu"), "auto").endswith("precision fp32")


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions (avx512_bf16 or AMX), "
                    "or FKD_CPU_BF16=0 says so")
def test_a_fold_trains_in_bf16_on_a_cpu_that_has_it(competition):
    from fkd.core.config import load_config
    from fkd.data.competition import load_training
    from fkd.data.folds import load_folds
    from fkd.train.loop import train_fold

    images, keypoints = load_training(competition)
    config = load_config(None, model="lenet", folds=2, epochs=2, batch_size=32, precision="bf16")
    lines = []
    checkpoint = train_fold(0, images, keypoints, keypoints, load_folds(competition, 2, 0), config,
                            images[:4], None, log=lines.append)
    assert any("precision bf16" in line for line in lines)
    assert np.isfinite(checkpoint["val_pred"]).all() and checkpoint["val_rmse"] < 20
    assert all(v.dtype == torch.float32 for v in checkpoint["state_dict"].values() if v.is_floating_point())


def test_unknown_precision_is_refused():
    from fkd.model.inputs import pick_precision

    with pytest.raises(FkdError, match="precision 'fp8' is not one of auto, bf16, fp16, fp32"):
        pick_precision("fp8", torch.device("cpu"))


def test_fp16_trains_with_a_grad_scaler(monkeypatch):
    """The T4 path on CPU: float16 autocast (torch runs it on CPU too) and a GradScaler that scales the loss."""
    from fkd.train import loop as train_module

    scalers = []
    real_scaler = torch.amp.GradScaler

    def spy(*args, **kwargs):
        scalers.append(real_scaler(*args, **kwargs))
        return scalers[-1]

    monkeypatch.setattr(train_module, "pick_precision", lambda name, device: torch.float16)
    monkeypatch.setattr(torch.amp, "GradScaler", spy)
    config = load_config(None, model="lenet", epochs=1, batch_size=8)
    model = train_module.make_model(config)
    optimizer = train_module.make_optimizer(model, config)
    schedule = train_module.make_schedule(optimizer, config, 2)
    images = torch.randint(0, 255, (16, 96, 96), dtype=torch.uint8)
    labels = torch.full((16, 30), 48.0)
    before = [p.detach().clone() for p in model.parameters()]
    out = train_module.train_epoch(model, optimizer, schedule, images, labels, config, torch.Generator().manual_seed(0))
    assert len(scalers) == 1 and scalers[0].is_enabled() and scalers[0].get_scale() > 1
    assert np.isfinite(out["train_loss"]) and out["train_images_per_second"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
@pytest.mark.parametrize("epochs, warmup", [(1, 1), (1, 0), (2, 1), (3, 5), (2, 0.5)])
def test_every_schedule_runs_on_one_step_per_epoch(schedule, epochs, warmup):
    """Small data with a big batch: one step per epoch (OneCycleLR once divided by zero here)."""
    from fkd.train.loop import make_optimizer, make_schedule

    config = load_config(None, model="lenet", schedule=schedule, epochs=epochs, warmup_epochs=warmup)
    model = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(model, config)
    scheduler = make_schedule(optimizer, config, steps_per_epoch=1)
    rates = []
    for _ in range(epochs):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert all(np.isfinite(rates)) and max(rates) <= config["lr"] * 1.0001


def test_a_fold_of_one_step_per_epoch_trains(competition):
    """batch_size above the row count and one epoch: the loop, the schedule and the checkpoint still work."""
    from fkd.data.folds import load_folds
    from fkd.train.labels import training_labels
    from fkd.train.loop import train_fold

    images, truth = load_training(competition)
    folds = load_folds(competition, 2, 0)
    config = load_config(None, model="lenet", epochs=1, batch_size=4096, warmup_epochs=1)
    checkpoint = train_fold(0, images, training_labels(truth, config), truth, folds, config, log=lambda m: None)
    assert np.isfinite(checkpoint["val_rmse"]) and len(checkpoint["history"]) == 1


def test_keep_last_keeps_the_last_epoch_and_keep_best_reports_the_last_beside_it(competition, tmp_path, capsys):
    from fkd.show.report import oof_summary

    base = dict(model="lenet", epochs=3, batch_size=32, folds=2, lr=3e-3)
    last_dir = run_cv(competition, load_config(None, name="last", **base), tmp_path)
    history = read_json(last_dir / "history.json", kind=list)
    images, truth = load_training(competition)
    for fold in (0, 1):
        checkpoint = load_checkpoint(last_dir / f"fold{fold}.pt")
        assert checkpoint["best_epoch"] == 3 and "last_val_pred" not in checkpoint
        last_epoch = [r for r in history if r["fold"] == fold and r["epoch"] == 3][0]
        # keep: last chooses nothing by the epochs' scores: each is of the plain view alone, the kept
        # epoch's figure with flip TTA
        model = make_model(checkpoint["config"])
        model.load_state_dict(checkpoint["state_dict"])
        valid = checkpoint["valid_index"]
        plain = predict_images(model, images[valid], checkpoint["config"], "cpu", flip_tta=False)
        assert last_epoch["val_rmse"] == pytest.approx(rmse(plain, truth[valid]), abs=1e-4)
        assert checkpoint["val_rmse"] == pytest.approx(rmse(checkpoint["val_pred"], truth[valid]), abs=1e-6)
        assert abs(checkpoint["val_rmse"] - last_epoch["val_rmse"]) > 1e-4
    assert "rmse_last_epoch" not in read_json(last_dir / "metrics.json")

    best_dir = run_cv(competition, load_config(None, name="best", keep="best", **base), tmp_path)
    metrics = read_json(best_dir / "metrics.json")
    history = read_json(best_dir / "history.json", kind=list)
    for fold in (0, 1):
        checkpoint = load_checkpoint(best_dir / f"fold{fold}.pt")
        scores = {r["epoch"]: r["val_rmse"] for r in history if r["fold"] == fold}
        assert checkpoint["best_epoch"] == min(scores, key=scores.get)
        assert checkpoint["last_val_rmse"] == pytest.approx(scores[3], abs=1e-4)
    # same seed and folds: the last epochs of the keep-best run are the keep-last run
    assert metrics["rmse_last_epoch"] == pytest.approx(read_json(last_dir / "metrics.json")["rmse"], abs=1e-4)
    assert metrics["rmse"] <= metrics["rmse_last_epoch"] + 1e-6
    assert f"last epochs' OOF RMSE {metrics['rmse_last_epoch']:.4f}" in oof_summary(metrics)


def test_an_interrupted_fold_resumes_bit_for_bit(competition, tmp_path):
    """Interrupted after epoch 2 of 4, the rerun goes on from there and ends exactly where an
    uninterrupted run ends (dropout, augmentation, EMA, schedule and optimizer all restored)."""
    from fkd.train import cv

    config = _quick_config(name="whole", epochs=4, model_options={"dropout": 0.3}, ema=0.9, grad_clip=1.0,
                           augment={"flip": 0.5, "rotate": 5, "noise": 0.02}, only_folds=[0])
    whole = load_checkpoint(run_cv(competition, config, tmp_path) / "fold0.pt")

    class Interrupt(Exception):
        pass

    def interrupt_after_epoch_2(message):
        if "epoch 2/4" in message:
            raise Interrupt

    original_log = cv.log
    cv.log = interrupt_after_epoch_2
    try:
        with pytest.raises(Interrupt):
            run_cv(competition, {**config, "name": "resumed"}, tmp_path)
    finally:
        cv.log = original_log
    run_dir = tmp_path / "resumed"
    # the state of epoch 1 is there (epoch 2's log line came before its state was saved)
    assert not (run_dir / "fold0.pt").exists() and (run_dir / "resume-fold0.pt").is_file()
    messages = []
    cv.log = messages.append
    try:
        run_cv(competition, {**config, "name": "resumed"}, tmp_path)
    finally:
        cv.log = original_log
    assert any("resuming after epoch 1/4" in m for m in messages)
    assert not any("epoch 1/4:" in m for m in messages) and any("epoch 2/4:" in m for m in messages)
    resumed = load_checkpoint(run_dir / "fold0.pt")
    assert not (run_dir / "resume-fold0.pt").exists()
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    np.testing.assert_array_equal(whole["val_pred"], resumed["val_pred"])
    assert [r["val_rmse"] for r in whole["history"]] == [r["val_rmse"] for r in resumed["history"]]


def test_the_log_says_how_long_is_left(competition, tmp_path):
    from fkd.train import cv

    messages = []
    original_log = cv.log
    cv.log = messages.append
    try:
        run_cv(competition, _quick_config(name="eta", epochs=2), tmp_path)
    finally:
        cv.log = original_log
    epoch_lines = [m for m in messages if " epoch 1/2:" in m]
    assert epoch_lines and all(re.search(r"lr \d\.\d\de-\d\d .*; \d+ s left in the fold\)$", m) for m in epoch_lines)
    assert any(re.search(r"fold 0: .* about \d+ s left for 1 more fold$", m) for m in messages)


def test_cv_set_overrides_the_run_records_its_commit_and_a_rerun_keeps_its_report(competition, tmp_path):
    command = [sys.executable, "-m", "fkd", "cv", "--data-dir", str(competition), "--config",
               str(REPO / "configs" / "tiny.yaml"), "--set", "epochs=1", "--set", "seed=5", "--runs-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "tiny" / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["seed"] == 5
    assert re.fullmatch(r"[0-9a-f]{7,}(\+local-changes)?|unknown", saved["fkd_commit"])
    # the finished run drew its report; the same command again keeps it, until a fold is newer than it
    report = tmp_path / "tiny" / "report.md"
    drawn = report.stat().st_mtime_ns
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0 and "report.md is newer than every fold" in again.stdout, again.stderr
    assert report.stat().st_mtime_ns == drawn and report_is_current(tmp_path / "tiny")
    os.utime(tmp_path / "tiny" / "fold1.pt", ns=(drawn + 10**9, drawn + 10**9))
    assert not report_is_current(tmp_path / "tiny")
    bad = subprocess.run([sys.executable, "-m", "fkd", "cv", "--data-dir", str(competition), "--config",
                          str(REPO / "configs" / "tiny.yaml"), "--set", "epoch=1", "--runs-dir", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "did you mean 'epochs'" in bad.stderr
