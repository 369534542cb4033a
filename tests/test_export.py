"""fkd export: the ensemble as one ONNX file, checked with onnxruntime against fkd's own predictions;
`fkd face --model` runs from it without torch; the README's lines for your own code run."""
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import pytest

from fkd.cli import main
from fkd.core.errors import FkdError
from fkd.data.competition import load_training
from fkd.data.synth import draw_faces
from fkd.model.onnxfile import OnnxKeypoints
from fkd.submit import export
from fkd.submit.blend import fitted_weights
from fkd.train.predict import predict_runs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_runs(competition, tmp_path_factory):
    """Two tiny finished runs that predict differently: a SubsetOffset convnet with flip x 2 zooms,
    and a LeNet without flip TTA."""
    from fkd.core.config import load_config
    from fkd.train.cv import run_cv

    runs = tmp_path_factory.mktemp("runs")
    first = load_config(None, model="convnet", model_options={"widths": [8, 16], "downsample": 2, "hidden": 32},
                        subset_heads=True, flip_axis=[48.5, 48.1], epochs=1, batch_size=32, folds=2,
                        tta_scales=[0.95, 1.0], name="zooms")
    second = load_config(None, model="lenet", epochs=1, batch_size=32, folds=2, flip_tta=False, name="plain")
    return [run_cv(competition, first, runs), run_cv(competition, second, runs)]


@pytest.fixture(scope="module")
def plain_onnx(two_runs, tmp_path_factory) -> Path:
    """The second run alone, exported as it is (no framing extras): tests read it, none changes it."""
    out = tmp_path_factory.mktemp("plain") / "model.onnx"
    export.export_onnx(two_runs[1:], out, [1.0], check_faces=4)
    return out


def test_the_onnx_file_predicts_what_fkd_predicts(two_runs, competition, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", "--runs", *map(str, two_runs), "--out", str(out), "--data-dir", str(competition)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"max difference \d\.\d\de-\d\d px", printed) and "ms" in printed

    images, truth = load_training(competition)
    weights, _ = fitted_weights(two_runs, images, truth)
    model = OnnxKeypoints(out)
    assert model.metadata["weights"] == pytest.approx([w for w in weights if w > 0], abs=1e-6)
    faces, _ = draw_faces(19, rng=7)  # not the faces the export checked on, and an odd batch size
    expected = sum(w * predict_runs([r], faces, device="cpu") for r, w in zip(two_runs, weights))
    got = model.predict(faces)
    assert got.shape == (19, 30)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    np.testing.assert_allclose(model.predict(faces[4]), expected[4], atol=1e-3)  # one face, [96,96]
    np.testing.assert_allclose(model.predict(faces.astype(np.float64)), expected, atol=1e-3)  # floats are cast
    with pytest.raises(FkdError, match="96"):
        model.predict(np.zeros((3, 64, 64)))
    # the graph itself, through plain onnxruntime: uint8 input named "faces"
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    np.testing.assert_allclose(session.run(None, {"faces": faces})[0], expected, atol=1e-3)


def test_equal_weights_and_float_input(two_runs, tmp_path):
    out = tmp_path / "equal.onnx"
    assert main(["export", "--runs", *map(str, two_runs), "--out", str(out), "--equal", "--input", "float32"]) == 0
    faces, _ = draw_faces(5, rng=9)
    expected = predict_runs(two_runs[:1], faces, device="cpu") / 2 + predict_runs(two_runs[1:], faces, device="cpu") / 2
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    np.testing.assert_allclose(session.run(None, {"faces": faces.astype(np.float32)})[0], expected, atol=1e-3)
    assert OnnxKeypoints(out).metadata["weights"] == [0.5, 0.5]


def test_an_export_that_disagrees_with_fkd_is_not_written(two_runs, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "TOLERANCE_PX", -1.0)  # no difference can pass
    out = tmp_path / "model.onnx"
    with pytest.raises(FkdError, match="differ by up to"):
        export.export_onnx(two_runs[1:], out, [1.0], check_faces=4)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_bad_inputs_are_one_line_errors(two_runs, tmp_path, capsys):
    assert main(["export", "--runs", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert main(["export", "--runs", str(two_runs[0]), "--out", str(tmp_path / "m.txt")]) == 2
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.zeros((64, 64), np.uint8))
    assert main(["face", str(photo), "--model", str(broken), "--out", str(tmp_path / "out")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and "nothing" in errors[0] and ".onnx" in errors[1] and "broken.onnx" in errors[2]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_check_faces_must_be_at_least_one(value, tmp_path, capsys):
    """The export is kept only once onnxruntime agrees with fkd on these faces: there is no check of none."""
    with pytest.raises(SystemExit) as stop:
        main(["export", "--runs", str(tmp_path), "--out", str(tmp_path / "m.onnx"), "--check-faces", value])
    assert stop.value.code == 2
    assert f"argument --check-faces: must be at least 1, not {value}" in capsys.readouterr().err.strip().splitlines()[-1]


def test_face_runs_from_the_onnx_file_without_torch(plain_onnx, tmp_path):
    import matplotlib.cbook

    out = plain_onnx
    photo = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    script = ("import sys; from fkd.cli import main; "
              f"status = main(['face', {str(photo)!r}, '--model', {str(out)!r}, '--out', {str(tmp_path / 'faces')!r}]); "
              "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "no torch" in result.stdout and "ms a face (onnxruntime)" in result.stdout
    record = json.loads((tmp_path / "faces" / "grace_hopper_keypoints.json").read_text())
    assert record["model"] == str(out) and len(record["faces"]) == 1


def test_the_readme_lines_for_your_own_code_run(two_runs, plain_onnx, tmp_path, monkeypatch, capsys):
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Use the model in your own code"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 5
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.onnx").write_bytes(plain_onnx.read_bytes())
    faces, _ = draw_faces(1, rng=3)
    cv2.imwrite("face.png", faces[0])
    exec(compile(code, "README.md", "exec"), {})
    printed = np.array([float(v) for v in re.findall(r"-?\d+\.\d*", capsys.readouterr().out)])
    np.testing.assert_allclose(printed, predict_runs(two_runs[1:], faces, device="cpu")[0], atol=1e-2)


def test_the_onnx_file_carries_the_runs_framing_landmark_goal_and_framer(two_runs, plain_onnx, tmp_path):
    from fkd.photo.frame import calibrate_framer
    from fkd.photo.locate import Predictor
    from fkd.train.rundir import DETECTOR_FILE, FRAMER_FILE, read_framing, write_landmark_goal

    goal = np.array([[65.4, 37.3], [30.2, 38.2], [48.4, 58.2], [62.9, 75.5], [33.4, 76.3]])
    write_landmark_goal(two_runs[1], goal, faces=190, photos=200)
    images, keypoints = draw_faces(30, rng=11)
    framer = calibrate_framer(images, keypoints, 47.5, rng=0, variants=1, epochs=1, log=lambda line: None)
    framer.save(two_runs[1] / FRAMER_FILE)
    out = tmp_path / "model.onnx"
    try:
        export.export_onnx(two_runs[1:], out, [1.0], check_faces=4)
    finally:
        (two_runs[1] / DETECTOR_FILE).unlink()
        (two_runs[1] / FRAMER_FILE).unlink()
    onnx_predictor = Predictor(model=out)
    np.testing.assert_allclose(onnx_predictor.landmark_goal, goal, atol=1e-3)
    np.testing.assert_allclose(onnx_predictor.framing, read_framing(two_runs[1]), atol=1e-3)
    faces, _ = draw_faces(5, rng=12)
    np.testing.assert_allclose(onnx_predictor.framer(faces), framer(faces), atol=1e-4)
    np.testing.assert_allclose(onnx_predictor(faces), predict_runs(two_runs[1:], faces, device="cpu"), atol=1e-3)
    plain = Predictor(model=plain_onnx)  # the same run exported without them
    assert plain.landmark_goal is None and plain.framer is None
    np.testing.assert_allclose(plain.framing, read_framing(two_runs[1]), atol=1e-3)


def test_an_out_that_cannot_be_written_is_a_one_line_error_before_the_export(two_runs, tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("the export started before its destination was checked")

    monkeypatch.setattr(export, "RunsPredictor", no_work)
    monkeypatch.setattr(export, "fitted_weights", no_work)
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    for out, named in [("/proc/m.onnx", "/proc"), (str(taken / "m.onnx"), "notes.txt")]:
        assert main(["export", "--runs", *map(str, two_runs), "--out", out, "--equal"]) == 2, out
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and named in error, error
    assert taken.read_text() == "mine"
