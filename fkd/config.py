"""Training configs: small YAML/JSON files merged over DEFAULTS. An unknown key is a typo and an error."""
import copy
import json
from pathlib import Path

import yaml

from fkd.errors import FkdError

DEFAULTS = {
    "name": None,               # run folder name; default: the config file's stem
    "model": "seedcnn",         # lenet | seedcnn | timm:<name> | heatmap:<name>
    "model_options": {},        # passed to fkd.models.build_model (drop_stem_pool, weights, ...)
    "subset_heads": False,      # one output offset per label subset (complete / core-point rows)
    "folds": 5,
    "fold_seed": 0,             # folds are shared by every run with the same (folds, fold_seed)
    "only_folds": None,         # train just these folds (a list), e.g. one Kaggle kernel per fold
    "seed": 0,
    "epochs": 30,
    "batch_size": 64,
    "optimizer": "adamw",       # adamw | adam
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "schedule": "onecycle",     # onecycle | cosine (with warm-up) | constant
    "warmup_epochs": 1,
    "grad_clip": None,          # clip the gradient norm to this before each step; None = off
    "loss": "mse",              # mse | l1 | smooth_l1 | wing
    "pseudo_labels": None,      # a finished run on the same folds: its fold-k model fills the labels fold k's
                                # training rows lack (pseudo-labels)
    "drop_label_outliers": 0.0, # this fraction of the training rows, those fkd.eda.label_outliers ranks
                                # first (farthest from the mean shape), trains on no labels; 0 = keep all
    "labels": "masked",         # masked: missing values carry no gradient | ffill: the original project's fill
    "pixels": "unit",           # unit: 0..1 | raw: 0..255 as the original project fed them
    "augment": {},              # fkd.augment settings; {} = none
    "flip_tta": True,
    "tta_scales": [1.0],        # test-time zooms about the image centre, predictions averaged
    "tta_shift": 0.0,           # > 0: each zoom also moved by this many pixels left/right/up/down
    "flip_axis": 47.5,          # the labels' mirror axis: 47.5 = pixel centres on integers (48.5 for 1-based
                                # labels); or [core-point rows, complete rows] when the subsets differ
    "keep": "last",             # the fold's kept epoch: last (chosen without looking at the scored fold) |
                                # best (the epoch its validation fold scores best: an optimistic OOF)
    "ema": 0.0,                 # decay of an exponential moving average of the weights; 0 = off
    "precision": "auto",        # auto: bf16 on GPUs of compute capability 8.0+, fp16 + loss scaling below
                                # (T4: cuDNN has no bf16 convolutions before sm_80), fp32 on CPU | bf16 | fp16 | fp32
    "device": "auto",           # auto | cpu | cuda
    "eval_batch_size": 256,
    "description": "",
}


def _merge(base: dict, override: dict, source, prefix="") -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base and prefix == "":
            raise FkdError(f"unknown key {key!r} (known: {', '.join(sorted(base))})", path=source)
        if isinstance(base.get(key), dict) and isinstance(value, dict) and base.get(key):
            merged[key] = _merge(base[key], value, source, prefix + key + ".")
        else:
            merged[key] = value
    return merged


def read_config_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FkdError("no such config file", path=path)
    try:
        if path.suffix == ".json":
            values = json.loads(path.read_text())
        else:
            values = yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise FkdError(f"not valid {path.suffix.lstrip('.').upper()}: {str(error).splitlines()[0]}", path=path) from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise FkdError("a config is a mapping of keys to values", path=path)
    return values


def load_config(path=None, **overrides) -> dict:
    """DEFAULTS <- file <- overrides (None values in overrides are ignored)."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        config = _merge(config, read_config_file(path), path)
        config["name"] = config["name"] or Path(path).stem
    config = _merge(config, {k: v for k, v in overrides.items() if v is not None}, "overrides")
    config["name"] = config["name"] or config["model"].replace(":", "-")
    return config
