"""`fkd bench`: figures for speed and accuracy, each next to its baseline measured in the same run.

  parse       training.csv parse time (fkd vs the notebook way) and cache reload time
  throughput  training images/second of seedcnn: fkd's loop vs a plain PyTorch DataLoader loop
  cv          CV RMSE of the mean shape, the `seed` recipe, seedcnn/lenet with fkd's recipe, the CPU recipe
"""
import tempfile
import time
from pathlib import Path

import numpy as np

from fkd.core.config import load_config
from fkd.core.errors import FkdError
from fkd.core.metrics import mean_shape, rmse, rmse_report
from fkd.data.competition import (
    find_data_dir,
    load_training,
    parse_training,
    read_bytes,
    source_file,
)
from fkd.data.folds import load_folds

SECTIONS = ("parse", "throughput", "cv")
KAGGLE_TRAINING_ROWS = 7049
FULL_CV_CONFIGS = ["configs/seed.yaml@1", "configs/seedcnn.yaml@1", "configs/lenet.yaml@1", "configs/cpu.yaml"]
QUICK_CV_CONFIGS = ["configs/demo.yaml@1"]  # fold 0 of the demo recipe: about a minute on the proxy


def add_arguments(parser):
    parser.add_argument("--data-dir", help="competition folder (make bench uses ../shared/data/proxy)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--runs-dir", default="runs/bench", help="where the cv section's runs go")
    parser.add_argument("--rows", type=int, default=KAGGLE_TRAINING_ROWS,
                        help="rows of the csv the parse section times (Kaggle's training.csv has 7,049)")
    parser.add_argument("--quick", action="store_true",
                        help=f"the short figures (under 5 minutes on 2 cores): the cv section runs only "
                             f"{' '.join(QUICK_CV_CONFIGS)} (make bench; make bench FULL=1 runs everything)")
    parser.add_argument("--cv-configs", nargs="+", default=FULL_CV_CONFIGS,
                        help="configs the cv section cross-validates after the mean shape; CONFIG@N trains "
                             "only its first N folds (the baselines, to keep the benchmark short)")


def best_of(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def notebook_parse(path):
    """The common notebook way: pandas, then np.array(s.split()) per row."""
    import pandas as pd

    frame = pd.read_csv(path)
    images = np.vstack(frame["Image"].apply(lambda s: np.array(s.split(), dtype=np.float32)).to_numpy())
    return images.reshape(-1, 96, 96), frame.drop(columns="Image").to_numpy(dtype=np.float32)


def kaggle_sized_csv(data_dir, folder: Path, rows: int = KAGGLE_TRAINING_ROWS) -> Path:
    """The data's training.csv, rows repeated (or cut) to `rows` (Kaggle's: 7,049), as a plain csv file."""
    raw = read_bytes(source_file(data_dir, "training"))
    header, _, body = raw.partition(b"\n")
    lines = body.rstrip(b"\n").split(b"\n")
    lines = (lines * (rows // len(lines) + 1))[:rows]
    path = folder / "training.csv"
    path.write_bytes(header + b"\n" + b"\n".join(lines) + b"\n")
    return path


def bench_parse(data_dir, rows: int = KAGGLE_TRAINING_ROWS) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = kaggle_sized_csv(data_dir, Path(folder), rows)
        size = path.stat().st_size / 1e6
        raw = path.read_bytes()
        parse_training(raw[:200_000].rsplit(b"\n", 1)[0] + b"\n")  # compile (or load) the parser first
        fkd_seconds = best_of(lambda: parse_training(path.read_bytes(), path))
        notebook_seconds = best_of(lambda: notebook_parse(path), repeats=1)
        load_training(folder)  # builds the cache
        cache_seconds = best_of(lambda: load_training(folder))
    print(f"parse  {rows} rows, {size:.0f} MB csv: fkd {fkd_seconds:.2f} s, "
          f"notebook way {notebook_seconds:.2f} s ({notebook_seconds / fkd_seconds:.0f}x slower); "
          f"reload from .npy cache {cache_seconds:.3f} s", flush=True)


def run(args):
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise FkdError(f"--only {args.only!r}: {'unknown section ' + repr(unknown[0]) if unknown else 'no section'}; "
                       f"the sections are {', '.join(SECTIONS)}")
    data_dir = find_data_dir(args.data_dir)
    print(f"bench on {data_dir}", flush=True)
    if "parse" in sections:
        bench_parse(data_dir, args.rows)
    if "throughput" in sections:
        bench_throughput(data_dir)
    if "cv" in sections:
        quick = args.quick and args.cv_configs == FULL_CV_CONFIGS
        bench_cv(data_dir, QUICK_CV_CONFIGS if quick else args.cv_configs, args.runs_dir)
    return 0


THROUGHPUT_ROWS = 2048


def _plain_pytorch_epoch(model, optimizer, images: np.ndarray, labels: np.ndarray, batch_size: int) -> None:
    """The textbook loop: float tensors in a TensorDataset, a shuffling DataLoader, MSE on filled labels."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.from_numpy(images).float().unsqueeze(1) / 255.0
    y = (torch.from_numpy(np.nan_to_num(labels, nan=48.0)) - 48.0) / 48.0
    model.train()
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=True):
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def bench_throughput(data_dir, model_name: str = "seedcnn", repeats: int = 2) -> None:
    # torch only for the sections that train: `fkd bench --only parse` stays light
    import torch

    from fkd.core.config import DEFAULT_AUGMENT
    from fkd.model.inputs import make_model
    from fkd.model.nets import build_model
    from fkd.train.loop import (
        make_optimizer,
        make_schedule,
        steps_per_epoch,
        train_epoch,
    )

    images, keypoints = load_training(data_dir)
    images, keypoints = images[:THROUGHPUT_ROWS], keypoints[:THROUGHPUT_ROWS]
    results = {}
    for label, augment in (("fkd loop, no augmentation", {}), ("fkd loop, default augmentation", DEFAULT_AUGMENT)):
        config = load_config(None, model=model_name, epochs=repeats, augment=dict(augment))
        torch.manual_seed(0)
        model = make_model(config)
        optimizer = make_optimizer(model, config)
        schedule = make_schedule(optimizer, config, steps_per_epoch(len(images), config))
        generator = torch.Generator().manual_seed(0)
        x, y = torch.from_numpy(images), torch.from_numpy(keypoints)
        seconds = best_of(lambda: train_epoch(model, optimizer, schedule, x, y, config, generator), repeats)
        results[label] = len(images) // config["batch_size"] * config["batch_size"] / seconds
    torch.manual_seed(0)
    model = build_model(model_name)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    seconds = best_of(lambda: _plain_pytorch_epoch(model, optimizer, images, keypoints, 64), repeats)
    results["plain PyTorch DataLoader loop"] = len(images) // 64 * 64 / seconds
    for label, rate in results.items():
        print(f"throughput  {model_name} on {torch.get_num_threads()} CPU threads, {label}: {rate:.0f} images/s",
              flush=True)


def mean_shape_cv(data_dir, k: int = 5, seed: int = 0) -> float:
    """CV RMSE of predicting each fold with the mean shape of the other folds."""
    _, keypoints = load_training(data_dir)
    folds = load_folds(data_dir, k, seed)
    oof = np.empty_like(keypoints)
    for fold in range(k):
        oof[folds == fold] = mean_shape(keypoints[folds != fold])
    return rmse(oof, keypoints)


def finished_fold_scores(run_dir, truth) -> dict:
    """RMSE over the validation rows of the folds a run has finished (all of them, or a few)."""
    from fkd.train.rundir import load_checkpoint

    rows, predictions, seconds, folds = [], [], 0.0, []
    for path in sorted(run_dir.glob("fold*.pt")):
        checkpoint = load_checkpoint(path)
        rows.append(checkpoint["valid_index"])
        predictions.append(checkpoint["val_pred"])
        seconds += checkpoint.get("seconds", 0.0)
        folds.append(checkpoint["fold"])
    rows, predictions = np.concatenate(rows), np.concatenate(predictions)
    report = rmse_report(predictions, truth[rows])
    return {**report, "folds_done": folds, "train_seconds": seconds}


def bench_cv(data_dir, config_specs, runs_dir) -> None:
    """config_specs: "configs/x.yaml" (every fold) or "configs/x.yaml@N" (its first N folds only)."""
    from pathlib import Path

    from fkd.train.cv import run_cv

    _, truth = load_training(data_dir)
    baseline = mean_shape_cv(data_dir)
    print(f"cv  mean shape: RMSE {baseline:.4f} (5 folds)", flush=True)
    for spec in config_specs:
        path, _, n_folds = spec.partition("@")
        config = load_config(path)
        if n_folds:
            config["only_folds"] = list(range(int(n_folds)))
        started = time.perf_counter()
        run_dir = Path(run_cv(data_dir, config, runs_dir))
        scores = finished_fold_scores(run_dir, truth)
        print(f"cv  {path}: RMSE {scores['rmse']:.4f} = {scores['rmse'] / baseline:.3f} x mean shape "
              f"(complete rows {scores['rmse_complete']:.4f}, partial rows {scores['rmse_partial']:.4f}; "
              f"folds {scores['folds_done']} of {config['folds']}, {config['epochs']} epochs, "
              f"model {config['model']}; training {scores['train_seconds']:.0f} s, "
              f"this call {time.perf_counter() - started:.0f} s)", flush=True)
