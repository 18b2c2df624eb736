"""Natural RGB images that ship inside scikit-image (``skimage.data``), offline (issue #30).

* ``photos``: 32x32 RGB crops of the package's eight colour photographs (:data:`PICTURES`: an astronaut, a cup
  of coffee, the Hubble deep field, an immunohistochemistry slide, a motorcycle, a retina, a cat and a rocket).
  Each picture is resized (antialiased) so that its shorter side is :data:`SHORT_SIDE` pixels, then cut into
  crops every :data:`STRIDE` pixels. The split is **by source picture**: every crop of :data:`HELD_OUT` (the
  cat and the rocket) is held out, so no held-out crop overlaps a training one; ``heldout_fraction`` does not
  apply. About 585 training and 252 held-out crops. Labels: none (the source index stays internal).
* ``faces``: the 100 face images of the bundled Labeled Faces in the Wild subset (``skimage.data.lfw_subset``:
  25x25 grayscale, the first 100 of its 200 images; the rest are not faces), split at random like the others.
  Small (100 images): a check of the pipeline on faces, not a CelebA.

Both come from files inside the installed package; nothing is downloaded. Licences are scikit-image's data
README's (the photographs are public domain or CC0/CC-BY; LFW is for research use).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PICTURES = ("astronaut", "coffee", "hubble_deep_field", "immunohistochemistry", "stereo_motorcycle", "retina",
            "chelsea", "rocket")
HELD_OUT = ("chelsea", "rocket")  # whole pictures held out
SHORT_SIDE, CROP, STRIDE = 160, 32, 16


def _picture(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    return image[0] if name == "stereo_motorcycle" else image  # (left, right, disparity): the left view


def crops(image: torch.Tensor, crop: int = CROP, stride: int = STRIDE) -> torch.Tensor:
    """Every ``crop x crop`` window of ``image`` ``[C, H, W]`` at multiples of ``stride``: ``[n, C, crop, crop]``,
    row by row."""
    windows = image.unfold(1, crop, stride).unfold(2, crop, stride)  # [C, rows, cols, crop, crop]
    return windows.permute(1, 2, 0, 3, 4).reshape(-1, image.shape[0], crop, crop)


def load_photos(short_side: int = SHORT_SIDE) -> tuple[torch.Tensor, None, torch.Tensor]:
    """``(images [N, 3, 32, 32] in [-1, 1], None, held_out [N] bool)``: the module's ``photos``."""
    out, held = [], []
    for name in PICTURES:
        x = torch.from_numpy(np.ascontiguousarray(_picture(name))).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        h, w = x.shape[-2:]
        scale = short_side / min(h, w)
        x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False,
                          antialias=True)[0]
        c = crops(x)
        out.append(c)
        held.append(torch.full((len(c),), name in HELD_OUT))
    return torch.cat(out).clamp(-1, 1), None, torch.cat(held)


def load_faces() -> tuple[torch.Tensor, None]:
    """``(images [100, 1, 25, 25] in [-1, 1], None)``: the module's ``faces``."""
    import skimage.data

    faces = skimage.data.lfw_subset()[:100].astype(np.float32)
    return torch.from_numpy(faces * 2.0 - 1.0)[:, None], None
