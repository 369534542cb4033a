"""The model zoo: `build_model(name, **options)` -> nn.Module mapping [B,1,96,96] -> [B,30].

Input: float images already normalised by the caller. Output: the 30 Kaggle columns (x, y per
keypoint) in normalised units, pixel = 48 + 48 * output (`to_pixels` / `to_normalised`).

Names and options:
    lenet                   LeNet-5: 2 conv (5x5) + pool, 3 fully-connected. dropout=0.0
    seedcnn                 the original project's CNN, layer sizes kept exactly. dropout=0.4
    convnet                 fkd's compact CPU model. widths=(32,64,128,256), depth=1, hidden=512, dropout=0.2,
                            downsample=1 (2: the network sees 48 px), stem=0 (C: a full-resolution
                            conv of C channels + max-pool first)
    timm:<name>             any timm backbone, in_chans=1, num_classes=30.
                            pretrained=False, weights=PATH (local file, loaded offline),
                            drop_stem_pool=False, dropout (-> drop_rate), drop_path (-> drop_path_rate);
                            any other option goes to timm.create_model.
    heatmap:<name>          timm backbone (features_only) + a small head -> 15 heatmaps at stride
                            4 or 8 -> soft-argmax (integral regression) -> the same [B,30] output.
                            stride=4, fuse=True (add the deepest map, upsampled), head_channels=64,
                            dropout (head), and the timm options above.
    heatmap:convnet         convnet's trunk (widths, depth, downsample, stem) as that backbone, every map
                            from `stride` (4) to the deepest fused; head_channels=64, dropout=0.0.
"""
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fkd.core.errors import FkdError
from fkd.core.keypoints import N_COLUMNS, N_POINTS, SIZE

HALF = SIZE / 2.0  # pixel = HALF + HALF * output

# Where timm families keep the stem max-pool (full model names, and FeatureListNet's "_" names).
STEM_POOL_NAMES = ("maxpool", "stem.pool", "stem.maxpool", "features.pool0")


def to_pixels(output):
    """Normalised model output -> pixel coordinates (tensor or array)."""
    return HALF + HALF * output


def to_normalised(pixels):
    """Pixel coordinates -> normalised units the models predict (tensor or array)."""
    return (pixels - HALF) / HALF


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ---------------------------------------------------------------------------------------------
# Hand-written CNNs
# ---------------------------------------------------------------------------------------------

class LeNet(nn.Module):
    """LeNet-5 at 96 px: conv 1->6 (5x5), pool, conv 6->16 (5x5), pool, fc 7056->120->84->30."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),    # 96 -> 92 -> 46
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),   # 46 -> 42 -> 21
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 21 * 21, 120), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(84, N_COLUMNS),
        )

    def forward(self, x):
        return self.head(self.features(x))


class SeedCNN(nn.Module):
    """The original project's CNN. No padding, so 96 -> 92/46 -> 44/22 -> 20/10 -> 8/4: 256*4*4 = 4096."""

    def __init__(self, dropout: float = 0.4):
        super().__init__()

        def block(c_in, c_out, kernel):
            return [nn.Conv2d(c_in, c_out, kernel), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                    nn.MaxPool2d(2), nn.Dropout(dropout)]

        self.features = nn.Sequential(
            *block(1, 4, 5), *block(4, 64, 3), *block(64, 128, 3), *block(128, 256, 3),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4096, 1024), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(1024, 256), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(256, N_COLUMNS),
        )

    def forward(self, x):
        return self.head(self.features(x))


def conv_stages(widths, depth: int = 1, stem: int = 0):
    """(nn.Sequential, output channels): [stem: conv C, pool] then per width (3x3 conv, BatchNorm,
    ReLU) x depth and a 2x2 max-pool. ConvNet's trunk and ConvNetMaps' (checkpoint names: features.N)."""
    layers, channels = [], 1
    if stem:
        layers += [nn.Conv2d(1, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]
        channels = stem
    for width in widths:
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers), channels


class ConvNet(nn.Module):
    """fkd's compact CPU model: per stage (3x3 conv, BatchNorm, ReLU) x depth, then 2x2 max-pool;
    96 -> 48 -> 24 -> 12 -> 6; then dropout and a fully-connected layer to 30 (or `outputs`: the
    framer's 3).

    downsample=2 averages 2x2 pixels first (the network sees 48 px): about 4x less compute, for CPUs.
    stem=C puts one 3x3 conv of C channels and a 2x2 max-pool before the stages: a learned halving
    that still sees every pixel (cheap: one input channel).
    """

    def __init__(self, widths=(32, 64, 128, 256), depth: int = 1, hidden: int = 512, dropout: float = 0.2,
                 downsample: int = 1, stem: int = 0, outputs: int = N_COLUMNS):
        super().__init__()
        self.downsample = downsample
        self.features, channels = conv_stages(widths, depth, stem)
        side = SIZE // downsample // 2 ** (len(widths) + bool(stem))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(channels * side * side, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, outputs),
        )

    def forward(self, x):
        if self.downsample > 1:
            x = F.avg_pool2d(x, self.downsample)
        return self.head(self.features(x))


# ---------------------------------------------------------------------------------------------
# timm backbones
# ---------------------------------------------------------------------------------------------

def _create_timm(name: str, weights=None, pretrained: bool = False, **kwargs) -> nn.Module:
    """timm.create_model(name, in_chans=1, ...), pretrained from a local file when weights=PATH."""
    import timm

    if not timm.is_model(name):
        raise FkdError(f"unknown timm model {name!r} (timm {timm.__version__})")
    kwargs.setdefault("in_chans", 1)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FkdError("pretrained weights file not found", path=path)
        # no hub here or in an internet-off Kaggle kernel; the file is read directly, and timm adapts
        # the first conv to in_chans=1 itself (sums the RGB filters) and drops a classifier of another size
        os.environ["HF_HUB_OFFLINE"] = "1"
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    else:
        kwargs["pretrained"] = bool(pretrained)
    try:
        return timm.create_model(name, **kwargs)
    except TypeError as error:  # an option this model does not take
        raise FkdError(f"timm model {name!r} rejected an option: {error}") from error
    except Exception as error:  # noqa: BLE001 - a bad weights file fails in many ways
        if weights is None and not pretrained:
            raise
        detail = " ".join(str(error).split()) or type(error).__name__
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise FkdError(f"could not load pretrained weights into timm model {name!r}: {detail}",
                       path=weights) from error


def remove_stem_pool(model: nn.Module) -> bool:
    """Replace the stem max-pool with nn.Identity (doubles the final map: resnet18 at 96 px 3x3 -> 6x6).

    Knows resnet-style `maxpool`, `stem.pool` (resnetv2 and co), `features.pool0` (densenet), also
    under FeatureListNet's flattened names. Families with no stem pool (convnext's patchify stem,
    efficientnet, vit) are left alone: returns False and warns.
    """
    modules = dict(model.named_modules())
    for name in STEM_POOL_NAMES:
        for candidate in (name, name.replace(".", "_")):
            module = modules.get(candidate)
            if module is None or isinstance(module, nn.Identity):
                continue
            parent_name, _, attribute = candidate.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attribute, nn.Identity())
            return True
    warnings.warn(f"drop_stem_pool: no stem max-pool found in {type(model).__name__}; left unchanged")
    return False


def _timm_options(options: dict) -> dict:
    """fkd option names -> timm's."""
    options = dict(options)
    if "dropout" in options:
        options["drop_rate"] = options.pop("dropout")
    if "drop_path" in options:
        options["drop_path_rate"] = options.pop("drop_path")
    return options


def build_timm(name: str, drop_stem_pool: bool = False, **options) -> nn.Module:
    model = _create_timm(name, num_classes=N_COLUMNS, **_timm_options(options))
    if drop_stem_pool:
        remove_stem_pool(model)
    return model


# ---------------------------------------------------------------------------------------------
# Heatmap head + soft-argmax (integral regression)
# ---------------------------------------------------------------------------------------------

def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """Heatmap logits [B,15,h,w] -> [B,30] normalised (x, y per point), softmax over each map.

    The map covers the 96 px image: cell j spans pixels [s*j, s*j + s - 1] (s = 96 / w), so its
    centre is pixel s*j + (s-1)/2 (pixel centre = integer). The reachable range is therefore
    [(s-1)/2, 95 - (s-1)/2]: 1.5..93.5 at stride 4, 3.5..91.5 at stride 8.
    """
    batch, points, height, width = heatmaps.shape
    probs = heatmaps.float().flatten(2).softmax(-1).view(batch, points, height, width)
    step_x, step_y = SIZE / width, SIZE / height
    xs = torch.arange(width, device=heatmaps.device, dtype=torch.float32) * step_x + (step_x - 1) / 2
    ys = torch.arange(height, device=heatmaps.device, dtype=torch.float32) * step_y + (step_y - 1) / 2
    x = (probs.sum(2) * xs).sum(-1)
    y = (probs.sum(3) * ys).sum(-1)
    return to_normalised(torch.stack([x, y], -1).reshape(batch, points * 2))


class HeatmapModel(nn.Module):
    """timm features at stride 4|8 (+ the deepest map, upsampled and added) -> 3x3 conv -> 1x1 conv
    -> 15 heatmaps -> soft-argmax -> [B,30] normalised, like every other model here."""

    def __init__(self, backbone: nn.Module, channels, head_channels: int = 64, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.lateral = nn.ModuleList(nn.Conv2d(c, head_channels, 1) for c in channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(head_channels, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )
        self.out = nn.Conv2d(head_channels, N_POINTS, 1)

    def heatmaps(self, x):
        """Heatmap logits [B,15,h,w] (softmax over h*w gives the point's probability map)."""
        features = self.backbone(x)
        y = self.lateral[0](features[0])
        for lateral, feature in zip(self.lateral[1:], features[1:]):
            y = y + F.interpolate(lateral(feature), size=y.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.fuse(y))

    def forward(self, x):
        return soft_argmax(self.heatmaps(x))


def build_heatmap(name: str, stride: int = 4, fuse: bool = True, head_channels: int = 64,
                  dropout: float = 0.0, drop_stem_pool: bool = False, **options) -> HeatmapModel:
    import timm

    if stride not in (4, 8):
        raise FkdError(f"heatmap stride must be 4 or 8, got {stride!r}")
    if not timm.is_model(name):
        raise FkdError(f"unknown timm model {name!r} (timm {timm.__version__})")
    # feature_info before building the real thing (cheap: no weights), to choose out_indices
    options = _timm_options(options)
    structural = {k: v for k, v in options.items() if k not in ("weights", "pretrained")}
    try:
        probe = timm.create_model(name, features_only=True, **{"in_chans": 1, **structural})
    except TypeError as error:
        raise FkdError(f"timm model {name!r} rejected an option: {error}") from error
    except RuntimeError as error:  # e.g. a family without features_only support
        raise FkdError(f"timm model {name!r} gives no feature maps: {error}") from error
    reductions = list(probe.feature_info.reduction())
    dropped = drop_stem_pool and remove_stem_pool(probe)
    if dropped:  # the stem pool sits between the stride-2 and stride-4 maps
        reductions = [r // 2 if r > 2 else r for r in reductions]
    if stride not in reductions:
        raise FkdError(f"timm model {name!r} has no stride-{stride} feature map (strides {reductions})")
    target = reductions.index(stride)
    out_indices = (target, len(reductions) - 1) if fuse and target != len(reductions) - 1 else (target,)
    backbone = _create_timm(name, features_only=True, out_indices=out_indices, **options)
    if dropped:
        remove_stem_pool(backbone)
    model = HeatmapModel(backbone, backbone.feature_info.channels(), head_channels, dropout)
    with torch.no_grad():  # check the map really is at the promised stride
        was_training = model.training
        size = model.eval().heatmaps(torch.zeros(1, 1, SIZE, SIZE)).shape[-1]
        model.train(was_training)
    if size * stride != SIZE:
        raise FkdError(f"heatmap:{name} gives a {size}x{size} map at {SIZE} px, not stride {stride}")
    model.stride = stride
    return model


class ConvNetMaps(nn.Module):
    """ConvNet's trunk as a heatmap backbone: the maps after each max-pool from `first` on (a list,
    finest first), for HeatmapModel to fuse."""

    def __init__(self, widths=(32, 64, 128), depth: int = 1, downsample: int = 1, stem: int = 0, first: int = 0):
        super().__init__()
        self.downsample, self.first = downsample, first
        self.features, _ = conv_stages(widths, depth, stem)
        self.channels = ([stem] if stem else []) + list(widths)

    def forward(self, x):
        if self.downsample > 1:
            x = F.avg_pool2d(x, self.downsample)
        maps = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                maps.append(x)
        return maps[self.first:]


def build_convnet_heatmap(widths=(32, 64, 128), depth: int = 1, downsample: int = 1, stem: int = 0,
                          stride: int = 4, head_channels: int = 64, dropout: float = 0.0) -> HeatmapModel:
    """heatmap:convnet: ConvNet's trunk, every map from `stride` down fused, 15 heatmaps, soft-argmax."""
    strides = [downsample * 2 ** (k + 1) for k in range(len(widths) + bool(stem))]
    if stride not in strides:
        raise FkdError(f"heatmap:convnet with downsample {downsample} has maps at strides {strides}, not {stride}")
    first = strides.index(stride)
    backbone = ConvNetMaps(widths, depth, downsample, stem, first)
    model = HeatmapModel(backbone, backbone.channels[first:], head_channels, dropout)
    model.stride = stride
    return model


# ---------------------------------------------------------------------------------------------

def build_model(name: str, subset_heads: bool = False, **options) -> nn.Module:
    """'lenet' | 'seedcnn' | 'convnet' | 'timm:<name>' | 'heatmap:<timm name>' -> nn.Module, [B,1,96,96] -> [B,30].

    subset_heads=True wraps it in SubsetOffset: forward(x, subset) with subset 0|1 per image.
    """
    if subset_heads:
        return SubsetOffset(build_model(name, **options))
    family, _, backbone = name.partition(":")
    hand_written = {"lenet": (LeNet, {"dropout"}), "seedcnn": (SeedCNN, {"dropout"}),
                    "convnet": (ConvNet, {"widths", "depth", "hidden", "dropout", "downsample", "stem"})}
    if family in hand_written and not backbone:
        model_class, allowed = hand_written[family]
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise FkdError(f"model {name!r} takes only {sorted(allowed)}, got {unknown}")
        return model_class(**options)
    if family == "timm" and backbone:
        return build_timm(backbone, **options)
    if family == "heatmap" and backbone == "convnet":
        return build_convnet_heatmap(**options)
    if family == "heatmap" and backbone:
        return build_heatmap(backbone, **options)
    raise FkdError(f"unknown model {name!r}: use lenet, seedcnn, convnet, timm:<name>, heatmap:<timm name> "
                   "or heatmap:convnet")


def check_model_options(config: dict) -> None:
    """FkdError for model_options that build_model would refuse (naming the option and the model), before a
    run makes anything: the model is built by build_model itself on the meta device, so no memory is
    taken and nothing is trained (a `weights` file is still read). A valid config passes silently."""
    name, options = config["model"], config["model_options"]
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the real build warns; loading weights into meta tensors always does
            build_model(name, subset_heads=config["subset_heads"], **options)
    except (TypeError, ValueError) as error:  # an option the builder does not take, or a value it cannot use
        raise FkdError(f"model {name!r} refused its model_options {list(options)}: {error}") from None


# ---------------------------------------------------------------------------------------------
# Subset-aware output: one learned offset per label subset
# ---------------------------------------------------------------------------------------------

class SubsetOffset(nn.Module):
    """Wraps any model: output + offset[subset], one 30-value offset per label subset (0 = the
    core-point rows, 1 = the complete rows). The subsets were labelled apart (on Kaggle the 4-point
    rows were framed differently; on the proxy they come from another dataset whose nose tip and
    mouth corners sit lower), so each test image is predicted with the subset its lookup asks for.

    The offset is kept mirror-symmetric (a flipped face gets the mirrored offset), so it agrees with
    flip augmentation and flip TTA. `labelled` [2,30] says which columns each subset's rows label
    (set_labelled_columns, from the training data): for a column its subset never labels, the
    subset's output is the complete rows' output, not an offset that no gradient ever moved.
    """

    takes_subset = True

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.offset = nn.Parameter(torch.zeros(2, N_COLUMNS))
        sign = torch.ones(N_COLUMNS)
        sign[0::2] = -1.0  # a displacement dx becomes -dx in the mirror
        from fkd.core.keypoints import FLIP_COLUMN_PERMUTATION
        self.register_buffer("mirror_index", torch.as_tensor(FLIP_COLUMN_PERMUTATION), persistent=False)
        self.register_buffer("mirror_sign", sign, persistent=False)
        self.register_buffer("labelled", torch.ones(2, N_COLUMNS, dtype=torch.bool))

    def set_labelled_columns(self, partial_columns) -> None:
        """The columns the partial rows label (bool [30]); the complete rows label all."""
        self.labelled[0] = torch.as_tensor(partial_columns, dtype=torch.bool, device=self.labelled.device)
        self.labelled[1] = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the mask existed: every column counted as labelled
        state_dict.setdefault(prefix + "labelled", torch.ones_like(self.labelled))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def symmetric_offset(self) -> torch.Tensor:
        symmetric = (self.offset + self.offset[:, self.mirror_index] * self.mirror_sign) / 2
        return torch.where(self.labelled, symmetric, symmetric[1:2])

    def forward(self, x, subset=None):
        offset = self.symmetric_offset()
        return self.model(x) + (offset[1] if subset is None else offset[subset])
