"""``fingers``: procedural hands with a known global rule (exactly F fingers).

Each image is a filled palm disc with F straight, round-ended fingers
radiating from it, at a random position, rotation, spread and per-finger
length, rendered with 4x4 supersampling (antialiasing). Ink is +1, background
-1. ``count_fingers`` recovers F exactly on every generated image; a sample
with another count is the "extra fingers" failure of a model that decides
locally.

Geometry (in units of the image size S): palm radius 0.15 S, finger
half-width 0.04 S, finger reach 0.30..0.42 S from the palm centre, adjacent
fingers at least 40 degrees apart. The finger counter cuts a disc of 1.7 palm
radii around the palm centre; outside it adjacent fingers never touch after
thresholding, for any S >= 28 (checked on thousands of hands in the tests).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

_SUPERSAMPLE = 4
PALM = 0.15
HALF_WIDTH = 0.04
REACH = (0.30, 0.42)
MIN_GAP_DEG = 40.0
CUT = 1.7  # counter's cut radius, in palm radii


def _capsule_distance(px, py, x0, y0, x1, y1):
    """Distance of points (px, py) to the segment (x0, y0)-(x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(px - (x0 + t * dx), py - (y0 + t * dy))


def draw_hand(size: int, centre, rotation: float, angles, reaches) -> np.ndarray:
    """Render one hand into a ``[size, size]`` array of coverage in [0, 1].

    ``angles`` are finger directions relative to ``rotation`` (radians);
    ``reaches`` the distance of each fingertip centre from the palm centre (pixels).
    """
    s = _SUPERSAMPLE
    coords = (np.arange(size * s) + 0.5) / s
    py, px = np.meshgrid(coords, coords, indexing="ij")
    cx, cy = centre
    palm_r, half_w = PALM * size, HALF_WIDTH * size
    ink = np.hypot(px - cx, py - cy) <= palm_r
    for angle, reach in zip(angles, reaches):
        a = rotation + angle
        ink |= _capsule_distance(px, py, cx, cy, cx + reach * math.cos(a), cy + reach * math.sin(a)) <= half_w
    return ink.reshape(size, s, size, s).mean(axis=(1, 3))


def make_fingers(n: int, size: int = 28, fingers: int = 5, seed: int = 0) -> torch.Tensor:
    """``n`` hands with exactly ``fingers`` fingers: float32 ``[n, 1, size, size]`` in [-1, 1]."""
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    if size < 28:
        raise ValueError(f"size={size} is too small to draw separable fingers; allowed: >= 28")
    if not 1 <= fingers <= 7:
        raise ValueError(f"fingers={fingers} is not allowed; choose 1..7 (more do not fit at 40 degree spacing)")
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size), dtype=np.float32)
    max_reach = REACH[1] * size + HALF_WIDTH * size
    for i in range(n):
        gaps = rng.uniform(MIN_GAP_DEG, MIN_GAP_DEG * 1.4, size=fingers - 1)
        angles = np.radians(np.concatenate([[0.0], np.cumsum(gaps)]))
        angles -= angles.mean()
        reaches = rng.uniform(*REACH, size=fingers) * size
        rotation = rng.uniform(0, 2 * math.pi)
        # keep the whole hand inside the frame, with one pixel of margin
        lo, hi = max_reach + 1.0, size - max_reach - 1.0
        centre = rng.uniform(lo, hi, size=2) if hi > lo else np.array([size / 2, size / 2])
        out[i] = draw_hand(size, centre, rotation, angles, reaches)
    return torch.from_numpy(out * 2.0 - 1.0)[:, None]


def finger_components(image: torch.Tensor | np.ndarray, min_pixels: int = 2):
    """Label the fingers of one hand image ``[1, H, W]`` or ``[H, W]`` in [-1, 1].

    Returns ``(labels, count)``: ``labels`` an int array ``[H, W]`` with 0 for
    background/palm and ``1..count`` for each finger. The palm centre is the
    maximum of the distance transform of the ink; fingers are the connected
    pieces of ink outside a disc of ``CUT`` palm radii around it.
    """
    img = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    img = img.reshape(img.shape[-2:])
    ink = img > 0.0
    if not ink.any():
        return np.zeros(img.shape, dtype=np.int32), 0
    dist = ndimage.distance_transform_edt(ink)
    cy, cx = np.unravel_index(np.argmax(dist), dist.shape)
    palm_r = max(float(dist[cy, cx]), 1.0)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    outside = np.hypot(yy - cy, xx - cx) > CUT * palm_r
    labels, count = ndimage.label(ink & outside, structure=np.ones((3, 3)))
    sizes = ndimage.sum(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    keep = np.flatnonzero(np.asarray(sizes) >= min_pixels) + 1
    relabel = np.zeros(count + 1, dtype=np.int32)
    relabel[keep] = np.arange(1, len(keep) + 1)
    return relabel[labels], int(len(keep))


def count_fingers(image: torch.Tensor | np.ndarray) -> int:
    """The number of fingers of one hand image ``[1, H, W]`` or ``[H, W]`` in [-1, 1]."""
    return finger_components(image)[1]


def is_hand(image: torch.Tensor | np.ndarray, connected: float = 0.9) -> bool:
    """Whether one image ``[1, H, W]`` or ``[H, W]`` in [-1, 1] is *a hand* at all (global coherence, whatever
    its finger count): a palm of roughly the drawn size (the ink's largest inscribed disc has a radius between
    0.7 and 2 times ``PALM * H``), ink on at most 40% of the image (a drawn hand covers about 17%), at least
    ``connected`` of the ink in the palm's 8-connected piece (no stray blobs), and at least one finger."""
    img = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    img = img.reshape(img.shape[-2:])
    ink = img > 0.0
    if not ink.any() or ink.mean() > 0.4:
        return False
    dist = ndimage.distance_transform_edt(ink)
    cy, cx = np.unravel_index(np.argmax(dist), dist.shape)
    palm = PALM * img.shape[0]
    if not 0.7 * palm <= dist[cy, cx] <= 2.0 * palm:
        return False
    pieces, _ = ndimage.label(ink, structure=np.ones((3, 3)))
    if (pieces == pieces[cy, cx]).sum() < connected * ink.sum():
        return False
    return finger_components(img)[1] >= 1
