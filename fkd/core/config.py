"""Training configs: small YAML/JSON files merged over DEFAULTS. An unknown key is a typo and an error;
every value is checked (type, range, allowed values) when the config is loaded, before any data is read."""
import copy
import difflib
import json
import math
import re
from pathlib import Path

import yaml

from fkd.core.errors import FkdError

DEFAULTS = {
    "name": None,
    "model": "seedcnn",
    "model_options": {},
    "subset_heads": False,
    "folds": 5,
    "fold_seed": 0,
    "only_folds": None,
    "seed": 0,
    "epochs": 30,
    "batch_size": 64,
    "optimizer": "adamw",
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "schedule": "onecycle",
    "warmup_epochs": 1,
    "grad_clip": None,
    "loss": "mse",
    "pseudo_labels": None,
    "drop_label_outliers": 0.0,
    "labels": "masked",
    "pixels": "unit",
    "augment": {},
    "flip_tta": True,
    "tta_scales": [1.0],
    "tta_shift": 0.0,
    "flip_axis": "auto",
    "keep": "last",
    "ema": 0.0,
    "precision": "auto",
    "device": "auto",
    "eval_batch_size": 256,
    "description": "",
}  # what each key means, and the values it takes: REFERENCE below (`fkd config` prints it)


# keys that change nothing a fold trains: passes of one run (and resume states) may differ in them;
# fkd_commit is not a config key: config.json records it beside the config
RUN_INDEPENDENT_KEYS = ("only_folds", "description", "device", "eval_batch_size", "fkd_commit")

DEFAULT_AUGMENT = {  # what `augment: {}` keys mean: fkd.model.augment applies them
    "flip": 0.5,        # probability of a left-right flip (labels swapped)
    "rotate": 15.0,     # degrees, uniform in [-r, r]
    "scale": 0.1,       # zoom factor in [1 - s, 1 + s]
    "shift": 0.08,      # fraction of the image, each axis
    "brightness": 0.2,
    "contrast": 0.2,
    "blur": 0.1,        # probability of a Gaussian blur
    "noise": 0.02,      # standard deviation of Gaussian noise (0..1 pixels)
    "reflect": 0.0,     # probability that a moved image's outside is mirrored, not black
}
_PROBABILITIES = ("flip", "blur", "reflect")


def augment_settings(config) -> dict:
    """Settings dict -> every DEFAULT_AUGMENT key as a float (missing = 0). Unknown keys or bad values: FkdError."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULT_AUGMENT))
    if unknown:
        raise FkdError(f"unknown augmentation setting(s) {unknown}; known: {sorted(DEFAULT_AUGMENT)}")
    settings = {}
    for key in DEFAULT_AUGMENT:
        value = config.get(key) or 0.0
        if isinstance(value, bool):
            raise FkdError(f"augmentation setting {key!r} must be a number, got {value!r}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise FkdError(f"augmentation setting {key!r} must be a number, got {value!r}") from None
        if not math.isfinite(value) or value < 0:
            raise FkdError(f"augmentation setting {key!r} must be >= 0, got {value}")
        if key in _PROBABILITIES and value > 1:
            raise FkdError(f"augmentation setting {key!r} is a probability, got {value}")
        if key in ("scale", "contrast") and value >= 1:
            raise FkdError(f"augmentation setting {key!r} must be < 1, got {value}")
        settings[key] = value
    return settings


# ---------------------------------------------------------------- value checks, one per key

def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(*allowed):
    return lambda v: None if v in allowed else f"is not one of {', '.join(allowed)}"


def _int(low, high=None):
    def check(v):
        if not _is_int(v):
            return "is not a whole number"
        if v < low or (high is not None and v > high):
            return f"is out of range: a whole number >= {low}" + (f" and <= {high}" if high is not None else "")
    return check


def _number(low=None, high=None, low_open=False, high_open=False, none=False):
    def check(v):
        if none and v is None:
            return None
        if not _is_number(v):
            return "is not a number" + (" (or null)" if none else "")
        if low is not None and (v < low or (low_open and v == low)):
            return f"is out of range: must be {'>' if low_open else '>='} {low}"
        if high is not None and (v > high or (high_open and v == high)):
            return f"is out of range: must be {'<' if high_open else '<='} {high}"
    return check


def _of_type(kind, name, none=False):
    return lambda v: None if (v is None and none) or (isinstance(v, kind) and not (kind is int and isinstance(v, bool))) \
        else f"is not {name}" + (" (or null)" if none else "")


def _model(v):
    if not isinstance(v, str):
        return "is not a string"
    if v in ("lenet", "seedcnn", "convnet") or re.fullmatch(r"(timm|heatmap):[A-Za-z0-9_.]+", v):
        return None
    return "is not one of lenet, seedcnn, convnet, timm:<name>, heatmap:<timm name>, heatmap:convnet"


def _augment(v):
    if not isinstance(v, dict):
        return "is not a mapping"
    try:
        augment_settings(v)
    except FkdError as error:
        return f"({error})"


def _only_folds(v):
    if v is None:
        return None
    if not isinstance(v, list) or not v or not all(_is_int(k) and k >= 0 for k in v):
        return "is not a list of fold numbers (0, 1, ...) or null"


def _tta_scales(v):
    if not isinstance(v, list) or not v or not all(_is_number(x) and 0.5 <= x <= 2 for x in v):
        return "is not a list of zoom factors between 0.5 and 2"


def _flip_axis(v):
    if v == "auto" or (_is_number(v) and 40 <= v <= 56):
        return None
    if isinstance(v, list) and len(v) == 2 and all(_is_number(x) and 40 <= x <= 56 for x in v):
        return None
    return "is not auto, an axis in pixels (about 47.5) or a pair [partial rows, complete rows]"


def _device(v):
    if isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
        return None
    return "is not one of auto, cpu, cuda, cuda:<index>"


# key -> (check, allowed values, what it does); `fkd config` and docs/configs.md are made from it
REFERENCE = {
    "name": (_of_type(str, "a string", none=True), "string", "run folder name (runs/<name>/); default: the config file's stem"),
    "model": (_model, "lenet, seedcnn, convnet, timm:<name>, heatmap:<timm name>, heatmap:convnet", "the network"),
    "model_options": (_of_type(dict, "a mapping"), "mapping", "passed to fkd.model.nets.build_model (widths, dropout, drop_stem_pool, weights, ...)"),
    "subset_heads": (_of_type(bool, "true or false"), "true, false", "one output offset per label subset (complete rows / partial rows); each test image gets its kind's"),
    "folds": (_int(2), "whole number >= 2", "K of K-fold"),
    "fold_seed": (_int(0), "whole number >= 0", "folds are shared by every run with the same (folds, fold_seed)"),
    "only_folds": (_only_folds, "list of fold numbers, or null", "train just these folds (e.g. one Kaggle kernel per fold)"),
    "seed": (_int(0), "whole number >= 0", "weights, batch order and augmentation draws"),
    "epochs": (_int(1), "whole number >= 1", "passes over the fold's training rows"),
    "batch_size": (_int(1), "whole number >= 1", "training batch"),
    "optimizer": (_choice("adamw", "adam"), "adamw, adam", "adamw: decoupled weight decay (not on biases and norms); adam: the original project's"),
    "lr": (_number(0, 10, low_open=True), "number > 0", "peak learning rate"),
    "weight_decay": (_number(0), "number >= 0", "AdamW's weight decay"),
    "schedule": (_choice("onecycle", "cosine", "constant"), "onecycle, cosine, constant", "learning-rate schedule (cosine has a linear warm-up)"),
    "warmup_epochs": (_number(0), "number >= 0", "epochs of warm-up"),
    "grad_clip": (_number(0, low_open=True, none=True), "number > 0, or null", "clip the gradient norm to this before each step; null = off"),
    "loss": (_choice("mse", "l1", "smooth_l1", "wing"), "mse, l1, smooth_l1, wing", "training loss over the present values (missing ones carry no gradient)"),
    "pseudo_labels": (_of_type(str, "a run folder", none=True), "run folder, or null", "a finished run on the same folds: its fold-k model fills the labels fold k's training rows lack"),
    "drop_label_outliers": (_number(0, 0.5, high_open=True), "0 <= number < 0.5", "this fraction of the rows farthest from the mean shape (fkd.data.shapes.label_outliers) trains on no labels"),
    "labels": (_choice("masked", "ffill"), "masked, ffill", "masked: missing values carry no gradient; ffill: the original project's forward fill"),
    "pixels": (_choice("unit", "raw"), "unit, raw", "unit: 0..1; raw: 0..255 as the original project fed them"),
    "augment": (_augment, "mapping of " + ", ".join(DEFAULT_AUGMENT), "fkd.model.augment settings on the training batch; {} = none"),
    "flip_tta": (_of_type(bool, "true or false"), "true, false", "average each prediction with its mirror's (labels swapped back)"),
    "tta_scales": (_tta_scales, "list of zooms in [0.5, 2]", "test-time zooms about the image centre, predictions mapped back and averaged"),
    "tta_shift": (_number(0, 8), "0 <= number <= 8", "> 0: each zoom also moved this many pixels left/right/up/down"),
    "flip_axis": (_flip_axis, "auto, a number, or [partial rows, complete rows]", "the labels' mirror axis: auto = estimated per label subset from the training faces when training starts (fkd.data.mirror; printed, and kept in the run's config.json); 47.5 = pixel centres on integers, 48.5 = 1-based labels"),
    "keep": (_choice("last", "best"), "last, best", "the fold's kept epoch: last (chosen without looking at the scored fold); best (the epoch its validation fold scores best: an optimistic OOF, reported beside the last epochs')"),
    "ema": (_number(0, 1, high_open=True), "0 <= number < 1", "decay of an exponential moving average of the weights (evaluated and kept instead); 0 = off"),
    "precision": (_choice("auto", "bf16", "fp16", "fp32"), "auto, bf16, fp16, fp32", "auto: bf16 on GPUs of compute capability 8.0+, fp16 + GradScaler below (T4); on a CPU bf16 where it has bf16 instructions (avx512_bf16, AMX: 1.3-1.6x faster here, the same RMSE), else fp32; bf16 on a CPU without them is refused"),
    "device": (_device, "auto, cpu, cuda, cuda:<index>", "where training runs"),
    "eval_batch_size": (_int(1), "whole number >= 1", "batch of validation and test prediction"),
    "description": (_of_type(str, "a string"), "string", "what the recipe is and what it measured"),
}
CHECKS = {key: check for key, (check, _, _) in REFERENCE.items()}


def reference_markdown() -> str:
    """docs/configs.md: every key, its default, the values it takes and what it does."""
    lines = ["# Config keys", "",
             "Made by `fkd config --markdown` from `fkd/config.py` (a test checks that it is current). A config",
             "file holds only the keys it changes; the rest take these defaults.", "",
             "| key | default | values | what it does |", "| --- | --- | --- | --- |"]
    for key, (_, allowed, doc) in REFERENCE.items():
        lines.append(f"| `{key}` | `{json.dumps(DEFAULTS[key])}` | {allowed} | {doc} |")
    lines += ["", "`augment` keys (a value of 0 or a missing key turns that augmentation off):", "",
              "| key | a typical value |", "| --- | --- |"]
    lines += [f"| `{key}` | {value} |" for key, value in DEFAULT_AUGMENT.items()]
    return "\n".join(lines) + "\n"


def validate_config(config: dict, source=None) -> dict:
    """Every value checked; the first bad one raises FkdError naming the key, the value and what is allowed."""
    for key, check in CHECKS.items():
        problem = check(config.get(key))
        if problem:
            raise FkdError(f"key {key!r}: {config.get(key)!r} {problem}", path=source)
    if config["only_folds"] is not None and max(config["only_folds"]) >= config["folds"]:
        raise FkdError(f"key 'only_folds': fold {max(config['only_folds'])} does not exist with "
                       f"{config['folds']} folds (0..{config['folds'] - 1})", path=source)
    return config


def _merge(base: dict, override: dict, source, prefix="") -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base and prefix == "":
            close = difflib.get_close_matches(key, sorted(base), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise FkdError(f"unknown key {key!r} ({hint}known: {', '.join(sorted(base))})", path=source)
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


def read_with_bases(path, _seen=()) -> dict:
    """A config file's values with its `base:` chain merged under them. `base: cpu-long-clip` names
    configs/cpu-long-clip.yaml beside it (a path, or a stem of a .yaml/.json file there); a base may
    have a base of its own; a cycle is an error."""
    path = Path(path)
    values = read_config_file(path)
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str) or not base:
        raise FkdError(f"key 'base': {base!r} is not a config file name", path=path)
    candidates = [path.parent / base] + [path.parent / f"{base}{suffix}" for suffix in (".yaml", ".yml", ".json")]
    base_path = next((c for c in candidates if c.is_file()), None)
    if base_path is None:
        raise FkdError(f"key 'base': no config {base!r} beside it ({path.parent / (base + '.yaml')})", path=path)
    chain = (*_seen, path.resolve())
    if base_path.resolve() in chain:
        raise FkdError(f"key 'base': {base!r} leads back to itself ({' -> '.join(p.name for p in chain)} -> "
                       f"{base_path.name})", path=path)
    inherited = read_with_bases(base_path, chain)
    inherited.pop("description", None)  # a recipe says what it is itself
    return _merge_values(inherited, values)


def _merge_values(base: dict, override: dict) -> dict:
    """A delta's keys replace its base's; a mapping (augment, model_options) is replaced whole, since a
    model's options belong to that model (--set augment.rotate=5 changes one nested key)."""
    return {**copy.deepcopy(base), **copy.deepcopy(override)}


def parse_sets(sets) -> dict:
    """["seed=4", "augment.rotate=5", "tta_scales=[1.0]"] -> nested overrides; values read as YAML."""
    overrides = {}
    for item in sets or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise FkdError(f"--set {item!r}: expected key=value (e.g. --set seed=4 --set augment.rotate=5)")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        *parents, leaf = key.strip().split(".")
        target = overrides
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return overrides


def add_set_argument(parser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, value read as YAML (repeatable): --set seed=4 "
                             "--set augment.rotate=5; checked like the file's own keys")


def load_config(path=None, sets=(), **overrides) -> dict:
    """DEFAULTS <- the file (with its base chain) <- --set values <- overrides (None values ignored);
    every value then checked."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        config = _merge(config, read_with_bases(path), path)
        config["name"] = config["name"] or Path(path).stem
    config = _merge(config, parse_sets(sets), "--set")
    config = _merge(config, {k: v for k, v in overrides.items() if v is not None}, "overrides")
    if config["name"] is None and isinstance(config["model"], str):
        config["name"] = config["model"].replace(":", "-")
    return validate_config(config, path)


def dump_config(config: dict) -> str:
    """A resolved config as YAML that load_config reads back to the same dict."""
    return yaml.safe_dump(config, sort_keys=False, width=100)


# ---------------------------------------------------------------- `fkd config`

def add_arguments(parser):
    parser.add_argument("config", nargs="?", help="a config file: print it resolved over the defaults (YAML)")
    parser.add_argument("--markdown", action="store_true", help="the key reference as docs/configs.md holds it")
    add_set_argument(parser)


def run(args):
    if args.config:
        print(dump_config(load_config(args.config, sets=args.set)).rstrip())
    elif args.markdown:
        print(reference_markdown(), end="")
    else:
        width = max(map(len, REFERENCE))
        for key, (_, allowed, doc) in REFERENCE.items():
            print(f"{key:<{width}}  {json.dumps(DEFAULTS[key]):<10} {allowed}\n{'':<{width}}  {doc}")
    return 0
