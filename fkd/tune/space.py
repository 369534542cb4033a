"""A search space: a small YAML file of config keys (dotted, as `--set` takes them) and their ranges.

    lr: {log: [1.0e-4, 1.0e-2]}        # log-uniform between the two
    weight_decay: {float: [0.0, 0.1]}  # uniform
    augment.rotate: {int: [0, 20]}     # whole numbers, both ends included
    loss: {choice: [mse, l1]}          # one of the list

Every key and every value the space can produce (each end of a range, a value inside it, each choice)
is checked against the base config as `fkd cv --set` checks it, model_options by building the model,
before the first trial: an unknown key, a range outside what the key allows, an empty choice is one
line, and nothing is trained.
"""
import json
import math
from pathlib import Path

from fkd.core.config import load_config, read_config_file
from fkd.core.errors import FkdError
from fkd.model.nets import check_model_options

KINDS = ("log", "float", "int", "choice")


def _check_entry(key, entry, path) -> tuple:
    """(kind, values) of one key's entry, or FkdError naming the key."""
    if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in KINDS:
        raise FkdError(f"{key}: expected one of {{log: [low, high]}}, {{float: [low, high]}}, {{int: [low, high]}}, "
                       f"{{choice: [a, b, ...]}}, got {entry!r}", path=path, column=key)
    [(kind, values)] = entry.items()
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise FkdError("choice: needs a non-empty list", path=path, column=key)
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise FkdError("choice: a value appears twice", path=path, column=key)
        return kind, values
    if (not isinstance(values, list) or len(values) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)):
        raise FkdError(f"{kind}: needs [low, high], two finite numbers, got {values!r}", path=path, column=key)
    low, high = values
    if kind == "int" and not all(float(v).is_integer() for v in values):
        raise FkdError(f"int: needs whole numbers, got {values!r}", path=path, column=key)
    if not low < high:
        raise FkdError(f"{kind}: low {low} must be below high {high}", path=path, column=key)
    if kind == "log" and low <= 0:
        raise FkdError(f"log: low {low} must be above 0", path=path, column=key)
    return kind, [int(v) for v in values] if kind == "int" else [float(v) for v in values]


def read_space(path) -> dict:
    """{dotted key: (kind, values)} of a space file, its form checked (not yet its values)."""
    path = Path(path)
    if not path.is_file():
        raise FkdError("no such search space file", path=path)
    entries = read_config_file(path)
    if not entries:
        raise FkdError("names no key to search", path=path)
    return {str(key): _check_entry(key, entry, path) for key, entry in entries.items()}


def set_text(key: str, value) -> str:
    """`key=value` as `--set` takes it (JSON is YAML, so lists and strings read back as they were)."""
    return f"{key}={json.dumps(value)}"


def candidates(kind, values) -> list:
    """The values a key's range is checked with: both ends and one inside, or every choice."""
    if kind == "choice":
        return list(values)
    low, high = values
    inside = math.sqrt(low * high) if kind == "log" else (low + high) / 2
    return [low, int(round(inside)) if kind == "int" else inside, high]


def check_space(space: dict, base, sets=(), path=None) -> None:
    """FkdError (naming the space file and key) for the first value the space can produce that the base
    config refuses; model_options (and model) values are checked by building the model."""
    for key, (kind, values) in space.items():
        if key in ("name", "only_folds", "folds", "fold_seed"):
            raise FkdError(f"a trial's {key} is fkd tune's to set, not the space's", path=path, column=key)
        for value in candidates(kind, values):
            try:
                config = load_config(base, sets=[*sets, set_text(key, value)])
                if key == "model" or key.startswith("model_options"):
                    check_model_options(config)
            except FkdError as error:
                raise FkdError(f"{kind} value {value!r} is refused: {error}", path=path, column=key) from None


def suggest(trial, space: dict) -> list:
    """The `--set` items of one trial, each value drawn by the Optuna trial."""
    sets = []
    for key, (kind, values) in space.items():
        if kind == "choice":
            value = trial.suggest_categorical(key, _choices(values))
            value = value if plain_choices(values) else values[value]
        elif kind == "int":
            value = trial.suggest_int(key, values[0], values[1])
        else:
            value = trial.suggest_float(key, values[0], values[1], log=kind == "log")
        sets.append(set_text(key, value))
    return sets


def chosen_sets(params: dict, space: dict) -> list:
    """The `--set` items of a finished trial's params (as `suggest` drew them)."""
    return [set_text(key, values[params[key]] if kind == "choice" and not plain_choices(values) else params[key])
            for key, (kind, values) in space.items() if key in params]


def plain_choices(values) -> bool:
    """Whether Optuna can hold the choices themselves (else it holds their index: a list, a mapping)."""
    return all(value is None or isinstance(value, (bool, int, float, str)) for value in values)


def _choices(values) -> list:
    return list(values) if plain_choices(values) else list(range(len(values)))
