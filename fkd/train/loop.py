"""The training loop: one fold at a time, the whole uint8 dataset as one tensor on the device.

No DataLoader: a batch is an index into that tensor, augmented by fkd.model.augment.augment_batch on
the same device. Missing keypoints carry no gradient (masked loss). The fold keeps its last epoch's
weights (keep: last) or its best epoch's (keep: best); the state after each epoch is saved so an
interrupted fold resumes; a finished fold is never trained again.
"""
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fkd.core.errors import FkdError
from fkd.core.keypoints import complete_rows, partial_columns
from fkd.core.metrics import rmse
from fkd.data.competition import training_fingerprint
from fkd.model.augment import augment_batch
from fkd.model.inputs import (
    describe_device,
    flip_axis,
    forward,
    make_model,
    model_inputs,
    pick_device,
    pick_precision,
    scale_pixels,
)
from fkd.model.nets import to_normalised
from fkd.train import checkpoint
from fkd.train.labels import resolve_flip_axis
from fkd.train.predict import predict_images, tta_views
from fkd.train.pseudo import fill_missing


def make_scaler(config: dict, device: torch.device):
    """Loss scaling for fp16 training (enabled only then); one per fold, so its scale carries over epochs."""
    return torch.amp.GradScaler(device.type, enabled=pick_precision(config["precision"], device) == torch.float16)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def masked_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss over the present target values; NaN targets contribute nothing."""
    present = ~torch.isnan(target)
    diff = (pred - torch.nan_to_num(target))[present]
    if diff.numel() == 0:
        return pred.sum() * 0.0
    if kind == "mse":
        return (diff ** 2).mean()
    if kind == "l1":
        return diff.abs().mean()
    if kind == "smooth_l1":
        return F.smooth_l1_loss(diff, torch.zeros_like(diff), beta=1.0 / 48)
    if kind == "wing":
        # Feng et al. 2018, w=10 px, epsilon=2 px, in normalised units (1 unit = 48 px)
        w, epsilon = 10.0 / 48, 2.0 / 48
        c = w - w * math.log(1 + w / epsilon)
        a = diff.abs()
        return torch.where(a < w, w * torch.log1p(a / epsilon), a - c).mean()
    raise ValueError(f"unknown loss {kind!r}")


def make_optimizer(model, config):
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config["weight_decay"]},
              {"params": no_decay, "weight_decay": 0.0}]
    if config["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=config["lr"])
    return torch.optim.AdamW(groups, lr=config["lr"])


def make_schedule(optimizer, config, steps_per_epoch: int):
    total = max(3, config["epochs"] * steps_per_epoch)
    if config["schedule"] == "onecycle":
        pct_start = min(0.5, max(config["warmup_epochs"], 0.01) / max(config["epochs"], 1))
        # OneCycleLR divides by the length in steps of its warm-up and of its annealing: on short runs
        # (one step per epoch) both must still be at least one step
        pct_start = min(max(pct_start, 2.0 / total), (total - 1.0) / total)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"], total_steps=total,
                                                   pct_start=pct_start)
    if config["schedule"] == "cosine":
        warmup = config["warmup_epochs"] * steps_per_epoch

        def factor(step):
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def steps_per_epoch(n_rows: int, config: dict) -> int:
    return max(1, n_rows // min(config["batch_size"], n_rows))


def train_epoch(model, optimizer, schedule, images: torch.Tensor, labels: torch.Tensor, config: dict,
                generator: torch.Generator, ema=None, desc="epoch", subsets=None, scaler=None) -> dict:
    """One pass over uint8 images [N,96,96] and pixel labels [N,30] (NaN = missing) on their device;
    subsets [N] (1 = complete row) feed a SubsetOffset model. Returns the mean training loss and the
    median and largest gradient norm of the epoch's steps (before clipping at config["grad_clip"])."""
    device = images.device
    amp_dtype = pick_precision(config["precision"], device)
    use_amp = amp_dtype is not None
    if scaler is None:
        scaler = make_scaler(config, device)
    batch_size = min(config["batch_size"], len(images))
    n_steps = steps_per_epoch(len(images), config)
    model.train()
    started = time.perf_counter()
    order = torch.randperm(len(images), device=device, generator=generator)
    total_loss = torch.zeros((), device=device)
    grad_norms = torch.zeros(n_steps, device=device)
    max_norm = config["grad_clip"] or float("inf")
    bar = tqdm(range(n_steps), desc=desc, leave=False, mininterval=1.0, disable=None)
    for step in bar:
        batch = order[step * batch_size:(step + 1) * batch_size]
        x = model_inputs(images[batch], config)
        y = labels[batch]
        if config["augment"]:
            batch_subsets = subsets[batch] if subsets is not None else None
            x, y = augment_batch(x, y, config["augment"], generator=generator,
                                 flip_axis=flip_axis(config, batch_subsets, len(batch), device))
        x = scale_pixels(x, config).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            out = forward(model, x, subsets[batch] if subsets is not None else None)
        loss = masked_loss(out.float(), to_normalised(y), config["loss"])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norms[step] = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        if ema is not None:
            ema.update(model, step=schedule.last_epoch)
        total_loss += loss.detach()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{total_loss.item() / (step + 1):.5f}")
    loss = total_loss.item() / n_steps  # .item() waits for the device: the clock below is honest
    return {"train_loss": loss, "grad_norm_median": grad_norms.median().item(),
            "grad_norm_max": grad_norms.max().item(),
            "train_images_per_second": n_steps * batch_size / (time.perf_counter() - started)}


def make_ema(model, config: dict):
    """The exponential moving average of the weights and BatchNorm statistics, or None (ema: 0).

    Warm-up power 1: a plain running mean of the steps so far until 1 - 1/step reaches the decay,
    so the random initial weights never linger in the average."""
    if not config["ema"]:
        return None
    # timm's import costs seconds of every process's start (it pulls in torchvision): only EMA runs pay it
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=config["ema"], use_warmup=True, warmup_power=1.0)


def save_resume_state(path, epoch, model, optimizer, schedule, ema, scaler, generator, history, best, identity):
    """Everything the next epoch depends on, written atomically after each epoch (`fkd cv` resumes from it);
    `identity`: the fold's (checkpoint.identity), which a resume must match."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {"epoch": epoch, "identity": identity, "state_dict": model.state_dict(),
             "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "ema": ema.module.state_dict() if ema is not None else None, "scaler": scaler.state_dict(),
             "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
             "numpy_rng": [name, keys, position, has_gauss, cached_gaussian], "history": history, "best": best}
    checkpoint.save(state, path)


def load_resume_state(path, identity, log=print):
    """The saved state if it belongs to this fold (its config, data and folds) and reads back; else None
    (the fold starts over). A state that would run code on load is refused (FkdError), not started over."""
    try:
        state = checkpoint.load(path, remedy="the fold starts over")
    except checkpoint.RefusedCheckpoint:
        raise
    except FkdError as error:  # a damaged state file costs the epochs it held, nothing more
        log(str(error))
        return None
    if state.get("identity") != identity:
        log(f"{path}: a resume state of another config, data or folds, the fold starts over")
        return None
    return state


def _restore(state, model, optimizer, schedule, ema, scaler, generator) -> None:
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    if ema is not None:
        ema.module.load_state_dict(state["ema"])
    scaler.load_state_dict(state["scaler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy_rng"]
    np.random.set_state((name, np.asarray(keys, np.uint32), position, has_gauss, cached_gaussian))


def train_fold(fold: int, images: np.ndarray, labels: np.ndarray, truth: np.ndarray, folds: np.ndarray,
               config: dict, test_images=None, test_subsets=None, log=print, resume_path=None, on_epoch=None):
    """Train one fold; returns the checkpoint dict (weights, validation/test predictions, history).

    test_subsets [M] says which subset's output each test image gets (1 = all 30 values asked).
    resume_path: the state is saved there after every epoch, and a saved state is resumed from, so an
    interrupted fold goes on where it stopped, exactly as if it never had. on_epoch(fold, epoch,
    val_rmse): told each epoch's validation RMSE once its state is saved (a search's pruner may stop the
    fold there by raising)."""
    device = pick_device(config["device"])
    seed_everything(config["seed"] * 100 + fold)
    train_index = np.flatnonzero(folds != fold)
    valid_index = np.flatnonzero(folds == fold)
    config = resolve_flip_axis(config, images, truth, log, rows=train_index)  # fkd cv resolved it already
    if config["pseudo_labels"]:
        labels = fill_missing(labels, images, truth, train_index, fold, config, device)
    train_images = torch.from_numpy(images[train_index]).to(device)
    train_labels = torch.from_numpy(labels[train_index]).to(device)
    model = make_model(config, device)
    if hasattr(model, "set_labelled_columns"):
        model.set_labelled_columns(partial_columns(truth))
    subsets = complete_rows(truth).astype(np.int64)
    train_subsets = torch.from_numpy(subsets[train_index]).to(device)
    optimizer = make_optimizer(model, config)
    schedule = make_schedule(optimizer, config, steps_per_epoch(len(train_index), config))
    ema = make_ema(model, config)
    generator = torch.Generator(device=device).manual_seed(config["seed"] * 100 + fold)
    scaler = make_scaler(config, device)
    log(f"fold {fold}: {len(train_index)} training rows, {len(valid_index)} validation rows on "
        f"{describe_device(device, config['precision'])}")
    history, best, start = [], {"val_rmse": float("inf")}, 0
    identity = checkpoint.identity(config, training_fingerprint(images, truth), folds, fold)
    state = load_resume_state(resume_path, identity, log) if resume_path and Path(resume_path).is_file() else None
    if state is not None:
        _restore(state, model, optimizer, schedule, ema, scaler, generator)
        history, best, start = state["history"], state["best"], state["epoch"]
        if "val_pred" in best:
            best["val_pred"] = np.asarray(best["val_pred"])
        log(f"fold {fold}: resuming after epoch {start}/{config['epochs']} ({resume_path})")

    # the kept epoch is predicted with every test-time view. keep "last" never looks at the validation fold
    # to choose, so each epoch is scored on the plain view alone (with its mirror, a seventh of a CPU
    # recipe's epoch); "best" picks the epoch it scores best with flip TTA (optimistic: the last epoch's
    # validation predictions are kept beside it, for an honest figure)
    plain = {**config, "tta_scales": [1.0], "tta_shift": 0.0}
    epoch_flip = config["flip_tta"] and config["keep"] == "best"
    evaluated = ema.module if ema is not None else model
    for epoch in range(start, config["epochs"]):
        started = time.perf_counter()
        trained = train_epoch(model, optimizer, schedule, train_images, train_labels, config, generator,
                              ema=ema, desc=f"fold {fold} epoch {epoch + 1}/{config['epochs']}",
                              subsets=train_subsets, scaler=scaler)
        evaluated = ema.module if ema is not None else model
        val_pred = predict_images(evaluated, images[valid_index], plain, device, flip_tta=epoch_flip,
                                  subsets=subsets[valid_index])
        val_truth = truth[valid_index]
        val_rmse = rmse(val_pred, val_truth)
        val_loss = float(masked_loss(to_normalised(torch.from_numpy(val_pred)),
                                     to_normalised(torch.from_numpy(val_truth)), config["loss"]))
        record = {"fold": fold, "epoch": epoch + 1, **trained,
                  "val_loss": val_loss, "val_rmse": val_rmse, "lr": optimizer.param_groups[0]["lr"],
                  "seconds": time.perf_counter() - started}
        history.append(record)
        log(f"fold {fold} epoch {epoch + 1}/{config['epochs']}: train loss {record['train_loss']:.5f}, "
            f"gradient norm {record['grad_norm_median']:.3f} (max {record['grad_norm_max']:.3f}), "
            f"val RMSE {val_rmse:.4f} px, lr {record['lr']:.2e} ({record['seconds']:.1f} s, "
            f"{record['train_images_per_second']:.0f} training images/s; "
            f"{format_seconds(np.mean([r['seconds'] for r in history[start:]]) * (config['epochs'] - epoch - 1))} left in the fold)")
        if config["keep"] == "best" and val_rmse < best["val_rmse"]:
            best = {"val_rmse": val_rmse, "epoch": epoch + 1, "state_dict": _state_copy(evaluated), "val_pred": val_pred}
        if resume_path is not None and epoch + 1 < config["epochs"]:
            save_resume_state(resume_path, epoch + 1, model, optimizer, schedule, ema, scaler, generator,
                              history, best, identity)
        if on_epoch is not None:
            on_epoch(fold, epoch + 1, val_rmse)

    n_views = len(tta_views(config))
    views = f" with {n_views} test-time views" if n_views > 1 else ""

    def with_views(state, epoch_pred):
        """The validation predictions of `state` with every test-time view (`epoch_pred`: its epoch's score's)."""
        if n_views == 1 and epoch_flip == config["flip_tta"]:
            return epoch_pred
        model.load_state_dict(state)
        return predict_images(model, images[valid_index], config, device, flip_tta=config["flip_tta"],
                              subsets=subsets[valid_index])

    last_state = _state_copy(evaluated)
    last_pred = with_views(last_state, val_pred)
    kept = {"epoch": config["epochs"], "state_dict": last_state, "val_pred": last_pred}
    if config["keep"] == "best":
        kept = {"epoch": best["epoch"], "state_dict": best["state_dict"],
                "val_pred": with_views(best["state_dict"], best["val_pred"]),
                "last_val_pred": last_pred, "last_val_rmse": rmse(last_pred, truth[valid_index])}
    kept["val_rmse"] = rmse(kept["val_pred"], truth[valid_index])
    model.load_state_dict(kept["state_dict"])
    if config["keep"] == "best":
        log(f"fold {fold}: kept epoch {kept['epoch']} (keep: best) val RMSE {kept['val_rmse']:.4f} px, "
            f"the last epoch {kept['last_val_rmse']:.4f}" + (f" ({views.strip()})" if views else ""))
    else:
        log(f"fold {fold}: kept the last epoch (keep: last) val RMSE {kept['val_rmse']:.4f} px{views}")
    test_pred = (predict_images(model, test_images, config, device, flip_tta=config["flip_tta"],
                                subsets=test_subsets)
                 if test_images is not None else None)
    return {"fold": fold, "config": config, "identity": identity, "state_dict": kept["state_dict"], "best_epoch": kept["epoch"],
            "val_rmse": kept["val_rmse"], "valid_index": valid_index, "val_pred": kept["val_pred"],
            "test_pred": test_pred, "history": history,
            **({"last_val_pred": kept["last_val_pred"], "last_val_rmse": kept["last_val_rmse"]}
               if "last_val_pred" in kept else {})}


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _state_copy(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
