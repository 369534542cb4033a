"""The model-input path shared by training and prediction: the device, the precision, uint8 faces
to model inputs, the labels' mirror axis, the forward call and the model on its device."""
import os

import torch

from fkd.core.errors import FkdError
from fkd.model.nets import build_model


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FkdError(f"device {name!r} asked for, but torch sees no CUDA GPU here: use --device cpu or auto")
    return torch.device(name)


PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def pick_precision(name: str, device: torch.device):
    """The autocast dtype of training on `device` (None: plain float32) for precision `name`.

    torch.cuda.is_bf16_supported() also counts emulated bf16, which a T4 (sm_75) has, but cuDNN runs no
    bf16 convolution below sm_80: "auto" therefore asks the compute capability. fp16 trains with a
    GradScaler (train_epoch makes one whenever this returns float16).

    On a CPU, "auto" and "bf16" autocast to bfloat16 on CPUs with bf16 instructions (oneDNN's
    avx512_bf16 or AMX kernels: 1.3-1.6x the training images/s of float32 on this project's 2-core AMD
    EPYC, the same RMSE), where "auto" falls back to float32 and "bf16" is refused; "fp16" trains in
    float32."""
    if name not in PRECISIONS:
        raise FkdError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}")
    if name == "fp32":
        return None
    if device.type != "cuda":
        if name == "fp16":
            return None
        if not cpu_has_bf16():
            if name == "auto":
                return None
            raise FkdError("precision bf16 on this CPU: it has no bf16 instructions (avx512_bf16 or AMX); "
                           "use precision fp32 or auto")
        return torch.bfloat16
    if name == "auto":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    return torch.bfloat16 if name == "bf16" else torch.float16


CPU_BF16_VARIABLE = "FKD_CPU_BF16"


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions; FKD_CPU_BF16=0 says it has not, so that `auto` trains in
    float32 as on a CPU without them (the test suite's fp32 run: `FKD_CPU_BF16=0 make test`)."""
    if os.environ.get(CPU_BF16_VARIABLE, "").strip() == "0":
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def describe_device(device: torch.device, precision: str) -> str:
    """What a run's log says first: the GPU model and compute capability (or the CPU threads) and the
    precision chosen, so a first push to Kaggle shows at once whether it ran as intended."""
    dtype = pick_precision(precision, device)
    chosen = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16 + GradScaler"}[dtype]
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (sm_{major}{minor}), precision {chosen}"
    return f"{device.type} ({torch.get_num_threads()} threads), precision {chosen}"


def model_inputs(images_uint8: torch.Tensor, config: dict) -> torch.Tensor:
    """uint8 [B,96,96] -> float [B,1,96,96] in 0..1 (augmentation works there; scale_pixels follows)."""
    return images_uint8.unsqueeze(1).float() / 255.0


def scale_pixels(images: torch.Tensor, config: dict) -> torch.Tensor:
    return images * 255.0 if config["pixels"] == "raw" else images


def flip_axis(config: dict, subsets, n: int, device):
    """The labels' mirror axis: one number, or [core-point rows, complete rows] when the two subsets
    were labelled with different pixel conventions (then a [n,1] tensor, one axis per image)."""
    axis = config.get("flip_axis", 47.5)
    if axis == "auto":
        raise FkdError("flip_axis auto is estimated from the training faces when training starts "
                       "(fkd.train.labels.resolve_flip_axis): this config was never resolved")
    if not isinstance(axis, (list, tuple)):
        return float(axis)
    if subsets is None:
        return float(axis[1])
    return torch.as_tensor(axis, dtype=torch.float32, device=device)[torch.as_tensor(subsets, device=device)][:, None]


def forward(model, x, subset=None):
    """model(x), passing the label subset to models that take one (SubsetOffset)."""
    return model(x, subset) if getattr(model, "takes_subset", False) else model(x)


def make_model(config: dict, device="cpu"):
    """The config's model on the device, channels_last (faster convolutions on GPUs and on CPUs: oneDNN)."""
    model = build_model(config["model"], subset_heads=config["subset_heads"], **config["model_options"])
    return model.to(device).to(memory_format=torch.channels_last)
