"""Synthetic faces and a synthetic competition folder in Kaggle's exact format.

`python -m fkd synth --out DIR [--train N] [--test M] [--seed S] [--force]` writes training.csv, test.csv,
IdLookupTable.csv and SampleSubmission.csv, so every part of fkd can run without Kaggle's data, and last
synth.json (the seed, the counts and each file's SHA-256). It never writes over a competition folder: a folder
holding any of those files (or Kaggle's training.zip / test.zip) is refused before anything is written, unless
synth.json says `fkd synth` wrote it, each file is still what it wrote, and --force is given.

Faces are drawn with OpenCV from their 15 keypoints: the keypoints are sampled first (a mean shape
like Kaggle's, per-face shape variation, left/right asymmetry, a little yaw, then a similarity
transform: shift, scale, rotation) and every feature is drawn from them, so the labels are exact:
eye corners are the ends of the almond-shaped eye, the iris and pupil sit on the eye centre, the
eyebrow ends are the ends of the eyebrow stroke, the nose tip is the highlight between the
nostrils, mouth corners are where the lips meet, and the lip centres are the outer edges of the
lips. Keypoints lie on a 1/16-pixel grid (OpenCV's sub-pixel drawing), so 4 decimals are exact.
Coordinates are pixel indices (pixel centre = integer); "left" is the subject's left = image right.
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fkd.core.arguments import non_negative_int, positive_int
from fkd.core.atomic import atomic_path, check_writable, write_text
from fkd.core.errors import FkdError
from fkd.core.keypoints import COLUMNS, CORE_COLUMN_INDEX, KEYPOINTS, N_COLUMNS, SIZE
from fkd.data.competition import _file_sha256

# ---------------------------------------------------------------- settings

COMPLETE_FRACTION = 0.30     # training rows with all 30 values; the rest carry the 4 core points
FULL_LOOKUP_FRACTION = 0.30  # test images whose lookup asks all 30 values; the rest ask 8
DUPLICATE_FRACTION = 0.02    # training rows that repeat an earlier row's image
DUPLICATE_RELABEL = 0.5      # share of duplicates whose labels differ a little from the original
FACE_ORIGIN = (48.0, 56.0)   # image point the face frame's origin maps to, on average
SHIFT_SD = 3.5               # px, face position
SCALE_SD = 0.09              # log-scale
ROTATION_SD, ROTATION_MAX = 8.0, 15.0  # degrees
YAW_SD, YAW_MAX = 0.06, 0.15           # one side narrower than the other, nose and mouth shifted
MARGIN = 2.0                 # every keypoint lies in [MARGIN, 95 - MARGIN]
SUBPIXEL = 4                 # OpenCV drawing shift: coordinates in 1/16 px
GRID = 1 << SUBPIXEL

_INDEX = {name: i for i, name in enumerate(KEYPOINTS)}


# ---------------------------------------------------------------- keypoints

def _sample_params(n: int, rng: np.random.Generator) -> dict:
    """Shape, pose and appearance parameters of n faces (arrays of length n)."""
    u, nrm = rng.uniform, rng.normal
    p = {}
    # pose
    p["tx"], p["ty"] = nrm(0, SHIFT_SD, n), nrm(0, SHIFT_SD, n)
    p["scale"] = np.exp(np.clip(nrm(0, SCALE_SD, n), -2.5 * SCALE_SD, 2.5 * SCALE_SD))
    p["angle"] = np.clip(nrm(0, ROTATION_SD, n), -ROTATION_MAX, ROTATION_MAX)
    p["yaw"] = np.clip(nrm(0, YAW_SD, n), -YAW_MAX, YAW_MAX)
    # shape, face frame (px at scale 1, origin near the face centre, y down); per side: [:, 0] is the
    # subject's left (+x, image right), [:, 1] the subject's right
    p["eye_y"] = nrm(-18.3, 0.8, n)
    p["eye_half_distance"] = nrm(18.0, 1.1, n)
    p["eye_dy"] = nrm(0, 0.5, (n, 2))
    p["eye_inner"] = nrm(7.0, 0.6, (n, 2))
    p["eye_outer"] = nrm(7.0, 0.6, (n, 2))
    p["eye_inner_dy"] = nrm(0.3, 0.5, (n, 2))
    p["eye_outer_dy"] = nrm(0.1, 0.7, (n, 2))
    p["eye_open_up"] = u(2.3, 3.6, n)
    p["eye_open_down"] = u(1.6, 2.6, n)
    p["brow_inner_dx"] = nrm(10.3, 0.8, n)[:, None] + nrm(0, 0.5, (n, 2))
    p["brow_outer_dx"] = nrm(13.0, 1.0, n)[:, None] + nrm(0, 0.6, (n, 2))
    p["brow_inner_up"] = nrm(8.4, 1.0, n)[:, None] + nrm(0, 0.6, (n, 2))
    p["brow_outer_up"] = nrm(7.8, 1.1, n)[:, None] + nrm(0, 0.6, (n, 2))
    p["brow_arch"] = u(0.5, 2.5, n)
    p["brow_width"] = u(2.2, 4.0, n)
    p["nose_x"] = nrm(0, 0.6, n)
    p["nose_length"] = nrm(25.0, 1.5, n)
    p["mouth_x"] = nrm(0, 0.6, n)
    p["mouth_drop"] = nrm(38.3, 1.8, n)  # eye line to mouth line
    p["mouth_half_width"] = nrm(15.0, 1.2, n)[:, None] + nrm(0, 0.5, (n, 2))
    p["smile"] = nrm(0, 0.8, n)[:, None] + nrm(0, 0.5, (n, 2))  # corner dy (negative: corners up)
    p["mouth_gap"] = np.where(u(0, 1, n) < 0.6, 0.0, u(0.5, 4.0, n))
    p["lip_top"] = u(2.2, 4.0, n)
    p["lip_bottom"] = u(2.5, 4.5, n)
    p["bow"] = u(0.0, 0.35, n)
    return p


def _face_frame_points(p: dict) -> np.ndarray:
    """Keypoints [n,15,2] in the face frame (before the similarity transform)."""
    n = len(p["tx"])
    yaw = p["yaw"]
    side_scale = np.stack([1 - yaw, 1 + yaw], axis=1)  # subject's left, right
    sign = np.array([1.0, -1.0])  # subject's left is +x
    pts = np.zeros((n, 15, 2))
    eye_x = sign * (p["eye_half_distance"][:, None] * side_scale)
    eye_y = p["eye_y"][:, None] + p["eye_dy"]
    inner_x = eye_x - sign * p["eye_inner"] * side_scale
    outer_x = eye_x + sign * p["eye_outer"] * side_scale
    brow_inner_x = eye_x - sign * p["brow_inner_dx"] * side_scale
    brow_outer_x = eye_x + sign * p["brow_outer_dx"] * side_scale
    for s, side in enumerate(("left", "right")):
        pts[:, _INDEX[f"{side}_eye_center"]] = np.stack([eye_x[:, s], eye_y[:, s]], 1)
        pts[:, _INDEX[f"{side}_eye_inner_corner"]] = np.stack(
            [inner_x[:, s], eye_y[:, s] + p["eye_inner_dy"][:, s]], 1)
        pts[:, _INDEX[f"{side}_eye_outer_corner"]] = np.stack(
            [outer_x[:, s], eye_y[:, s] + p["eye_outer_dy"][:, s]], 1)
        pts[:, _INDEX[f"{side}_eyebrow_inner_end"]] = np.stack(
            [brow_inner_x[:, s], eye_y[:, s] - p["brow_inner_up"][:, s]], 1)
        pts[:, _INDEX[f"{side}_eyebrow_outer_end"]] = np.stack(
            [brow_outer_x[:, s], eye_y[:, s] - p["brow_outer_up"][:, s]], 1)
    eye_line = p["eye_y"]
    nose = np.stack([p["nose_x"] + 15 * yaw, eye_line + p["nose_length"]], 1)
    pts[:, _INDEX["nose_tip"]] = nose
    mouth_x = p["mouth_x"] + 6 * yaw
    mouth_y = np.maximum(eye_line + p["mouth_drop"], nose[:, 1] + 6 + p["lip_top"] + p["mouth_gap"] / 2)
    p["mouth_line_y"] = mouth_y
    half = p["mouth_half_width"] * side_scale
    for s, side in enumerate(("left", "right")):
        pts[:, _INDEX[f"mouth_{side}_corner"]] = np.stack(
            [mouth_x + sign[s] * half[:, s], mouth_y + p["smile"][:, s]], 1)
    pts[:, _INDEX["mouth_center_top_lip"]] = np.stack(
        [mouth_x, mouth_y - p["mouth_gap"] / 2 - p["lip_top"]], 1)
    pts[:, _INDEX["mouth_center_bottom_lip"]] = np.stack(
        [mouth_x, mouth_y + p["mouth_gap"] / 2 + p["lip_bottom"]], 1)
    return pts


def _transforms(p: dict) -> np.ndarray:
    """Similarity transforms [n,2,3]: face frame -> image pixels."""
    a = np.deg2rad(p["angle"])
    c, s = np.cos(a) * p["scale"], np.sin(a) * p["scale"]
    m = np.zeros((len(a), 2, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = c, -s, FACE_ORIGIN[0] + p["tx"]
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = s, c, FACE_ORIGIN[1] + p["ty"]
    return m


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points [..., k, 2] through transforms m [..., 2, 3]."""
    return pts @ np.swapaxes(m[..., :2], -1, -2) + m[..., None, :, 2]


def _on_grid(x):
    return np.round(np.asarray(x) * GRID) / GRID


def _sample_faces(n: int, rng: np.random.Generator):
    """Parameters, image keypoints [n,15,2] (on the 1/16 grid, inside the margin) and transforms."""
    p = _sample_params(n, rng)
    for _ in range(100):
        kp = _on_grid(_apply(_transforms(p), _face_frame_points(p)))
        bad = ((kp < MARGIN) | (kp > SIZE - 1 - MARGIN)).any(axis=(1, 2))
        if not bad.any():
            return p, kp, _transforms(p)
        fresh = _sample_params(int(bad.sum()), rng)
        for key, value in fresh.items():
            p[key][bad] = value
    raise RuntimeError("could not place faces inside the image")  # pragma: no cover


# ---------------------------------------------------------------- drawing

def _poly(m, pts):
    """Face-frame points -> int32 polygon in 1/16 px for OpenCV (same arithmetic as the keypoints)."""
    pts = np.asarray(pts, dtype=float)
    return np.round((pts @ m[:, :2].T + m[:, 2]) * GRID).astype(np.int32)


def _gray(color) -> int:
    return int(min(255.0, max(0.0, round(float(color)))))


def _fill(img, m, pts, color):
    cv2.fillPoly(img, [_poly(m, pts)], _gray(color), cv2.LINE_AA, SUBPIXEL)


def _line(img, m, pts, color, width):
    width = max(1, int(round(width)))
    cv2.polylines(img, [_poly(m, pts)], False, _gray(color), width, cv2.LINE_AA, SUBPIXEL)


_UNIT_CIRCLES = {k: np.stack([np.cos(t), np.sin(t)], 1)
                 for k in (16, 20, 24, 32, 48) for t in [np.linspace(0, 2 * np.pi, k, endpoint=False)]}
_T13 = np.linspace(0, 1, 13)[:, None]
_T17 = np.linspace(0, 1, 17)[:, None]
_U41 = np.linspace(-1, 1, 41)


def _ellipse_pts(cx, cy, ax, ay, k=48):
    return _UNIT_CIRCLES[k] * (ax, ay) + (cx, cy)


def _circle(img, centre, radius, color):
    """A disc centred exactly on an image point (1/16 px)."""
    c = (int(round(centre[0] * GRID)), int(round(centre[1] * GRID)))
    cv2.circle(img, c, max(1, int(round(radius * GRID))), _gray(color), -1, cv2.LINE_AA, SUBPIXEL)


def _draw_face(img, p, i, fp, kp, m, rng):
    """Draw face i on img (uint8 [96,96], background already there). fp: face-frame keypoints [15,2],
    kp: the same in image pixels; m: face frame -> image."""
    u = rng.uniform
    scale = p["scale"][i]
    yaw = p["yaw"][i]
    skin = u(80, 210)
    P = {name: fp[j] for j, name in enumerate(KEYPOINTS)}
    K = {name: kp[j] for j, name in enumerate(KEYPOINTS)}
    eye_line = p["eye_y"][i]

    # head: neck, ears, hair, skin, hairline
    head_cx, head_cy = -10 * yaw + rng.normal(0, 1), eye_line + 12 + rng.normal(0, 2)
    a, b = rng.normal(43, 2.5), rng.normal(50, 3)
    dark_hair = u() < 0.7
    hair = u(5, 80) if dark_hair else u(150, 235)
    _fill(img, m, [[head_cx - 0.55 * a, head_cy + 0.5 * b], [head_cx + 0.55 * a, head_cy + 0.5 * b],
                   [head_cx + 0.6 * a, 120], [head_cx - 0.6 * a, 120]], skin * u(0.7, 0.95))
    for sx in (-1, 1):
        _fill(img, m, _ellipse_pts(head_cx + sx * 0.97 * a, eye_line + 9, 5, 10, 24), skin * u(0.8, 0.95))
    has_hair = u() < 0.8
    if has_hair:
        _fill(img, m, _ellipse_pts(head_cx, head_cy - u(4, 10), a + u(1, 5), b + u(0, 5)), hair)
    _fill(img, m, _ellipse_pts(head_cx, head_cy, a, b), skin)
    if has_hair:
        k = u(1.0, 1.25)
        _fill(img, m, _ellipse_pts(head_cx + rng.normal(0, 4), head_cy - b * k, a * u(0.95, 1.1), b * 0.45), hair)

    # eye sockets (soft, blurred into the skin), eyebrows
    shade = np.full_like(img, 0)
    for side in ("left", "right"):
        c = P[f"{side}_eye_center"]
        w = abs(P[f"{side}_eye_outer_corner"][0] - P[f"{side}_eye_inner_corner"][0]) / 2
        _fill(shade, m, _ellipse_pts(c[0], c[1] - 1, w * 1.35, 5.5, 32), u(10, 30))
    nx, ny = P["nose_tip"]
    for sx in (-1, 1):  # shading down the sides of the nose
        _line(shade, m, [[nx + sx * 3.5, eye_line + 4], [nx + sx * 4.5, ny - 4], [nx + sx * 5.5, ny]],
              u(10, 25), 2.5 * scale)
    shade = cv2.GaussianBlur(shade, (0, 0), 1.5 * scale)
    cv2.subtract(img, shade, dst=img)

    brow_color = min(hair, skin * u(0.2, 0.5)) if dark_hair else skin * u(0.2, 0.55)
    width = p["brow_width"][i]
    for side in ("left", "right"):
        inner, outer = P[f"{side}_eyebrow_inner_end"], P[f"{side}_eyebrow_outer_end"]
        t = _T13
        centre = inner + t * (outer - inner) + np.array([0, -1]) * p["brow_arch"][i] * np.sin(np.pi * t) ** 0.8
        direction = (outer - inner) / np.linalg.norm(outer - inner)
        normal = np.array([-direction[1], direction[0]])
        half = (width / 2) * (1.0 - 0.45 * t)  # tapers toward the outer end; flat caps at both ends
        _fill(img, m, np.concatenate([centre + half * normal, (centre - half * normal)[::-1]]), brow_color)

    # eyes: almond of sclera, iris and pupil on the eye centre (clipped by the lids), lid lines
    eye_layer = img.copy()
    mask = np.zeros_like(img)
    sclera = min(250, skin + u(20, 60))
    iris = min(u(25, 110), sclera - 50)
    pupil = u(0, 25)
    lids = []
    for side in ("left", "right"):
        inner, outer = P[f"{side}_eye_inner_corner"], P[f"{side}_eye_outer_corner"]
        t = _T17
        base = inner + t * (outer - inner)
        bump = np.sin(np.pi * t)
        upper = base - np.array([0, 1]) * p["eye_open_up"][i] * bump ** 0.8
        lower = base + np.array([0, 1]) * p["eye_open_down"][i] * bump ** 1.1
        almond = np.concatenate([upper, lower[::-1][1:-1]])
        _fill(eye_layer, m, almond, sclera)
        _fill(mask, m, almond, 255)
        w = abs(outer[0] - inner[0]) / 2
        r_iris = u(0.40, 0.50) * w * scale
        _circle(eye_layer, K[f"{side}_eye_center"], r_iris, iris)
        _circle(eye_layer, K[f"{side}_eye_center"], r_iris * u(0.4, 0.55), pupil)
        lids.append((upper, lower))
    ys, xs = np.nonzero(mask)
    alpha = mask[ys, xs] / 255.0
    img[ys, xs] = np.round(img[ys, xs] * (1 - alpha) + eye_layer[ys, xs] * alpha).astype(np.uint8)
    lid = skin * u(0.15, 0.4)
    for upper, lower in lids:
        _line(img, m, upper, lid, u(1.0, 2.0) * scale)
        _line(img, m, lower, min(255, lid + u(20, 60)), 1)

    # nose: highlight on the tip, nostrils either side below it, wings
    _fill(img, m, _ellipse_pts(nx, ny, 2.4, 2.0, 20), min(255, skin + u(10, 35)))
    nostril = skin * u(0.2, 0.5)
    spread, drop = u(3.2, 4.5), u(2.0, 3.2)
    for sx in (-1, 1):
        _fill(img, m, _ellipse_pts(nx + sx * spread, ny + drop, 1.7, 1.1, 16), nostril)
        _line(img, m, [[nx + sx * (spread + 2.5), ny - 1.5], [nx + sx * (spread + 2.8), ny + drop],
                       [nx + sx * (spread + 1), ny + drop + 1.8]], skin * u(0.4, 0.7), 1)

    # mouth: lips between the corners, top/bottom lip centres on the outer edges, dark mouth line
    left, right = P["mouth_left_corner"], P["mouth_right_corner"]
    x_c, y_c = P["mouth_center_top_lip"][0], p["mouth_line_y"][i]
    gap, top, bottom, bow = p["mouth_gap"][i], p["lip_top"][i], p["lip_bottom"][i], p["bow"][i]
    uu = _U41  # -1: subject's right corner (image left), +1: subject's left
    corner = np.where(uu < 0, right[:, None], left[:, None])  # [2, k]
    x = x_c + np.abs(uu) * (corner[0] - x_c)
    line = y_c + uu ** 2 * (corner[1] - y_c)
    q = 1 - uu ** 2
    g = q ** 0.8
    f_top = q ** 0.6 * (1 + bow * (uu ** 2 / 0.09) * np.exp(1 - uu ** 2 / 0.09))
    f_bottom = q ** 0.6
    top_outer = np.stack([x, line - gap / 2 * g - top * f_top], 1)
    bottom_outer = np.stack([x, line + gap / 2 * g + bottom * f_bottom], 1)
    _fill(img, m, np.concatenate([top_outer, bottom_outer[::-1][1:-1]]), skin * u(0.5, 0.8))
    dark = skin * u(0.05, 0.3)
    if gap > 0.4:
        opening = np.concatenate([np.stack([x, line - gap / 2 * g], 1), np.stack([x, line + gap / 2 * g], 1)[::-1][1:-1]])
        _fill(img, m, opening, dark)
    _line(img, m, np.stack([x, line], 1), dark, 1)


def _backgrounds(n, rng):
    """Backgrounds [n,96,96] float: a level plus a smooth random texture."""
    level = rng.uniform(0, 255, n)
    amp = rng.uniform(0, 40, n)
    coarse = rng.normal(0, 1, (n, 6, 6)).astype(np.float32)
    out = np.empty((n, SIZE, SIZE), np.float32)
    for i in range(n):
        out[i] = level[i] + amp[i] * cv2.resize(coarse[i], (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0, 255)


def _photometric(images: np.ndarray, rng) -> np.ndarray:
    """Blur, lighting gradient, contrast and noise on uint8 [n,96,96] -> uint8."""
    n = len(images)
    x = images.astype(np.float32)
    sigma = rng.uniform(0.3, 0.9, n)
    for i in range(n):
        cv2.GaussianBlur(x[i], (0, 0), sigma[i], dst=x[i])
    phi = rng.uniform(0, 2 * np.pi, n)
    strength = rng.uniform(0, 0.35, n)
    grid = (np.arange(SIZE, dtype=np.float32) - 47.5) / 48
    ramp = np.cos(phi)[:, None, None] * grid[None, None, :] + np.sin(phi)[:, None, None] * grid[None, :, None]
    x *= 1 + strength[:, None, None] * ramp
    mean = x.mean(axis=(1, 2), keepdims=True)
    contrast = rng.uniform(0.75, 1.3, n)[:, None, None]
    x = mean + contrast * (x - mean) + rng.uniform(-20, 20, n)[:, None, None]
    x += rng.standard_normal(x.shape, dtype=np.float32) * rng.uniform(0, 6, n).astype(np.float32)[:, None, None]
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def draw_faces(n: int, rng=None):
    """n synthetic faces: (images uint8 [n,96,96], keypoints float32 [n,30]), all 15 points present.

    rng: a numpy Generator or a seed. Keypoints are exact (the features are drawn from them).
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    p, kp, m = _sample_faces(n, rng)
    fp = _face_frame_points(p)
    images = np.clip(np.round(_backgrounds(n, rng)), 0, 255).astype(np.uint8)
    for i in range(n):
        _draw_face(images[i], p, i, fp[i], kp[i], m[i], rng)
    images = _photometric(images, rng)
    return images, kp.reshape(n, N_COLUMNS).astype(np.float32)


# ---------------------------------------------------------------- a competition

@dataclass
class Competition:
    train_images: np.ndarray     # uint8 [N,96,96]
    train_keypoints: np.ndarray  # float32 [N,30], NaN = not labelled (partial rows)
    duplicate_of: np.ndarray     # int [N]: row whose image this row repeats, -1 for originals
    test_ids: np.ndarray         # int64 [M], from 1
    test_images: np.ndarray      # uint8 [M,96,96]
    test_keypoints: np.ndarray   # float32 [M,30]: the truth (not written to the folder)
    test_full: np.ndarray        # bool [M]: lookup asks all 30 values (else the 8 core ones)


def _count(n, fraction):
    return int(round(n * fraction))


def _check_counts(n_train, n_test):
    if n_train < 1 or n_test < 1:
        raise FkdError(f"need at least one training and one test image (got --train {n_train}, --test {n_test})")


def make_competition(n_train: int = 1000, n_test: int = 100, seed: int = 0) -> Competition:
    """The arrays behind write_competition (same seed, same data), test truth included."""
    _check_counts(n_train, n_test)
    rng = np.random.default_rng(seed)
    n_dup = _count(n_train, DUPLICATE_FRACTION) if n_train >= 2 else 0
    n_unique = n_train - n_dup
    images, keypoints = draw_faces(n_unique, rng)

    # duplicates: each sits somewhere after its original; half of them relabelled a little
    sources = np.sort(rng.choice(n_unique, n_dup, replace=False)) if n_dup else np.zeros(0, int)
    keys = np.concatenate([np.arange(n_unique, dtype=float),
                           sources + rng.uniform(0.1, 1.0, n_dup) * (n_unique - sources)])
    order = np.argsort(keys, kind="stable")
    face = np.concatenate([np.arange(n_unique), sources])[order]  # unique face shown on each row
    is_dup = order >= n_unique
    first_row = {}
    duplicate_of = np.full(n_train, -1)
    for row, f in enumerate(face):
        if is_dup[row]:
            duplicate_of[row] = first_row[f]
        else:
            first_row[f] = row
    train_images = images[face]
    train_keypoints = keypoints[face].copy()
    relabel = is_dup & (rng.uniform(0, 1, n_train) < DUPLICATE_RELABEL)
    noise = rng.normal(0, 0.7, (n_train, N_COLUMNS))
    train_keypoints[relabel] = np.clip(_on_grid(train_keypoints[relabel] + noise[relabel]), 0, SIZE - 1)

    complete = np.zeros(n_train, bool)
    complete[rng.choice(n_train, _count(n_train, COMPLETE_FRACTION), replace=False)] = True
    core = np.zeros(N_COLUMNS, bool)
    core[CORE_COLUMN_INDEX] = True
    train_keypoints[np.ix_(~complete, ~core)] = np.nan

    test_images, test_keypoints = draw_faces(n_test, rng)
    test_full = np.zeros(n_test, bool)
    test_full[rng.choice(n_test, _count(n_test, FULL_LOOKUP_FRACTION), replace=False)] = True
    return Competition(train_images, train_keypoints.astype(np.float32), duplicate_of,
                       np.arange(1, n_test + 1, dtype=np.int64), test_images, test_keypoints, test_full)


# ---------------------------------------------------------------- Kaggle's CSV text

_DIGITS = np.zeros((256, 4), np.uint8)
_LENGTHS = np.zeros(256, np.int64)
for _v in range(256):
    _token = f"{_v} ".encode()
    _DIGITS[_v, :len(_token)] = np.frombuffer(_token, np.uint8)
    _LENGTHS[_v] = len(_token)


def image_lines(images: np.ndarray, chunk: int = 256) -> list:
    """Each image as Kaggle's text: b"p0 p1 ... p9215\\n" (space-separated ints), built with numpy."""
    flat = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
    lines = []
    for start in range(0, len(flat), chunk):
        block = flat[start:start + chunk]
        lengths = _LENGTHS[block]
        keep = np.arange(4) < lengths[..., None]
        text = _DIGITS[block][keep]
        ends = np.cumsum(lengths.sum(axis=1))
        text[ends - 1] = ord("\n")  # the last pixel's trailing space ends the line
        raw = text.tobytes()
        begins = np.concatenate([[0], ends[:-1]])
        lines.extend(raw[b:e] for b, e in zip(begins, ends))
    return lines


def _keypoint_fields(row) -> bytes:
    return ",".join("" if np.isnan(v) else f"{v:.4f}" for v in row).encode()


def _write(path: Path, chunks):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.writelines(chunks)


def _competition_files(comp: Competition) -> dict:
    """{file name: its bytes in chunks} of the four files, in Kaggle's format."""
    header = (",".join(COLUMNS) + ",Image\n").encode()
    train_lines = image_lines(comp.train_images)
    files = {"training.csv": [header] + [
        _keypoint_fields(k) + b"," + line for k, line in zip(comp.train_keypoints, train_lines)]}
    test_lines = image_lines(comp.test_images)
    files["test.csv"] = [b"ImageId,Image\n"] + [f"{i},".encode() + line for i, line in zip(comp.test_ids, test_lines)]
    lookup, sample = ["RowId,ImageId,FeatureName,Location\n"], ["RowId,Location\n"]
    core_names = [COLUMNS[j] for j in sorted(CORE_COLUMN_INDEX)]
    row_id = 0
    for image_id, full in zip(comp.test_ids, comp.test_full):
        for name in (COLUMNS if full else core_names):
            row_id += 1
            lookup.append(f"{row_id},{image_id},{name},\n")
            sample.append(f"{row_id},0\n")
    files["IdLookupTable.csv"] = [line.encode() for line in lookup]
    files["SampleSubmission.csv"] = [line.encode() for line in sample]
    return files


# ---------------------------------------------------------------- the folder: written by fkd synth, or refused

MARKER = "synth.json"  # what fkd synth wrote (written again last), so that only its own folder is ever replaced
WRITTEN = ("training.csv", "test.csv", "IdLookupTable.csv", "SampleSubmission.csv")
NEVER_WRITTEN = ("training.zip", "test.zip")  # Kaggle's downloads: a folder holding one is a real competition's


def _sha256(chunks) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _marker_digests(out: Path):
    """{file name: the SHA-256s synth.json lets it have}, or None where the folder has no marker of fkd synth."""
    try:
        marker = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):  # absent, unreadable, not JSON, not UTF-8
        return None
    files = marker.get("files") if isinstance(marker, dict) and marker.get("written_by") == "fkd synth" else None
    if not isinstance(files, dict):
        return None
    listed = {name: files.get(name) for name in WRITTEN}
    return {name: {d for d in digests if isinstance(d, str)} if isinstance(digests, list) else set()
            for name, digests in listed.items()}


def check_synth_folder(out, force: bool = False) -> dict:
    """Before anything is written (and before the faces are drawn): `out` may take a synthetic competition.

    It holds none of the competition files, or it is an earlier `fkd synth` folder (its synth.json), each
    file still what synth wrote there, and `force` is given; anything else is an FkdError naming the
    folder. Returns {file name: the SHA-256s the earlier synth.json allows} (empty sets for a new folder)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FkdError("is not a folder: --out names the folder to write the competition files to", path=out)
    present = [name for name in WRITTEN + NEVER_WRITTEN if (out / name).exists()]
    if not present:
        check_writable(out)
        return {name: set() for name in WRITTEN}
    allowed = _marker_digests(out)
    if allowed is None or any(name in NEVER_WRITTEN for name in present):
        raise FkdError(f"holds {', '.join(present)}, not written by `fkd synth`: synth never writes over a "
                       "competition folder (nothing was written); choose another --out", path=out)
    changed = [name for name in present if not (out / name).is_file() or _file_sha256(out / name) not in allowed[name]]
    if changed:
        raise FkdError(f"{', '.join(changed)} changed since `fkd synth` wrote the folder: synth never writes over "
                       "a file it did not write (nothing was written); choose another --out", path=out)
    if not force:
        raise FkdError(f"holds an earlier `fkd synth` competition ({', '.join(present)}): "
                       "pass --force to replace it (nothing was written)", path=out)
    check_writable(out)
    return allowed


def _write_marker(out: Path, n_train, n_test, seed, digests: dict, complete: bool):
    write_text(out / MARKER, json.dumps({"written_by": "fkd synth", "complete": complete, "seed": int(seed),
                                         "train": int(n_train), "test": int(n_test),
                                         "files": {name: sorted(digests[name]) for name in WRITTEN}}, indent=1))


def write_competition(out_dir, n_train: int = 1000, n_test: int = 100, seed: int = 0, force: bool = False) -> Path:
    """Write training.csv, test.csv, IdLookupTable.csv, SampleSubmission.csv (Kaggle's format) to out_dir,
    then synth.json. A folder holding competition files is refused (check_synth_folder): only an earlier
    `fkd synth` folder, with `force`, is replaced."""
    out = Path(out_dir)
    _check_counts(n_train, n_test)
    allowed = check_synth_folder(out, force)
    files = _competition_files(make_competition(n_train, n_test, seed))
    digests = {name: _sha256(chunks) for name, chunks in files.items()}
    # first a marker that takes the old files and the new: a rewrite cut short leaves a folder --force still replaces
    _write_marker(out, n_train, n_test, seed, {name: allowed[name] | {digests[name]} for name in WRITTEN}, False)
    for name, chunks in files.items():
        _write(out / name, chunks)
    _write_marker(out, n_train, n_test, seed, {name: {digests[name]} for name in WRITTEN}, True)  # last
    return out


# ---------------------------------------------------------------- command line

def add_arguments(parser):
    parser.add_argument("--out", required=True, help="folder to write the four competition files to")
    parser.add_argument("--train", type=positive_int, default=1000, help="training rows (default 1000)")
    parser.add_argument("--test", type=positive_int, default=100, help="test images (default 100)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed, 0 or more (default 0)")
    parser.add_argument("--force", action="store_true",
                        help="replace an earlier `fkd synth` folder (never one fkd synth did not write)")


def run(args):
    out = write_competition(args.out, args.train, args.test, args.seed, force=args.force)
    n_complete = _count(args.train, COMPLETE_FRACTION)
    print(f"{out}: training.csv ({args.train} rows, {n_complete} complete), test.csv ({args.test} images), "
          f"IdLookupTable.csv, SampleSubmission.csv, {MARKER} (seed {args.seed})")
    return 0
