"""Training benchmarks: throughput of fkd's loop against a plain PyTorch loop, and CV RMSE per recipe."""
import time

import numpy as np
import torch

from fkd.config import load_config
from fkd.folds import load_folds
from fkd.data import load_training
from fkd.metrics import mean_shape, rmse, rmse_report

THROUGHPUT_ROWS = 2048


def _plain_pytorch_epoch(model, optimizer, images: np.ndarray, labels: np.ndarray, batch_size: int) -> None:
    """The textbook loop: float tensors in a TensorDataset, a shuffling DataLoader, MSE on filled labels."""
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
    from fkd.augment import DEFAULT_AUGMENT
    from fkd.bench import best_of
    from fkd.models import build_model
    from fkd.train import make_model, make_optimizer, make_schedule, steps_per_epoch, train_epoch

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
    from fkd.train import load_checkpoint

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

    from fkd.cv import run_cv

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
