"""What a kernel will cost on Kaggle's GPUs, estimated from FLOPs: the wall time `fkd kernel` prints
before anything is pushed, for one T4 and for "T4 x2" (two GPUs taking the members' fold jobs as
they come free). An estimate, not a timing: the kernel's log gives each fold's real time.

    forward_flops(config)          FLOPs of one 96x96 face through the config's model
    estimate(config)               one member: FLOPs, steps, seconds on a T4 (a range), its fold jobs
    estimate_kernel(configs)       the members summed (one GPU) and packed on two GPUs
    describe(kernel_estimate)      the lines fkd kernel prints (a warning near Kaggle's 12 hours)

The model of a fold's time (fkd.train.loop.train_fold, what it trains and predicts):
    training FLOPs   = 3 x forward FLOPs x the images an epoch trains x epochs  (backward = 2 x forward)
    validation FLOPs = forward FLOPs x the validation fold x epochs (x 2 with keep: best and flip TTA)
    prediction FLOPs = forward FLOPs x every test-time view x (validation fold + test images), float32
    seconds          = FLOPs / effective FLOPS + (optimizer steps + prediction batches) x step overhead
                       + resume states saved x their bytes / disk speed + a process start
Each constant below is a pair (optimistic, pessimistic): every time is a range, never one number.
FlopCounterMode counts convolutions and matrix products only (BatchNorm, ReLU, pooling and the
augmentation are memory-bound work the effective FLOPS and the step overhead stand for). Not counted:
a pseudo_labels teacher's predictions (its model lies in a run folder on Kaggle), the data's first parse.

torch, the model zoo and the training loop are imported inside the functions that need them, so that
importing this module pulls in no torch (a light command's import of it costs nothing).
"""
import math

from fkd.core.errors import FkdError

# -------------------------------------------------------------------- what the estimate assumes
# Training in fp16 autocast with a GradScaler (precision auto on a T4, sm_75: no bf16 convolutions).
# A T4's fp16 tensor-core peak is 65 TFLOPS, but at 70 W it throttles, and small convnets at 96 px
# (16-512 channels, maps of 48x48 down to 6x6, batch 64-128, in PyTorch eager with BatchNorm, ReLU and
# the augmentation memory-bound between the convolutions) reach a small fraction of it. Optimistic:
# 8 TFLOPS (12% of peak), below what NVIDIA's tuned ResNet-50 reaches on a T4 in mixed precision
# (1,190 images/s x 8.2 GFLOPs = 9.8 TFLOPS, DeepLearningExamples); pessimistic: 3 TFLOPS (5%).
# The same count on a CPU, as a check of the method: cpu-heatmap-stem's 5 proxy folds (4.7e14 FLOPs)
# took 1,996 s on 2 cores with bf16, 235 GFLOPS over the whole run; its training step there runs at
# 350-375 GFLOPS, and prediction in float32 at 75: with those rates this model gives 89-93% of it.
EFFECTIVE_T4_FLOPS = (8e12, 3e12)
# Prediction runs in float32 everywhere (fkd.train.predict: no autocast): a T4's fp32 peak is 8.1
# TFLOPS, no tensor cores. NVIDIA's ResNet-50 at batch 128 reaches 426 images/s x 8.2 GFLOPs = 3.5
# TFLOPS (43%); the pessimistic end allows for the small maps at 96 px.
EFFECTIVE_T4_FP32_FLOPS = (3.5e12, 1.5e12)
# Per optimizer step, what does not scale with FLOPs: a few hundred kernel launches of a small net
# (forward, backward, the augmentation, GradScaler's unscale and its inf check, which waits for the
# GPU every step, clip_grad_norm_, AdamW, the EMA update) at 5-10 us each from Python on Kaggle's
# 2 GHz Xeon, plus the optimizer's and EMA's passes over the weights. Counted also per prediction
# batch (each ends in a copy to the CPU). Calibrated against the fixed cost of a step of fkd's own
# train_epoch on a 2-core AMD EPYC (cpu-heatmap-stem's model; the step times at batch 4 and 64 drawn
# to batch 0): 1.2-1.6 ms in float32, 3.8-4.3 ms under bf16 autocast, with no kernel launch paid.
STEP_OVERHEAD_S = (0.003, 0.010)
# After every epoch but the last the fold saves a resume state (fkd.train.loop.save_resume_state):
# the weights, AdamW's two moments and the EMA's weights in float32, copied from the GPU and written
# with torch.save to /kaggle/working. 1 GB/s when the page cache takes it, 250 MB/s when the disk does.
SAVE_BYTES_PER_S = (1.0e9, 0.25e9)
# A `python -m fkd cv` process starting: imports (torch, timm), the CUDA context, the cached data, the
# folds. Charged to every fold job (on T4 x2 each job is a process; on one GPU a member's folds share
# one, so there it is a little pessimistic).
JOB_START_S = (20.0, 60.0)

KAGGLE_LIMIT_HOURS = 12   # Kaggle stops a session after 12 hours
WARN_HOURS = 9            # an upper bound past this comes near it: say so, and name --split
FACE = 96                 # the competition's faces are 96x96 grayscale


def _structural(config: dict) -> dict:
    """The config with its model options reduced to what shapes the network: no weights file is read
    (a path on Kaggle need not exist here, and FLOPs do not depend on the values)."""
    options = {k: v for k, v in (config.get("model_options") or {}).items() if k not in ("weights", "pretrained")}
    return {**config, "model_options": options, "subset_heads": bool(config.get("subset_heads", False))}


def _count(config: dict, device: str):
    # torch here, not at the top: importing this module must not import torch (fkd kernel --help)
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fkd.model.inputs import forward, make_model, model_inputs, scale_pixels

    with torch.device(device):
        model = make_model(config, device).eval()
        # the input path of training and prediction: uint8 face -> [1,1,96,96] float, scaled, channels_last;
        # a downsample (2x2 average) or a stem happens inside the model and is counted there
        face = torch.zeros(1, FACE, FACE, dtype=torch.uint8)
        x = scale_pixels(model_inputs(face, config), config).contiguous(memory_format=torch.channels_last)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            forward(model, x, None)
    parameters = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    return float(counter.get_total_flops()), parameters, buffers


def model_figures(config: dict) -> dict:
    """{flops (one face, forward), parameters, buffers} of the config's model, built on the meta device
    (no memory, no weights initialised) or, where a model cannot be built there, on the CPU."""
    config = _structural(config)
    try:
        flops, parameters, buffers = _count(config, "meta")
    except FkdError:
        raise
    except (NotImplementedError, RuntimeError, TypeError):  # an operation without a meta kernel
        flops, parameters, buffers = _count(config, "cpu")
    return {"flops": flops, "parameters": parameters, "buffers": buffers}


def forward_flops(config: dict) -> float:
    """FLOPs (2 per multiply-add) of one 96x96 face through the config's model in eval mode, as the
    input path feeds it (fkd.model.inputs), counted by torch.utils.flop_counter.FlopCounterMode."""
    return model_figures(config)["flops"]


def _views(config: dict) -> int:
    from fkd.train.predict import tta_views  # torch: see _count

    return len(tta_views(config)) * (2 if config.get("flip_tta", True) else 1)


def _steps_per_epoch(rows: int, config: dict) -> int:
    from fkd.train.loop import steps_per_epoch  # torch: see _count

    return steps_per_epoch(rows, config)


def estimate(config: dict, training_rows: int = 7049, test_images: int = 1783, figures: dict = None) -> dict:
    """One member's cost on a T4: FLOPs, steps and seconds per fold and in all (ranges: optimistic,
    pessimistic), and its fold jobs for packing. `config`: a resolved config (fkd.core.config.load_config);
    `figures`: model_figures(config) when already known (else the model is built and counted)."""
    if training_rows < 2 or test_images < 0:
        raise FkdError(f"estimate: {training_rows} training rows and {test_images} test images")
    k = int(config.get("folds", 5))
    if k < 2:
        raise FkdError(f"--folds {k}: K-fold needs at least 2 folds")
    figures = figures or model_figures(config)
    flops, epochs = figures["flops"], int(config["epochs"])
    valid = round(training_rows / k)                 # fkd.data.folds: folds of (nearly) equal size
    train = training_rows - valid
    steps_epoch = _steps_per_epoch(train, config)    # the loop drops the last partial batch
    images_epoch = steps_epoch * min(int(config["batch_size"]), train)
    views = _views(config)
    flip = bool(config.get("flip_tta", True))
    keep_best = config.get("keep", "last") == "best"
    eval_batch = int(config.get("eval_batch_size", 256))

    def batches(rows):
        return math.ceil(rows / eval_batch) if rows else 0

    # every epoch: the validation fold on the plain view (its mirror too when keep: best picks with flip TTA)
    epoch_forwards = 2 if (flip and keep_best) else 1
    # after the last epoch: the kept state's validation fold with every view (reused when the epochs'
    # own prediction already was that), the last state's too with keep: best; then the test images
    revalidations = 0 if (views == epoch_forwards) else (2 if keep_best else 1)
    training_flops = 3 * flops * images_epoch * epochs
    validation_flops = flops * valid * epoch_forwards * epochs
    prediction_flops = flops * views * (valid * revalidations + test_images)
    steps = steps_epoch * epochs
    prediction_batches = batches(valid) * epoch_forwards * epochs + views * (batches(valid) * revalidations
                                                                              + batches(test_images))
    state_bytes = 4 * (figures["parameters"] * (3 + bool(config.get("ema"))) + figures["buffers"])
    saves = max(epochs - 1, 0)

    # precision auto or fp16 trains in fp16 on a T4; fp32 trains without tensor cores (bf16 is refused there)
    training_rate = EFFECTIVE_T4_FP32_FLOPS if config.get("precision") == "fp32" else EFFECTIVE_T4_FLOPS

    def fold_seconds(i):
        return (training_flops / training_rate[i]
                + (validation_flops + prediction_flops) / EFFECTIVE_T4_FP32_FLOPS[i]
                + (steps + prediction_batches) * STEP_OVERHEAD_S[i]
                + saves * state_bytes / SAVE_BYTES_PER_S[i]
                + JOB_START_S[i])

    per_fold = (fold_seconds(0), fold_seconds(1))
    folds = list(config.get("only_folds") or range(k))
    name = config.get("name") or str(config.get("model"))
    return {
        "name": name, "model": config.get("model"), "gflops": flops / 1e9, "parameters": figures["parameters"],
        "folds": k, "trained_folds": folds, "epochs": epochs, "batch_size": int(config["batch_size"]),
        "training_rows": training_rows, "test_images": test_images, "fold_training_rows": train,
        "fold_validation_rows": valid, "views": views,
        # per fold
        "fold_training_flops": training_flops, "fold_validation_flops": validation_flops,
        "fold_prediction_flops": prediction_flops, "fold_steps": steps,
        "fold_prediction_batches": prediction_batches, "fold_state_bytes": state_bytes, "fold_seconds": per_fold,
        # the member: every fold it trains
        "training_flops": training_flops * len(folds),
        "evaluation_flops": (validation_flops + prediction_flops) * len(folds),
        "flops": (training_flops + validation_flops + prediction_flops) * len(folds),
        "steps": steps * len(folds),
        "seconds": (per_fold[0] * len(folds), per_fold[1] * len(folds)),
        "jobs": [(name, fold, per_fold) for fold in folds],
        "seconds_two_gpus": (pack([per_fold[0]] * len(folds), 2), pack([per_fold[1]] * len(folds), 2)),
    }


def pack(durations, gpus: int = 2) -> float:
    """Wall time of jobs taken greedily by `gpus` GPUs, the longest first, each by the GPU free first."""
    if gpus < 1:
        raise FkdError(f"{gpus} GPUs: at least one is needed")
    loads = [0.0] * gpus
    for duration in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += duration
    return max(loads)


def estimate_kernel(configs, training_rows: int = 7049, test_images: int = 1783) -> dict:
    """Every member's estimate, their sum on one T4 and their fold jobs packed on T4 x2 (each bound
    packed on its own: a member's optimistic and pessimistic times need not rank alike)."""
    members = [estimate(c, training_rows, test_images) if "fold_seconds" not in c else c for c in configs]
    if not members:
        raise FkdError("estimate_kernel: no members")
    jobs = [job for member in members for job in member["jobs"]]
    one = (sum(m["seconds"][0] for m in members), sum(m["seconds"][1] for m in members))
    two = (pack([j[2][0] for j in jobs], 2), pack([j[2][1] for j in jobs], 2))
    longest_job = max((j[2] for j in jobs), key=lambda s: s[1])
    return {"members": members, "jobs": jobs, "seconds": one, "seconds_two_gpus": two,
            "longest_job_seconds": longest_job, "warn": one[1] > WARN_HOURS * 3600}


def _span(seconds) -> str:
    """(low, high) seconds -> '12-25 min' or '1.9-5.6 h' (the high bound's unit for both)."""
    low, high = seconds
    if high < 3600:
        return f"{max(1, round(low / 60))}-{max(1, round(high / 60))} min"
    return f"{low / 3600:.1f}-{high / 3600:.1f} h"


def describe(kernel: dict) -> list:
    """The lines fkd kernel prints: one per member, the total, and a warning near Kaggle's 12 hours.
    `kernel`: estimate_kernel(...) (or a list of resolved configs, estimated here)."""
    if not isinstance(kernel, dict) or "members" not in kernel:
        kernel = estimate_kernel(kernel)
    lines = []
    for m in kernel["members"]:
        folds = f"{m['folds']} folds" if len(m["trained_folds"]) == m["folds"] else \
            f"{len(m['trained_folds'])} of {m['folds']} folds"
        lines.append(f"{m['name']}: {m['gflops']:.3g} GFLOPs a face, {m['epochs']} epochs x {folds}, "
                     f"about {_span(m['seconds'])} on a T4")
    lines.append(f"about {_span(kernel['seconds'])} on one T4, {_span(kernel['seconds_two_gpus'])} on T4 x2 "
                 "(an estimate from FLOPs; the kernel's log gives the real fold times)")
    if kernel["seconds"][1] > WARN_HOURS * 3600:
        longest = kernel["longest_job_seconds"]
        warning = (f"warning: up to {kernel['seconds'][1] / 3600:.1f} h on one T4 comes near Kaggle's "
                   f"{KAGGLE_LIMIT_HOURS}-hour limit, which stops the session: build with --split (each "
                   f"member's fold its own kernel, about {_span(longest)} each)")
        if longest[1] > WARN_HOURS * 3600:
            warning += ", though one fold alone may pass it: train fewer epochs"
        lines.append(warning)
    return lines
