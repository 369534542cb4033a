"""The framer: a small CNN that reads from a face's crop alone how far that crop is from the training
set's framing (the rule and its corrections: fkd.photo.frame): the zoom and shift that would frame
the face as the training faces are framed. `fkd face` crops a photo's face by its detector's
landmarks, asks the framer, and crops again, so the keypoint models see the face as they were
trained to see faces. It matters because a model trained on faces framed one way follows a moved
face only part of the way (on the proxy, whose crops were cut by their own labels, about 0.6 of a
move): each pixel of framing error stays in its points as 0.4 px.

Trained by `fkd calibrate` on the run's training faces (fkd.photo.frame makes the examples) and
kept as runs/<name>/framer.pt; it predicts with flip TTA. It sits here, below fkd.photo, because
`fkd export` (fkd.submit) carries it into the ONNX file too."""
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fkd.core.errors import FkdError
from fkd.core.keypoints import CENTRE
from fkd.model.inputs import pick_precision
from fkd.model.nets import ConvNet
from fkd.train.loop import make_optimizer, make_schedule
from fkd.train import checkpoint

OPTIONS = {"widths": (32, 64, 128), "downsample": 2, "hidden": 512, "dropout": 0.0, "outputs": 3}
UNITS = np.array([0.1, 4.0, 4.0], np.float32)   # (log zoom, dx px, dy px) per unit of the network's output
REMEDY = "rerun `fkd calibrate` for this run"


def _inputs(crops) -> torch.Tensor:
    return torch.as_tensor(np.asarray(crops, np.uint8))


def mirrored_correction(correction: torch.Tensor, rule_x: float, label_axis: float) -> torch.Tensor:
    """Corrections [N,3] of mirrored crops (pixel x -> 95 - x; the labels x -> 2 label_axis - x) as
    corrections of the crops themselves: the zoom and dy hold; a face whose points' mean x is m in the
    mirror image has 2 label_axis - m in the crop, so dx reflects about the rule's mean x (rule_x)."""
    log_zoom, dx, dy = correction.unbind(1)
    return torch.stack([log_zoom, 2 * (rule_x - CENTRE) - 2 * torch.exp(log_zoom) * (label_axis - CENTRE) - dx, dy], 1)


class FramerGraph(nn.Module):
    """faces [N,96,96] (uint8 or 0..255 floats) -> corrections [N,3] (log zoom, dx, dy): the mean of
    the network's reading of each face and of its mirror image (pixel x -> 95 - x; the labels mirror
    about label_axis), the mirror's dx read back through the rule's mean x (rule_x)."""

    def __init__(self, network: nn.Module, rule_x: float, label_axis: float):
        super().__init__()
        self.network, self.rule_x, self.label_axis = network, float(rule_x), float(label_axis)
        self.register_buffer("units", torch.as_tensor(UNITS))

    def forward(self, faces):
        x = faces.float()[:, None] / 255.0
        seen = self.network(x) * self.units
        mirrored = self.network(x.flip(-1)) * self.units
        return (seen + mirrored_correction(mirrored, self.rule_x, self.label_axis)) / 2


class Framer:
    """uint8 crops [N,96,96] -> corrections [N,3] (fkd.photo.frame) by a FramerGraph."""

    def __init__(self, network, rule_x: float, label_axis: float):
        self.graph = FramerGraph(network, rule_x, label_axis).eval()

    @torch.no_grad()
    def __call__(self, crops) -> np.ndarray:
        faces = _inputs(crops)
        return self.graph(faces).double().numpy() if len(faces) else np.zeros((0, 3), np.float64)

    def save(self, path) -> None:
        checkpoint.save({"state_dict": self.graph.network.state_dict(), "options": OPTIONS,
                         "rule_x": self.graph.rule_x, "label_axis": self.graph.label_axis}, path)

    @classmethod
    def load(cls, path) -> "Framer":
        saved = checkpoint.load(path, remedy=REMEDY)
        try:
            network = ConvNet(**saved["options"])
            network.load_state_dict(saved["state_dict"])
            return cls(network, saved["rule_x"], saved["label_axis"])
        except (KeyError, TypeError, RuntimeError) as error:
            raise FkdError(f"not a framer of fkd ({type(error).__name__}); {REMEDY}", path=path) from None


def train_framer(crops, corrections, rule_x: float, label_axis: float, epochs: int = 20, batch_size: int = 64,
                 lr: float = 2e-3, seed: int = 0, log=print) -> Framer:
    """A Framer fitted to uint8 crops [N,96,96] and the corrections [N,3] that frame each one as the
    training faces (smooth L1 in UNITS, AdamW one-cycle with weight decay 0.05, bf16 autocast where the
    CPU has it; on `make bench`'s photos decay 0.05 framed 1.130x the crops, 1e-4 1.141x)."""
    torch.manual_seed(seed)
    model = ConvNet(**OPTIONS).to(memory_format=torch.channels_last)  # oneDNN's faster layout, as fkd's loop
    x = (_inputs(crops).float()[:, None] / 255.0).contiguous(memory_format=torch.channels_last)
    y = torch.as_tensor(np.asarray(corrections, np.float32) / UNITS)
    steps = max(1, len(x) // batch_size)
    settings = {"optimizer": "adamw", "lr": lr, "weight_decay": 0.05, "schedule": "onecycle", "epochs": epochs,
                "warmup_epochs": 1}
    optimizer = make_optimizer(model, settings)
    schedule = make_schedule(optimizer, settings, steps)
    precision = pick_precision("auto", torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        started, total = time.perf_counter(), 0.0
        order = torch.randperm(len(x), generator=generator)
        for step in range(steps):
            batch = order[step * batch_size:(step + 1) * batch_size]
            with torch.autocast("cpu", dtype=precision or torch.bfloat16, enabled=precision is not None):
                out = model(x[batch])
            loss = F.smooth_l1_loss(out.float(), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        log(f"framer epoch {epoch + 1}/{epochs}: loss {total / steps:.4f} ({time.perf_counter() - started:.1f} s)")
    return Framer(model, rule_x, label_axis)
