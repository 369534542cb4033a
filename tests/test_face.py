"""fkd face: crop/back-mapping round trip, detection on real photos, bad files, no face, end to end."""
import json
import sys
import types

import cv2
import numpy as np
import pytest
from skimage import data

from fkd.cli import main
from fkd.core.errors import FkdError
from fkd.core.keypoints import KEYPOINTS, as_points
from fkd.data.synth import draw_faces
from fkd.photo import detect, geometry, locate


def paste_matrix(scale, angle_deg, tx, ty):
    """96-px face -> canvas: rotate about the face centre, scale, then shift (pixel-index coordinates)."""
    m = cv2.getRotationMatrix2D((47.5, 47.5), angle_deg, scale)
    m[:, 2] += (tx, ty)
    return m


def box_giving(matrix_inverse, framing):
    """The detector box (x, y, w, h) whose Kaggle crop is exactly the given axis-aligned photo->crop matrix."""
    s = matrix_inverse[0, 0]
    side = 96 / s
    w = side / framing.side
    cx, cy = geometry.apply(geometry.invert(matrix_inverse), [47.5, 47.5])
    return (cx - framing.dx * w - (w - 1) / 2, cy - framing.dy * w - (w - 1) / 2, w, w)


@pytest.mark.parametrize("detector", ["haar", "lbp"])
def test_crop_and_back_mapping_round_trip(detector):
    images, keypoints = draw_faces(1, rng=3)
    paste = paste_matrix(2.3, 0.0, 117.3, 64.8)
    canvas = cv2.warpAffine(images[0], paste, (480, 360), flags=cv2.INTER_LINEAR, borderValue=128)
    truth_in_photo = geometry.apply(paste, as_points(keypoints[0]))

    matrix = geometry.crop_matrix(box_giving(geometry.invert(paste), detect.FRAMING[detector]), detect.FRAMING[detector])
    np.testing.assert_allclose(matrix, geometry.invert(paste), atol=1e-9)
    crop = geometry.crop(canvas, matrix)
    assert crop.shape == (96, 96) and crop.dtype == np.uint8
    # the crop is the face we pasted (blurred a little by the two resamplings)
    assert np.abs(crop.astype(float) - images[0]).mean() < 6
    # the 96-px truth mapped back lands where we pasted it
    back = geometry.keypoints_to_photo(keypoints[0], matrix)
    assert np.abs(back - truth_in_photo).max() < 0.5


@pytest.mark.parametrize("factor", [3.2, 0.3])
def test_a_resized_photos_points_are_where_resize_matrix_puts_them(factor):
    """Boxes found on a shrunk photo go back through it, and the enlarged real photos of make bench
    are scored through it: a dot resized by cv2 lands where it says, to a tenth of a pixel."""
    ys, xs = np.mgrid[0:200, 0:240]
    for x, y in [(60.0, 90.0), (183.3, 38.1)]:
        dot = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 6.0 ** 2))
        shrinking = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
        resized = cv2.resize(dot, None, fx=factor, fy=factor, interpolation=shrinking)
        new_ys, new_xs = np.mgrid[0:resized.shape[0], 0:resized.shape[1]]
        found = np.array([(resized * new_xs).sum(), (resized * new_ys).sum()]) / resized.sum()
        np.testing.assert_allclose(found, geometry.apply(geometry.resize_matrix(factor), [x, y]), atol=0.1)


def test_a_box_found_on_the_shrunk_photo_keeps_its_centre_in_the_photo(monkeypatch):
    """A box is its first pixel and a count of pixels; its centre pixel goes back through resize_matrix."""
    seen = []
    monkeypatch.setattr(detect, "haar_available", lambda: True)
    monkeypatch.setattr(detect, "_detect_haar",
                        lambda small, min_size: seen.append(small.shape) or np.array([[100.0, 60.0, 40.0, 48.0]]))
    photo = np.zeros((1500, 2000), np.uint8)
    (box,), _ = detect.detect_faces(photo, "haar")
    factor = seen[0][1] / 2000
    assert factor < 1
    centre = geometry.apply(geometry.invert(geometry.resize_matrix(factor)), [100 + 39 / 2, 60 + 47 / 2])
    np.testing.assert_allclose(box[:2] + (box[2:] - 1) / 2, centre, atol=1e-9)
    np.testing.assert_allclose(box[2:], [40 / factor, 48 / factor])


def test_crop_of_an_enlarged_face_is_sharper_than_bilinear_with_scikit_images_blur():
    images, _ = draw_faces(1, rng=4)
    paste = paste_matrix(2.3, 17.0, 140.0, 90.0)
    canvas = cv2.warpAffine(images[0], paste, (480, 400), flags=cv2.INTER_LINEAR, borderValue=128)
    matrix = geometry.invert(paste)
    sigma = (1 / np.sqrt(abs(np.linalg.det(matrix[:, :2]))) - 1) / 2
    blurred = cv2.GaussianBlur(canvas, (0, 0), sigma)
    bilinear = cv2.warpAffine(blurred, matrix, (96, 96), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inner = (slice(8, -8), slice(8, -8))
    error = np.abs(geometry.crop(canvas, matrix).astype(float) - images[0])[inner].mean()
    assert error < 0.9 * np.abs(bilinear.astype(float) - images[0])[inner].mean()


def test_refinement_levels_a_tilted_face_and_maps_back_exactly():
    images, keypoints = draw_faces(1, rng=5)
    paste = paste_matrix(1.7, 12.0, 90.0, 40.0)
    canvas = cv2.warpAffine(images[0], paste, (400, 300), flags=cv2.INTER_LINEAR, borderValue=100)
    truth_in_photo = geometry.apply(paste, as_points(keypoints[0]))
    first = geometry.crop_matrix((100, 50, 150, 150), detect.FRAMING["lbp"])   # a rough box, no rotation
    in_first_crop = geometry.apply(first, truth_in_photo).reshape(-1)         # a perfect first prediction
    refined = locate.refined_matrix(first, in_first_crop)
    assert refined is not None
    angle = np.degrees(np.arctan2(refined[1, 0], refined[0, 0]))
    assert abs(angle - 12.0) < 3.0                                        # the tilt is undone
    core = geometry.apply(refined, truth_in_photo[locate.CORE_INDEX])
    assert np.abs(core - locate.CORE_TARGET).max() < 6                      # Kaggle framing
    crop = geometry.crop(canvas, refined)
    truth_in_crop = geometry.apply(refined, truth_in_photo).reshape(-1)
    back = geometry.keypoints_to_photo(truth_in_crop, refined)
    assert np.abs(back - truth_in_photo).max() < 0.5
    assert crop.std() > 10


def test_detects_the_astronaut_once_where_her_face_is():
    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    boxes, name = detect.detect_faces(gray)
    assert name in detect.available_detectors()
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    # her eyes are near (202, 101) and (245, 102), her mouth near (222, 148)
    assert x < 202 and x + w > 245 and y < 101 and y + h > 148
    assert 70 < w < 130


def test_corrupt_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(FkdError, match="broken.jpg"):
        locate.read_photo(bad)
    assert main(["face", str(bad), "--runs", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "broken.jpg" in err and len(err.splitlines()) == 1
    assert main(["face", str(tmp_path / "missing.png"), "--runs", str(tmp_path)]) == 2


def fake_predict_module(monkeypatch, calls):
    mean = np.array([66, 37, 30, 37, 59, 38, 73, 38, 37, 38, 23, 38, 57, 29, 80, 30, 39, 29, 16, 30,
                     48, 62, 63, 76, 33, 76, 48, 72, 48, 80], np.float32)

    class RunsPredictor:
        def __init__(self, run_dirs, flip_tta=None, device=None):
            self.run_dirs, self.flip_tta = list(run_dirs), flip_tta

        def __call__(self, images, subsets=None):
            assert subsets is None  # a photo's face always gets the complete rows' output: all 15 points
            calls.append((self.run_dirs, images.shape, images.dtype, self.flip_tta))
            return np.tile(mean, (len(images), 1))

    module = types.ModuleType("fkd.train.predict")
    module.RunsPredictor = RunsPredictor
    monkeypatch.setitem(sys.modules, "fkd.train.predict", module)


def test_photo_without_a_face_gives_an_empty_result(tmp_path, monkeypatch, capsys):
    calls = []
    fake_predict_module(monkeypatch, calls)
    photo = tmp_path / "coffee.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    assert main(["face", str(photo), "--runs", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert "no face found" in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "coffee_keypoints.json").read_text())
    assert record["faces"] == []
    assert calls == []


def test_end_to_end_two_faces(tmp_path, monkeypatch):
    import matplotlib.cbook

    calls = []
    fake_predict_module(monkeypatch, calls)
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    hopper = cv2.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), cv2.IMREAD_GRAYSCALE)
    photo = tmp_path / "two people.png"
    cv2.imwrite(str(photo), np.concatenate([astronaut, hopper[:512]], axis=1))   # grayscale PNG
    run_dir = tmp_path / "runs" / "a"
    run_dir.mkdir(parents=True)
    out = tmp_path / "faces"
    assert main(["face", str(photo), "--runs", str(run_dir), "--out", str(out)]) == 0

    record = json.loads((out / "two people_keypoints.json").read_text())
    assert len(record["faces"]) == 2
    assert (out / "two people_keypoints.png").is_file()
    drawn = cv2.imread(str(out / "two people_keypoints.png"))
    assert drawn.shape[1:] == (1024, 3) and 512 < drawn.shape[0] < 600   # the photo, then the legend below
    # 2 faces at a time, with the runs' own flip TTA; predicted once: the fake's points sit exactly where
    # Kaggle's faces have them, so the first crop has settled and no refinement moves it
    assert [c[1:] for c in calls] == [((2, 96, 96), np.uint8, None)]
    assert calls[0][0] == [str(run_dir)]
    for item, (left, right) in zip(record["faces"], [(0, 512), (512, 1024)]):
        x, y, w, h = item["box"]
        assert left <= x and x + w <= right
        m = np.array(item["photo_to_crop"])
        m_inv = np.array(item["crop_to_photo"])
        np.testing.assert_allclose(geometry.apply(m_inv, geometry.apply(m, [[10.0, 20.0]])), [[10.0, 20.0]], atol=1e-3)
        eyes = np.array([item["keypoints"]["right_eye_center"], item["keypoints"]["left_eye_center"]])
        assert (x < eyes[:, 0]).all() and (eyes[:, 0] < x + w).all()
        assert eyes[0, 0] < eyes[1, 0]          # subject's right eye is on the image left
        assert set(item["keypoints"]) == set(KEYPOINTS)


@pytest.mark.parametrize("tilt", [-50, 35, 60])
def test_a_tilted_head_is_found_on_a_turned_copy(tilt):
    import matplotlib.cbook

    hopper = cv2.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), cv2.IMREAD_GRAYSCALE)
    photo, rotation = geometry.turned(hopper, tilt)
    assert len(detect.detect_faces(photo)[0]) == 0 or tilt < 40  # the upright search misses the steep tilts
    boxes, matrices, crops, name = detect.find_faces(cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR))
    assert len(boxes) >= 1
    # her face centre (about (250, 210) in the upright photo) lies inside the box found
    cx, cy = geometry.apply(rotation, [[250.0, 210.0]])[0]
    x, y, w, h = boxes[0]
    assert x < cx < x + w and y < cy < y + h, (boxes, cx, cy, name)
    if "turned" in name:
        # the crop stands the head up: its matrix undoes the tilt (to the detector's tolerance)
        angle = np.degrees(np.arctan2(matrices[0][1, 0], matrices[0][0, 0]))
        assert abs(angle - tilt) < 25, (angle, tilt)


@pytest.mark.parametrize("image", ["coffee", "chelsea", "rocket"])
def test_turned_copies_of_photos_without_faces_find_nothing(image):
    gray = cv2.cvtColor(getattr(data, image)(), cv2.COLOR_RGB2GRAY)
    boxes, _, _, _ = detect.find_faces(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    assert len(boxes) == 0


def test_a_folder_stands_for_its_photos_and_the_legend_covers_no_face(tmp_path, monkeypatch):
    calls = []
    fake_predict_module(monkeypatch, calls)
    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    corner = np.ascontiguousarray(astronaut[80:400, 120:440])   # her face near the top-left corner
    cv2.imwrite(str(folder / "b.png"), corner)
    cv2.imwrite(str(folder / "a.jpg"), astronaut)
    (folder / "notes.txt").write_text("not a photo")
    out = tmp_path / "out"
    assert main(["face", str(folder), "--runs", str(tmp_path), "--out", str(out)]) == 0
    assert {p.name for p in out.glob("*_keypoints.json")} == {"a_keypoints.json", "b_keypoints.json"}
    drawn = cv2.imread(str(out / "b_keypoints.png"))
    assert drawn.shape[0] > corner.shape[0] and drawn.shape[1] == corner.shape[1]
    # the photo's top-left corner is the photo, not a legend box over it
    assert np.array_equal(drawn[:8, :8], corner[:8, :8])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["face", str(empty), "--runs", str(tmp_path)]) == 2


needs_mtcnn = pytest.mark.skipif(not detect.mtcnn_available(), reason="facenet-pytorch is not installed "
                                 "(make install puts it in with requirements-nodeps.txt)")


@needs_mtcnn
def test_mtcnn_finds_each_face_once_with_its_landmarks_inside():
    import matplotlib.cbook

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    hopper = cv2.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), cv2.IMREAD_GRAYSCALE)
    boxes, landmarks, sure = detect.detect_landmarked(np.concatenate([astronaut, hopper[:512]], axis=1))
    assert len(boxes) == 2 and (sure >= detect.MTCNN_MIN_PROBABILITY).all()
    for (x, y, w, h), points in zip(boxes, landmarks):
        assert ((points >= [x, y]) & (points <= [x + w, y + h])).all()
        left_eye, right_eye = points[0], points[1]
        assert left_eye[0] > right_eye[0]   # the subject's left eye is on the image right, as in fkd
    # the astronaut's eyes are at about (202.5, 101) and (245.5, 102)
    np.testing.assert_allclose(landmarks[0][[1, 0]], [[202.5, 101], [245.5, 102]], atol=6)


def test_landmarks_frame_the_crop_where_the_training_faces_have_them():
    framing = np.array([66, 37, 30, 37, 59, 38, 73, 38, 37, 38, 23, 38, 57, 29, 80, 30, 39, 29, 16, 30,
                        48, 55, 62, 72, 34, 72, 48, 70, 48, 80], np.float64)   # a run's framing, nose and mouth high
    wanted = as_points(framing)[[KEYPOINTS.index(n) for n in detect.LANDMARKS]]
    paste = paste_matrix(2.2, 17.0, 130.0, 40.0)
    landmarks = geometry.apply(paste, wanted)   # a face framed exactly so, pasted into a photo
    matrix = detect.landmark_matrix(landmarks, framing)
    np.testing.assert_allclose(matrix, geometry.invert(paste), atol=1e-9)
    kaggle = detect.landmark_matrix(landmarks)   # a run without a framing: Kaggle's positions
    assert np.abs(geometry.apply(kaggle, landmarks[[0, 1]]) - detect.KAGGLE_FRAMED_BY[:2]).max() < 2.5


def test_refinement_aligns_to_the_runs_framing_on_every_point():
    images, keypoints = draw_faces(1, rng=5)
    paste = paste_matrix(1.7, 12.0, 90.0, 40.0)
    truth_in_photo = geometry.apply(paste, as_points(keypoints[0]))
    first = geometry.crop_matrix((100, 50, 150, 150), detect.FRAMING["lbp"])
    refined = locate.refined_matrix(first, geometry.apply(first, truth_in_photo).reshape(-1), target=keypoints[0])
    np.testing.assert_allclose(refined, geometry.invert(paste), atol=1e-6)   # the framing is this face's own points


def test_settle_stops_once_the_crop_stops_moving_and_after_its_passes():
    gray = np.full((300, 300), 128, np.uint8)
    matrix = geometry.crop_matrix((100, 100, 90, 90), detect.FRAMING["haar"])
    framing = np.array([66, 37, 30, 37, 59, 38, 73, 38, 37, 38, 23, 38, 57, 29, 80, 30, 39, 29, 16, 30,
                        48, 62, 63, 76, 33, 76, 48, 72, 48, 80], np.float32)
    calls = []

    def settled(crops):   # the face sits exactly where the framing says: nothing to move
        calls.append(len(crops))
        return np.tile(framing, (len(crops), 1))

    _, _, _, rounds = locate.settle([gray], matrix[None], settled(np.zeros((1, 96, 96))), settled, target=framing)
    assert list(rounds) == [0] and calls == [1]

    def always_off(crops):   # the face always looks 3 px right of where it should be: the crop keeps moving
        calls.append(len(crops))
        shifted = framing.copy()
        shifted[0::2] += 3
        return np.tile(shifted, (len(crops), 1))

    calls.clear()
    _, _, _, rounds = locate.settle([gray], matrix[None], always_off(np.zeros((1, 96, 96))), always_off, passes=3,
                                  target=framing)
    assert list(rounds) == [3] and calls == [1, 1, 1, 1]


def test_mtcnn_landmarks_of_one_face_on_several_copies_are_their_median(monkeypatch):
    """Each turned copy's detection of the face is one vote; the crop is framed by their median, so
    one copy's wild landmarks move nothing. A detection only on a turned copy, unconfirmed, is dropped."""
    truth = np.array([[330.0, 200.0], [250.0, 200.0], [290.0, 245.0], [320.0, 280.0], [260.0, 280.0]])
    errors = {0: 0.0, 9: 1.0, -9: -1.0, 18: 2.0, -18: 30.0, 27: -2.0, -27: 0.5}  # x shift of each copy's points
    rotations = {}
    real_turned = detect.turned

    def recording_turned(gray, angle):
        copy, rotation = real_turned(gray, angle)
        rotations[id(copy)] = (angle, rotation)
        return copy, rotation

    def fake_detect(copy, min_size=24):
        angle, rotation = rotations.pop(id(copy), (0, None))   # popped: a later array may reuse the id
        points = truth + [errors[angle], 0.0]
        points = points if rotation is None else geometry.apply(rotation, points)
        faces = [points]
        if angle == 18:  # a face-like texture seen on one turned copy only, not sure enough
            faces.append(geometry.apply(rotation, truth + [300.0, 0.0]))
        boxes = np.array([[*(p.min(0) - 20), *(p.max(0) - p.min(0) + 40)] for p in faces])
        return boxes, np.array(faces), np.array([0.99, 0.9][:len(faces)])

    monkeypatch.setattr(detect, "turned", recording_turned)
    monkeypatch.setattr(detect, "detect_landmarked", fake_detect)
    monkeypatch.setattr(detect, "shows_two_eyes", lambda gray, box: False)
    monkeypatch.setattr(detect, "MTCNN_TURNS", tuple(a for a in errors if a))   # six turned copies vote
    photo = np.full((480, 640, 3), 128, np.uint8)
    boxes, matrices, crops, name = detect.find_faces(photo, "mtcnn")
    assert len(boxes) == 1 and name == "mtcnn"
    median = truth + [np.median(list(errors.values())), 0.0]   # 0.5 px: the -18 copy's 30 px is outvoted
    np.testing.assert_allclose(matrices[0], detect.landmark_matrix(median), atol=1e-6)
    np.testing.assert_allclose(detect.face_landmarks(photo)[0], median, atol=1e-9)   # what fkd calibrate measures
    goal = np.array([[66.0, 37.0], [30.0, 37.0], [48.0, 58.0], [63.0, 79.0], [33.0, 79.0]])
    _, calibrated, _, _ = detect.find_faces(photo, "mtcnn", goal=goal)   # a run's calibrated goal frames it
    np.testing.assert_allclose(calibrated[0], detect.landmark_matrix(median, goal=goal), atol=1e-6)
    assert not np.allclose(calibrated[0], matrices[0], atol=0.1)
    boxes, matrices, _, _ = detect.find_faces(photo, "mtcnn", always=())
    np.testing.assert_allclose(matrices[0], detect.landmark_matrix(truth), atol=1e-6)


def test_an_out_that_is_a_file_is_a_one_line_error_before_any_work(tmp_path, monkeypatch, capsys):
    calls = []
    fake_predict_module(monkeypatch, calls)
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    for out in (taken, taken / "faces"):
        assert main(["face", str(photo), "--runs", str(tmp_path), "--out", str(out)]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and "notes.txt" in error, error
    assert taken.read_text() == "mine" and calls == []   # nothing lost, nothing predicted


def test_a_photo_too_small_to_hold_a_face_is_reported_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    """Under the smallest face searched (MTCNN failed on such a photo, and a 5000x1 strip shrank to no
    rows): no face, the record says why, and the photos after it are still searched."""
    calls = []
    fake_predict_module(monkeypatch, calls)
    cv2.imwrite(str(tmp_path / "a-tiny.png"), np.full((18, 20, 3), 120, np.uint8))
    cv2.imwrite(str(tmp_path / "b-strip.png"), np.full((1, 5000, 3), 120, np.uint8))
    cv2.imwrite(str(tmp_path / "c-astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert main(["face", str(tmp_path), "--runs", str(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a-tiny.png: too small to hold a face: 20x18 px" in printed
    assert "b-strip.png: too small to hold a face: 5000x1 px" in printed
    for stem, size in [("a-tiny", "20x18 px"), ("b-strip", "5000x1 px")]:
        record = json.loads((out / f"{stem}_keypoints.json").read_text())
        assert record["faces"] == [] and size in record["no_face"]
    assert len(json.loads((out / "c-astronaut_keypoints.json").read_text())["faces"]) == 1
    assert "no_face" not in json.loads((out / "c-astronaut_keypoints.json").read_text())
    assert len(calls) == 1   # only the astronaut's face was predicted


def test_too_small_means_below_the_smallest_face_searched():
    assert detect.too_small((24, 24, 3), 24) is None
    assert detect.too_small((23, 30), 24) == "too small to hold a face: 30x23 px; faces are searched from 24 px"
    assert detect.too_small((20, 20), 12) is None                           # MIN_DETECTED_SIDE is the floor ...
    assert "searched from 20 px" in detect.too_small((19, 19), 12)         # ... under any --min-face
    assert detect.too_small((125, 5000), 24) is None                        # shrunk 6.4x for detection: 20 px
    assert "searched from 125 px" in detect.too_small((124, 5000), 24)
    boxes, matrices, crops, _ = detect.find_faces(np.full((1, 5000, 3), 120, np.uint8))
    assert boxes.shape == (0, 4) and matrices.shape == (0, 2, 3) and crops.shape == (0, 96, 96)


@pytest.mark.parametrize("value", ["-5", "0", "two"])
def test_min_face_must_be_a_positive_whole_number(value, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), 120, np.uint8))
    with pytest.raises(SystemExit) as stop:
        main(["face", str(photo), "--runs", str(tmp_path), "--out", str(tmp_path / "out"), "--min-face", value])
    assert stop.value.code == 2
    assert "argument --min-face: must be" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()
