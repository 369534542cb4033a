"""fkd face on videos: a drawn face moving and turning through a synthetic clip is tracked within a
stated error of its known points, keeps its id across frames without it, and bad input is one line."""
import csv
import shutil
import time

import cv2
import numpy as np
import pytest

from fkd.cli import main
from fkd.core.errors import FkdError
from fkd.core.keypoints import as_points
from fkd.data.synth import draw_faces, write_competition
from fkd.photo import detect, geometry, locate
from fkd.photo.track import FaceTracker, open_video, process_video

WIDTH, HEIGHT, FRAMES = 320, 240, 40
GONE = range(17, 20)   # frames with no face in them; it comes back, upright, at frame 20
FACE_SEED = 2          # a drawn face OpenCV's Haar cascade finds (checked below, not assumed)


def paste_matrix(t: int) -> np.ndarray:
    """96-px face -> frame at frame t: turning up to 25 degrees either way, growing, moving right."""
    angle = 25 * np.sin(2 * np.pi * t / FRAMES)
    m = cv2.getRotationMatrix2D((47.5, 47.5), angle, 1.55 + 0.15 * t / FRAMES)
    m[:, 2] += (40 + 2.5 * t, 45 + 10 * np.sin(np.pi * t / FRAMES))
    return m


def synthetic_clip():
    """(frames BGR [FRAMES,H,W,3], truth (15, 2) per frame or None where the face is gone)."""
    images, keypoints = draw_faces(1, rng=FACE_SEED)
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.normal(120, 40, (HEIGHT, WIDTH)).astype(np.float32), (0, 0), 6)
    background = np.clip(background, 0, 255).astype(np.uint8)
    cv2.rectangle(background, (250, 150), (300, 220), 40, -1)   # clutter
    cv2.circle(background, (30, 200), 18, 220, -1)
    frames, truth = [], []
    for t in range(FRAMES):
        frame = background.copy()
        if t in GONE:
            truth.append(None)
        else:
            cv2.warpAffine(images[0], paste_matrix(t), (WIDTH, HEIGHT), dst=frame, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_TRANSPARENT)
            truth.append(geometry.apply(paste_matrix(t), as_points(keypoints[0])))
        frames.append(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    return np.array(frames), truth


def write_clip(path, frames, fps=25.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    """One fold of make demo's recipe on 1,200 synthetic faces, seeing them at 48 px (3x faster to
    train than 96), in float32 on every CPU."""
    from fkd.core.config import load_config
    from fkd.train.cv import run_cv

    root = tmp_path_factory.mktemp("video-model")
    data = write_competition(root / "data", n_train=1200, n_test=8, seed=1)
    demo = load_config("configs/demo.yaml")
    config = load_config("configs/demo.yaml", name="video", only_folds=[0], precision="fp32",
                         model_options={**demo["model_options"], "downsample": 2})
    return run_cv(data, config, root / "runs")


def test_the_clip_is_what_the_tests_below_assume():
    frames, truth = synthetic_clip()
    for t in (0, 20):   # the face the tracker starts from, and the one that comes back
        assert len(detect.detect_faces(frames[t])[0]) == 1, t
    assert len(detect.detect_faces(frames[18])[0]) == 0


def crop_error(points, truth, t) -> float:
    """RMSE over the 30 values, in pixels of the 96-px face (frame pixels / its scale)."""
    scale = np.sqrt(abs(np.linalg.det(paste_matrix(t)[:, :2])))
    return float(np.sqrt(np.mean((np.asarray(points) - truth) ** 2)) / scale)


def test_a_face_is_tracked_through_turns_and_keeps_its_id_after_frames_without_it(face_model):
    from fkd.train.predict import RunsPredictor

    predict = RunsPredictor([face_model], device="cpu")
    frames, truth = synthetic_clip()
    tracker = FaceTracker(predict)
    tracked = [tracker.step(frame) for frame in frames]

    # the same model on the exact crops of the face: the figure tracking is held to
    exact = [predict(geometry.crop(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), geometry.invert(paste_matrix(t)))[None])[0]
             for t, f in enumerate(frames) if truth[t] is not None]
    shown = [t for t in range(FRAMES) if truth[t] is not None]
    exact_error = np.mean([crop_error(geometry.keypoints_to_photo(p, geometry.invert(paste_matrix(t))), truth[t], t)
                           for p, t in zip(exact, shown)])
    for t in GONE:
        assert tracked[t] == [], t   # no face: no points
    errors = []
    for t in shown:
        assert [face_id for face_id, _, _ in tracked[t]] == [0], t   # one face, always id 0
        errors.append(crop_error(tracked[t][0][1], truth[t], t))
    # stated error: the tracked points' mean RMSE is within 25% + 0.3 px of the same model on the
    # exact crops, and no frame is off by more than 3 px (in the 96-px face's pixels)
    assert np.mean(errors) <= 1.25 * exact_error + 0.3, (np.mean(errors), exact_error)
    assert max(errors) <= 3.0, errors
    assert tracker.detections < FRAMES / 2   # tracked, not re-detected on every frame


def test_the_video_and_its_table_are_written(face_model, tmp_path, capsys):
    frames, truth = synthetic_clip()
    clip = write_clip(tmp_path / "clip.avi", frames)
    out = tmp_path / "out"
    assert main(["face", str(clip), "--runs", str(face_model), "--out", str(out), "--smooth", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "40 frames in" in printed and "frames/s" in printed and "1 face tracked" in printed
    with open(out / "clip_keypoints.csv") as table:
        rows = list(csv.DictReader(table))
    assert [int(r["frame"]) for r in rows] == [t for t in range(FRAMES) if truth[t] is not None]
    assert {r["face"] for r in rows} == {"0"}
    assert float(rows[-1]["time_s"]) == pytest.approx(39 / 25, abs=1e-3)
    nose = np.array([[float(r["nose_tip_x"]), float(r["nose_tip_y"])] for r in rows])
    true_nose = np.array([truth[t][10] for t in range(FRAMES) if truth[t] is not None])
    assert np.abs(nose - true_nose).max() < 8   # frame pixels, the face being 150-170 px wide
    video = cv2.VideoCapture(str(out / "clip_keypoints.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    assert int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == WIDTH and int(video.get(cv2.CAP_PROP_FRAME_HEIGHT)) > HEIGHT
    assert sorted(p.name for p in out.iterdir()) == ["clip_keypoints.csv", "clip_keypoints.mp4"]


def test_bad_videos_are_one_line_errors_and_leave_nothing(tmp_path, capsys):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("this is text")
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (WIDTH, HEIGHT)).release()
    frames, _ = synthetic_clip()
    good = write_clip(tmp_path / "good.avi", frames[:2])
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    out = tmp_path / "out"
    cases = [(not_a_video, out, "notes.mp4"), (empty, out, "empty.avi"), (tmp_path / "missing.mp4", out, "missing.mp4"),
             (good, blocked / "sub", "a-file")]
    for video, out_dir, named in cases:
        assert main(["face", str(video), "--out", str(out_dir), "--runs", str(tmp_path)]) == 2, video
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and named in error, error
    assert not out.exists() or list(out.iterdir()) == []


def test_no_camera_is_one_line(tmp_path, capfd):
    """A camera index no camera answers to: one line, OpenCV's own warnings silenced, and no wait."""
    started = time.perf_counter()
    assert main(["face", "--camera", "63", "--runs", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert time.perf_counter() - started < 30
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "camera 63: OpenCV cannot open it" in err, err
    with pytest.raises(FkdError, match="a camera index is a whole number from 0 to 63"):
        open_video(-1)                         # a direct caller gets the check --camera makes


@pytest.mark.parametrize("value, says", [
    ("-1", "must be at least 0, not -1"),            # OpenCV's "any camera": a crash in open_video
    ("64", "must be a camera index from 0 to 63, not 64"),
    ("99999999999", "must be a camera index from 0 to 63, not 99999999999"),  # past a C int: a cv2.error
    ("usb", "must be a whole number, not 'usb'"),
])
def test_a_camera_index_is_a_whole_number_from_0_to_63(value, says, tmp_path, capfd):
    with pytest.raises(SystemExit) as stop:
        main(["face", "--camera", value, "--runs", str(tmp_path), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument --camera: {says}" in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_video_from_the_onnx_file(face_model, tmp_path):
    from fkd.submit.export import export_onnx

    export_onnx([face_model], tmp_path / "model.onnx", [1.0], check_faces=4)
    frames, _ = synthetic_clip()
    clip = write_clip(tmp_path / "clip.avi", frames[:12])
    result = process_video(clip, locate.Predictor(model=tmp_path / "model.onnx"), tmp_path / "out")
    assert result["frames"] == 12 and result["faces"] == [0]
    shutil.rmtree(tmp_path / "out")


def test_a_video_too_small_to_hold_a_face_has_no_faces_and_says_why(tmp_path, capsys):
    clip = tmp_path / "tiny.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (20, 18))
    for _ in range(3):
        writer.write(np.full((18, 20, 3), 120, np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["face", str(clip), "--runs", str(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 frames in" in printed and "0 faces tracked" in printed
    assert "tiny.avi: its frames are too small to hold a face: 20x18 px" in printed
    with open(out / "tiny_keypoints.csv") as table:
        assert list(csv.DictReader(table)) == []
    assert (out / "tiny_keypoints.mp4").is_file()


@pytest.mark.parametrize("option, value", [("--max-frames", "-1"), ("--max-frames", "0"), ("--detect-every", "0")])
def test_frame_counts_must_be_at_least_one(option, value, tmp_path, capsys):
    frames, _ = synthetic_clip()
    clip = write_clip(tmp_path / "clip.avi", frames[:2])
    with pytest.raises(SystemExit) as stop:
        main(["face", str(clip), "--runs", str(tmp_path), "--out", str(tmp_path / "out"), option, value])
    assert stop.value.code == 2
    assert f"argument {option}: must be at least 1, not {value}" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()
