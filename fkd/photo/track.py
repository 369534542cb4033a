"""Keypoints tracked through a video (`fkd face clip.mp4 --runs runs/A`, or `--camera 0`).

Faces are detected (fkd.photo.detect.find_faces) on the first frame, on every frame while a face's
track is lost, and every `detect_every` frames for faces that come into view. Between detections a
face's crop comes from the previous frame's predicted points (the similarity fkd.photo.locate.settle
fits), so the points follow the face without the detector's jitter and a tilted head stays level in
its crop. A face found after the first frame starts a track only if OpenCV's eye cascade
confirms it (two eyes), as on the turned copies of a photo. A track is lost when its crop stops
looking like the face it follows (normalised cross-correlation with the track's running template
below MATCH_MIN) or when its points make an implausible crop. A lost face keeps its id: a face
detected within REJOIN_SIDES crop sides of where a lost one was last seen takes that id back.

Writes `<stem>_keypoints.mp4` (points and face ids drawn) and `<stem>_keypoints.csv` (frame, time_s,
face, the 30 keypoint columns in frame pixels), each complete or not at all.
"""
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from fkd.core.atomic import atomic_path, check_writable
from fkd.core.errors import FkdError
from fkd.core.keypoints import COLUMNS
from fkd.photo.detect import eyes_available, find_faces, shows_two_eyes, too_small
from fkd.photo.draw import draw_on_photo
from fkd.photo.geometry import crop, crop_centre, crop_side, keypoints_to_photo, to_gray
from fkd.photo.locate import refined_matrix, settle

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
MATCH_MIN = 0.5      # a tracked crop correlating less than this with its face's template: the face is gone
TEMPLATE_MEMORY = 0.8  # the template's running mean keeps this much of the last one each frame
REJOIN_SIDES = 1.0   # a detection this close to a lost face (in its crop sides) is that face again
SEARCH_FRAMES = 50   # a lost face is searched for on every frame this long, then at the periodic detections
TRACK_PASSES = 2     # refinements per frame of a tracked face (its crop starts near where it settles)
FALLBACK_FPS = 25.0
# The camera indices `--camera` takes. OpenCV reads an index of 100 or more as a backend (200 + k is V4L2's
# camera k), -1 as "any camera" (a crash in some builds), and one past a C int is a cv2.error; Linux numbers its
# video devices /dev/video0 .. /dev/video63.
CAMERA_INDICES = range(64)


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def normalised(face_crop) -> np.ndarray:
    """A crop with zero mean and unit variance (float32): for normalised cross-correlation."""
    values = np.asarray(face_crop, np.float32)
    return (values - values.mean()) / (values.std() + 1e-6)


@dataclass
class Track:
    id: int
    matrix: np.ndarray    # frame -> crop, for the next frame
    template: np.ndarray  # running mean of the face's normalised crops
    centre: np.ndarray    # the crop's centre in frame pixels, where the face was last seen
    side: float           # the crop's side in frame pixels
    points: np.ndarray = None  # (15, 2) frame pixels in this frame; None when not seen in it
    last: np.ndarray = None    # the points where the face was last seen
    lost: int = 0         # frames since the face was last seen


class FaceTracker:
    """`tracker.step(frame_bgr)` -> [(face id, points (15, 2) in frame pixels, frame -> crop matrix)]
    of every face seen in that frame."""

    def __init__(self, predict, detector="auto", min_size=24, detect_every=30, smooth=0.0):
        if not 0.0 <= smooth < 1.0:
            raise FkdError(f"--smooth must be in [0, 1), not {smooth}")
        if detect_every < 1:
            raise FkdError(f"--detect-every must be at least 1, not {detect_every}")
        self.predict, self.detector, self.min_size = predict, detector, min_size
        self.detect_every, self.smooth = detect_every, smooth
        self.tracks, self.frames, self.detections = [], 0, 0
        self.target = getattr(predict, "framing", None)  # the framing the crops are aligned to

    def step(self, frame_bgr) -> list:
        gray = to_gray(frame_bgr)
        for track in self.tracks:
            track.points = None
        self._follow(gray, [t for t in self.tracks if t.lost == 0])
        missing = [t for t in self.tracks if t.points is None and t.lost < SEARCH_FRAMES]
        if not self.frames % self.detect_every or not self.tracks or missing:
            self._detect(frame_bgr, gray)
        for track in self.tracks:
            track.lost = 0 if track.points is not None else track.lost + 1
        self.frames += 1
        return [(t.id, t.points, t.matrix) for t in self.tracks if t.points is not None]

    def _follow(self, gray, tracks):
        if not tracks:
            return
        matrices = np.array([t.matrix for t in tracks])
        crops = np.array([crop(gray, m) for m in matrices])
        predictions = self.predict(crops)
        matrices, crops, predictions, _ = settle([gray] * len(tracks), matrices, predictions, self.predict,
                                                 passes=TRACK_PASSES, target=self.target)
        for track, matrix, face_crop, keypoints in zip(tracks, matrices, crops, predictions):
            looks = float((normalised(face_crop) * track.template).mean())
            following = refined_matrix(matrix, keypoints, self.target)
            if looks >= MATCH_MIN and following is not None:
                self._update(track, matrix, face_crop, keypoints, following)

    def _detect(self, frame_bgr, gray):
        self.detections += 1
        # the turned copies cost a search each: only the first frame pays for them
        boxes, matrices, crops, _ = find_faces(frame_bgr, self.detector, self.min_size, framing=self.target,
                                               goal=getattr(self.predict, "landmark_goal", None),
                                               **({} if not self.frames else {"turns": (), "always": ()}))
        seen = [t for t in self.tracks if t.points is not None]
        new = [k for k, m in enumerate(matrices)
               if not any(np.hypot(*(crop_centre(m) - t.centre)) < 0.5 * t.side for t in seen)]
        if not new:
            return
        predictions = self.predict(crops[new])
        matrices, crops, predictions, _ = settle([gray] * len(new), matrices[new], predictions, self.predict,
                                                 target=self.target)
        for box, matrix, face_crop, keypoints in zip(boxes[new], matrices, crops, predictions):
            track = self._rejoin(crop_centre(matrix), crop_side(matrix))
            if track is None and self.frames and eyes_available() and not shows_two_eyes(gray, box):
                continue  # a new face after the first frame must show two eyes: the cascade's false alarms do not
            if track is None:
                track = Track(id=len(self.tracks), matrix=matrix, template=normalised(face_crop),
                              centre=crop_centre(matrix), side=crop_side(matrix))
                self.tracks.append(track)
            else:
                track.template = normalised(face_crop)
            following = refined_matrix(matrix, keypoints, self.target)
            self._update(track, matrix, face_crop, keypoints, matrix if following is None else following, fresh=True)

    def _rejoin(self, centre, side):
        lost = [t for t in self.tracks if t.points is None]
        near = [(np.hypot(*(centre - t.centre)), t) for t in lost]
        near = [(d, t) for d, t in near if d < REJOIN_SIDES * max(side, t.side)]
        return min(near, key=lambda pair: pair[0])[1] if near else None

    def _update(self, track, matrix, face_crop, keypoints, following, fresh=False):
        """The face seen at `matrix` with these keypoints; `following` frames it in the next frame."""
        points = keypoints_to_photo(keypoints, matrix)
        if self.smooth and not fresh and track.lost == 0 and track.last is not None:
            points = self.smooth * track.last + (1 - self.smooth) * points
        track.points = track.last = points
        track.template = TEMPLATE_MEMORY * track.template + (1 - TEMPLATE_MEMORY) * normalised(face_crop)
        track.matrix = following
        track.centre, track.side = crop_centre(track.matrix), crop_side(track.matrix)


def open_camera(index: int):
    """cv2.VideoCapture of camera `index`, or a one-line FkdError. OpenCV's own warnings about a camera it
    cannot open are silenced while it tries: the FkdError says it in one line."""
    if isinstance(index, bool) or not isinstance(index, int) or index not in CAMERA_INDICES:
        raise FkdError(f"camera {index!r}: a camera index is a whole number from {CAMERA_INDICES.start} "
                       f"to {CAMERA_INDICES.stop - 1} (0 is the first camera)")
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    level = logging.getLogLevel() if logging is not None else None
    try:
        if logging is not None:
            logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        capture = cv2.VideoCapture(index)
    except cv2.error as error:
        raise FkdError(f"camera {index}: OpenCV cannot open it ({str(error).strip().splitlines()[0]})") from None
    finally:
        if logging is not None:
            logging.setLogLevel(level)
    if not capture.isOpened():
        capture.release()
        raise FkdError(f"camera {index}: OpenCV cannot open it (is one attached? --camera 0 is the first)")
    return capture


def open_video(source):
    """(cv2.VideoCapture, frames/s, frame count or 0) of a file or a camera index; one-line errors."""
    camera = isinstance(source, int)
    capture = open_camera(source) if camera else cv2.VideoCapture(str(source))
    if not capture.isOpened():
        if not Path(source).is_file():
            raise FkdError("no such file", path=source)
        raise FkdError("cannot read it as a video (OpenCV could not open it)", path=source)
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and np.isfinite(fps) and 0 < fps < 1000 else FALLBACK_FPS
    return capture, fps, max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))


def process_video(source, predict, out_dir, detector="auto", min_size=24, detect_every=30, smooth=0.0,
                  max_frames=None) -> dict:
    """Track every face of a video file or camera through its frames; write the MP4 and CSV.
    Returns {"frames", "seconds", "fps", "faces", "video", "csv"}."""
    out = check_writable(out_dir)
    stem = f"camera{source}" if isinstance(source, int) else Path(source).stem
    capture, fps, count = open_video(source)
    tracker = FaceTracker(predict, detector, min_size, detect_every, smooth)
    video_path, csv_path = out / f"{stem}_keypoints.mp4", out / f"{stem}_keypoints.csv"
    total = min(count, max_frames) if count and max_frames else (count or max_frames or None)
    frames, start = 0, time.perf_counter()
    try:
        with atomic_path(video_path, suffix=".tmp.mp4") as video_tmp, atomic_path(csv_path) as csv_tmp, \
                open(csv_tmp, "w", newline="") as table:
            rows = csv.writer(table)
            rows.writerow(["frame", "time_s", "face", *COLUMNS])
            writer, small = None, None
            with tqdm(total=total, desc=f"{stem}: frames", unit="frame", disable=None, mininterval=1.0) as bar:
                while max_frames is None or frames < max_frames:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    faces = tracker.step(frame)
                    drawn = draw_on_photo(frame, [p for _, p, _ in faces], [None] * len(faces),
                                          [m for _, _, m in faces], labels=[f"face {i}" for i, _, _ in faces])
                    if writer is None:  # the first frame
                        small = too_small(frame.shape, min_size)
                        writer = cv2.VideoWriter(str(video_tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                                 (drawn.shape[1], drawn.shape[0]))
                        if not writer.isOpened():
                            raise FkdError(f"OpenCV cannot write an MP4 video of {frame.shape[1]}x{frame.shape[0]} px "
                                           "frames here", path=video_path)
                    writer.write(drawn)
                    for face_id, points, _ in faces:
                        rows.writerow([frames, f"{frames / fps:.4f}", face_id,
                                       *(f"{v:.2f}" for v in np.asarray(points).reshape(-1))])
                    frames += 1
                    bar.update()
            if writer is not None:
                writer.release()
            if not frames:
                raise FkdError("holds no frames OpenCV can read", path=source)
    finally:
        capture.release()
    seconds = time.perf_counter() - start
    ids = sorted({t.id for t in tracker.tracks})
    print(f"{source}: {frames} frames in {seconds:.1f} s ({frames / seconds:.1f} frames/s), "
          f"{len(ids)} face{'s' if len(ids) != 1 else ''} tracked, {tracker.detections} detection passes "
          f"-> {video_path}, {csv_path}")
    if small:
        print(f"{source}: its frames are {small}")
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "faces": ids,
            "video": video_path, "csv": csv_path}
