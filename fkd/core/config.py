"""Training configs: small YAML/JSON files merged over DEFAULTS. An unknown key is a typo and an error;
every value is checked (type, range, allowed values) when the config is loaded, before any data is read,
and each error names where its value came from: a file, a base file, or a --set. Files and --set values
are read defensively (RULES): size caps counted before YAML aliases expand, no key twice."""
import copy
import difflib
import json
import math
import re
import reprlib
import textwrap
from collections.abc import Hashable
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

MAX_FILE_BYTES = 1_000_000  # a config file larger than this is not read
MAX_VALUES = 10_000         # values in a config (or a --set value) once its YAML aliases are expanded
MAX_TEXT = 1_000_000        # characters of text in it, likewise

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

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 120, 60, 6, 6, 3


def _shown(value) -> str:
    """repr(value), cut short for a one-line message (bounded work, however big the value)."""
    return _SHORT.repr(value)


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


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")  # one folder (or file) name on every system


def _name_problem(name):
    if not isinstance(name, str):
        return "is not a string"
    if not _SAFE_NAME.fullmatch(name):
        return ("is not a safe folder name: a letter or digit, then letters, digits, '.', '_', '+' or '-', "
                "at most 100 in all")


def _name(v):
    return None if v is None else _name_problem(v)


def check_name(name, what="--name") -> str:
    """A run's (or a submission's) name that is one safe folder name, returned; else FkdError naming `what`."""
    problem = _name_problem(name)
    if problem:
        raise FkdError(f"{what} {_shown(name)} {problem}")
    return name


# key -> (check, allowed values, what it does); `fkd config` and docs/configs.md are made from it
REFERENCE = {
    "name": (_name, "folder name: letters, digits, . _ + - (first a letter or digit; at most 100)", "run folder name (runs/<name>/); default: the config file's stem"),
    "model": (_model, "lenet, seedcnn, convnet, timm:<name>, heatmap:<timm name>, heatmap:convnet", "the network"),
    "model_options": (_of_type(dict, "a mapping"), "mapping", "passed to fkd.model.nets.build_model (widths, dropout, drop_stem_pool, weights, ...); over a `base:` of the same model merged key by key, else only the file's own (the `base:` rule)"),
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
    "augment": (_augment, "mapping of " + ", ".join(DEFAULT_AUGMENT), "fkd.model.augment settings on the training batch; {} = none; a file's replaces its `base:`'s whole"),
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


BASE_RULE = textwrap.fill(
    "`base: NAME` merges the config NAME (a file beside this one; a chain of bases is fine, a cycle is refused) "
    "under the file (every key but the base's `description`): the file's keys replace the base's, and a "
    "mapping such as `augment` replaces the base's whole (a missing augment key is that augmentation off). "
    "`model_options` is the exception: while the model stays the same (the file names the base's `model`, or "
    "none), the file's options are merged key by key over the base's, so `model_options: {stem: 16}` changes "
    "one option and keeps the rest; a file that changes `model` takes only its own `model_options` (none: the "
    "new model's defaults), since a model's options belong to that model. `--set` edits the resolved config: "
    "`--set model_options.stem=16` or `--set augment.rotate=5` changes that one key and keeps the others "
    "(`--set model=...` keeps the options, checked against the new model).",
    width=100, break_on_hyphens=False)

RULES = textwrap.fill(
    f"A config file is UTF-8 YAML (or JSON) of at most {MAX_FILE_BYTES:,} bytes holding one mapping, and a key "
    "appears once in each mapping. `1e-3`, `5e4` and `-1E-2` are numbers, in a file and in `--set lr=1e-3`. "
    f"YAML anchors and aliases are read, but a config expands to at most {MAX_VALUES:,} values and "
    f"{MAX_TEXT:,} characters of text (aliases expanded). `name` (by default the file's stem) is one folder "
    "name: a letter or digit, then letters, digits, `.`, `_`, `+` or `-`, at most 100 in all. "
    "`fkd config FILE` also checks `model_options` as `fkd cv` does, before anything is written.",
    width=100, break_on_hyphens=False) + "\n\n" + BASE_RULE  # `fkd config` prints RULES; so does docs/configs.md


def reference_markdown() -> str:
    """docs/configs.md: every key, its default, the values it takes and what it does."""
    lines = ["# Config keys", "",
             "Made by `fkd config --markdown` from `fkd/core/config.py` (a test checks that it is current). A",
             "config file holds only the keys it changes; the rest take these defaults.", "", RULES, "",
             "| key | default | values | what it does |", "| --- | --- | --- | --- |"]
    for key, (_, allowed, doc) in REFERENCE.items():
        lines.append(f"| `{key}` | `{json.dumps(DEFAULTS[key])}` | {allowed} | {doc} |")
    lines += ["", "`augment` keys (a value of 0 or a missing key turns that augmentation off):", "",
              "| key | a typical value |", "| --- | --- |"]
    lines += [f"| `{key}` | {value} |" for key, value in DEFAULT_AUGMENT.items()]
    return "\n".join(lines) + "\n"


def validate_config(config: dict, origins=None) -> dict:
    """Every value checked; the first bad one raises FkdError naming where it came from (`origins`: key ->
    its file or `--set key=value`; a key not in it, such as a keyword override, names no place), the key,
    the value and what is allowed."""
    origins = origins or {}
    for key, check in CHECKS.items():
        problem = check(config.get(key))
        if problem:
            raise FkdError(f"key {key!r}: {_shown(config.get(key))} {problem}", path=origins.get(key))
    if config["only_folds"] is not None and max(config["only_folds"]) >= config["folds"]:
        raise FkdError(f"key 'only_folds': fold {max(config['only_folds'])} does not exist with "
                       f"{config['folds']} folds (0..{config['folds'] - 1})", path=origins.get("only_folds"))
    return config


# ---------------------------------------------------------------- reading files and --set values

_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """YAML as configs read it: `1e-3` is a number (YAML 1.1 reads it as text), and a key appears once in
    a mapping (PyYAML would keep the last silently)."""

    def __init__(self, text: str, source):
        super().__init__(text)
        self.source = source

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *shared` merges keys the mapping's own may override
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):  # the base class refuses it
                continue
            if key in seen:
                raise FkdError(f"duplicate key {_shown(key)} (line {key_node.start_mark.line + 1})", path=self.source)
            seen.add(key)
        return super().construct_mapping(node, deep)


class _Dumper(yaml.SafeDumper):
    """Writes what _Loader reads back the same: a text such as '1e5' quoted."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789"))
_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789"))


def _check_size(root, parts, source) -> None:
    """Refuse a value past MAX_VALUES values or MAX_TEXT characters once its aliases are expanded (an
    alias bomb, or just too much), counted without expanding it: a shared part is counted once and its
    size reused. `parts(item)` is the item's text, or a list of its parts."""
    sizes = {}  # id(item) -> (values, characters); None while its own parts are counted

    def size(item):
        inner = parts(item)
        if isinstance(inner, str):
            return 1, len(inner)
        if id(item) not in sizes:
            sizes[id(item)] = None
            counts = [size(part) for part in inner]
            sizes[id(item)] = 1 + sum(n for n, _ in counts), sum(c for _, c in counts)
        if sizes[id(item)] is None:
            raise FkdError("an alias refers to a value that holds it (a loop)", path=source)
        return sizes[id(item)]

    values, characters = size(root)
    if values > MAX_VALUES or characters > MAX_TEXT:
        raise FkdError(f"expands to {values:,} values ({characters:,} characters) once its aliases are "
                       f"expanded; a config holds at most {MAX_VALUES:,} values and {MAX_TEXT:,} characters",
                       path=source)


def _node_parts(node):
    """A YAML node's text (a scalar), items (a sequence), or keys and values (a mapping)."""
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return node.value


def _value_parts(value):
    """A JSON value's parts, as _node_parts gives a YAML node's."""
    if isinstance(value, dict):
        return [*value, *value.values()]
    return value if isinstance(value, list) else str(value)


def _read_yaml(text: str, source):
    """YAML text -> its value: composed into nodes, counted (_check_size), and only then built. A syntax
    error is a yaml.YAMLError; a loop, a size past the caps or a key twice is FkdError naming `source`."""
    loader = _Loader(text, source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, _node_parts, source)
        return loader.construct_document(node)
    except RecursionError:
        raise FkdError("nested too deeply", path=source) from None
    except ValueError as error:  # a value Python cannot hold: 2024-02-30, an int of 5,000 digits
        raise yaml.constructor.ConstructorError(None, None, str(error)) from None
    finally:
        loader.dispose()


def _read_json(text: str, source):
    """JSON text -> its value, counted as YAML's is; a key twice is a JSONDecodeError at its value."""
    decoder = json.JSONDecoder()
    decoder.parse_object = _json_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # the C scanner ignores parse_object
    try:
        value = decoder.decode(text)
        _check_size(value, _value_parts, source)
    except RecursionError:
        raise FkdError("nested too deeply", path=source) from None
    return value


def _json_object(s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo=None):
    """json's own object parser, told where each value starts, so that a key twice names its line."""
    starts = []

    def scan_value(text, index):
        starts.append(index)
        return scan_once(text, index)

    pairs, end = json.decoder.JSONObject(s_and_end, strict, scan_value, None, list, memo)
    seen = set()
    for (key, _), start in zip(pairs, starts):
        if key in seen:
            raise json.JSONDecodeError(f"duplicate key {_shown(key)}", s_and_end[0], start)
        seen.add(key)
    return dict(pairs), end


def _syntax_problem(error) -> str:
    """A YAML or JSON error in one line: what is wrong and where."""
    problem, mark = getattr(error, "problem", None), getattr(error, "problem_mark", None)
    if problem and mark:  # YAML: "while scanning a simple key", "could not find expected ':'"
        said = ", ".join(part for part in (getattr(error, "context", None), problem) if part)
        return f"{said} (line {mark.line + 1}, column {mark.column + 1})"
    return (str(error).splitlines() or [type(error).__name__])[0]


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FkdError("no such config file", path=path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise FkdError(f"cannot be read: {error.strerror}", path=path) from None
    if len(data) > MAX_FILE_BYTES:
        raise FkdError(f"larger than {MAX_FILE_BYTES:,} bytes: not a config file", path=path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FkdError(f"not a UTF-8 text file (byte 0x{data[error.start]:02x} at offset {error.start})",
                       path=path) from None


def read_config_file(path) -> dict:
    """A config file's own values (its `base:` not followed)."""
    path = Path(path)
    text = _read_text(path)
    language = "JSON" if path.suffix == ".json" else "YAML"
    try:
        values = _read_json(text, path) if language == "JSON" else _read_yaml(text, path)
    except (ValueError, yaml.YAMLError) as error:  # json.JSONDecodeError is a ValueError
        raise FkdError(f"not valid {language}: {_syntax_problem(error)}", path=path) from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise FkdError("a config is a mapping of keys to values", path=path)
    return values


def read_with_bases(path, _seen=()) -> tuple:
    """(values, files): a config file's values with its `base:` chain merged under them, and the file
    each value was read from. `base: cpu-long-clip` names configs/cpu-long-clip.yaml beside it (a path,
    or a stem of a .yaml/.json file there); a base may have a base of its own; a cycle is an error."""
    path = Path(path)
    values = read_config_file(path)
    base = values.pop("base", None)
    files = dict.fromkeys(values, path)
    if base is None:
        return values, files
    if not isinstance(base, str) or not base:
        raise FkdError(f"key 'base': {_shown(base)} is not a config file name", path=path)
    candidates = [path.parent / base] + [path.parent / f"{base}{suffix}" for suffix in (".yaml", ".yml", ".json")]
    base_path = next((c for c in candidates if c.is_file()), None)
    if base_path is None:
        raise FkdError(f"key 'base': no config {base!r} beside it ({path.parent / (base + '.yaml')})", path=path)
    chain = (*_seen, path.resolve())
    if base_path.resolve() in chain:
        raise FkdError(f"key 'base': {base!r} leads back to itself ({' -> '.join(p.name for p in chain)} -> "
                       f"{base_path.name})", path=path)
    inherited, inherited_files = read_with_bases(base_path, chain)
    inherited.pop("description", None)  # a recipe says what it is itself
    merged = _merge_values(inherited, values)
    return merged, {key: where for key, where in {**inherited_files, **files}.items() if key in merged}


def _merge_values(base: dict, override: dict) -> dict:
    """A delta's keys over its (resolved) base's (BASE_RULE). A key's value replaces the base's whole, a
    mapping such as `augment` too (a missing augment key is that augmentation off, so a delta's augment
    says all of it), except `model_options`, since a model's options belong to that model: while the
    model stays the same (the delta names the base's model, or none) the delta's options are merged key
    by key over the base's; a delta that changes the model takes only its own options (none: the new
    model's defaults). --set edits the resolved config key by key (_merge)."""
    merged = {**copy.deepcopy(base), **copy.deepcopy(override)}
    base_model = base.get("model", DEFAULTS["model"])
    if override.get("model", base_model) != base_model:
        if "model_options" not in override:
            merged.pop("model_options", None)  # the base model's options do not follow it to another model
    elif isinstance(base.get("model_options"), dict) and isinstance(override.get("model_options"), dict):
        merged["model_options"] = {**copy.deepcopy(base["model_options"]), **copy.deepcopy(override["model_options"])}
    return merged


def parse_set(item: str) -> dict:
    """"augment.rotate=5" -> {"augment": {"rotate": 5}}, the value read as YAML (one that is not YAML,
    such as `[wip] more`, as its text), with a file's guards: no key twice, nothing past the caps."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise FkdError(f"--set {item!r}: expected key=value (e.g. --set seed=4 --set augment.rotate=5)")
    try:
        value = _read_yaml(text, _set_source(item)) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    for name in reversed(key.strip().split(".")):
        value = {name: value}
    return value


def _set_source(item: str) -> str:
    """What an error in a --set value names: `--set lr=abc`."""
    return f"--set {item}" if item.isprintable() else f"--set {_shown(item)}"


def add_set_argument(parser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, value read as YAML (repeatable): --set seed=4 "
                             "--set augment.rotate=5; checked like the file's own keys")


# ---------------------------------------------------------------- the resolved config

def _merge(base: dict, override: dict, source, prefix="") -> dict:
    """`override`'s keys over `base` (a mapping merged key by key where base has one); an unknown top
    key is FkdError naming `source`."""
    merged = dict(base)
    for key, value in override.items():
        if key not in base and prefix == "":
            close = difflib.get_close_matches(key, sorted(base), n=1) if isinstance(key, str) else []
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise FkdError(f"unknown key {_shown(key)} ({hint}known: {', '.join(sorted(base))})", path=source)
        if isinstance(base.get(key), dict) and isinstance(value, dict) and base.get(key):
            merged[key] = _merge(base[key], value, source, prefix + key + ".")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(path=None, sets=(), **overrides) -> dict:
    """DEFAULTS <- the file (with its base chain) <- --set values <- overrides (None values ignored);
    every value then checked, an error naming where the value came from (its file, or its --set)."""
    layers = []  # (values, where they came from)
    if path is not None:
        values, files = read_with_bases(path)
        layers += [({key: value}, files[key]) for key, value in values.items()]
    layers += [(parse_set(item), _set_source(item)) for item in sets or ()]
    layers += [({key: value}, None) for key, value in overrides.items() if value is not None]
    config, origins = copy.deepcopy(DEFAULTS), {}
    for values, source in layers:
        config = _merge(config, values, source)
        origins.update(dict.fromkeys(values, source))
    if config["name"] is None:
        config["name"], origins["name"] = _default_name(config, path), path
    return validate_config(config, origins)


def _default_name(config: dict, path):
    """The config file's stem, or without a file the model's name ('timm:resnet34' -> 'timm-resnet34')."""
    if path is not None:
        return Path(path).stem
    return config["model"].replace(":", "-") if _model(config["model"]) is None else None


def dump_config(config: dict) -> str:
    """A resolved config as YAML that load_config reads back to the same dict."""
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=100)
