"""Every named recipe in configs/ loads over the defaults and builds a model that maps faces to 30 values."""
from pathlib import Path

import pytest
import torch
import yaml

from fkd.core.config import load_config
from fkd.model.inputs import forward
from fkd.model.nets import build_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_the_named_recipes_exist():
    names = {path.stem for path in CONFIGS}
    assert {"seed", "seedcnn", "lenet", "cpu", "gpu", "demo", "tiny"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds_a_working_model(path):
    config = load_config(path)
    assert config["name"] == path.stem and config["description"]
    model = build_model(config["model"], subset_heads=config["subset_heads"], **config["model_options"]).eval()
    with torch.no_grad():
        out = forward(model, torch.rand(2, 1, 96, 96), torch.tensor([0, 1]))
    assert out.shape == (2, 30) and torch.isfinite(out).all()


@pytest.mark.parametrize("setting, message", [
    ({"loss": "huber"}, r"key 'loss': 'huber' is not one of mse, l1, smooth_l1, wing"),
    ({"epochs": "four"}, r"key 'epochs': 'four' is not a whole number"),
    ({"epochs": 0}, r"key 'epochs': 0 is out of range"),
    ({"epochs": True}, r"key 'epochs': True is not a whole number"),
    ({"device": "gpu"}, r"key 'device': 'gpu' is not one of auto, cpu, cuda"),
    ({"lr": -1}, r"key 'lr': -1 is out of range: must be > 0"),
    ({"schedule": "cosin"}, r"key 'schedule': 'cosin' is not one of onecycle, cosine, constant"),
    ({"optimizer": "sgd"}, r"key 'optimizer': 'sgd' is not one of adamw, adam"),
    ({"folds": 1}, r"key 'folds': 1 is out of range"),
    ({"folds": 0}, r"key 'folds': 0 is out of range"),
    ({"only_folds": [7], "folds": 2}, r"key 'only_folds': fold 7 does not exist with 2 folds"),
    ({"keep": "best-ish"}, r"key 'keep'.*last, best"),
    ({"precision": "half"}, r"key 'precision'.*auto, bf16, fp16, fp32"),
    ({"augment": {"flip": 2}}, r"key 'augment'.*probability"),
    ({"tta_scales": []}, r"key 'tta_scales'"),
    ({"model": "resnet34"}, r"key 'model': 'resnet34' is not one of lenet, seedcnn, convnet, timm:<name>"),
    ({"drop_label_outliers": 0.7}, r"key 'drop_label_outliers'"),
])
def test_every_bad_value_is_refused_when_the_config_loads(setting, message, tmp_path):
    from fkd.core.errors import FkdError

    with pytest.raises(FkdError, match=message):
        load_config(None, **setting)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(setting))
    with pytest.raises(FkdError) as error:
        load_config(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_a_misspelt_key_gets_a_suggestion(tmp_path):
    from fkd.core.errors import FkdError

    path = tmp_path / "typo.yaml"
    path.write_text("epoch: 4\n")
    with pytest.raises(FkdError, match=r"unknown key 'epoch' \(did you mean 'epochs'\?"):
        load_config(path)


def test_bad_values_stop_cv_and_kernel_before_anything_is_written(competition, tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: lenet\nloss: huber\n")
    repo = Path(__file__).resolve().parents[1]
    for argv in (["cv", "--data-dir", str(competition), "--config", str(bad), "--runs-dir", str(tmp_path / "runs")],
                 ["cv", "--data-dir", str(competition), "--config", str(repo / "configs" / "tiny.yaml"),
                  "--epochs", "0", "--runs-dir", str(tmp_path / "runs")],
                 ["kernel", "--config", str(bad), "--out", str(tmp_path / "kernel")]):
        result = subprocess.run([sys.executable, "-m", "fkd", *argv], cwd=repo, capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "kernel").exists()


def test_cuda_without_a_gpu_is_one_clear_error(monkeypatch):
    from fkd.core.errors import FkdError
    from fkd.model.inputs import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(FkdError, match="device 'cuda' asked for, but torch sees no CUDA GPU"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


def test_the_config_reference_is_current_and_covers_every_key():
    from fkd.core.config import DEFAULTS, REFERENCE, reference_markdown

    assert list(REFERENCE) == list(DEFAULTS)
    assert all(allowed and doc for _, allowed, doc in REFERENCE.values())
    docs = Path(__file__).resolve().parents[1] / "docs" / "configs.md"
    assert docs.read_text() == reference_markdown(), "docs/configs.md is stale: fkd config --markdown > docs/configs.md"
    for key in DEFAULTS:
        assert f"| `{key}` |" in docs.read_text()


def test_help_is_written_for_users():
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    help_text = subprocess.run([sys.executable, "-m", "fkd", "--help"], cwd=repo, capture_output=True, text=True).stdout
    assert "Facial keypoints" in help_text and "the loop:" in help_text and "sub-command per module" not in help_text
    push = subprocess.run([sys.executable, "-m", "fkd", "kaggle", "push", "--help"], cwd=repo, capture_output=True,
                          text=True).stdout
    assert "kaggle kernels push -p DIR" in push.split("options:")[0]
    resolved = subprocess.run([sys.executable, "-m", "fkd", "config", str(repo / "configs" / "demo.yaml")], cwd=repo,
                              capture_output=True, text=True)
    assert resolved.returncode == 0 and yaml.safe_load(resolved.stdout)["keep"] == "last"


def test_a_base_chain_merges_and_a_cycle_is_refused(tmp_path):
    from fkd.core.errors import FkdError

    (tmp_path / "root.yaml").write_text("description: the root\nmodel: lenet\nepochs: 9\naugment: {flip: 0.5, rotate: 5}\n")
    (tmp_path / "middle.yaml").write_text("base: root\nseed: 3\n")
    (tmp_path / "leaf.yaml").write_text("base: middle.yaml\nepochs: 4\naugment: {shift: 0.02}\n")
    leaf = load_config(tmp_path / "leaf.yaml")
    assert (leaf["model"], leaf["seed"], leaf["epochs"], leaf["name"]) == ("lenet", 3, 4, "leaf")
    assert leaf["augment"] == {"shift": 0.02}          # a mapping in a delta replaces the base's whole
    assert leaf["description"] == ""                   # a recipe describes itself
    (tmp_path / "a.yaml").write_text("base: b\n")
    (tmp_path / "b.yaml").write_text("base: a\n")
    with pytest.raises(FkdError, match=r"'a' leads back to itself \(a.yaml -> b.yaml -> a.yaml\)"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "lost.yaml").write_text("base: nowhere\n")
    with pytest.raises(FkdError, match=r"lost.yaml: key 'base': no config 'nowhere' beside it"):
        load_config(tmp_path / "lost.yaml")


def test_the_repository_configs_are_deltas():
    from fkd.core.config import read_config_file

    based = {path.stem: read_config_file(path).get("base") for path in CONFIGS}
    assert based["cpu-long-clip-seed4"] == "cpu-long-clip"
    assert set(read_config_file(Path(CONFIGS[0]).parent / "cpu-long-clip-seed4.yaml")) == {"description", "base", "seed"}
    assert sum(b is not None for b in based.values()) >= 10


def test_set_overrides_with_type_checks():
    from fkd.core.errors import FkdError

    path = Path(CONFIGS[0]).parent / "cpu.yaml"
    config = load_config(path, sets=["seed=4", "epochs=64", "augment.rotate=5", "tta_scales=[1.0]", "grad_clip=null"])
    assert (config["seed"], config["epochs"], config["augment"]["rotate"], config["tta_scales"]) == (4, 64, 5, [1.0])
    assert config["augment"]["flip"] == 0.5            # one nested key changed, the others kept
    with pytest.raises(FkdError, match=r"--set: unknown key 'sed' \(did you mean 'seed'\?"):
        load_config(path, sets=["sed=4"])
    with pytest.raises(FkdError, match=r"key 'epochs': 'four' is not a whole number"):
        load_config(path, sets=["epochs=four"])
    with pytest.raises(FkdError, match=r"expected key=value"):
        load_config(path, sets=["seed"])


def test_make_cv_passes_set():
    import subprocess

    dry = subprocess.run(["make", "-n", "cv", "SET=seed=4 epochs=64"], cwd=Path(CONFIGS[0]).parents[1],
                         capture_output=True, text=True).stdout
    assert "--set seed=4 --set epochs=64" in dry
