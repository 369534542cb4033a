"""Predictions of trained models: fold models x test-time views (flip, zoom, shift), in pixel coordinates."""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fkd.core.errors import FkdError
from fkd.core.keypoints import flip_keypoints
from fkd.model.augment import CENTRE
from fkd.model.inputs import flip_axis, forward, make_model, model_inputs, pick_device, scale_pixels
from fkd.model.nets import to_pixels
from fkd.train import rundir
from fkd.train.checkpoint import check_identity
from fkd.train.checkpoint import load as load_checkpoint


def tta_views(config: dict):
    """[(scale, dx, dy)]: the test-time views, each scale of config["tta_scales"] unshifted and, with
    config["tta_shift"] = d > 0 pixels, also shifted by d left, right, up and down."""
    d = config.get("tta_shift", 0.0)
    shifts = [(0.0, 0.0)] + ([(d, 0.0), (-d, 0.0), (0.0, d), (0.0, -d)] if d else [])
    return [(scale, dx, dy) for scale in config.get("tta_scales", [1.0]) for dx, dy in shifts]


def transform(images: torch.Tensor, scale: float, dx: float, dy: float) -> torch.Tensor:
    """Images [B,1,96,96] magnified by `scale` about the image centre (pixel 47.5), then moved by
    (dx, dy) pixels, zeros outside, sampled as fkd.model.augment samples: p -> 47.5 + scale (p - 47.5) + d."""
    c = CENTRE
    theta = torch.tensor([[1 / scale, 0, -dx / (c * scale)], [0, 1 / scale, -dy / (c * scale)]],
                         dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), list(images.shape), align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def predict_batch(model, x, config: dict, flip_tta: bool = True, subset=None) -> torch.Tensor:
    """Model inputs [B,1,96,96] (model_inputs + scale_pixels) -> pixel keypoints [B,30]: the mean over
    every view of `tta_views(config)` (and, with flip_tta, each view's mirror) mapped back about the
    labels' mirror axis. subset [B] or None (the complete-row output). `fkd export` traces this."""
    axis = flip_axis(config, subset, x.shape[0], x.device)
    mapped_back = []
    for scale, dx, dy in tta_views(config):
        view = x if (scale, dx, dy) == (1, 0, 0) else transform(x, scale, dx, dy)
        view = view.contiguous(memory_format=torch.channels_last)
        pred = to_pixels(forward(model, view, subset).float())
        if flip_tta:
            mirrored = to_pixels(forward(model, torch.flip(view, dims=[-1]), subset).float())
            pred = (pred + flip_keypoints(mirrored, axis)) / 2
        pred = pred.view(x.shape[0], -1, 2) - torch.tensor([dx, dy], device=x.device)
        mapped_back.append(axis + (pred.view(x.shape[0], -1) - axis) / scale)
    return torch.stack(mapped_back).mean(0)


@torch.no_grad()
def predict_images(model, images, config: dict, device=None, flip_tta: bool = True, subsets=None) -> np.ndarray:
    """uint8 images [N,96,96] -> float32 pixel keypoints [N,30] by predict_batch, in batches.

    subsets [N] (1 = complete-row output, 0 = core-point-row output) matter only to SubsetOffset
    models; None means the complete-row output."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    images = torch.as_tensor(np.asarray(images))
    batch_size = config.get("eval_batch_size", 256)
    n_views = len(tta_views(config)) * (2 if flip_tta else 1)
    out = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=f"predict {len(images)} faces x {n_views} views",
                      leave=False, disable=None if len(starts) > 1 else True, mininterval=1.0):
        x = scale_pixels(model_inputs(images[start:start + batch_size].to(device), config), config)
        subset = (torch.as_tensor(np.asarray(subsets[start:start + batch_size]), device=device)
                  if subsets is not None else None)
        out.append(predict_batch(model, x, config, flip_tta, subset).cpu())
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, 30), np.float32)


def fold_model(checkpoint: dict, device="cpu", path=None):
    """(model, config) of a loaded fold checkpoint, in eval mode on the device; FkdError naming the file
    when its config or weights do not make the model."""
    try:
        config = checkpoint["config"]
        # the checkpoint holds every weight: the pretrained file it started from may be elsewhere now
        options = {k: v for k, v in config["model_options"].items() if k != "weights"}
        model = make_model({**config, "model_options": options}, device)
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
        raise FkdError(f"its config or weights do not make its model ({type(error).__name__}: {first}); "
                       "rerun `fkd cv` to train this fold again", path=path) from None
    return model.eval(), config


def load_run_fold(run_dir, fold: int, device="cpu", fingerprint=None, folds=None):
    """(model, config) of fold `fold` of a run folder, once the checkpoint proves it belongs there:
    the run's config.json (its trained settings, folds), its data.json (or `fingerprint`: the data it is
    used with) and its fold index."""
    path = Path(run_dir) / f"fold{fold}.pt"
    if not path.is_file():
        raise FkdError(f"the run has no checkpoint for fold {fold}", path=path)
    saved = load_checkpoint(path, device)
    config = rundir.read_run_config(run_dir) or None
    stamp = Path(run_dir) / "data.json"
    if fingerprint is None and stamp.is_file():
        fingerprint = rundir.read_json(stamp).get("fingerprint")
    check_identity(path, saved, fold, config, fingerprint, folds)
    return fold_model(saved, device, path)


def load_fold_models(run_dir, device="cpu"):
    """[(model, config)] for every fold a run has, each proving it belongs there
    (fkd.train.rundir.check_run_readable, then load_run_fold)."""
    rundir.check_run_readable(run_dir)
    paths = rundir.fold_files(run_dir)
    if not paths:
        raise FkdError("no fold checkpoints (fold<k>.pt): is this a finished run?", path=run_dir)
    return [load_run_fold(run_dir, rundir.fold_index(path), device) for path in paths]


class RunsPredictor:
    """Every fold model of every run, loaded once: `predictor(images, subsets=None)` is their mean
    prediction in pixels [N,30], each model with its own run's test-time views and flip setting
    (flip_tta=False turns flipping off for all).

    subsets [N]: each image's kind (lookup_kinds: 1 complete, 0 partial), for SubsetOffset runs;
    None predicts every image with the complete-row output (all 15 points, as `fkd face` wants)."""

    def __init__(self, run_dirs, flip_tta=None, device=None):
        self.device = pick_device(device or "auto")
        self.models = [(model, config, config["flip_tta"] if flip_tta is None else flip_tta and config["flip_tta"])
                       for run_dir in run_dirs for model, config in load_fold_models(run_dir, self.device)]

    def __call__(self, images, subsets=None) -> np.ndarray:
        predictions = [predict_images(model, images, config, self.device, flip_tta=flip, subsets=subsets)
                       for model, config, flip in self.models]
        return np.mean(predictions, axis=0).astype(np.float32)


def predict_runs(run_dirs, images, subsets=None, flip_tta=None, device=None) -> np.ndarray:
    """RunsPredictor(run_dirs, flip_tta, device)(images, subsets): one call, models loaded for it."""
    return RunsPredictor(run_dirs, flip_tta, device)(images, subsets)
