"""`fkd report RUN_DIR... [--data-dir DIR]`: plots of finished runs, written into each run folder.

`write_run_report(run_dir, images, keypoints, test_images)` is what the training loop calls after
cross-validation. It reads the run folder (see fkd.train.rundir):
    config.json, metrics.json         required
    history.json                      list of per-epoch records {fold, epoch, train_loss, val_loss,
                                      val_rmse, ...} (a list of per-fold lists is accepted too)
    oof.csv                           row, fold, the 30 Kaggle columns (row = training-array index)
    test_pred.csv                     optional: ImageId, the 30 columns
and writes curves.png, per_keypoint.png, worst_oof.png (needs the training images and keypoints),
test_predictions.png (needs the test images and test_pred.csv) and report.md.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from fkd.core.arguments import positive_int
from fkd.core.atomic import write_text
from fkd.core.errors import FkdError
from fkd.core.keypoints import KEYPOINTS
from fkd.show import plots
from fkd.train.rundir import (
    check_finished_run,
    check_same_data,
    read_json,
    read_oof_rows,
    read_run_config,
    read_test_predictions,
)

WORST = 20
TEST_SHOWN = 20


# ---------------------------------------------------------------- reading a run folder

def read_history(run_dir) -> pd.DataFrame:
    """history.json as a frame with columns fold, epoch, train_loss, val_loss, val_rmse (+ any other)."""
    path = Path(run_dir) / "history.json"
    records = read_json(path, kind=list)
    if records and all(isinstance(r, list) for r in records):           # one list per fold
        records = [dict({"fold": k}, **r) for k, fold in enumerate(records) for r in fold]
    frame = pd.DataFrame(records)
    missing = {"fold", "epoch"} - set(frame.columns)
    if len(frame) and missing:
        raise FkdError(f"records lack {', '.join(sorted(missing))}", path=path)
    return frame


def row_rmse(predictions, truth) -> np.ndarray:
    """Per-row RMSE over the values present in truth (NaN for a row with none)."""
    err = (np.asarray(predictions, np.float64) - np.asarray(truth, np.float64)) ** 2
    present = ~np.isnan(err)
    count = present.sum(axis=1)
    total = np.where(present, err, 0.0).sum(axis=1)
    return np.where(count > 0, np.sqrt(total / np.maximum(count, 1)), np.nan)


# ---------------------------------------------------------------- figures

def plot_curves(history: pd.DataFrame, metrics: dict, name: str):
    fig = plots.new_figure(18, 4.8)
    ax_loss, ax_rmse, ax_lr = fig.subplots(1, 3, width_ratios=[1, 1, 0.6])
    if history.empty:
        for ax in (ax_loss, ax_rmse, ax_lr):
            ax.text(0.5, 0.5, "history.json is empty", ha="center", va="center", transform=ax.transAxes)
    colors = plots.matplotlib_colors("tab10", max(1, history["fold"].nunique() if len(history) else 1))
    for color, (fold, records) in zip(colors, history.groupby("fold", sort=True) if len(history) else []):
        records = records.sort_values("epoch")
        if "train_loss" in records:
            ax_loss.plot(records["epoch"], records["train_loss"], color=color, label=f"fold {fold} train")
        if "val_loss" in records:
            ax_loss.plot(records["epoch"], records["val_loss"], color=color, linestyle="--",
                         label=f"fold {fold} validation")
        if "val_rmse" in records and records["val_rmse"].notna().any():
            ax_rmse.plot(records["epoch"], records["val_rmse"], color=color, marker=".", label=f"fold {fold}")
            kept = records.iloc[-1] if metrics.get("keep") == "last" else records.loc[records["val_rmse"].idxmin()]
            ax_rmse.scatter([kept["epoch"]], [kept["val_rmse"]], s=70, facecolors="none", edgecolors=color,
                            linewidths=1.5, zorder=3)
        if "lr" in records and records["lr"].notna().any():
            ax_lr.plot(records["epoch"], records["lr"], color=color, label=f"fold {fold}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (normalised units)")
    losses = history[[c for c in ("train_loss", "val_loss") if c in history]].to_numpy(float) if len(history) else []
    if len(losses) and np.nanmin(losses) > 0:
        ax_loss.set_yscale("log")
    ax_loss.set_title("Loss per epoch (solid: training, dashed: validation)")
    ax_loss.legend(fontsize=7, ncols=2)
    for key, label, style in (("rmse", "OOF RMSE", "-"), ("rmse_last_epoch", "last epochs' OOF RMSE", "--"),
                              ("mean_shape_rmse", "mean-shape baseline", ":")):
        if metrics.get(key) is not None and np.isfinite(metrics[key]):
            ax_rmse.axhline(metrics[key], color="black", linestyle=style, linewidth=1,
                            label=f"{label} {metrics[key]:.3f}")
    ax_rmse.margins(y=0.08)
    ax_rmse.set_xlabel("epoch")
    ax_rmse.set_ylabel("validation RMSE (px)")
    ax_rmse.set_title("Validation RMSE per epoch (circle: the epoch kept)")
    ax_rmse.legend(fontsize=7)
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate (at the epoch's end)")
    ax_lr.set_title("Learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    fig.suptitle(f"{name}: out-of-fold RMSE {_fmt(metrics.get('rmse'))} px "
                 f"(complete rows {_fmt(metrics.get('rmse_complete'))}, partial {_fmt(metrics.get('rmse_partial'))})")
    return fig


def oof_summary(metrics: dict) -> str:
    """The run's OOF figures in one line; a keep: best run also gives its last epochs' OOF (honest)."""
    line = (f"OOF RMSE {_fmt(metrics.get('rmse'), 4)} (complete rows {_fmt(metrics.get('rmse_complete'), 4)}, "
            f"partial rows {_fmt(metrics.get('rmse_partial'), 4)}; keep: {metrics.get('keep', 'best')})")
    if metrics.get("rmse_last_epoch") is not None:
        line += f", last epochs' OOF RMSE {_fmt(metrics['rmse_last_epoch'], 4)}"
    return line


def _fmt(value, digits=3):
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def plot_per_keypoint(metrics: dict, name: str, labelled=None):
    per = metrics.get("per_keypoint") or {}
    values = np.array([per.get(k, np.nan) if per.get(k) is not None else np.nan for k in KEYPOINTS], float)
    fig = plots.new_figure(10, 6)
    ax = fig.subplots()
    y = np.arange(len(KEYPOINTS))
    ax.barh(y, np.nan_to_num(values), color=plots.POINT_COLORS)
    for yi, v in enumerate(values):
        ax.text(np.nan_to_num(v), yi, f" {_fmt(v, 2)}", va="center", fontsize=8)
    labels = [f"{k} ({labelled[i]:,} rows)" if labelled is not None else k for i, k in enumerate(KEYPOINTS)]
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    for key, label, style in (("rmse", "overall", "-"), ("rmse_complete", "complete rows", "--"),
                              ("rmse_partial", "partial rows", ":")):
        value = metrics.get(key)
        if value is not None and np.isfinite(value):
            ax.axvline(value, color="black", linestyle=style, linewidth=1, label=f"{label}: {value:.3f}")
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    ax.set_xlim(0, top * 1.18)
    ax.set_xlabel("out-of-fold RMSE (px), x and y together")
    ax.set_title(f"{name}: RMSE per keypoint")
    handles = plots.side_legend_handles("s")
    lines = ax.get_legend_handles_labels()[0]
    ax.legend(handles=lines + handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncols=3)
    return fig


def plot_worst(images, truth, rows, folds, predictions, errors, n=WORST):
    order = np.argsort(-np.nan_to_num(errors, nan=-1))[:n]
    order = order[np.isfinite(errors[order])]
    if len(order) == 0:
        return plots.empty_figure("No out-of-fold prediction has labels to compare with.")
    titles = [f"row {rows[i]}" + (f" (fold {folds[i]})" if folds is not None else "") + f": {errors[i]:.1f} px"
              for i in order]
    return plots.face_grid(images[rows[order]], truth[rows[order]], predictions[order], titles=titles, ncols=5,
                           suptitle=f"Worst out-of-fold predictions ({len(order)} of {np.isfinite(errors).sum():,} "
                                    "rows, by per-row RMSE over the labelled values)", cell=2.1)


def plot_test(images, image_ids, predictions, n=TEST_SHOWN, seed=0):
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(predictions), min(n, len(predictions)), replace=False))
    fig = plots.face_grid(images[chosen], predictions[chosen], titles=[f"ImageId {image_ids[i]}" for i in chosen],
                          ncols=5, suptitle=f"Test-set predictions ({len(chosen)} of {len(predictions):,} images, "
                                            "random)", cell=2.1)
    return fig


# ---------------------------------------------------------------- the report

def _test_arrays(test_images, image_ids):
    """Test images aligned with test_pred.csv's ImageIds: test_images is either an array in the same
    order as test_pred.csv (what load_test returns and cv writes) or a tuple (ids, images)."""
    if isinstance(test_images, tuple):
        ids, images = test_images
        position = {int(i): k for k, i in enumerate(np.asarray(ids))}
        missing = [int(i) for i in image_ids if int(i) not in position]
        if missing:
            raise FkdError(f"test_pred.csv has ImageId {missing[0]} that the test set lacks")
        return np.asarray(images)[[position[int(i)] for i in image_ids]]
    images = np.asarray(test_images)
    if len(images) != len(image_ids):
        raise FkdError(f"test_pred.csv has {len(image_ids)} rows but the test set {len(images)} images: "
                       "another competition folder?")
    return images


def write_run_report(run_dir, images=None, keypoints=None, test_images=None, worst: int = WORST) -> list:
    """Draw a finished run's figures into run_dir; returns the files written. Figures that need
    data not given (training or test images) are skipped."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FkdError("no such run folder", path=run_dir)
    config = read_run_config(run_dir)
    name = config.get("name") or run_dir.name
    metrics = read_json(run_dir / "metrics.json")
    history = read_history(run_dir)
    written = [plots.save_figure(plot_curves(history, metrics, name), run_dir / "curves.png")]

    labelled = None
    if keypoints is not None:
        keypoints = np.asarray(keypoints, dtype=np.float32)
        labelled = (~np.isnan(keypoints[:, 0::2])).sum(axis=0)
    written.append(plots.save_figure(plot_per_keypoint(metrics, name, labelled), run_dir / "per_keypoint.png"))

    notes = []
    worst_rows = []
    if images is not None and keypoints is not None and (run_dir / "oof.csv").is_file():
        rows, folds, predictions = read_oof_rows(run_dir)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(keypoints)):
            raise FkdError(f"row {rows.max()} is outside the {len(keypoints):,} training rows: "
                           "another competition folder?", path=run_dir / "oof.csv")
        errors = row_rmse(predictions, keypoints[rows])
        written.append(plots.save_figure(plot_worst(np.asarray(images), keypoints, rows, folds, predictions,
                                                    errors, worst), run_dir / "worst_oof.png"))
        order = np.argsort(-np.nan_to_num(errors, nan=-1))[:worst]
        worst_rows = [(int(rows[i]), float(errors[i])) for i in order if np.isfinite(errors[i])]
    else:
        notes.append("worst_oof.png skipped: needs oof.csv and the training images")

    test = read_test_predictions(run_dir)
    if test is not None and test_images is not None:
        image_ids, predictions = test
        aligned = _test_arrays(test_images, image_ids)
        written.append(plots.save_figure(plot_test(aligned, image_ids, predictions), run_dir / "test_predictions.png"))
    elif test is not None:
        notes.append("test_predictions.png skipped: needs the test images")

    written.append(write_text(run_dir / "report.md", report_markdown(name, metrics, history, written, worst_rows, notes)))
    return written


def report_markdown(name, metrics, history, written, worst_rows, notes) -> str:
    lines = [f"# Run {name}", "",
             f"- OOF RMSE {_fmt(metrics.get('rmse'), 4)} px: complete rows {_fmt(metrics.get('rmse_complete'), 4)}, "
             f"partial rows {_fmt(metrics.get('rmse_partial'), 4)}"]
    if metrics.get("mean_shape_rmse") is not None:
        lines.append(f"- mean-shape baseline {_fmt(metrics['mean_shape_rmse'], 4)} px")
    if len(history) and "val_rmse" in history:
        best = history.loc[history.groupby("fold")["val_rmse"].idxmin().dropna()]
        lines.append("- best epoch per fold: " + ", ".join(
            f"fold {int(r.fold)}: epoch {int(r.epoch)} ({r.val_rmse:.4f} px)" for r in best.itertuples()))
    lines += ["", "## Figures", ""] + [f"- `{Path(p).name}`" for p in written if Path(p).suffix == ".png"]
    lines += [f"- {note}" for note in notes]
    per = metrics.get("per_keypoint") or {}
    if per:
        lines += ["", "## RMSE per keypoint (px)", "", "| keypoint | RMSE |", "| --- | ---: |"]
        lines += [f"| {k} | {_fmt(per.get(k), 3)} |" for k in KEYPOINTS]
    if worst_rows:
        lines += ["", "## Worst out-of-fold rows", "", "| row | RMSE (px) |", "| ---: | ---: |"]
        lines += [f"| {row} | {err:.2f} |" for row, err in worst_rows]
    return "\n".join(lines) + "\n"


def add_arguments(parser):
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run folder(s), e.g. runs/a")
    parser.add_argument("--data-dir", default=None,
                        help="competition folder, for the face figures (default: ./data or found; "
                             "without one only curves and per-keypoint bars are drawn)")
    parser.add_argument("--worst", type=positive_int, default=WORST,
                        help=f"worst OOF rows drawn, 1 or more (default {WORST})")


def run(args):
    from fkd.data import competition as data

    for run_dir in args.runs:
        check_finished_run(run_dir)
    images = keypoints = test = None
    try:
        data_dir = data.find_data_dir(args.data_dir)
    except FkdError as error:
        if args.data_dir is not None:
            raise
        print(f"fkd report: {error}; drawing curves and per-keypoint bars only")
        data_dir = None
    if data_dir is not None:
        images, keypoints = data.load_training(data_dir)
        if any((Path(r) / "test_pred.csv").is_file() for r in args.runs):
            test = data.load_test(data_dir)
    for run_dir in args.runs:
        if images is not None:
            check_same_data(run_dir, images, keypoints)  # never one folder's predictions on another's faces
        written = write_run_report(run_dir, images, keypoints, test, worst=args.worst)
        print(f"{run_dir}: " + ", ".join(Path(p).name for p in written))
        if (Path(run_dir) / "metrics.json").is_file():
            print(f"{run_dir}: {oof_summary(read_json(Path(run_dir) / 'metrics.json'))}")
    return 0
