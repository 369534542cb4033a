"""`fkd export --runs runs/A [runs/B ...] --out model.onnx`: the whole ensemble in one ONNX file.

The graph takes faces [N,96,96] (uint8 by default, `--input float32` for 0..255 floats; any N) and
returns the 30 pixel coordinates of the complete-kind output (all 15 points): every fold model of
every run, each with its run's test-time views and flip setting, the runs blended by the weights
`fkd submit` fits on their out-of-fold predictions (`--equal`: equal weights). When a run has a
framer (`fkd calibrate`), a second output, "corrections" [N,3], is the framer's: `fkd face --model`
frames photos with it. Before the file is
kept, onnxruntime's predictions are compared with fkd's own on a batch of faces; above 1e-3 px the
export fails and nothing is written.
"""
import json
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from fkd.core.arguments import positive_int
from fkd.core.atomic import atomic_path, check_destination
from fkd.core.errors import FkdError
from fkd.core.keypoints import COLUMNS, SIZE
from fkd.core.provenance import source_commit
from fkd.data.competition import find_data_dir, load_training
from fkd.data.synth import draw_faces
from fkd.model.inputs import model_inputs, scale_pixels
from fkd.model.onnxfile import CORRECTIONS, INPUT, METADATA_KEY, OUTPUT, OnnxKeypoints
from fkd.submit.blend import fitted_weights
from fkd.train.predict import RunsPredictor, predict_batch, tta_views
from fkd.train.framer import Framer
from fkd.train.rundir import check_finished_run, first_framer, read_framing, read_landmark_goal

TOLERANCE_PX = 1e-3
OPSET = 18
INPUT_TYPES = {"uint8": torch.uint8, "float32": torch.float32}


class WithFramer(nn.Module):
    """faces -> (the blend's keypoints, the framer's corrections): one graph, two outputs."""

    def __init__(self, blend, framer_graph):
        super().__init__()
        self.blend, self.framer = blend, framer_graph

    def forward(self, faces):
        return self.blend(faces), self.framer(faces)


class Blend(nn.Module):
    """faces [N,96,96] -> [N,30] px: the sum over runs of the run's weight x the mean of its fold
    models, each model predicting through predict_batch (the path cv and submit predict with)."""

    def __init__(self, runs, weights):
        super().__init__()
        members = [(model, config, weight / len(models))
                   for models, weight in zip(runs, weights) for model, config in models]
        self.models = nn.ModuleList(model for model, _, _ in members)
        self.configs = [config for _, config, _ in members]
        self.factors = [factor for _, _, factor in members]

    def forward(self, faces):
        total = 0.0
        for model, config, factor in zip(self.models, self.configs, self.factors):
            x = scale_pixels(model_inputs(faces, config), config)
            total = total + factor * predict_batch(model, x, config, config["flip_tta"])
        return total


def blend_weights(run_dirs, equal: bool, data_dir=None) -> np.ndarray:
    """The runs' blend weights: equal, or fitted on their OOF predictions as `fkd submit` fits them."""
    if equal or len(run_dirs) == 1:
        return np.full(len(run_dirs), 1.0 / len(run_dirs))
    images, truth = load_training(find_data_dir(data_dir))
    weights, _ = fitted_weights(run_dirs, images, truth)
    return np.asarray(weights)


def per_face_ms(predict, faces, repeats: int = 3) -> float:
    """Milliseconds a face, the best of `repeats` calls on the whole batch (after one warm-up call)."""
    predict(faces)
    best = min(_seconds(predict, faces) for _ in range(repeats))
    return 1000 * best / len(faces)


def _seconds(predict, faces) -> float:
    start = time.perf_counter()
    predict(faces)
    return time.perf_counter() - start


def is_fkd_export(path) -> bool:
    """Whether the file is an ONNX model that `fkd export` wrote (its metadata key)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any file onnx cannot read is not one of fkd's
        return False
    return any(prop.key == METADATA_KEY for prop in model.metadata_props)


def check_onnx_destination(out, force: bool = False) -> Path:
    """The ONNX file's path, once it may be written: checked before the export's long work."""
    if not str(out).endswith(".onnx"):
        raise FkdError("the output should end in .onnx", path=out)
    return check_destination(out, force, "an ONNX file of fkd export", is_fkd_export)


def export_onnx(run_dirs, out, weights, input_type: str = "uint8", check_faces: int = 64, force: bool = False) -> dict:
    """Write the ensemble to `out` (atomically, only once onnxruntime agrees with fkd within
    TOLERANCE_PX); returns the figures: max difference, models, views, latencies, size."""
    if input_type not in INPUT_TYPES:
        raise FkdError(f"--input must be one of {', '.join(INPUT_TYPES)}, not {input_type!r}")
    out = check_onnx_destination(out, force)
    kept = [(run_dir, weight) for run_dir, weight in zip(run_dirs, weights) if weight > 0]
    # every fold model loaded once: the graph is traced from them and fkd's own predictions (the
    # reference, and the torch latency) come from them
    predictors = [RunsPredictor([run_dir], device="cpu") for run_dir, _ in kept]
    blend = Blend([[(model, config) for model, config, _ in p.models] for p in predictors],
                  [weight for _, weight in kept]).eval()

    def fkd_predictions(faces):
        """What fkd itself predicts for these faces (complete-kind output), blended as the graph is."""
        return sum(weight * predictor(faces) for predictor, (_, weight) in zip(predictors, kept))

    framer_path = first_framer(r for r, _ in kept)
    framer = None if framer_path is None else Framer.load(framer_path)
    graph = blend if framer is None else WithFramer(blend, framer.graph).eval()
    outputs = [OUTPUT] if framer is None else [OUTPUT, CORRECTIONS]
    example = torch.zeros(2, SIZE, SIZE, dtype=INPUT_TYPES[input_type])
    with torch.no_grad():
        program = torch.onnx.export(graph, (example,), dynamo=True, input_names=[INPUT], output_names=outputs,
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                                    opset_version=OPSET, external_data=False, verbose=False)
    model = program.model_proto
    metadata = {"runs": [str(r) for r, _ in kept], "weights": [round(float(w), 6) for _, w in kept],
                "columns": COLUMNS, "input": f"{input_type} [N,{SIZE},{SIZE}], pixel values 0..255",
                "output": "pixel coordinates [N,30], complete-kind output", "fkd_commit": source_commit(),
                "framing": next((f.tolist() for f in map(read_framing, [r for r, _ in kept]) if f is not None), None),
                "landmark_goal": next((g.tolist() for g in map(read_landmark_goal, [r for r, _ in kept])
                                       if g is not None), None),
                "framer": None if framer is None else str(framer_path)}
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata)})

    faces, _ = draw_faces(check_faces, rng=0)
    expected = fkd_predictions(faces)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
        session = OnnxKeypoints(tmp)
        got = session.predict(faces.astype(np.float32) if input_type == "float32" else faces)
        one_by_one = np.concatenate([session.predict(face[None]) for face in faces[:3]])
        difference = float(max(np.abs(got - expected).max(), np.abs(one_by_one - expected[:3]).max()))
        if framer is not None:  # the framer's zoom (log) and shift (px) too
            difference = max(difference, float(np.abs(session.corrections(faces) - framer(faces)).max()))
        if not difference <= TOLERANCE_PX:
            raise FkdError(f"onnxruntime and fkd differ by up to {difference:.2e} px on {check_faces} faces "
                           f"(limit {TOLERANCE_PX:g}): not written", path=out)
        latency = {"onnx_ms": per_face_ms(session.predict, faces), "onnx_ms_batch1": per_face_ms(session.predict, faces[:1]),
                   "torch_ms": per_face_ms(fkd_predictions, faces), "torch_ms_batch1": per_face_ms(fkd_predictions, faces[:1])}
    views = sum(len(tta_views(config)) * (2 if config["flip_tta"] else 1) for config in blend.configs)
    return {"path": str(out), "max_difference_px": difference, "faces_checked": check_faces,
            "runs": len(kept), "models": len(blend.models), "forward_passes": views,
            "megabytes": out.stat().st_size / 2 ** 20, **latency}


def add_arguments(parser):
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN_DIR", help="finished run folders to export")
    parser.add_argument("--out", required=True, help="the ONNX file to write (e.g. model.onnx); an existing file "
                        "is replaced only when fkd export wrote it and --force is given")
    parser.add_argument("--force", action="store_true", help="let --out replace an earlier export")
    parser.add_argument("--equal", action="store_true", help="equal weights instead of the OOF-fitted blend")
    parser.add_argument("--data-dir", help="the training data the blend weights are fitted on "
                        "(default: data/, then /kaggle/input); not needed for one run or --equal")
    parser.add_argument("--input", default="uint8", choices=sorted(INPUT_TYPES),
                        help="the graph's input type: uint8 faces (default) or float32 0..255")
    parser.add_argument("--check-faces", type=positive_int, default=64,
                        help="faces onnxruntime is checked on (default 64)")


def run(args):
    for run_dir in args.runs:
        check_finished_run(run_dir)
    check_onnx_destination(args.out, args.force)
    weights = blend_weights(args.runs, args.equal, args.data_dir)
    figures = export_onnx(args.runs, args.out, weights, args.input, args.check_faces, args.force)
    print(f"wrote {figures['path']} ({figures['megabytes']:.1f} MB): {figures['runs']} run(s), "
          f"{figures['models']} fold models, {figures['forward_passes']} forward passes a face; "
          f"input {args.input} [N,{SIZE},{SIZE}] -> keypoints [N,30] px")
    print(f"onnxruntime vs fkd on {figures['faces_checked']} faces: max difference {figures['max_difference_px']:.2e} px "
          f"(limit {TOLERANCE_PX:g})")
    print(f"per-face latency on this machine: onnxruntime {figures['onnx_ms']:.2f} ms in a batch of "
          f"{figures['faces_checked']}, {figures['onnx_ms_batch1']:.2f} ms alone; torch {figures['torch_ms']:.2f} ms "
          f"and {figures['torch_ms_batch1']:.2f} ms")
    return 0
