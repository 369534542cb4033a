"""fkd calibrate: where MTCNN puts its landmarks on a run's training faces, and fkd face framing to it."""
import numpy as np
import pytest

from fkd.cli import main
from fkd.core.errors import FkdError
from fkd.core.keypoints import KEYPOINTS, as_points
from fkd.data.synth import draw_faces
from fkd.photo import detect, frame, geometry, locate
from fkd.train.rundir import read_landmark_goal, write_landmark_goal

# a run's framing (the labels' mean) and a detector whose points differ from the labels: its mouth
# corners 3 px lower and its eyes 1 px further apart than the labelled ones, on every face
FRAMING = np.array([66, 37, 30, 37, 59, 38, 73, 38, 37, 38, 23, 38, 57, 29, 80, 30, 39, 29, 16, 30,
                    48, 55, 62, 72, 34, 72, 48, 70, 48, 80], np.float64)
LABELLED = as_points(FRAMING)[[KEYPOINTS.index(name) for name in detect.LANDMARKS]]
DETECTOR_BIAS = np.array([[0.5, 0.0], [-0.5, 0.0], [0.0, 0.0], [0.0, 3.0], [0.0, 3.0]])


def biased_detector(monkeypatch, noise=0.4):
    """calibrate's photos record where they placed their face; the fake search reports that face's
    landmarks with the detector's bias and some noise, plus a face-like piece of clutter far off."""
    placed = []
    real_scene = frame.scene

    def recording_scene(faces, rng, **kwargs):
        photo, matrices = real_scene(faces, rng, **kwargs)
        placed.append(matrices[0])
        return photo, matrices

    noise_rng = np.random.default_rng(3)

    def fake_landmarks(photo):
        seen = LABELLED + DETECTOR_BIAS + noise_rng.normal(0, noise, (5, 2))
        return [geometry.apply(placed[-1], seen + 300.0), geometry.apply(placed[-1], seen)]

    monkeypatch.setattr(frame, "scene", recording_scene)
    monkeypatch.setattr(frame, "face_landmarks", fake_landmarks)


def test_calibration_finds_the_detectors_own_points_and_frames_the_face_as_the_training_faces(monkeypatch):
    biased_detector(monkeypatch)
    images, _ = draw_faces(40, rng=1)
    goal, found = frame.calibrate_landmarks(images, rng=0, photos=25)
    assert found == 25
    np.testing.assert_allclose(goal, LABELLED + DETECTOR_BIAS, atol=0.3)   # the clutter's face is not the one
    paste = np.array([[2.1, -0.4, 130.0], [0.4, 2.1, 60.0]])              # a face framed like the training faces
    landmarks = geometry.apply(paste, LABELLED + DETECTOR_BIAS)              # ... as the detector sees it
    calibrated = detect.landmark_matrix(landmarks, FRAMING, goal)
    uncalibrated = detect.landmark_matrix(landmarks, FRAMING)
    true_crop = geometry.invert(paste)
    assert geometry.crop_moved(true_crop, calibrated) < 0.4
    assert geometry.crop_moved(true_crop, uncalibrated) > 2.0   # the bias frames it off by pixels


def test_the_goal_is_stored_with_the_run_and_read_by_fkd_face(monkeypatch, tmp_path, competition, capsys):
    biased_detector(monkeypatch)
    monkeypatch.setattr(frame, "mtcnn_available", lambda: True)
    run = tmp_path / "run"
    run.mkdir()
    assert locate.Predictor([run]).landmark_goal is None          # not calibrated: fkd face frames as before
    assert main(["calibrate", "--runs", str(run), "--data-dir", str(competition), "--photos", "12",
                 "--framer-epochs", "0"]) == 0
    assert "found 12 of 12 training faces" in capsys.readouterr().out
    np.testing.assert_allclose(read_landmark_goal(run), LABELLED + DETECTOR_BIAS, atol=0.4)
    np.testing.assert_allclose(locate.Predictor([run]).landmark_goal, read_landmark_goal(run))
    assert main(["calibrate", "--runs", str(tmp_path / "no-run"), "--data-dir", str(competition)]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_a_damaged_goal_is_a_one_line_error(tmp_path):
    write_landmark_goal(tmp_path, LABELLED, faces=3, photos=4)
    np.testing.assert_allclose(read_landmark_goal(tmp_path), LABELLED, atol=1e-3)
    (tmp_path / "detector.json").write_text('{"landmarks": [[1, 2], [3, 4]]}')
    with pytest.raises(FkdError, match="detector.json.*5 finite"):
        read_landmark_goal(tmp_path)


def test_no_face_found_on_any_photo_is_an_error(monkeypatch):
    monkeypatch.setattr(frame, "face_landmarks", lambda photo: [])
    with pytest.raises(FkdError, match="none of the 3 training faces"):
        frame.calibrate_landmarks(draw_faces(5, rng=1)[0], rng=0, photos=3)


class FixedPredictor:
    """A predictor as locate reads one: the run's framing, its calibrated goal, points for any crop."""

    def __init__(self, landmark_goal):
        self.framing, self.landmark_goal = FRAMING, landmark_goal

    def __call__(self, crops):
        return np.tile(FRAMING.astype(np.float32), (len(crops), 1))


def test_a_whole_photo_through_locate_is_framed_to_the_runs_calibrated_goal(monkeypatch):
    paste = np.array([[2.1, -0.4, 130.0], [0.4, 2.1, 60.0]])          # the face as the training faces frame it
    seen = geometry.apply(paste, LABELLED + DETECTOR_BIAS)                # where the detector puts its landmarks
    monkeypatch.setattr(detect, "MTCNN_TURNS", ())                       # the photo itself only
    monkeypatch.setattr(detect, "detect_landmarked", lambda gray, min_size=24: (
        np.array([[*(seen.min(0) - 20), *(seen.max(0) - seen.min(0) + 40)]]), seen[None], np.array([0.99])))
    photo = np.full((480, 640, 3), 128, np.uint8)
    goal = LABELLED + DETECTOR_BIAS
    calibrated = locate.locate(photo, FixedPredictor(goal), detector="mtcnn")
    uncalibrated = locate.locate(photo, FixedPredictor(None), detector="mtcnn")
    assert geometry.crop_moved(geometry.invert(paste), calibrated.matrices[0]) < 0.4
    assert geometry.crop_moved(geometry.invert(paste), uncalibrated.matrices[0]) > 2.0
    # the points come back to the photo through the calibrated crop: where the face's labels are
    np.testing.assert_allclose(geometry.keypoints_to_photo(calibrated.predictions[0], calibrated.matrices[0]),
                               geometry.apply(paste, as_points(FRAMING)), atol=0.5)


def test_a_run_is_never_calibrated_on_another_folders_faces(monkeypatch, tmp_path, competition, capsys):
    from fkd.train.rundir import FRAMER_FILE, write_data_stamp

    monkeypatch.setattr(frame, "mtcnn_available", lambda: True)
    monkeypatch.setattr(frame, "face_landmarks", lambda photo: [np.zeros((5, 2))])
    run = tmp_path / "run"
    run.mkdir()
    write_data_stamp(run, *draw_faces(30, rng=2))                  # trained on other faces than competition's
    write_landmark_goal(run, LABELLED, faces=3, photos=4)
    (run / FRAMER_FILE).write_bytes(b"the run's own framer")
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    assert main(["calibrate", "--runs", str(run), "--data-dir", str(competition), "--photos", "3",
                 "--framer-epochs", "1", "--framer-variants", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(run) in error and "other training data" in error
    after = {path.name: path.read_bytes() for path in run.iterdir() if path.name != ".lock"}  # its lock, released
    assert after == before   # nothing overwritten
