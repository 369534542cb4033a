"""What a study found: its trials, the best configuration as a delta config over the base, and pictures
of the search (value per trial, parameter importances, the Pareto front with two objectives) in
runs/<study>/report.md, drawn as fkd draws its other reports (fkd.show.plots)."""
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from fkd.core.atomic import write_text
from fkd.core.config import dump_config, load_config
from fkd.core.errors import FkdError
from fkd.show import plots

MARK = "# written by fkd tune --report"  # the first line of a best config: fkd tune replaces only its own


def trial_rows(study: optuna.Study) -> list:
    """[{number, state, values, params, minutes, run, pruned}] of every trial, in order."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        minutes = ((trial.datetime_complete - trial.datetime_start).total_seconds() / 60
                   if trial.datetime_complete and trial.datetime_start else None)
        rows.append({"number": trial.number, "state": trial.state.name.lower(), "values": trial.values,
                     "params": trial.params, "minutes": minutes, "run": trial.user_attrs.get("run"),
                     "sets": trial.user_attrs.get("sets", []),
                     "step": trial.last_step})
    return rows


def best_trials(study: optuna.Study) -> list:
    """The best trial (one objective), or the Pareto front sorted by RMSE (two)."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return []
    if len(study.directions) == 1:
        return [min(complete, key=lambda t: t.value)]
    return sorted(study.best_trials, key=lambda t: t.values[0])


def base_path(setup: dict, configs_dir) -> Path:
    """The study's base config: by its name in configs_dir (where the best config goes beside it; a study
    made in a Kaggle kernel recorded the kernel's own copy), else where the study recorded it."""
    here = Path(configs_dir) / f"{setup['base_config']}.yaml"
    return here if here.is_file() else Path(setup["base"])


def delta_config(trial, setup: dict, name: str, configs_dir) -> str:
    """A config file over the base holding only the keys the space changed, each with the whole value the
    trial trained with (a dotted key such as augment.rotate gives the trial's whole augment mapping,
    since a file's augment: replaces its base's)."""
    resolved = load_config(base_path(setup, configs_dir), sets=trial.user_attrs.get("sets", []))
    changed = {key.split(".")[0]: resolved[key.split(".")[0]] for key in setup["space"]}
    figure = ", ".join(f"{o} {v:.4f}" for o, v in zip(setup["objectives"], trial.values))
    folds = ",".join(map(str, setup["folds"]))
    base = Path(setup["base"])
    body = {"description": f"fkd tune study {name}: its best trial {trial.number} ({figure} on fold(s) {folds}); "
                           f"the keys its space changed over {base.name}"
                           + (f" with --set {' '.join(setup['sets'])}" if setup["sets"] else ""),
            "base": base.stem, **{key: resolved[key] for key in _set_keys(setup["sets"])}, **changed}
    return MARK + "\n" + dump_config(body)


def _set_keys(sets) -> list:
    """The top-level keys the study's own --set values changed (the best config carries them too)."""
    return [item.partition("=")[0].strip().split(".")[0] for item in sets]


def write_best_config(study, setup: dict, name: str, configs_dir) -> Path:
    """configs/<study>-best.yaml (beside the base, so its base: resolves); never over a file fkd tune did
    not write."""
    best = best_trials(study)
    if not best:
        return None
    path = Path(configs_dir) / f"{name}-best.yaml"
    if path.exists() and not path.read_text().startswith(MARK):
        raise FkdError("exists and fkd tune did not write it: move it, or pass --configs-dir", path=path)
    base = base_path(setup, configs_dir)
    if not base.is_file():
        raise FkdError(f"the study's base config {setup['base']} is not here: pass --configs-dir, the folder "
                       f"holding {setup['base_config']}.yaml", path=configs_dir)
    if Path(configs_dir).resolve() != base.resolve().parent:
        raise FkdError(f"the best config goes beside its base {base} (its base: names a file there): "
                       f"pass --configs-dir {base.parent}", path=path)
    return write_text(path, delta_config(best[0], setup, name, configs_dir))


def plot_values(rows, objectives):
    fig = plots.new_figure(7, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    done = [r for r in rows if r["state"] == "complete"]
    if done:
        numbers = [r["number"] for r in done]
        values = [r["values"][0] for r in done]
        ax.plot(numbers, values, "o", color="tab:blue", label="complete")
        ax.plot(numbers, np.minimum.accumulate(values), "-", color="tab:green", label="best so far")
    pruned = [r for r in rows if r["state"] == "pruned"]
    if pruned:
        ax.plot([r["number"] for r in pruned], [np.nan] * len(pruned), "x", color="tab:red")
        for r in pruned:
            ax.axvline(r["number"], color="tab:red", alpha=0.2)
        ax.plot([], [], color="tab:red", alpha=0.4, label="pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{objectives[0]} (kept, px)")
    ax.set_title("value per trial")
    ax.legend(fontsize=8)
    return fig


def plot_importances(importances: dict):
    fig = plots.new_figure(6, 0.5 + 0.35 * max(1, len(importances)))
    ax = fig.add_subplot(1, 1, 1)
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (Optuna's PED-ANOVA: how much each value's range decides the good trials)")
    ax.set_title("parameter importances")
    return fig


def plot_pareto(rows, front_numbers):
    fig = plots.new_figure(5, 4)
    ax = fig.add_subplot(1, 1, 1)
    done = [r for r in rows if r["state"] == "complete"]
    ax.plot([r["values"][1] / 60 for r in done], [r["values"][0] for r in done], "o", color="lightgrey",
            label="trials")
    front = sorted((r for r in done if r["number"] in front_numbers), key=lambda r: r["values"][1])
    ax.plot([r["values"][1] / 60 for r in front], [r["values"][0] for r in front], "o-", color="tab:red",
            label="Pareto front")
    ax.set_xlabel("training minutes per fold")
    ax.set_ylabel("rmse (kept, px)")
    ax.set_title("accuracy against time")
    ax.legend(fontsize=8)
    return fig


def _importances(study) -> dict:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2 or not complete[0].params:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PED-ANOVA's reminder that lower values are the better ones
            return optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
    except (ValueError, RuntimeError):  # every trial drew the same values: nothing to attribute
        return {}


def report_markdown(name, setup, rows, best, importances, pictures, best_path) -> str:
    objectives = setup["objectives"]
    lines = [f"# Study {name}", "",
             f"- base {setup['base']}" + (f" with --set {' '.join(setup['sets'])}" if setup["sets"] else ""),
             f"- space {setup.get('space_file')}: {', '.join(setup['space'])}",
             f"- folds {', '.join(map(str, setup['folds']))}; objective {', '.join(objectives)}; "
             f"pruner {setup['pruner'] if setup['pruning'] else 'none'}",
             f"- trials: " + ", ".join(f"{sum(r['state'] == s for r in rows)} {s}"
                                       for s in ("complete", "pruned", "fail", "running", "waiting")), ""]
    if best:
        lines.append(f"Best: trial {best[0].number}, " + ", ".join(f"{o} {v:.4f}" for o, v in zip(objectives, best[0].values))
                     + (f"; as a config: `{best_path}`" if best_path else ""))
        lines.append("")
    lines += ["| trial | state | " + " | ".join(objectives) + " | minutes | values |",
              "| ---: | --- | " + " | ".join("---:" for _ in objectives) + " | ---: | --- |"]
    for r in rows:
        values = [f"{v:.4f}" if o == "rmse" else f"{v:.0f}" for o, v in zip(objectives, r["values"] or [])]
        values += [""] * (len(objectives) - len(values))
        state = r["state"] + (f" (at {r['step']}% of its schedule)" if r["state"] == "pruned" and r["step"] is not None
                              else "")
        minutes = f"{r['minutes']:.1f}" if r["minutes"] is not None else ""
        params = ", ".join(f"{k}={_short(v)}" for k, v in r["params"].items())
        lines.append(f"| {r['number']} | {state} | " + " | ".join(values) + f" | {minutes} | {params} |")
    if importances:
        lines += ["", "## Parameter importances", ""] + [f"- {k}: {v:.3f}" for k, v in importances.items()]
    lines += ["", "## Pictures", ""] + [f"- `{Path(p).name}`" for p in pictures]
    return "\n".join(lines) + "\n"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_and_draw(name: str, storage, study_dir, configs_dir="configs") -> Path:
    """Print the study's trials and best, write its best config and runs/<study>/report.md with pictures."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise FkdError(f"no study named {name!r} in that storage") from None
    setup = study.user_attrs.get("setup")
    if setup is None:
        raise FkdError(f"study {name!r} was not made by fkd tune (no setup kept beside it)")
    study_dir = Path(study_dir)
    rows = trial_rows(study)
    best = best_trials(study)
    importances = _importances(study)
    pictures = [plots.save_figure(plot_values(rows, setup["objectives"]), study_dir / "values.png")]
    if importances:
        pictures.append(plots.save_figure(plot_importances(importances), study_dir / "importances.png"))
    if len(setup["objectives"]) == 2 and best:
        pictures.append(plots.save_figure(plot_pareto(rows, {t.number for t in best}), study_dir / "pareto.png"))
    best_path = write_best_config(study, setup, name, configs_dir)
    text = report_markdown(name, setup, rows, best, importances, pictures, best_path)
    path = write_text(study_dir / "report.md", text)
    print(text)
    return path
