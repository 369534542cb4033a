"""The framer: the training set's framing rule, the corrections that restore it, a CNN that reads
them from a misframed crop, and fkd face cropping again by it."""
import numpy as np
import pytest
import torch

from fkd.cli import main
from fkd.core.errors import FkdError
from fkd.core.keypoints import as_points, complete_rows, flip_keypoints
from fkd.data.synth import draw_faces
from fkd.photo import detect, frame, geometry, locate
from fkd.photo.frame import framing_rule, framing_stats, rule_correction
from fkd.photo.geometry import correction_matrix
from fkd.photo.scenes import framing_photo
from fkd.train.framer import Framer, mirrored_correction
from fkd.train.rundir import FRAMER_FILE


def test_a_correction_brings_any_misframed_face_to_the_rule_of_its_labelling():
    images, keypoints = draw_faces(60, rng=2)
    keypoints[::3, 4:20] = keypoints[::3, 26:] = np.nan   # the 5-point rows: a rule of their own
    rule = framing_rule(keypoints)
    assert len(rule) == 2
    rng = np.random.default_rng(0)
    for labels in keypoints[:12]:
        points = geometry.apply(frame.misframing(rng), as_points(labels))
        corrected = geometry.apply(correction_matrix(rule_correction(points, rule)), points)
        median, _ = rule[tuple(np.flatnonzero(~np.isnan(points).any(1)))]
        np.testing.assert_allclose(framing_stats(corrected), median, atol=1e-9)
    unknown = as_points(keypoints[1]).copy()
    unknown[5] = np.nan
    assert np.isnan(rule_correction(unknown, rule)).all()   # a pattern the rule has not seen


def test_a_mirrored_crops_correction_reads_back_as_the_crops_own():
    images, keypoints = draw_faces(40, rng=4)
    rule = framing_rule(keypoints)
    ((rule_x, _, _), _), = rule.values()
    axis = 48.5   # labels one pixel right of the pixel centres (the proxy's partial rows)
    rng = np.random.default_rng(1)
    for labels in keypoints[:10]:
        seen = geometry.apply(frame.misframing(rng), as_points(labels))    # a face in a misframed crop
        # the crop's mirror image shows the face with the labels mirrored about their own axis
        in_mirror = as_points(flip_keypoints(seen.reshape(-1), axis))
        back = mirrored_correction(torch.as_tensor(rule_correction(in_mirror, rule)[None]), rule_x, axis)
        np.testing.assert_allclose(back.numpy()[0], rule_correction(seen, rule), atol=1e-4)   # float32 labels


def test_a_framing_photo_holds_the_face_where_its_matrix_says():
    images, _ = draw_faces(3, rng=5)
    for k, image in enumerate(images):
        photo, matrix = framing_photo(image, np.random.default_rng(k))
        cut = geometry.crop(photo, geometry.invert(matrix)).astype(float)
        assert np.abs(cut - image)[16:-16, 16:-16].mean() < 4.0   # grey levels: only resampling


@pytest.fixture(scope="module")
def trained():
    """A framer trained on synthetic faces, and misframed crops of other faces with their corrections."""
    images, keypoints = draw_faces(260, rng=6)
    framer = frame.calibrate_framer(images[:220], keypoints[:220], 47.5, rng=0, variants=3, epochs=8,
                                        log=lambda line: None)
    rule = framing_rule(keypoints[:220])
    crops, corrections = frame.framer_examples(images[220:], keypoints[220:], rule,
                                                   np.full(40, 47.5), np.random.default_rng(9), variants=3)
    return framer, crops, corrections


def test_the_framer_reads_how_far_a_crop_is_from_the_training_framing(trained):
    framer, crops, corrections = trained
    read = framer(crops)
    assert read.shape == (len(crops), 3)
    left = np.sqrt(((read - corrections) ** 2).mean(0))
    spread = corrections.std(0)
    # zoom, dx and dy: most of each misframing is read (0.31-0.40 of the spread here, seed 0)
    assert (left < 0.6 * spread).all(), (left, spread)


def test_a_saved_framer_reads_the_same_and_a_damaged_one_is_a_one_line_error(trained, tmp_path):
    framer, crops, _ = trained
    framer.save(tmp_path / FRAMER_FILE)
    np.testing.assert_allclose(Framer.load(tmp_path / FRAMER_FILE)(crops[:8]), framer(crops[:8]), atol=1e-6)
    (tmp_path / FRAMER_FILE).write_bytes(b"not a framer")
    with pytest.raises(FkdError, match=r"framer.pt.*fkd calibrate"):
        Framer.load(tmp_path / FRAMER_FILE)


class FramedPredictor:
    """A predictor with a framer that always reads the same correction."""
    framing, landmark_goal = None, None

    def __init__(self, correction):
        self.correction = np.asarray(correction, np.float64)
        self.framer = lambda crops: np.tile(self.correction, (len(crops), 1))

    def __call__(self, crops):
        return np.zeros((len(crops), 30), np.float32)


def test_locate_crops_an_mtcnn_face_again_by_its_framer(monkeypatch):
    seen = np.array([[330.0, 200.0], [250.0, 200.0], [290.0, 245.0], [320.0, 280.0], [260.0, 280.0]])
    monkeypatch.setattr(detect, "MTCNN_TURNS", ())
    monkeypatch.setattr(detect, "detect_landmarked", lambda gray, min_size=24: (
        np.array([[230.0, 180.0, 120.0, 120.0]]), seen[None], np.array([0.99])))
    photo = np.full((480, 640, 3), 128, np.uint8)
    correction = [np.log(1.08), 2.0, -1.5]
    located = locate.locate(photo, FramedPredictor(correction), detector="mtcnn")
    np.testing.assert_allclose(located.detected[0], detect.landmark_matrix(seen), atol=1e-9)
    np.testing.assert_allclose(located.matrices[0], geometry.compose(correction_matrix(correction), located.detected[0]),
                               atol=1e-9)
    np.testing.assert_array_equal(located.crops[0], geometry.crop(geometry.to_gray(photo), located.matrices[0]))
    unrefined = locate.locate(photo, FramedPredictor(correction), detector="mtcnn", refine=False)
    np.testing.assert_allclose(unrefined.matrices[0], located.detected[0], atol=1e-9)


def test_fkd_calibrate_trains_a_framer_that_fkd_face_uses(monkeypatch, tmp_path, competition, capsys):
    monkeypatch.setattr(frame, "mtcnn_available", lambda: True)
    monkeypatch.setattr(frame, "face_landmarks", lambda photo: [np.zeros((5, 2))])
    run = tmp_path / "run"
    run.mkdir()
    assert locate.Predictor([run]).framer is None
    assert main(["calibrate", "--runs", str(run), "--data-dir", str(competition), "--photos", "3",
                 "--framer-epochs", "1", "--framer-variants", "1"]) == 0
    assert f"{FRAMER_FILE} in {run}" in capsys.readouterr().out
    images, _ = draw_faces(4, rng=7)
    assert locate.Predictor([run]).framer(images).shape == (4, 3)
    assert main(["calibrate", "--runs", str(run), "--data-dir", str(competition), "--framer-epochs", "-1"]) == 2
    assert "--framer-epochs" in capsys.readouterr().err


def test_row_axes_follow_the_configs_mirror_axis():
    _, keypoints = draw_faces(6, rng=8)
    keypoints[:2, 4:] = np.nan
    np.testing.assert_array_equal(frame.row_axes(keypoints, [48.5, 48.1]),
                                  np.where(complete_rows(keypoints), 48.1, 48.5))
    np.testing.assert_array_equal(frame.row_axes(keypoints, 47.5), np.full(6, 47.5))


def test_mirror_images_of_a_one_sided_labelling_are_left_out():
    images, keypoints = draw_faces(8, rng=10)
    keypoints[:, 8:20] = keypoints[:, 26:] = np.nan   # eyes, one eye's corners, nose, mouth corners
    rule = framing_rule(keypoints)
    crops, corrections = frame.framer_examples(images, keypoints, rule, np.full(8, 47.5),
                                                   np.random.default_rng(0), variants=6)
    assert 0 < len(crops) < 48 and len(crops) == len(corrections)   # the mirrored ones have no rule
    assert not np.isnan(corrections).any()
