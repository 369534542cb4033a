"""fkd.kaggle.estimate: FLOPs counted through the real input path, the time model's arithmetic, the
packing on two GPUs and the lines fkd kernel prints (no training, no GPU)."""
import subprocess
import sys
from pathlib import Path

import pytest

from fkd.core.config import load_config
from fkd.core.errors import FkdError
from fkd.kaggle import estimate as est

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"


def convnet(**options):
    """A one-stage convnet whose FLOPs are counted by hand below."""
    return load_config(TINY, model="convnet", model_options={"widths": [8], "hidden": 16, "dropout": 0.0, **options})


@pytest.mark.parametrize("options, hand_count", [
    # conv 1->8 3x3 at 96x96, max-pool -> 48x48x8, linear 18432->16, linear 16->30 (2 FLOPs a multiply-add)
    ({}, 2 * 96 * 96 * 8 * 9 + 2 * 48 * 48 * 8 * 16 + 2 * 16 * 30),
    # downsample 2: the model sees 48 px (the 2x2 average counts nothing)
    ({"downsample": 2}, 2 * 48 * 48 * 8 * 9 + 2 * 24 * 24 * 8 * 16 + 2 * 16 * 30),
    # a stem of 4 channels at 96 px and its pool, then the stage at 48 px
    ({"stem": 4}, 2 * 96 * 96 * 4 * 9 + 2 * 48 * 48 * 8 * 4 * 9 + 2 * 24 * 24 * 8 * 16 + 2 * 16 * 30),
])
def test_forward_flops_of_a_plain_convnet_equal_the_hand_count(options, hand_count):
    assert est.forward_flops(convnet(**options)) == hand_count
    # the subset offset adds no multiply
    assert est.forward_flops({**convnet(**options), "subset_heads": True}) == hand_count


def test_a_weights_file_is_not_read_and_the_stem_pool_counts():
    """A pretrained file named for Kaggle need not exist here; without its stem max-pool a ResNet works
    on 4x the pixels after its stem."""
    config = load_config(TINY, model="timm:resnet18")
    plain = est.forward_flops(config)
    weighted = est.forward_flops({**config, "model_options": {"weights": "/kaggle/input/none/resnet18.pth"}})
    no_pool = est.forward_flops({**config, "model_options": {"drop_stem_pool": True}})
    assert weighted == plain
    assert 3.5 < no_pool / plain < 4.0


FIGURES = {"flops": 1e9, "parameters": 1_000_000, "buffers": 0}


def member(**overrides):
    return load_config(TINY, **{"folds": 5, "batch_size": 64, "name": "m", **overrides})


def test_doubling_epochs_doubles_the_training_part():
    one = est.estimate(member(epochs=10), figures=FIGURES)
    two = est.estimate(member(epochs=20), figures=FIGURES)
    assert two["training_flops"] == 2 * one["training_flops"]
    assert two["steps"] == 2 * one["steps"]
    assert one["fold_steps"] == (7049 - 1410) // 64 * 10          # the loop drops the last partial batch
    assert one["training_flops"] == 3 * 1e9 * 88 * 64 * 10 * 5      # 3 x forward x images x epochs x folds
    # the final prediction does not grow with the epochs
    assert two["fold_prediction_flops"] == one["fold_prediction_flops"]
    assert one["seconds"][0] < one["seconds"][1] < two["seconds"][1]


def test_prediction_counts_every_test_time_view():
    config = member(epochs=4, tta_scales=[0.95, 1.0, 1.05], flip_tta=True)
    e = est.estimate(config, figures=FIGURES)
    assert e["views"] == 6
    assert e["fold_prediction_flops"] == 1e9 * 6 * (1410 + 1783)    # validation fold + test, every view
    assert e["fold_validation_flops"] == 1e9 * 1410 * 4              # each epoch: the plain view only
    best = est.estimate({**config, "keep": "best"}, figures=FIGURES)
    assert best["fold_validation_flops"] == 2 * e["fold_validation_flops"]   # keep best scores with the flip
    plain = est.estimate(member(epochs=4, tta_scales=[1.0], flip_tta=False), figures=FIGURES)
    assert plain["fold_prediction_flops"] == 1e9 * 1783               # the epochs' prediction is reused


def test_more_folds_on_two_gpus_pack_to_about_half():
    for folds in (4, 5, 10):
        kernel = est.estimate_kernel([est.estimate(member(epochs=10, folds=folds), figures=FIGURES)])
        one, two = kernel["seconds"], kernel["seconds_two_gpus"]
        jobs = folds / 2 if folds % 2 == 0 else (folds + 1) / 2
        for low_high in (0, 1):
            assert two[low_high] == pytest.approx(one[low_high] * jobs / folds)
            assert two[low_high] == pytest.approx(kernel["members"][0]["seconds_two_gpus"][low_high])
    assert est.pack([1.0] * 8, 2) == 4.0
    assert est.pack([5.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2) == 5.0       # longest first: the others fill the second GPU
    # greedy, as GPUs take the next job when they come free: not the best split (3+3 | 2+2+2 = 6)
    assert est.pack([3.0, 3.0, 2.0, 2.0, 2.0], 2) == 7.0


def test_two_members_sum_on_one_gpu_and_share_two():
    a = est.estimate(member(name="big", epochs=40), figures=FIGURES)
    b = est.estimate(member(name="small", epochs=10), figures=FIGURES)
    kernel = est.estimate_kernel([a, b])
    assert kernel["seconds"][1] == pytest.approx(a["seconds"][1] + b["seconds"][1])
    assert len(kernel["jobs"]) == 10
    assert kernel["seconds"][1] / 2 <= kernel["seconds_two_gpus"][1] < kernel["seconds"][1]


def big(epochs):
    """One member of a ResNet's size (5 GFLOPs a face), estimated."""
    return est.estimate(member(epochs=epochs), figures={**FIGURES, "flops": 5e9})


def test_the_warning_appears_past_nine_hours_and_not_below():
    epochs = next(e for e in range(1, 2000) if big(e)["seconds"][1] > est.WARN_HOURS * 3600)
    below = est.describe(est.estimate_kernel([big(epochs - 1)]))
    above = est.describe(est.estimate_kernel([big(epochs)]))
    assert not any("--split" in line or "warning" in line for line in below)
    [warning] = [line for line in above if "--split" in line]
    assert warning.startswith("warning:") and "12-hour" in warning
    assert "fewer epochs" not in warning                            # each fold fits: --split is the remedy
    huge = est.describe(est.estimate_kernel([big(epochs * 6)]))
    assert "fewer epochs" in huge[-1]                                # one fold alone passes it


def test_training_in_float32_is_slower():
    fp16 = est.estimate(member(epochs=10), figures=FIGURES)
    fp32 = est.estimate(member(epochs=10, precision="fp32"), figures=FIGURES)
    assert fp32["seconds"][0] > fp16["seconds"][0] and fp32["flops"] == fp16["flops"]


def test_describe_names_every_member():
    members = [est.estimate(member(name=name, epochs=epochs), figures=FIGURES)
               for name, epochs in (("stem-a", 30), ("stem-b", 60))]
    lines = est.describe(est.estimate_kernel(members))
    for name in ("stem-a", "stem-b"):
        [line] = [line for line in lines if line.startswith(f"{name}: ")]
        assert "1 GFLOPs a face" in line and "epochs x 5 folds" in line and line.endswith("on a T4")
    total = lines[2]
    assert "on one T4" in total and "on T4 x2" in total and "an estimate from FLOPs" in total
    assert len(lines) == 3


def test_a_real_config_is_estimated_from_its_model():
    e = est.estimate(load_config(TINY))
    assert e["gflops"] == pytest.approx(est.forward_flops(load_config(TINY)) / 1e9)
    assert e["folds"] == 2 and len(e["jobs"]) == 2 and e["seconds"][0] > 0
    with pytest.raises(FkdError):
        est.estimate(load_config(TINY), training_rows=1)


def test_importing_the_estimate_imports_no_torch():
    """fkd kernel may import it at the top: the module itself must not pull torch in (it imports torch
    only in the functions that count a model)."""
    code = "import sys, fkd.kaggle.estimate; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
