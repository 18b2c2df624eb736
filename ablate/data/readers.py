"""Readers for standard on-disk formats: MNIST-style IDX, CIFAR-10 python batches, image folders.

Every reader returns ``(images, labels)``: ``images`` a float32 tensor
``[N, C, H, W]`` in [-1, 1], ``labels`` an int64 tensor ``[N]`` or ``None``.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class _ArraysOnly(pickle.Unpickler):
    """Unpickles what a CIFAR-10 python batch holds (dicts, lists, bytes, numbers and numpy arrays) and
    nothing else: any other global (``os.system``, a class, ...) is refused before anything runs."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR-10 batch holds only "
                                         "containers, bytes and numpy arrays")
        return super().find_class(module, name)


def safe_unpickle(fh) -> object:
    return _ArraysOnly(fh, encoding="bytes").load()


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array of its declared shape."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"IDX file {str(path)!r} does not exist")
    with _open(path) as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (the first two bytes must be zero)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{code:02x}; allowed: "
                         + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES))
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes for {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = data[4 + 4 * ndim:]
    if len(body) != expected:
        raise ValueError(f"{path}: truncated or corrupt IDX file: header says shape {tuple(shape)} "
                         f"({expected} bytes of data) but the file holds {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (used by tests and for exporting subsets)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(header + array.tobytes())


def uint8_to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 (or 0..255 float) images -> float32 in [-1, 1]."""
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / 127.5 - 1.0)


def read_idx_pair(images_path: str | Path, labels_path: str | Path | None):
    """MNIST/FashionMNIST: an images IDX file ``[N, H, W]`` and an optional labels IDX file ``[N]``."""
    images = read_idx(images_path)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: expected images of shape [N, H, W], got {images.shape}")
    x = uint8_to_unit(images)[:, None]
    labels = None
    if labels_path is not None:
        lab = read_idx(labels_path)
        if lab.shape != (images.shape[0],):
            raise ValueError(f"{labels_path}: expected {images.shape[0]} labels, got shape {lab.shape}")
        labels = torch.from_numpy(lab.astype(np.int64))
    return x, labels


def read_cifar10(directory: str | Path, split: str = "train"):
    """CIFAR-10 python batches (``data_batch_1..5`` or ``test_batch``) from ``directory``."""
    directory = Path(directory)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    files = [directory / n for n in names if (directory / n).is_file()]
    if not files:
        raise ValueError(f"no CIFAR-10 batches ({', '.join(names)}) found in {str(directory)!r}")
    xs, ys = [], []
    for f in files:
        try:
            with open(f, "rb") as fh:
                batch = safe_unpickle(fh)
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels = np.asarray(batch[b"labels"], dtype=np.int64)
        except Exception as err:  # pickle raises many types on corrupt input
            raise ValueError(f"{f}: not a readable CIFAR-10 python batch ({err})") from err
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise ValueError(f"{f}: expected data [N, 3072] and N labels, got {data.shape} and {len(labels)}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return uint8_to_unit(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def read_image_folder(directory: str | Path, size: int, channels: int = 1):
    """Every image under ``directory`` resized to ``size x size`` with ``channels`` (1 or 3).

    Sub-folders become class labels (sorted names -> 0, 1, ...) when every image
    lies in a sub-folder; otherwise labels are ``None``.
    """
    from PIL import Image

    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"image folder {str(directory)!r} does not exist")
    if channels not in (1, 3):
        raise ValueError(f"channels={channels} is not allowed; choose 1 or 3")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"image folder {str(directory)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                arrays.append(np.asarray(im.convert(mode).resize((size, size), Image.BILINEAR)))
        except Exception as err:
            raise ValueError(f"{f}: not a readable image ({err})") from err
    x = np.stack(arrays)
    x = x[:, None] if channels == 1 else x.transpose(0, 3, 1, 2)
    labels = None
    parents = [f.parent for f in files]
    if all(p != directory for p in parents):
        classes = sorted({p.relative_to(directory).parts[0] for p in parents})
        labels = torch.tensor([classes.index(f.relative_to(directory).parts[0]) for f in files])
    return uint8_to_unit(x), labels
