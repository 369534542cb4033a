"""A model exported by `fkd export`, run with onnxruntime alone (no torch): uint8 or float faces
[N,96,96] (or one face [96,96]) -> the 30 pixel coordinates of the complete-kind output."""
import json
from pathlib import Path

import numpy as np
import onnxruntime

from fkd.core.errors import FkdError
from fkd.core.keypoints import SIZE

# the graph's input and outputs (corrections: the runs' framer's, when they have one), and the
# metadata key `fkd export` writes into the file
INPUT, OUTPUT, CORRECTIONS = "faces", "keypoints", "corrections"
METADATA_KEY = "fkd"


class OnnxKeypoints:
    """`OnnxKeypoints("model.onnx").predict(faces)`: pixel keypoints [N,30] (COLUMNS order)."""

    def __init__(self, path, threads: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise FkdError("no such ONNX file", path=self.path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own classes, one per failure
            raise FkdError(f"not an ONNX model onnxruntime can load: {str(error).splitlines()[0]}",
                           path=self.path) from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        if INPUT not in inputs:
            raise FkdError(f"not an fkd model: no input named {INPUT!r} (it has {', '.join(inputs)})", path=self.path)
        self.input_dtype = np.uint8 if inputs[INPUT].type == "tensor(uint8)" else np.float32
        self.has_framer = CORRECTIONS in {o.name for o in self.session.get_outputs()}
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = json.loads(meta.get(METADATA_KEY, "{}"))
        framing = self.metadata.get("framing")
        self.framing = None if framing is None else np.array([np.nan if v is None else v for v in framing])
        goal = self.metadata.get("landmark_goal")
        self.landmark_goal = None if goal is None else np.array(goal, np.float64).reshape(5, 2)

    def _run(self, output, faces) -> np.ndarray:
        faces = np.asarray(faces)
        if faces.shape[-2:] != (SIZE, SIZE) or faces.ndim not in (2, 3):
            raise FkdError(f"faces must be [N,{SIZE},{SIZE}] or [{SIZE},{SIZE}] grayscale, not {list(faces.shape)}")
        batch = faces.reshape(-1, SIZE, SIZE)
        if self.input_dtype == np.uint8 and batch.dtype != np.uint8:
            batch = np.clip(np.rint(batch), 0, 255)
        values = self.session.run([output], {INPUT: np.ascontiguousarray(batch, dtype=self.input_dtype)})[0]
        return values.reshape(faces.shape[:-2] + values.shape[1:])

    def predict(self, faces) -> np.ndarray:
        return self._run(OUTPUT, faces).astype(np.float32)

    def corrections(self, faces) -> np.ndarray:
        """The framer's corrections [N,3] (log zoom, dx, dy; fkd.photo.frame) of these crops."""
        if not self.has_framer:
            raise FkdError("this ONNX file carries no framer (its runs had none when exported)", path=self.path)
        return self._run(CORRECTIONS, faces).astype(np.float64)

    __call__ = predict
