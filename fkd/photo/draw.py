"""What `fkd face` shows and writes for a photo: the photo with each face's detector box (white), crop
square (yellow) and 15 points coloured by side, the colour key in a band below
(`<stem>_keypoints.png`), and per face its box, matrices and named points in photo and crop pixels
(`<stem>_keypoints.json`; a photo too small to hold a face has none, and `no_face` says why).
Videos are drawn the same way, frame by frame (fkd.photo.track).
"""
import json
import re
from pathlib import Path

import cv2
import numpy as np

from fkd.core.atomic import atomic_path, check_writable, write_text
from fkd.core.errors import FkdError
from fkd.core.keypoints import KEYPOINTS, SIDES, SIZE, as_points
from fkd.photo.detect import too_small
from fkd.photo.geometry import apply, invert, keypoints_to_photo
from fkd.photo.locate import Predictor, locate, photo_paths, read_photo

BGR = {"left": (180, 119, 31), "right": (14, 127, 255), "centre": (44, 160, 44)}


def draw_on_photo(photo_bgr, faces_points, boxes, matrices=(), labels=None) -> np.ndarray:
    """A copy of the photo with each detector box (white; None draws none), crop square (yellow, from
    the photo -> crop matrix), label (default: the face's number) and 15 points coloured by side;
    the colour key in a band below."""
    canvas = np.array(photo_bgr, copy=True)
    height, width = canvas.shape[:2]
    thick = max(1, round(max(height, width) / 500))
    labels = range(len(faces_points)) if labels is None else labels
    for k, (box, points, label) in enumerate(zip(boxes, faces_points, labels)):
        corners = None
        if k < len(matrices):
            corners = apply(invert(matrices[k]), [[-0.5, -0.5], [SIZE - 0.5, -0.5], [SIZE - 0.5, SIZE - 0.5],
                                                   [-0.5, SIZE - 0.5]])
            cv2.polylines(canvas, [np.round(corners * 16).astype(np.int32)], True, (0, 220, 255), thick,
                          cv2.LINE_AA, shift=4)
        if box is not None:
            x, y, w, h = (int(round(v)) for v in box)
            cv2.rectangle(canvas, (x, y), (x + w, y + h), (255, 255, 255), thick, cv2.LINE_AA)
        else:
            x, y = (int(round(v)) for v in corners.min(axis=0))
            w = int(round(np.ptp(corners[:, 0]) / 1.1))
        cv2.putText(canvas, str(label), (x + 2 * thick, y + 12 * thick), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick,
                    (255, 255, 255), thick, cv2.LINE_AA)
        radius = max(2, int(round(w / 45)))
        for (px, py), s in zip(points, SIDES):
            if np.isnan(px) or np.isnan(py):
                continue
            centre = (int(round(px * 16)), int(round(py * 16)))  # 4 fractional bits: sub-pixel accurate
            cv2.circle(canvas, centre, radius * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
            cv2.circle(canvas, centre, max(1, radius - 1) * 16, BGR[s], -1, cv2.LINE_AA, shift=4)
    return np.vstack([canvas, legend_strip(width, height)])


def legend_strip(width: int, height: int) -> np.ndarray:
    """The colour key as a black band to go below the photo: it never covers a face."""
    legend = [("subject's left", BGR["left"]), ("subject's right", BGR["right"]), ("midline", BGR["centre"])]
    scale = max(0.4, min(max(height, width) / 1000, width / 560))
    weight = max(1, int(round(scale * 1.5)))
    strip = np.zeros((int(round(34 * scale)), width, 3), np.uint8)
    x = int(6 * scale)
    for text, colour in legend:
        cv2.putText(strip, text, (x, int(round(24 * scale))), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, colour,
                    weight, cv2.LINE_AA)
        x += cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, weight)[0][0] + int(20 * scale)
    return strip


def crop_with_points(face, keypoints, zoom=4) -> np.ndarray:
    """A 96x96 crop enlarged `zoom` times with its points drawn (`fkd face --save-crops`)."""
    big = cv2.resize(cv2.cvtColor(face, cv2.COLOR_GRAY2BGR), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    for (x, y), s in zip(as_points(np.asarray(keypoints, np.float64)), SIDES):
        centre = (int(round(((x + 0.5) * zoom - 0.5) * 16)), int(round(((y + 0.5) * zoom - 0.5) * 16)))
        cv2.circle(big, centre, 4 * 16, BGR[s], -1, cv2.LINE_AA, shift=4)
    return big


def write_png(path, image) -> Path:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise FkdError("could not encode the PNG", path=path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return Path(path)


def face_record(box, matrix, keypoints, refined: bool) -> dict:
    points = keypoints_to_photo(keypoints, matrix)
    crop_points = as_points(np.asarray(keypoints, np.float64))
    return {"box": [round(float(v), 1) for v in box], "refined": bool(refined),
            "photo_to_crop": np.round(matrix, 6).tolist(),
            "crop_to_photo": np.round(invert(matrix), 6).tolist(),
            "keypoints": {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in zip(KEYPOINTS, points)},
            "keypoints_crop": {n: [round(float(x), 2), round(float(y), 2)]
                               for n, (x, y) in zip(KEYPOINTS, crop_points)}}


def to_json(record) -> str:
    """Indented JSON with every list of numbers on one line (points, boxes, matrix rows)."""
    text = json.dumps(record, indent=1)
    return re.sub(r"\[[-+0-9.eE,\s]*\]", lambda m: json.dumps(json.loads(m.group(0))), text) + "\n"


def _stems(paths):
    seen, stems = {}, []
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def process_photos(paths, run_dirs, out_dir, detector="auto", min_size=24, flip_tta=True,
                   refine=True, save_crops=False, predict=None, device=None, model=None) -> list:
    """Detect, predict (and refine), write PNG + JSON per photo; return the JSON records.
    `predict` (uint8 [N,96,96] -> [N,30] px) defaults to a Predictor of the runs or of the ONNX model."""
    predict = predict or Predictor(run_dirs, model, flip_tta, device)
    paths = photo_paths(paths)
    photos = [read_photo(p) for p in paths]  # every file is checked before any work
    out = check_writable(out_dir)            # and the place the results go
    records = []
    for path, stem, photo in zip(paths, _stems(paths), photos):
        found = locate(photo, predict, detector, min_size, refine)
        ks = range(len(found.boxes))
        name = found.detector
        record = {"photo": str(path), "width": int(photo.shape[1]), "height": int(photo.shape[0]),
                  "detector": name, **({"model": str(model)} if model else {"runs": [str(r) for r in run_dirs]}),
                  "faces": [face_record(found.boxes[k], found.matrices[k], found.predictions[k], found.rounds[k] > 0)
                            for k in ks]}
        small = too_small(photo.shape, min_size)
        if small:
            record["no_face"] = small
        write_text(out / f"{stem}_keypoints.json", to_json(record))
        if len(ks):
            for k in ks:
                if save_crops:
                    write_png(out / f"{stem}_face{k}.png", crop_with_points(found.crops[k], found.predictions[k]))
            drawn = draw_on_photo(photo, [keypoints_to_photo(found.predictions[k], found.matrices[k]) for k in ks],
                                  found.boxes, found.matrices)
            write_png(out / f"{stem}_keypoints.png", drawn)
            print(f"{path}: {len(ks)} face{'s' if len(ks) > 1 else ''} ({name}) -> {out / (stem + '_keypoints.png')}")
        else:
            why = small or f"no face found ({name} detector)"
            print(f"{path}: {why}; wrote {out / (stem + '_keypoints.json')} with no faces")
        records.append(record)
    return records
