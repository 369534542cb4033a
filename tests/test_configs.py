"""Every named recipe in configs/ loads over the defaults and builds a model that maps faces to 30 values."""
from pathlib import Path

import pytest
import torch

from fkd.config import load_config
from fkd.models import build_model
from fkd.train import forward

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
