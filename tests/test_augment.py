"""fkd.augment: dots drawn on the keypoints must be found again where the moved keypoints say."""
import numpy as np
import pytest
import torch
from augment_reference import KeypointAugmenter

from fkd.core.config import DEFAULT_AUGMENT
from fkd.core.config import augment_settings as parse_config
from fkd.core.errors import FkdError
from fkd.core.keypoints import KEYPOINTS, flip_keypoints
from fkd.model.augment import augment_batch

AFFINE = {"rotate": 25, "scale": 0.15, "shift": 0.05}
YY, XX = np.mgrid[0:96, 0:96].astype(np.float64)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def grid_keypoints() -> np.ndarray:
    """15 points on a 4x4 grid (15 px apart, sub-pixel offsets), far enough apart to find each dot."""
    rng = np.random.default_rng(0)
    cells = [(i, j) for j in range(4) for i in range(4)][:15]
    points = np.array([(25.0 + 15 * i, 25.0 + 15 * j) for i, j in cells]) + rng.uniform(-0.5, 0.5, (15, 2))
    return points.reshape(30).astype(np.float32)


def dot_image(keypoints, only=None, sigma=1.2, amplitude=250.0) -> np.ndarray:
    """float [96,96]: a Gaussian dot at each keypoint (or only at the named ones)."""
    image = np.zeros((96, 96))
    for index, (x, y) in enumerate(np.asarray(keypoints, np.float64).reshape(15, 2)):
        if only is None or KEYPOINTS[index] in only:
            image += amplitude * np.exp(-((XX - x) ** 2 + (YY - y) ** 2) / (2 * sigma**2))
    return image


def centroid(image, x, y, radius=5):
    """Brightness-weighted centroid in a window around (x, y); None if the window leaves the image."""
    cx, cy = int(round(x)), int(round(y))
    if cx - radius < 0 or cy - radius < 0 or cx + radius > 95 or cy + radius > 95:
        return None
    window = np.asarray(image, np.float64)[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1]
    ys, xs = np.mgrid[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1]
    total = window.sum()
    return (window * xs).sum() / total, (window * ys).sum() / total


def assert_dots_on_keypoints(image, keypoints, names=None, tol=0.1) -> int:
    """Every present keypoint (of `names`) sits on a dot within tol px; returns how many were checked."""
    checked = 0
    for index, (x, y) in enumerate(np.asarray(keypoints, np.float64).reshape(15, 2)):
        if np.isnan(x) or (names is not None and KEYPOINTS[index] not in names):
            continue
        found = centroid(image, x, y)
        if found is None:
            continue
        assert abs(found[0] - x) < tol and abs(found[1] - y) < tol, (KEYPOINTS[index], (x, y), found)
        checked += 1
    return checked


# ----------------------------------------------------------------------------- CPU (albumentations)

@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_cpu_dots_follow_keypoints(flip):
    keypoints = grid_keypoints()
    image = np.round(dot_image(keypoints)).astype(np.uint8)
    aug = KeypointAugmenter({**AFFINE, "flip": flip}, seed=1)
    checked = 0
    for _ in range(6):
        out_image, out_keypoints = aug(image, keypoints)
        assert out_image.dtype == np.uint8 and out_image.shape == (96, 96)
        assert out_keypoints.dtype == np.float32 and out_keypoints.shape == (30,)
        checked += assert_dots_on_keypoints(out_image, out_keypoints)
    assert checked >= 60


@pytest.mark.parametrize("affine", [{}, AFFINE])
def test_cpu_flip_swaps_left_and_right(affine):
    keypoints = grid_keypoints()
    only = ["left_eye_center", "mouth_left_corner", "right_eyebrow_outer_end"]
    image = np.round(dot_image(keypoints, only=only)).astype(np.uint8)
    aug = KeypointAugmenter({**affine, "flip": 1.0}, seed=2)
    for _ in range(3):
        out_image, out_keypoints = aug(image, keypoints)
        mirrored = ["right_eye_center", "mouth_right_corner", "left_eyebrow_outer_end"]
        assert assert_dots_on_keypoints(out_image, out_keypoints, names=mirrored) >= 2
    if not affine:  # a plain flip is exact: x -> 95 - x with the swap
        np.testing.assert_array_equal(out_image, image[:, ::-1])
        np.testing.assert_allclose(out_keypoints, flip_keypoints(keypoints))
        left, right = KEYPOINTS.index("left_eye_center"), KEYPOINTS.index("right_eye_center")
        assert out_keypoints[2 * right] == pytest.approx(95 - keypoints[2 * left])


def test_cpu_flip_twice_is_identity():
    keypoints = grid_keypoints()
    keypoints[4:6] = np.nan
    image = np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)
    aug = KeypointAugmenter({"flip": 1.0})
    twice_image, twice_keypoints = aug(*aug(image, keypoints))
    np.testing.assert_array_equal(twice_image, image)
    np.testing.assert_allclose(twice_keypoints, keypoints, atol=1e-5)  # NaN compares equal here


def test_cpu_nan_stays_nan_and_zeros_are_identity():
    keypoints = grid_keypoints()
    keypoints[[0, 1, 20, 21]] = np.nan
    image = np.random.default_rng(1).integers(0, 256, (96, 96), dtype=np.uint8)
    aug = KeypointAugmenter({**DEFAULT_AUGMENT, "flip": 1.0, "blur": 1.0}, seed=3)
    for _ in range(3):
        out_image, out_keypoints = aug(image, keypoints)
        missing = np.isnan(flip_keypoints(keypoints))
        assert np.isnan(out_keypoints[missing]).all()
        assert not np.array_equal(out_image, image[:, ::-1])
    for config in ({}, None, {key: 0 for key in DEFAULT_AUGMENT}):
        out_image, out_keypoints = KeypointAugmenter(config, seed=0)(image, keypoints)
        np.testing.assert_array_equal(out_image, image)
        np.testing.assert_array_equal(out_keypoints, keypoints)


def test_cpu_out_of_image_becomes_nan():
    keypoints = np.full(30, 47.0, np.float32)
    keypoints[0:2] = (0.5, 30.0)    # near the left edge
    keypoints[2:4] = (94.5, 60.0)   # near the right edge
    keypoints[4:6] = (40.0, 0.2)    # near the top
    image = np.zeros((96, 96), np.uint8)
    aug = KeypointAugmenter({"shift": 0.3}, seed=4)
    went_out = 0
    for _ in range(20):
        _, out = aug(image, keypoints)
        shift = out[28:30] - keypoints[28:30]  # an interior point tells the shift
        expected = keypoints[:6].reshape(3, 2) + shift
        outside = ((expected < 0) | (expected > 95)).any(1)
        went_out += outside.sum()
        for k in range(3):
            if outside[k]:
                assert np.isnan(out[2 * k:2 * k + 2]).all()
            else:
                np.testing.assert_allclose(out[2 * k:2 * k + 2], expected[k], atol=1e-3)
    assert went_out >= 5


def test_cpu_seed_determinism_and_photometric():
    keypoints = grid_keypoints()
    image = np.round(dot_image(keypoints) * 0.5 + 60).astype(np.uint8)
    config = {**DEFAULT_AUGMENT, "blur": 0.5}
    first, second = KeypointAugmenter(config, seed=7), KeypointAugmenter(config, seed=7)
    outputs = []
    for _ in range(4):
        a, b = first(image, keypoints), second(image, keypoints)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        outputs.append(a)
    assert not np.array_equal(outputs[0][0], outputs[1][0])
    photometric = KeypointAugmenter({"brightness": 0.3, "contrast": 0.3, "noise": 0.05, "blur": 1.0}, seed=0)
    out_image, out_keypoints = photometric(image, keypoints)
    np.testing.assert_array_equal(out_keypoints, keypoints)  # photometric moves no keypoint
    assert not np.array_equal(out_image, image)


def test_bad_config_is_an_fkd_error():
    with pytest.raises(FkdError, match="rotation"):
        parse_config({"rotation": 10})
    with pytest.raises(FkdError, match="flip"):
        parse_config({"flip": 2})
    with pytest.raises(FkdError, match="scale"):
        parse_config({"scale": -0.1})
    assert parse_config({"flip": 0.5})["rotate"] == 0.0


# ----------------------------------------------------------------------------- batched torch

def batch_of(image, keypoints, n, device):
    images = torch.as_tensor(np.asarray(image, np.float32) / 255.0).expand(n, 1, 96, 96).contiguous()
    return images.to(device), torch.as_tensor(keypoints).expand(n, 30).contiguous().to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("flip", [0.0, 0.5, 1.0])
def test_torch_dots_follow_keypoints(flip, device):
    keypoints = grid_keypoints()
    images, kps = batch_of(dot_image(keypoints), keypoints, 16, device)
    generator = torch.Generator(device=device).manual_seed(0)
    out_images, out_keypoints = augment_batch(images, kps, {**AFFINE, "flip": flip}, generator=generator)
    assert out_images.shape == images.shape and out_keypoints.shape == kps.shape
    assert out_keypoints.dtype == torch.float32 and out_keypoints.device == images.device
    checked = sum(
        assert_dots_on_keypoints(out_images[i, 0].cpu().numpy(), out_keypoints[i].cpu().numpy())
        for i in range(16)
    )
    assert checked >= 160


@pytest.mark.parametrize("affine", [{}, AFFINE])
def test_torch_flip_swaps_left_and_right(affine):
    keypoints = grid_keypoints()
    only = ["left_eye_center", "mouth_left_corner", "right_eyebrow_outer_end"]
    images, kps = batch_of(dot_image(keypoints, only=only), keypoints, 8, "cpu")
    out_images, out_keypoints = augment_batch(
        images, kps, {**affine, "flip": 1.0}, generator=torch.Generator().manual_seed(1))
    mirrored = ["right_eye_center", "mouth_right_corner", "left_eyebrow_outer_end"]
    checked = sum(
        assert_dots_on_keypoints(out_images[i, 0].numpy(), out_keypoints[i].numpy(), names=mirrored)
        for i in range(8)
    )
    assert checked >= 16
    if not affine:
        torch.testing.assert_close(out_images, images.flip(-1))
        torch.testing.assert_close(out_keypoints, torch.as_tensor(flip_keypoints(kps.numpy())))


def test_torch_flip_twice_is_identity_and_nan_stays_nan():
    keypoints = np.tile(grid_keypoints(), (4, 1))
    keypoints[1, 0:2] = np.nan
    keypoints[2, 22:30] = np.nan
    images = torch.rand(4, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    kps = torch.as_tensor(keypoints)
    once = augment_batch(images, kps, {"flip": 1.0})
    twice = augment_batch(*once, {"flip": 1.0})
    torch.testing.assert_close(twice[0], images)
    torch.testing.assert_close(twice[1], kps, equal_nan=True)
    # through the affine grid too (flip folded into the sampling matrix, no rotation)
    once = augment_batch(images, kps, {"flip": 1.0, "shift": 1e-9})
    torch.testing.assert_close(once[0], images.flip(-1), atol=1e-4, rtol=0)

    out_images, out_keypoints = augment_batch(
        images, kps, {**DEFAULT_AUGMENT, "blur": 1.0}, generator=torch.Generator().manual_seed(3))
    assert torch.isnan(out_keypoints[1, :2]).all() or torch.isnan(out_keypoints[1, 2:4]).all()
    assert torch.isfinite(out_images).all() and out_images.min() >= 0 and out_images.max() <= 1
    flipped_missing = np.isnan(flip_keypoints(keypoints))
    plain_missing = np.isnan(keypoints)
    missing = torch.isnan(out_keypoints).numpy()
    assert (missing[flipped_missing & plain_missing]).all()
    for row in range(4):  # a row's missing set, flipped or not, stays missing
        assert missing[row][plain_missing[row]].all() or missing[row][flipped_missing[row]].all()


def test_torch_zeros_are_identity_and_generator_determinism():
    images = torch.rand(4, 1, 96, 96)
    kps = torch.as_tensor(np.tile(grid_keypoints(), (4, 1)))
    for config in ({}, None, {key: 0.0 for key in DEFAULT_AUGMENT}):
        out_images, out_keypoints = augment_batch(images, kps, config)
        assert torch.equal(out_images, images) and torch.equal(out_keypoints, kps)
    config = {**DEFAULT_AUGMENT, "blur": 0.5}
    a = augment_batch(images, kps, config, generator=torch.Generator().manual_seed(5))
    b = augment_batch(images, kps, config, generator=torch.Generator().manual_seed(5))
    c = augment_batch(images, kps, config, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1].nan_to_num(-1), b[1].nan_to_num(-1))
    assert not torch.equal(a[0], c[0])
    # samples get different parameters
    assert not torch.allclose(a[1][0], a[1][1], equal_nan=True)


def test_torch_out_of_image_becomes_nan():
    keypoints = np.full(30, 47.0, np.float32)
    keypoints[0:2] = (0.5, 30.0)
    keypoints[2:4] = (94.5, 60.0)
    keypoints[4:6] = (40.0, 0.2)
    kps = torch.as_tensor(np.tile(keypoints, (32, 1)))
    _, out = augment_batch(torch.zeros(32, 1, 96, 96), kps, {"shift": 0.3},
                           generator=torch.Generator().manual_seed(0))
    out = out.numpy()
    shift = out[:, 28:30] - keypoints[28:30]
    expected = keypoints[:6].reshape(1, 3, 2) + shift[:, None, :]
    outside = ((expected < 0) | (expected > 95)).any(2)
    got = out[:, :6].reshape(32, 3, 2)
    assert outside.sum() >= 10
    assert np.isnan(got[outside]).all()
    np.testing.assert_allclose(got[~outside], expected[~outside], atol=1e-4)


def test_torch_photometric_keeps_keypoints_and_range():
    keypoints = np.tile(grid_keypoints(), (8, 1))
    images = torch.rand(8, 1, 96, 96, generator=torch.Generator().manual_seed(0)) * 200
    kps = torch.as_tensor(keypoints)
    out_images, out_keypoints = augment_batch(
        images, kps, {"brightness": 0.3, "contrast": 0.3, "noise": 0.05, "blur": 1.0},
        generator=torch.Generator().manual_seed(0), max_value=255.0)
    assert torch.equal(out_keypoints, kps)
    assert out_images.min() >= 0 and out_images.max() <= 255 and not torch.equal(out_images, images)
    # blur alone keeps the mean (reflect padding) and smooths
    blurred, _ = augment_batch(images, kps, {"blur": 1.0}, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(blurred.mean((1, 2, 3)), images.mean((1, 2, 3)), rtol=0.02, atol=0)
    assert blurred.std() < 0.7 * images.std()


def test_flip_axis_follows_the_labels_convention():
    from fkd.core.keypoints import COLUMNS
    from fkd.model.augment import augment_batch

    images = torch.rand(2, 1, 96, 96)
    keypoints = torch.full((2, 30), 40.0)
    keypoints[:, COLUMNS.index("left_eye_center_x")] = 60.0
    _, flipped = augment_batch(images, keypoints, {"flip": 1.0}, flip_axis=48.5)
    assert flipped[0, COLUMNS.index("right_eye_center_x")].item() == pytest.approx(97 - 60)
    assert flipped[0, COLUMNS.index("left_eye_center_x")].item() == pytest.approx(97 - 40)
    _, default = augment_batch(images, keypoints, {"flip": 1.0})
    assert default[0, COLUMNS.index("right_eye_center_x")].item() == pytest.approx(95 - 60)


def test_torch_reflect_fills_the_outside_with_the_mirror_and_moves_the_points_alike():
    images = torch.rand(16, 1, 96, 96) * 0.5 + 0.25   # no black anywhere
    kps = torch.as_tensor(np.tile(grid_keypoints(), (16, 1)))
    config = {"shift": 0.2, "rotate": 20}
    black, black_points = augment_batch(images, kps, config, generator=torch.Generator().manual_seed(3))
    mirrored, mirrored_points = augment_batch(images, kps, {**config, "reflect": 1.0},
                                              generator=torch.Generator().manual_seed(3))
    assert torch.equal(black_points.nan_to_num(-1), mirrored_points.nan_to_num(-1))
    assert (black == 0).flatten(1).any(1).all()          # every moved image shows a black border
    assert not (mirrored == 0).any() and mirrored.min() >= 0.25 - 1e-6
    coverage, _ = augment_batch(torch.ones_like(images), kps, config, generator=torch.Generator().manual_seed(3))
    inside = coverage > 1 - 1e-6                         # where both sample the image itself, they agree
    assert inside.float().mean() > 0.5
    assert torch.allclose(black[inside], mirrored[inside], atol=1e-5)
    half, _ = augment_batch(images, kps, {**config, "reflect": 0.5}, generator=torch.Generator().manual_seed(3))
    some_black = (half == 0).flatten(1).any(1)
    assert 0 < int(some_black.sum()) < 16
