"""Keypoint-aware augmentation: flip with the left/right swap, affine, photometric.

One settings dict (part of the training config; every key optional, 0 or missing = off), the
batch path below and a one-face reference in the tests:

    flip        probability of a horizontal flip (x -> 95 - x, left/right keypoints swapped)
    rotate      max rotation in degrees, uniform in [-rotate, rotate], about the image centre
    scale       zoom factor uniform in [1 - scale, 1 + scale] (same for x and y)
    shift       translation per axis, uniform in [-shift, shift] x 96 pixels
    brightness  added offset uniform in [-brightness, brightness] x full range (255 or max_value)
    contrast    gain uniform in [1 - contrast, 1 + contrast]  (img * gain + offset, as albumentations)
    blur        probability of a Gaussian blur, sigma uniform in BLUR_SIGMA pixels
    noise       Gaussian noise, per-image std uniform in [0, noise] x full range
    reflect     probability that an affine-warped image's outside is its own mirror image (else
                black). A black border shows the model how far the face was moved, so it can undo
                the move and keep its training framing (on the proxy every eye midpoint sits at
                y = 37.81); a mirrored border hides it, and the model must read the face itself,
                which is what a crop framed by a detector (`fkd face`) needs

- One face at a time: `tests/augment_reference.py`'s `KeypointAugmenter`, albumentations 2.0.8
  underneath (flip and its left/right swap done there), the reference the tests hold this path to
  (it knows no `reflect`).
- Batched torch: `augment_batch(images [B,1,96,96] float in [0, max_value], keypoints [B,30], config,
  generator)` for a dataset that lives on the GPU; no Python loop over samples.

Keypoints are pixel indices (pixel centre = integer), NaN = missing. A point is missing when either
of its coordinates is NaN (both come back NaN). When a geometric transform is configured, a point
that ends outside [0, 95] (KEEP_RANGE) becomes NaN: it is no longer a label the image shows.

Coordinate conventions, checked by tests/test_augment.py (Gaussian dots drawn on the keypoints,
warped, and found again within 0.1 px):
- albumentations 2.0.8 uses our convention: A.Affine rotates/scales about ((W-1)/2, (H-1)/2) =
  (47.5, 47.5) (`fgeometric.center`), warps the image with cv2.warpAffine (pixel centre = integer)
  and moves keypoints with the same matrix (cv2.transform); A.HorizontalFlip maps x -> (W-1) - x.
  So keypoints go in and come out as pixel indices with no half-pixel shift. (Its bounding-box
  matrix uses the centre W/2, the pixel-edge convention; we use no boxes.) A.Affine truncates a
  `translate_percent` shift to whole pixels, the torch path does not.
- torch: with align_corners=True, normalised -1 and +1 are the centres of pixels 0 and 95, so
  u = (p - 47.5) / 47.5 maps our pixel indices exactly; the keypoints move by the same matrix
  (in pixels: p' = s R (p - c) + c + t, c = 47.5) that F.affine_grid inverts for the image.
"""
import math

import torch
import torch.nn.functional as F

from fkd.core.config import augment_settings
from fkd.core.errors import FkdError
from fkd.core.keypoints import FLIP_AXIS, N_COLUMNS, N_POINTS, SIZE, flip_keypoints

BLUR_SIGMA = (0.5, 1.2)  # pixels
KEEP_RANGE = (0.0, SIZE - 1.0)  # a keypoint outside it after a geometric transform becomes NaN
CENTRE = (SIZE - 1) / 2.0  # 47.5: rotation/scale centre, pixel-centre convention


def _has_affine(s: dict) -> bool:
    return bool(s["rotate"] or s["scale"] or s["shift"])


def _is_geometric(s: dict) -> bool:
    return bool(s["flip"] or _has_affine(s))


# ---------------------------------------------------------------------------------------------
# CPU path: one sample at a time, albumentations underneath (for DataLoader workers)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Batched torch path: whole batch at once, on any device
# ---------------------------------------------------------------------------------------------

def _uniform(n, low, high, generator, gen_device, device):
    r = torch.rand(n, generator=generator, device=gen_device).to(device)
    return low + (high - low) * r


@torch.no_grad()
def augment_batch(images, keypoints, config, generator=None, max_value: float = 1.0, flip_axis: float = FLIP_AXIS):
    """Augment a batch: images float [B,1,96,96] in [0, max_value], keypoints [B,30] (pixels, NaN).

    Returns new (images, keypoints float32) on the images' device. Per sample: flip (with the
    left/right swap), one affine (rotation, scale, shift) applied to the image by
    F.affine_grid/F.grid_sample (bilinear, zeros outside) and to the keypoints by the same matrix,
    then brightness/contrast, blur, noise, clamped to [0, max_value]. Random numbers come from
    `generator` (drawn on its device, so give one on the images' device to avoid transfers).
    Keypoints that leave [0, 95] become NaN. A config with every setting 0 returns the inputs.
    flip_axis: the labels' mirror axis (47.5 when pixel centres are integers; see fkd.core.keypoints).
    """
    s = augment_settings(config)
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, SIZE, SIZE):
        raise FkdError(f"augment_batch expects images [B,1,{SIZE},{SIZE}], got {tuple(images.shape)}")
    if keypoints.ndim != 2 or keypoints.shape[1] != N_COLUMNS or keypoints.shape[0] != images.shape[0]:
        raise FkdError(f"augment_batch expects keypoints [B,{N_COLUMNS}], got {tuple(keypoints.shape)}")
    if not images.is_floating_point():
        raise FkdError(f"augment_batch expects float images, got {images.dtype}")
    if not any(s.values()):
        return images, keypoints

    device = images.device
    gen_device = generator.device if generator is not None else device
    batch = images.shape[0]

    def uniform(low, high):
        return _uniform(batch, low, high, generator, gen_device, device)

    kp = keypoints.to(device=device, dtype=torch.float32)

    # --- flip: the keypoints now, the image folded into the affine sampling grid (or flipped) --
    flip = torch.zeros(batch, dtype=torch.bool, device=device)
    if s["flip"]:
        flip = uniform(0.0, 1.0) < s["flip"]
        kp = torch.where(flip[:, None], flip_keypoints(kp, flip_axis), kp)

    # --- affine: p' = s R (p - c) + c + t -------------------------------------------------------
    if _has_affine(s):
        angle = torch.deg2rad(uniform(-s["rotate"], s["rotate"]))
        zoom = uniform(1 - s["scale"], 1 + s["scale"])
        shift = torch.stack([uniform(-s["shift"], s["shift"]), uniform(-s["shift"], s["shift"])], 1) * SIZE
        cos, sin = torch.cos(angle), torch.sin(angle)
        # R as albumentations builds it: [[cos, sin], [-sin, cos]] (y axis points down)
        forward = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1) * zoom[:, None, None]
        points = kp.view(batch, N_POINTS, 2)
        points = torch.einsum("bij,bpj->bpi", forward, points - CENTRE) + CENTRE + shift[:, None, :]
        kp = points.reshape(batch, N_COLUMNS)

        # grid_sample wants output -> input in normalised units u = (p - c) / c (align_corners=True):
        # u_in = A^-1 (u_out - t / c), A^-1 = R^T / s; a flip then negates the input x.
        inverse = forward.transpose(1, 2) / (zoom * zoom)[:, None, None]
        offset = -torch.einsum("bij,bj->bi", inverse, shift / CENTRE)
        theta = torch.cat([inverse, offset[:, :, None]], 2)
        theta[:, 0, :] = torch.where(flip[:, None], -theta[:, 0, :], theta[:, 0, :])
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=True)
        warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        if s["reflect"]:
            mirrored = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
            warped = torch.where((uniform(0.0, 1.0) < s["reflect"])[:, None, None, None], mirrored, warped)
        images = warped
    elif s["flip"]:
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)

    if _is_geometric(s):
        points = kp.view(batch, N_POINTS, 2)
        drop = (points.isnan() | (points < KEEP_RANGE[0]) | (points > KEEP_RANGE[1])).any(2, keepdim=True)
        kp = points.masked_fill(drop, float("nan")).reshape(batch, N_COLUMNS)

    # --- photometric ----------------------------------------------------------------------------
    if s["brightness"] or s["contrast"]:
        gain = uniform(1 - s["contrast"], 1 + s["contrast"]).to(images.dtype)
        offset = (uniform(-s["brightness"], s["brightness"]) * max_value).to(images.dtype)
        images = torch.addcmul(offset[:, None, None, None], images, gain[:, None, None, None]).clamp_(0, max_value)
    if s["blur"]:
        sigma = uniform(*BLUR_SIGMA)
        chosen = torch.nonzero(uniform(0.0, 1.0) < s["blur"]).squeeze(1)
        if chosen.numel():  # blur only the chosen samples (p is usually small)
            images = images.index_copy(0, chosen, _gaussian_blur(images[chosen], sigma[chosen]))
    if s["noise"]:
        std = (uniform(0.0, s["noise"]) * max_value).to(images.dtype)
        noise = torch.randn(images.shape, generator=generator, device=gen_device).to(device, images.dtype)
        images = torch.addcmul(images, noise, std[:, None, None, None]).clamp_(0, max_value)
    return images, kp


def _gaussian_blur(images, sigma):
    """Per-sample Gaussian blur, sigma [B] in pixels: out = M X M^T with M a [96,96] banded matrix.

    Two batched matmuls beat a grouped conv with B groups (3x on CPU); the matrix also carries
    cv2's default border (BORDER_REFLECT_101), so edges are not darkened.
    """
    batch, device = images.shape[0], images.device
    radius = math.ceil(3 * BLUR_SIGMA[1])
    taps = torch.arange(-radius, radius + 1, device=device)
    weights = torch.exp(-(taps[None, :].float() ** 2) / (2 * sigma[:, None].float() ** 2))
    weights = weights / weights.sum(1, keepdim=True)
    source = torch.arange(SIZE, device=device)[:, None] + taps[None, :]  # [96, K]
    source = torch.where(source < 0, -source, source)
    source = torch.where(source > SIZE - 1, 2 * (SIZE - 1) - source, source)
    matrix = torch.zeros(batch, SIZE, SIZE, device=device).scatter_add_(
        2, source.expand(batch, SIZE, -1), weights[:, None, :].expand(batch, SIZE, -1)
    ).to(images.dtype)
    return (matrix @ images[:, 0] @ matrix.transpose(1, 2))[:, None]
