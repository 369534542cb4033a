"""A study on Optuna's storage, whose trials are fkd runs.

Storage: an SQLite file in runs/<study>/ by default (nothing to install or start), or any database
URL Optuna takes (postgresql://, mysql://): the same command typed on several machines joins the
study. Workers send a heartbeat: a worker killed mid-trial leaves its trial failed once the heartbeat
is stale, and the trial is tried again, in its own run folder, from its fold's last finished epoch.

A trial is `fkd cv` of the base config with the trial's `--set` values, in runs/<study>/trial-<n>/,
on the folds asked; its value is those folds' kept RMSE over their validation rows (the figure `fkd
cv` prints). Each epoch's validation RMSE is reported to Optuna and the pruner may stop the trial
there; the trial's folder then holds pruned.json saying at which epoch and why.
"""
import json
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from fkd.core.atomic import write_text
from fkd.core.config import check_name, load_config
from fkd.core.errors import FkdError
from fkd.core.metrics import rmse
from fkd.data.competition import load_training
from fkd.train import checkpoint
from fkd.train.cv import run_cv
from fkd.tune.space import plain_choices, suggest

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retries

STORAGE_FILE = "study.db"
HEARTBEAT_S = 30         # a running trial's worker says it is alive this often ...
GRACE_S = 120            # ... and is taken for dead when it has not for this long
MAX_RETRY = 2            # a trial whose worker died is tried again at most this often
PRUNERS = ("median", "hyperband", "none")
WARMUP_PERCENT = 30      # one-cycle warm-up and a young EMA make the first epochs no guide to the last
OBJECTIVES = ("rmse", "seconds")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# what a study is: a worker (here, on another machine, in a kernel) joins it only with the same; the base
# is compared by name, since its path differs from machine to machine
SAME_SETUP = ("base_config", "space", "folds", "objectives", "sets", "steps")


def storage_url(storage, study_dir: Path) -> str:
    """The SQLAlchemy URL of --storage (default: study.db in the study's folder); FkdError for anything
    that is not a database URL Optuna takes. postgresql:// uses psycopg (3), the driver fkd installs."""
    if storage is None:
        return f"sqlite:///{(Path(study_dir) / STORAGE_FILE).resolve()}"
    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        raise FkdError(f"--storage {storage!r} is not a database URL (sqlite:///path/study.db, "
                       "postgresql://user:password@host:5432/db, mysql://user@host/db)") from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql", "mysql"):
        raise FkdError(f"--storage: {backend!r} is not a database Optuna stores studies in: use sqlite, "
                       "postgresql or mysql")
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def shown_url(url: str) -> str:
    """The URL with its password hidden, as fkd prints it."""
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def open_storage(url: str, heartbeat: int = HEARTBEAT_S, grace: int = GRACE_S) -> RDBStorage:
    """The study storage; FkdError in one line when it cannot be reached (nothing is created then)."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=grace,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                          engine_kwargs={"pool_pre_ping": True})
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ModuleNotFoundError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FkdError(f"--storage {shown_url(url)}: cannot open it ({first[:200]})") from None


def make_pruner(name: str):
    if name not in PRUNERS:
        raise FkdError(f"--pruner {name!r}: use one of {', '.join(PRUNERS)}")
    if name == "median":  # steps are percent of a trial's schedule: nothing pruned in its first 30%
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=WARMUP_PERCENT)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=WARMUP_PERCENT, max_resource=100)
    return optuna.pruners.NopPruner()


def open_study(name: str, storage: RDBStorage, objectives, pruner: str, setup: dict) -> optuna.Study:
    """The study of this name (made on first use, with `setup` kept beside it: the base config, the
    space, the folds, ...); an existing study must have been made with the same setup."""
    directions = ["minimize"] * len(objectives)
    study = optuna.create_study(storage=storage, study_name=name, directions=directions, load_if_exists=True,
                                pruner=make_pruner(pruner), sampler=optuna.samplers.TPESampler(seed=None))
    saved = study.user_attrs.get("setup")
    if saved is None:
        study.set_user_attr("setup", setup)
    elif {k: saved.get(k) for k in SAME_SETUP} != {k: setup.get(k) for k in SAME_SETUP}:
        differ = [k for k in SAME_SETUP if saved.get(k) != setup.get(k)]
        raise FkdError(f"study {name!r} was made with another {', '.join(differ)}: pass another --study, or the "
                       "same settings")
    return study



def enqueue_base(study: optuna.Study, space: dict, base_config: dict, log=print) -> None:
    """A new study's first trial is the base config itself (where the space can draw its values): the
    figure every other trial is measured against."""
    if study.get_trials(deepcopy=False):
        return
    params = {}
    for key, (kind, values) in space.items():
        value = base_config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if kind == "choice" and value in values:
            params[key] = value if plain_choices(values) else values.index(value)
        elif kind != "choice" and isinstance(value, (int, float)) and values[0] <= value <= values[1]:
            params[key] = value
    study.enqueue_trial(params, user_attrs={"baseline": True})
    log(f"trial 0 is the base config itself ({', '.join(f'{k}={v}' for k, v in params.items()) or 'no key in range'})")


def kept_rmse(run_dir: Path, folds, truth) -> float:
    """The folds' kept RMSE over their validation rows (one fold: the val RMSE `fkd cv` prints for it)."""
    rows, predictions = [], []
    for fold in folds:
        kept = checkpoint.load(run_dir / f"fold{fold}.pt")
        rows.append(kept["valid_index"])
        predictions.append(kept["val_pred"])
    return rmse(np.concatenate(predictions), truth[np.concatenate(rows)])


def fold_seconds(run_dir: Path, folds) -> float:
    """Mean training time of the folds, in seconds (each fold's checkpoint records it)."""
    return float(np.mean([checkpoint.load(run_dir / f"fold{fold}.pt").get("seconds", 0.0) for fold in folds]))


def trial_folder(study_dir: Path, trial) -> Path:
    """runs/<study>/trial-<n>: a trial tried again after its worker died keeps the first try's folder
    (and goes on from its last finished epoch)."""
    [frozen] = [t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number]
    first = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    return Path(study_dir) / f"trial-{first if first is not None else trial.number:04d}"


def make_objective(setup: dict, space: dict, data_dir, study_dir: Path, log=print):
    """The function Optuna calls per trial: an fkd run of the base config with the trial's values."""
    folds, objectives, pruning = setup["folds"], setup["objectives"], setup["pruning"]
    _, truth = load_training(data_dir)

    def objective(trial):
        run_dir = trial_folder(study_dir, trial)
        sets = [*setup["sets"], *suggest(trial, space)]
        config = load_config(setup["base"], sets=sets, name=run_dir.name, only_folds=folds,
                             device=setup.get("device"))
        trial.set_user_attr("run", str(run_dir))
        trial.set_user_attr("sets", sets)
        log(f"trial {trial.number} ({run_dir}): {' '.join(sets[len(setup['sets']):])}")

        def on_epoch(fold, epoch, val_rmse):
            # the step is the share of the schedule done (percent, fold after fold): trials of other epoch
            # counts are compared at the same point of their one-cycle schedule, not at the same epoch
            step = folds.index(fold) * 100 + round(100 * epoch / config["epochs"])
            trial.report(val_rmse, step)
            last = step == len(folds) * 100  # the work is done by then: nothing to save
            if pruning and not last and trial.should_prune():
                reason = (f"pruned at fold {fold} epoch {epoch}: val RMSE {val_rmse:.4f} is behind the other "
                          f"trials at that step ({setup['pruner']} pruner)")
                write_text(run_dir / "pruned.json", json.dumps({"fold": fold, "epoch": epoch, "step": step,
                                                                "val_rmse": val_rmse, "pruner": setup["pruner"],
                                                                "why": reason}, indent=1))
                log(f"trial {trial.number}: {reason}")
                raise optuna.TrialPruned(reason)

        run_cv(data_dir, config, study_dir, on_epoch=on_epoch if len(objectives) == 1 else None)
        value = kept_rmse(run_dir, folds, truth)
        seconds = fold_seconds(run_dir, folds)
        trial.set_user_attr("seconds_per_fold", seconds)
        log(f"trial {trial.number}: kept RMSE {value:.4f} on fold(s) {', '.join(map(str, folds))} "
            f"({seconds:.0f} s a fold)")
        return value if objectives == ["rmse"] else tuple({"rmse": value, "seconds": seconds}[o] for o in objectives)

    return objective


def _counts(study) -> dict:
    trials = study.get_trials(deepcopy=False)
    return {state: sum(t.state == state for t in trials) for state in TrialState}


def run_worker(study: optuna.Study, objective, trials: int, log=print, poll: float = 5.0,
               timeout_minutes: float = None) -> None:
    """Run trials until the study holds `trials` finished ones (complete or pruned). A trial other
    workers are running counts while it runs; when its worker dies, the heartbeat fails it, it is
    retried, and whichever worker is free takes it. After `timeout_minutes` no new trial starts (the
    one running finishes; this worker always starts one): a rerun goes on from there."""
    deadline = None if timeout_minutes is None else time.monotonic() + 60 * timeout_minutes
    started = 0
    while True:
        optuna.storages.fail_stale_trials(study)
        counts = _counts(study)
        finished = sum(counts[s] for s in FINISHED)
        if finished >= trials and counts[TrialState.WAITING] == 0:
            return
        if deadline is not None and started and time.monotonic() >= deadline:
            log(f"--timeout {timeout_minutes:g} min: no new trial started; the study holds {finished} finished "
                f"of {trials} (the same command goes on)")
            return
        if finished + counts[TrialState.RUNNING] >= trials and counts[TrialState.WAITING] == 0:
            time.sleep(poll)  # the others' trials may still fail and come back to be tried again
            continue
        started += 1
        study.optimize(objective, n_trials=1, catch=(), gc_after_trial=True)


def study_name_of(study, space_path) -> str:
    name = study or Path(space_path).stem
    return check_name(name, "--study")

