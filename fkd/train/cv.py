"""`fkd cv`: K-fold cross-validation of a config -> runs/<name>/.

A rerun skips every fold whose checkpoint exists (checkpoints are written atomically, so an
interrupted fold leaves no checkpoint) and resumes an interrupted fold from its last finished
epoch. With --only-fold, just those folds are trained; a later run without it assembles oof.csv,
metrics.json and test_pred.csv from them.
"""
import shutil
import time
from pathlib import Path

import numpy as np

from fkd.core.config import add_set_argument, check_name, load_config
from fkd.core.errors import FkdError
from fkd.core.lock import LOCK_FILE, writer_lock
from fkd.core.metrics import mean_shape, rmse, rmse_report
from fkd.core.provenance import source_commit
from fkd.data.competition import (
    find_data_dir,
    load_lookup,
    load_test,
    load_training,
    lookup_kinds,
    training_fingerprint,
)
from fkd.data.folds import load_folds
from fkd.model.nets import check_model_options
from fkd.train import checkpoint, rundir
from fkd.train.labels import resolve_flip_axis, training_labels
from fkd.train.loop import format_seconds, train_fold


def add_arguments(parser):
    parser.add_argument("--data-dir", help="competition folder (default: data/, then /kaggle/input)")
    parser.add_argument("--config", help="YAML/JSON file of settings over fkd.config.DEFAULTS")
    parser.add_argument("--folds", type=int, help="number of folds K")
    parser.add_argument("--only-fold", type=int, action="append", help="train only this fold (repeatable)")
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:1")
    parser.add_argument("--name", help="run name (default: the config's name or file stem)")
    parser.add_argument("--runs-dir", default="runs", help="where run folders go")
    add_set_argument(parser)


def log(message: str) -> None:
    print(message, flush=True)


def _check_same_run(run_dir: Path, config: dict) -> None:
    """A folder holding a finished fold or a resume state of another config is refused (nothing of it
    is replaced); one with neither (a failed first try) is not a run, and the new config replaces its
    config.json."""
    path = run_dir / "config.json"
    if not path.is_file() or not (rundir.fold_files(run_dir) or list(run_dir.glob("resume-fold*.pt"))):
        return
    saved, wanted = checkpoint.trained_settings(rundir.read_json(path)), checkpoint.trained_settings(config)
    changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if changed:
        raise FkdError(f"holds a run of another config (differs in {', '.join(changed)}); "
                       "pass another --name or remove the folder", path=run_dir)


def _finished_folds(run_dir: Path, config: dict, fingerprint: str, folds) -> set:
    """The folds already trained, each checked to belong to this run before anything is written: a
    fold of another run (or one that would run code on load) is refused; a damaged one is moved
    aside and trained again."""
    finished = set()
    for path in rundir.fold_files(run_dir):
        fold = rundir.fold_index(path)
        if fold >= config["folds"]:
            raise FkdError(f"is not a fold of a {config['folds']}-fold run: move it out of the run folder",
                           path=path)
        try:
            found = checkpoint.load(path)
        except checkpoint.RefusedCheckpoint:
            raise
        except FkdError as error:
            damaged = path.with_name(path.name + ".damaged")
            path.replace(damaged)
            log(f"fold {fold}: {error}; moved to {damaged.name}, training the fold again")
            continue
        checkpoint.check_identity(path, found, fold, config, fingerprint, folds)
        finished.add(fold)
    return finished


def run_cv(data_dir, config: dict, runs_dir="runs", on_epoch=None) -> Path:
    """Train every missing fold of `config`; when all folds exist, write the run's results. One
    process writes a run at a time (its folder's lock); a failed first try leaves no folder behind.
    on_epoch(fold, epoch, val_rmse): told every epoch's validation RMSE (fkd tune's pruner)."""
    data_dir = find_data_dir(data_dir)
    run_dir = Path(runs_dir) / config["name"]
    check_model_options(config)
    if config["pseudo_labels"]:  # the teacher's every fold is read later: checked before anything is made
        rundir.check_finished_run(config["pseudo_labels"])
    images, truth = load_training(data_dir)
    config = resolve_flip_axis(config, images, truth, log)
    image_ids, test_images = load_test(data_dir)
    folds = load_folds(data_dir, config["folds"], config["fold_seed"])
    new_folder = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FkdError(f"cannot write there: {error.strerror or error}", path=run_dir) from None
    with writer_lock(run_dir, log):
        try:
            _train_run(run_dir, config, images, truth, image_ids, test_images, folds, load_lookup(data_dir), on_epoch)
        except BaseException:
            if new_folder:  # only the lock's holder may: a second writer refused never removes the first's folder
                _remove_if_empty(run_dir)
            raise
    return run_dir


def _remove_if_empty(run_dir: Path) -> None:
    """Remove a run folder this call made that holds nothing trained (its config.json and lock only)."""
    if {p.name for p in run_dir.iterdir()} <= {"config.json", LOCK_FILE}:
        shutil.rmtree(run_dir, ignore_errors=True)


def _train_run(run_dir, config, images, truth, image_ids, test_images, folds, lookup, on_epoch=None) -> None:
    fingerprint = training_fingerprint(images, truth)
    rundir.check_same_data(run_dir, images, truth)
    _check_same_run(run_dir, config)
    done = _finished_folds(run_dir, config, fingerprint, folds)
    rundir.write_json(run_dir / "config.json", {**config, "fkd_commit": source_commit()})

    labels = training_labels(truth, config)
    test_subsets = lookup_kinds(lookup, image_ids, truth)
    baseline = rmse(mean_shape(truth)[None], truth)
    log(f"run {run_dir}: {len(images)} training rows, {len(test_images)} test images, "
        f"{config['folds']} folds, model {config['model']} (mean-shape RMSE {baseline:.4f})")
    unlabelled = int((np.isnan(labels).all(axis=1) & ~np.isnan(truth).all(axis=1)).sum())
    if unlabelled:
        log(f"{unlabelled} rows farthest from the mean shape train on no labels (drop_label_outliers)")

    wanted = config["only_folds"] if config["only_folds"] is not None else range(config["folds"])
    fold_seconds = []
    for fold in wanted:
        path = run_dir / f"fold{fold}.pt"
        if fold in done:
            log(f"fold {fold}: done already ({path})")
            continue
        started = time.perf_counter()
        resume = rundir.resume_path(run_dir, fold)
        trained = train_fold(fold, images, labels, truth, folds, config, test_images, test_subsets, log=log,
                             resume_path=resume, on_epoch=on_epoch)
        trained["seconds"] = time.perf_counter() - started
        checkpoint.save(trained, path)
        resume.unlink(missing_ok=True)
        done.add(fold)
        fold_seconds.append(trained["seconds"])
        waiting = [k for k in wanted if k not in done]
        left = (f"; about {format_seconds(np.mean(fold_seconds) * len(waiting))} left for {len(waiting)} more "
                f"fold{'s' if len(waiting) > 1 else ''}" if waiting else "")
        log(f"fold {fold}: val RMSE {trained['val_rmse']:.4f} at epoch {trained['best_epoch']} "
            f"(keep: {config['keep']}; {trained['seconds']:.0f} s) -> {path}{left}")

    if len(done) < config["folds"]:
        log(f"{len(done)}/{config['folds']} folds finished; rerun to continue")
        return

    oof = np.full(truth.shape, np.nan, dtype=np.float32)
    last_epoch_oof = np.full(truth.shape, np.nan, dtype=np.float32)
    test_predictions, history, fold_seconds = [], [], []
    for fold in range(config["folds"]):
        kept = checkpoint.load(run_dir / f"fold{fold}.pt")
        oof[kept["valid_index"]] = kept["val_pred"]
        last_epoch_oof[kept["valid_index"]] = kept.get("last_val_pred", kept["val_pred"])
        test_predictions.append(kept["test_pred"])
        history.extend(kept["history"])
        fold_seconds.append(round(float(kept.get("seconds", 0.0)), 1))
    metrics = rmse_report(oof, truth)
    metrics.update({"mean_shape_rmse": baseline, "ratio_to_mean_shape": metrics["rmse"] / baseline,
                    "train_seconds": sum(fold_seconds), "fold_seconds": fold_seconds, "folds": config["folds"], "epochs": config["epochs"],
                    "keep": config["keep"]})
    if config["keep"] == "best":  # the optimistic choice: the honest figure beside it
        metrics["rmse_last_epoch"] = rmse(last_epoch_oof, truth)
    (run_dir / "metrics.json").unlink(missing_ok=True)  # the run is unfinished until its files agree again
    rundir.write_data_stamp(run_dir, images, truth)
    rundir.write_oof(run_dir, folds, oof)
    rundir.write_test_predictions(run_dir, image_ids, np.mean(test_predictions, axis=0))
    rundir.write_json(run_dir / "history.json", history)
    rundir.write_manifest(run_dir)
    rundir.write_json(run_dir / "metrics.json", metrics)
    log(f"run {run_dir}: OOF RMSE {metrics['rmse']:.4f} (complete rows {metrics['rmse_complete']:.4f}, "
        f"partial rows {metrics['rmse_partial']:.4f}; {metrics['ratio_to_mean_shape']:.3f} x mean shape)"
        + (f"; the last epochs' OOF RMSE {metrics['rmse_last_epoch']:.4f} (keep: best picks on the scored fold)"
           if "rmse_last_epoch" in metrics else ""))


def run(args):
    if args.name is not None:
        check_name(args.name, "--name")
    config = load_config(args.config, sets=args.set, folds=args.folds, epochs=args.epochs, device=args.device,
                         name=args.name, only_folds=args.only_fold)
    run_dir = run_cv(args.data_dir, config, args.runs_dir)
    if not (run_dir / "metrics.json").is_file():
        return 0
    if rundir.report_is_current(run_dir):
        print(f"{run_dir}: report.md is newer than every fold (`fkd report {run_dir}` draws it again)")
    else:  # a finished run: the command line draws its report next
        args.then = ["report", str(run_dir), "--data-dir", str(find_data_dir(args.data_dir))]
    return 0
